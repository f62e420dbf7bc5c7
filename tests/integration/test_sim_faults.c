/*
 * hopx-sim fault injection, request log, counters and admin API: each
 * fault kind as a client sees it (status, headers, transport errors,
 * timing), and proof that an injected error never changes state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "simclient.h"

static const char *sim_bin;

struct fx {
	struct simproc p;
	struct sc_result r;
	char id[64];
};

static long api(struct fx *f, const char *method, const char *path,
                const char *body)
{
	sc_free(&f->r);
	sc_api(&f->r, &f->p, method, path, body);
	return f->r.status;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	if (simproc_start(&f->p, sim_bin, NULL) != 0)
		fail_msg("hopx-sim did not start");
	/* One sandbox to act on, created before any fault is set. */
	assert_int_equal(
	        api(f, "POST", "/v1/sandboxes", "{\"template_name\":\"base\"}"),
	        201);
	snprintf(f->id, sizeof(f->id), "%s", sc_str(&f->r, "id"));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	sc_free(&f->r);
	assert_int_equal(simproc_destroy(&f->p), 0); /* exit 0 at SIGTERM */
	free(f);
	return 0;
}

static void faults(struct fx *f, const char *json)
{
	if (api(f, "PUT", "/_sim/faults", json) != 200)
		fail_msg("PUT /_sim/faults %s: %s", json, f->r.body);
}

static long get_sandbox(struct fx *f)
{
	char path[128];

	snprintf(path, sizeof(path), "/v1/sandboxes/%s", f->id);
	return api(f, "GET", path, NULL);
}

static long pause_sandbox(struct fx *f)
{
	char path[128];

	snprintf(path, sizeof(path), "/v1/sandboxes/%s/pause", f->id);
	return api(f, "POST", path, NULL);
}

static void t_5xx(void **state)
{
	struct fx *f = *state;
	char url[200];
	int i;

	faults(f, "{\"rate_5xx\":1}");
	for (i = 0; i < 10; i++) {
		long st = pause_sandbox(f);

		assert_true(st == 500 || st == 502 || st == 503);
		assert_true(strlen(sc_str(&f->r, "code")) > 0);
		assert_string_equal(f->r.request_id,
		                    sc_str(&f->r, "request_id"));
	}
	/* /health is never faulted. */
	snprintf(url, sizeof(url), "%s/health", f->p.api_url);
	sc_free(&f->r);
	sc_call(&f->r, "GET", url, NULL, NULL, 0);
	assert_int_equal(f->r.status, 200);
	/* No injected error did the work: the sandbox still runs. */
	api(f, "DELETE", "/_sim/faults", NULL);
	assert_int_equal(get_sandbox(f), 200);
	assert_string_equal(sc_str(&f->r, "status"), "running");
}

static void t_429_retry_after(void **state)
{
	struct fx *f = *state;

	faults(f, "{\"rate_429\":1,\"retry_after\":7}");
	assert_int_equal(get_sandbox(f), 429);
	assert_string_equal(sc_str(&f->r, "code"), "RATE_LIMIT_EXCEEDED");
	assert_string_equal(f->r.retry_after, "7");
	assert_int_equal(
	        cJSON_GetObjectItem(f->r.json, "retry_after")->valueint, 7);
}

static void t_rate_limit(void **state)
{
	struct fx *f = *state;
	int i, limited = 0;

	faults(f, "{\"rate_limit_rpm\":5}");
	for (i = 0; i < 8; i++) {
		if (get_sandbox(f) == 429) {
			limited++;
			assert_true(atoi(f->r.retry_after) >= 1 &&
			            atoi(f->r.retry_after) <= 60);
		}
	}
	/* 5 per minute pass, 3 are refused; if the one-minute window
	 * turns over during the loop, fewer (but some) are. */
	assert_true(limited >= 1 && limited <= 3);
}

static void t_reset(void **state)
{
	struct fx *f = *state;

	faults(f, "{\"rate_reset\":1}");
	get_sandbox(f);
	assert_true(f->r.curl_code == CURLE_RECV_ERROR ||
	            f->r.curl_code == CURLE_GOT_NOTHING);
	assert_int_equal(f->r.status, 0);
}

static void t_malformed(void **state)
{
	struct fx *f = *state;

	faults(f, "{\"rate_malformed\":1}");
	assert_int_equal(get_sandbox(f), 200);
	assert_int_equal(f->r.curl_code, 0);
	assert_null(f->r.json);
}

