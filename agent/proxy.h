#ifndef HOPXD_PROXY_H
#define HOPXD_PROXY_H

/*
 * The data-plane proxy: HTTP/1.1 and WebSockets to each tracked sandbox's
 * own agent API, carried with the agent's current token for it in
 * Authorization (whatever the client sent), bodies streamed both ways
 * with backpressure, a 401 from the sandbox answered by one refresh and
 * a replay. Traffic is use: a request to a paused sandbox wakes it like
 * connect() (cause traffic), every request restarts its idle clock, and
 * a request in flight or an open WebSocket holds it in use.
 *
 * Each sandbox has an address of its own on loopback, 127.2.0.0 + its
 * proxy number (store_proxy_host), all on one port: the SDKs build their
 * WebSocket URLs from public_host with the path dropped, so the address
 * itself names the sandbox. A request there is carried only with proof
 * that its client was given access: a token the agent held for that
 * sandbox (current or expired), or the local key or API key; anything
 * else gets the sandbox agent's own 401 and reaches nothing.
 */

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct agent;
struct proxy;

#define PROXY_NET 0x7f020000u /* 127.2.0.0: number 0's address */

struct proxy_opts {
	int port; /* 0: any free port; -1: none (fixed addresses only) */
	/* Keys accepted as proof besides the tokens (NULL or "": none). */
	const char *local_key;
	unsigned max_connections; /* default 1024 */
	unsigned head_timeout_s;  /* a request head must come in; default 10 */
	unsigned idle_timeout_s;  /* a quiet keep-alive client; default 60 */
};

/* What the proxy carried, for metrics. */
struct proxy_stats {
	uint64_t requests;
	uint64_t refused; /* no proof: 401 */
	uint64_t errors;  /* answered by the proxy itself (4xx/5xx) */
	uint64_t wakes;   /* requests that resumed a paused sandbox */
	uint64_t retries; /* replayed after a 401 and a refresh */
	uint64_t bytes_up, bytes_down;
	uint64_t status[6]; /* upstream answers by class: [2] = 2xx, ... */
	uint64_t websockets;
	uint64_t up_new, up_reused; /* connections to sandboxes: opened, or
	                               kept from an earlier client */
	uint64_t up_idle;           /* kept now */
	uint64_t connections;       /* open now */
	/* Added latency (request head in to response head out), by bucket
	 * of PROXY_LAT_BOUNDS ms, and the total. */
	uint64_t lat_count[8];
	double lat_sum_s;
};

/* Upper bounds (seconds) of the latency histogram's buckets; the last
 * is +Inf. */
extern const double proxy_lat_bounds[8];

/*
 * Listens on every 127.2.0.0/16+ address at port (bound to the loopback
 * device, so nothing off this machine reaches it), unless port is -1. On
 * failure why (n bytes) says what to do. Returns 0 or ERR_SYS, ERR_NOMEM.
 */
int proxy_start(struct agent *a, const struct proxy_opts *o, struct proxy **out,
                char *why, size_t n);

/* The port listened on (0: none). */
int proxy_port(const struct proxy *px);

/*
 * A fixed local address for sandbox id, for tools that carry no token
 * (hopxctl proxy): listen is "127.0.0.1:PORT" (loopback only; PORT 0 for
 * any free one), "[::1]:PORT", or a Unix socket ("unix:PATH" or an
 * absolute path; made 0600). Its own user gets in without proof (others
 * with proof on TCP, not at all on a Unix socket). It lasts until
 * proxy_owner_gone(owner). where (wn bytes) gets its URL; on failure why
 * (n bytes) says what to do. Returns 0 or ERR_INVAL, ERR_PERM (not
 * loopback), ERR_EXISTS (a file at PATH), ERR_SYS, ERR_NOMEM.
 */
int proxy_bind(struct proxy *px, const char *id, const char *listen,
               const void *owner, char *where, size_t wn, char *why, size_t n);

/* Closes the fixed addresses owner asked for. */
void proxy_owner_gone(struct proxy *px, const void *owner);

/*
 * "http://127.2.X.Y:PORT": where a client reaches sandbox id through the
 * proxy (its number given now if it has none). ERR_NOTFOUND: not
 * tracked; ERR_RANGE: numbers ran out; ERR_STATE: no shared port.
 */
int proxy_url(struct proxy *px, const char *id, char *buf, size_t n);

const struct proxy_stats *proxy_stats(const struct proxy *px);

/*
 * Adds to arr who holds sandbox id in use through the proxy (a request in
 * flight, an open WebSocket), as leases_json lists its holders: {"pid"
 * (0 when unknown), "command", "since"}. ERR_NOMEM.
 */
int proxy_holders_json(const struct proxy *px, const char *id, cJSON *arr);

/* Closes the listener and every connection. NULL ok. */
void proxy_stop(struct proxy *px);

#endif
