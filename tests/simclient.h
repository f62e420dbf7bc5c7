#ifndef HOPXD_SIMCLIENT_H
#define HOPXD_SIMCLIENT_H

/*
 * Test helpers around hopx-sim: start a private simulator on free ports,
 * make blocking HTTP calls to it with libcurl, stop it.
 */

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#define SIM_TEST_KEY "hopx_test_conformance.key"

struct simproc {
	pid_t pid;
	char dir[256];
	char ready[300];
	char state[300];
	char api_url[128];
	char agent_url[128];
};

/*
 * Starts hopx-sim (path from $HOPX_SIM or the argument) with the test key,
 * free ports, a ready file and a state file in a fresh directory, plus the
 * NULL-terminated extra arguments. Waits until it is ready. 0 or -1.
 */
int simproc_start(struct simproc *p, const char *bin, const char *const *extra);

/* Restarts a stopped simulator in the same directory (same state file). */
int simproc_restart(struct simproc *p, const char *bin,
                    const char *const *extra);

/* SIGTERM, wait; returns the exit status or -1. Keeps the directory. */
int simproc_stop(struct simproc *p);

/*
 * Stops it if running and removes the directory. Returns the exit status
 * of that stop (0 when it had been stopped already), which a test checks:
 * under the sanitizers a leak in hopx-sim shows only there.
 */
int simproc_destroy(struct simproc *p);

struct sc_result {
	int curl_code; /* 0, or the CURLcode of a transport failure */
	long status;
	char *body;
	cJSON *json; /* NULL when the body is not JSON */
	char retry_after[16];
	char request_id[48];
	double seconds;
};

/*
 * One request. auth is a whole header line ("X-API-Key: k") or NULL; body
 * may be NULL (then no body is sent). timeout_ms 0 means 10 s.
 */
int sc_call(struct sc_result *r, const char *method, const char *url,
            const char *auth, const char *body, long timeout_ms);

/* sc_call against the simulator's control plane with the test key. */
int sc_api(struct sc_result *r, const struct simproc *p, const char *method,
           const char *path, const char *body);

void sc_free(struct sc_result *r);

/* String field of r->json, or "" */
const char *sc_str(const struct sc_result *r, const char *key);

#endif