static void t_truncated(void **state)
{
	struct fx *f = *state;

	faults(f, "{\"rate_truncated\":1}");
	get_sandbox(f);
	assert_int_equal(f->r.curl_code, CURLE_PARTIAL_FILE);
}

static void t_stall(void **state)
{
	struct fx *f = *state;
	char url[256];

	faults(f, "{\"rate_stall\":1}");
	snprintf(url, sizeof(url), "%s/v1/sandboxes/%s", f->p.api_url, f->id);
	sc_free(&f->r);
	sc_call(&f->r, "GET", url, "X-API-Key: " SIM_TEST_KEY, NULL, 400);
	assert_int_equal(f->r.curl_code, CURLE_OPERATION_TIMEDOUT);
	assert_true(f->r.seconds >= 0.39);
}

static void t_latency_and_slow(void **state)
{
	struct fx *f = *state;

	faults(f, "{\"latency_ms\":150}");
	assert_int_equal(get_sandbox(f), 200);
	assert_true(f->r.seconds >= 0.149);
	/* A per-route override. */
	faults(f, "{\"route_latency\":{\"GET /v1/sandboxes/{id}\":"
	          "{\"latency_ms\":250}}}");
	assert_int_equal(get_sandbox(f), 200);
	assert_true(f->r.seconds >= 0.249);
	assert_int_equal(api(f, "GET", "/v1/templates", NULL), 200);
	assert_true(f->r.seconds < 0.2);
	/* A slow body still arrives whole. */
	faults(f, "{\"rate_slow\":1}");
	assert_int_equal(get_sandbox(f), 200);
	assert_non_null(f->r.json);
	assert_true(f->r.seconds >= 0.2);
}

static void t_scripted(void **state)
{
	struct fx *f = *state;
	char path[256], body[300], other[64];
	const cJSON *e, *entries;
	int faulted = 0;

	assert_int_equal(
	        api(f, "POST", "/v1/sandboxes", "{\"template_name\":\"base\"}"),
	        201);
	snprintf(other, sizeof(other), "%s", sc_str(&f->r, "id"));
	snprintf(body, sizeof(body),
	         "{\"route\":\"POST /v1/sandboxes/{id}/token/refresh\","
	         "\"sandbox_id\":\"%s\",\"count\":2,\"action\":\"status\","
	         "\"status\":503,\"retry_after\":2}",
	         f->id);
	assert_int_equal(api(f, "POST", "/_sim/faults/script", body), 200);
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/token/refresh", other);
	assert_int_equal(api(f, "POST", path, NULL), 200); /* not matched */
	snprintf(path, sizeof(path), "/v1/sandboxes/%s/token/refresh", f->id);
	assert_int_equal(api(f, "POST", path, NULL), 503);
	assert_string_equal(f->r.retry_after, "2");
	assert_int_equal(api(f, "POST", path, NULL), 503);
	assert_int_equal(api(f, "POST", path, NULL), 200); /* used up */
	assert_int_equal(api(f, "GET", "/_sim/log", NULL), 200);
	entries = cJSON_GetObjectItem(f->r.json, "entries");
	cJSON_ArrayForEach(e, entries)
	{
		const char *fault =
		        cJSON_GetStringValue(cJSON_GetObjectItem(e, "fault"));

		if (fault && strcmp(fault, "status") == 0) {
			faulted++;
			assert_int_equal(
			        cJSON_GetObjectItem(e, "status")->valueint,
			        503);
		}
	}
	assert_int_equal(faulted, 2);
}

static void t_scripted_reset_keeps_state(void **state)
{
	struct fx *f = *state;

	assert_int_equal(api(f, "POST", "/_sim/faults/script",
	                     "{\"route\":\"POST /v1/sandboxes/{id}/pause\","
	                     "\"action\":\"reset\"}"),
	                 200);
	pause_sandbox(f);
	assert_true(f->r.curl_code != 0);
	assert_int_equal(get_sandbox(f), 200);
	assert_string_equal(sc_str(&f->r, "status"), "running");
	assert_int_equal(pause_sandbox(f), 200);
}

