#ifndef HOPXD_HTTP_H
#define HOPXD_HTTP_H

/*
 * Asynchronous HTTP on the agent's libuv loop: libcurl's multi_socket
 * interface, one uv_poll_t per socket and one uv_timer_t (curl's
 * docs/examples/multi-uv.c, with the fixes listed in shared/STYLE.md §d).
 * HTTP/1.1 keep-alive over one connection pool; at most max_inflight
 * transfers at once, the rest wait in order; TLS always verified.
 */

#include <stddef.h>
#include <uv.h>

struct http;
struct http_req;

struct http_opts {
	long connect_timeout_ms; /* DNS + TCP + TLS; default 10 s */
	long timeout_ms;         /* whole transfer; default 60 s */
	long stall_s;        /* < 1 byte/s for this long fails; default 15 */
	size_t max_body;     /* larger bodies fail with ERR_TOOBIG; 4 MiB */
	int max_inflight;    /* default 8 */
	const char *ca_file; /* extra CA bundle (private CA) or NULL */
};

struct http_result {
	int err;          /* 0, ERR_NET, ERR_TIMEOUT, ERR_TOOBIG, ERR_NOMEM */
	long status;      /* HTTP status, 0 when none arrived */
	const char *body; /* NUL-terminated; valid during the callback */
	size_t body_len;
	long retry_after_s; /* Retry-After header (seconds or date), else -1 */
	int64_t date_ms;    /* the Date header (1 s resolution), else 0 */
	long new_connections; /* connections this transfer opened */
	char request_id[48];  /* X-Request-ID, or "" */
	char error[128];      /* transport error text, for logs */
};

/*
 * Called once per request that was not cancelled, after the transfer has
 * left the multi handle: it may start new requests.
 */
typedef void (*http_done_fn)(void *ud, const struct http_result *res);

/*
 * Creates a client on loop; o may be NULL for the defaults. Needs
 * curl_global_init() done by main. Returns 0 or ERR_NOMEM/ERR_SYS.
 */
int http_create(uv_loop_t *loop, const struct http_opts *o, struct http **out);

/*
 * Cancels every request (no callbacks) and releases everything; the
 * memory goes once the loop has run the close callbacks. Accepts NULL.
 */
void http_destroy(struct http *h);

/* What to send. */
enum { HTTP_BATCH = 1 };
struct http_send {
	const char *method, *url;
	/* NULL-terminated "Name: value" lines, or NULL */
	const char *const *headers;
	/* sent as is, or NULL for none (a POST/PUT without a body sends
	 * Content-Length: 0) */
	const char *body;
	/* HTTP_BATCH: reported at the end of the loop turn it ends in, with
	 * the turn's other HTTP_BATCH answers, inside the batch callback's
	 * two calls (http_on_batch) */
	unsigned flags;
};

/*
 * Starts (or queues) a request. *out (if not NULL) can cancel it until
 * its callback runs. Returns 0 or ERR_NOMEM/ERR_INVAL/ERR_STATE.
 */
int http_request(struct http *h, const struct http_send *snd, http_done_fn fn,
                 void *ud, struct http_req **out);

/*
 * fn(ud, 0) runs before a turn's HTTP_BATCH answers are reported and
 * fn(ud, 1) after the last of them (e.g. to put what they change in one
 * transaction); never for a turn without one. One observer.
 */
typedef void (*http_batch_fn)(void *ud, int end);
void http_on_batch(struct http *h, http_batch_fn fn, void *ud);

/* Cancels a started or queued request; its callback never runs. */
void http_cancel(struct http_req *r);

/* Transfers running now (not counting queued ones). */
int http_inflight(const struct http *h);

/* Requests waiting for a free slot. */
int http_queued(const struct http *h);

#endif
