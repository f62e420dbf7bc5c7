#ifndef HOPXD_APIEP_H
#define HOPXD_APIEP_H

/*
 * The HopX-compatible local endpoint: the official SDKs, pointed at it
 * with HOPX_BASE_URL, work unchanged while the agent answers what it
 * knows (a tracked sandbox's GET, the list, token refreshes from its
 * cache), carries lifecycle calls through its budget and single-flight
 * (tracking what they make), and forwards anything else within the
 * budget. Clients authenticate with the agent's HopX API key or the
 * local key; anything else gets HopX's own 401 envelope.
 */

#include <stddef.h>
#include <stdint.h>

struct agent;
struct apiep;

struct apiep_opts {
	const char *listen; /* see httpd_opts.listen */
	/* The local key, accepted besides the API key: read from this file
	 * (NULL: paths_local_key_file(), made with a new random key when
	 * missing). Like the API key's, it must be 0600. */
	const char *local_key_file;
	unsigned max_connections;
	unsigned timeout_s;
};

/* Requests the endpoint answered, by how; for metrics. */
struct apiep_stats {
	uint64_t local;     /* answered from the agent's records and cache */
	uint64_t carried;   /* lifecycle calls carried to HopX */
	uint64_t forwarded; /* passed through as they came */
	uint64_t refused;   /* 401, 429, 4xx of the endpoint's own */
};

/*
 * Reads (or makes) the local key and starts listening. On failure why
 * (n bytes) says what went wrong and what to do. Returns 0 or ERR_INVAL
 * (bad address), ERR_PERM (key file readable by others), ERR_SYS,
 * ERR_NOMEM.
 */
int apiep_start(struct agent *a, const struct apiep_opts *o, struct apiep **out,
                char *why, size_t n);

/* Where clients reach it: "http://127.0.0.1:PORT" or "unix:/path". */
const char *apiep_url(const struct apiep *ep);

/* The local key in use, and its file. */
const char *apiep_local_key(const struct apiep *ep);
const char *apiep_key_file(const struct apiep *ep);

const struct apiep_stats *apiep_stats(const struct apiep *ep);

/* Stops listening; answers still pending go nowhere. NULL ok. */
void apiep_stop(struct apiep *ep);

#endif