static void t_fault_config_validated(void **state)
{
	struct fx *f = *state;

	assert_int_equal(api(f, "PUT", "/_sim/faults",
	                     "{\"rate_5xx\":0.7,\"rate_429\":0.6}"),
	                 400);
	assert_int_equal(api(f, "PUT", "/_sim/faults", "{\"rate_5xx\":2}"),
	                 400);
	assert_int_equal(api(f, "PUT", "/_sim/faults", "[1]"), 400);
	assert_int_equal(api(f, "POST", "/_sim/faults/script",
	                     "{\"action\":\"explode\"}"),
	                 400);
	faults(f, "{\"rate_5xx\":0.3,\"rate_429\":0.1,\"retry_after\":3}");
	assert_int_equal(api(f, "GET", "/_sim/faults", NULL), 200);
	assert_true(cJSON_GetObjectItem(f->r.json, "rate_5xx")->valuedouble ==
	            0.3);
	assert_int_equal(api(f, "DELETE", "/_sim/faults", NULL), 200);
	assert_true(cJSON_GetObjectItem(f->r.json, "rate_5xx")->valuedouble ==
	            0);
	/* Admin needs the key too. */
	{
		char url[200];

		snprintf(url, sizeof(url), "%s/_sim/log", f->p.api_url);
		sc_free(&f->r);
		sc_call(&f->r, "GET", url, "X-API-Key: nope", NULL, 0);
		assert_int_equal(f->r.status, 401);
	}
}

static void t_log_and_counters(void **state)
{
	struct fx *f = *state;
	const cJSON *entries, *e, *routes, *c;

	get_sandbox(f);
	pause_sandbox(f);
	pause_sandbox(f); /* 409 */
	assert_int_equal(api(f, "GET", "/_sim/log?since=1", NULL), 200);
	entries = cJSON_GetObjectItem(f->r.json, "entries");
	/* Entry 1 is setup's create; admin calls are never logged. */
	assert_int_equal(cJSON_GetArraySize(entries), 3);
	e = cJSON_GetArrayItem(entries, 0);
	assert_string_equal(
	        cJSON_GetStringValue(cJSON_GetObjectItem(e, "route")),
	        "GET /v1/sandboxes/{id}");
	assert_string_equal(
	        cJSON_GetStringValue(cJSON_GetObjectItem(e, "sandbox_id")),
	        f->id);
	e = cJSON_GetArrayItem(entries, 2);
	assert_string_equal(
	        cJSON_GetStringValue(cJSON_GetObjectItem(e, "method")), "POST");
	assert_int_equal(cJSON_GetObjectItem(e, "status")->valueint, 409);
	assert_int_equal(api(f, "GET", "/_sim/counters", NULL), 200);
	routes = cJSON_GetObjectItem(f->r.json, "routes");
	c = cJSON_GetObjectItem(routes, "POST /v1/sandboxes/{id}/pause");
	assert_int_equal(cJSON_GetObjectItem(c, "count")->valueint, 2);
	assert_int_equal(cJSON_GetObjectItem(c, "2xx")->valueint, 1);
	assert_int_equal(cJSON_GetObjectItem(c, "4xx")->valueint, 1);
	assert_int_equal(cJSON_GetObjectItem(f->r.json, "total")->valueint, 4);
	/* Reset empties everything. */
	assert_int_equal(api(f, "POST", "/_sim/reset", NULL), 200);
	assert_int_equal(api(f, "GET", "/_sim/state", NULL), 200);
	assert_int_equal(cJSON_GetObjectItem(f->r.json, "sandboxes")->valueint,
	                 0);
	assert_int_equal(api(f, "GET", "/_sim/log", NULL), 200);
	assert_int_equal(
	        cJSON_GetArraySize(cJSON_GetObjectItem(f->r.json, "entries")),
	        0);
}

static void t_admin_behind_the_back(void **state)
{
	struct fx *f = *state;
	char path[160];

	snprintf(path, sizeof(path), "/_sim/sandboxes/%s/stop", f->id);
	assert_int_equal(api(f, "POST", path, NULL), 200);
	assert_int_equal(get_sandbox(f), 200);
	assert_string_equal(sc_str(&f->r, "status"), "stopped");
	snprintf(path, sizeof(path), "/_sim/sandboxes/%s/delete", f->id);
	assert_int_equal(api(f, "POST", path, NULL), 200);
	assert_int_equal(get_sandbox(f), 404);
	assert_int_equal(api(f, "POST", path, NULL), 404);
	assert_int_equal(
	        api(f, "POST", "/_sim/sandboxes/bulk", "{\"count\":0}"), 400);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_5xx),
	        T(t_429_retry_after),
	        T(t_rate_limit),
	        T(t_reset),
	        T(t_malformed),
	        T(t_truncated),
	        T(t_stall),
	        T(t_latency_and_slow),
	        T(t_scripted),
	        T(t_scripted_reset_keeps_state),
	        T(t_fault_config_validated),
	        T(t_log_and_counters),
	        T(t_admin_behind_the_back),
	};
#undef T
	int r;

	sim_bin = argc > 1 ? argv[1] : "hopx-sim";
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("sim_faults", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
