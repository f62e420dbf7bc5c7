#ifndef HOPXD_HTTPD_H
#define HOPXD_HTTPD_H

/*
 * A small HTTP/1.1 server on the agent's libuv loop: libmicrohttpd in
 * external-loop mode (its epoll fd watched by a uv_poll_t, its timeout by
 * a uv_timer_t), with connections suspended while an answer is awaited,
 * so that a handler may answer later (after a HopX call). Bounded: a
 * connection cap, a header limit (memory per connection), a body limit
 * (413), an idle timeout.
 */

#include <stddef.h>
#include <uv.h>

struct httpd;
struct httpd_req;

struct httpd_opts {
	/* "127.0.0.1:8080", "[::1]:8080", "localhost:0", or a Unix socket:
	 * "unix:/path" or any string starting with '/'. */
	const char *listen;
	unsigned max_connections; /* default 256 */
	size_t max_body;          /* default 1 MiB */
	unsigned timeout_s;       /* idle connection; default 60 */
};

/*
 * Called once per complete request. The handler answers with
 * httpd_respond exactly once, now or later; until then rq stays valid
 * (even if the server is destroyed meanwhile: the answer then goes
 * nowhere).
 */
typedef void (*httpd_handler)(void *ud, struct httpd_req *rq);

/*
 * Starts listening. A Unix socket is made 0600, replacing a stale file.
 * On failure *why (static text) says what went wrong. Returns 0 or
 * ERR_INVAL (bad address), ERR_SYS (cannot listen).
 */
int httpd_create(uv_loop_t *loop, const struct httpd_opts *o, httpd_handler fn,
                 void *ud, struct httpd **out, const char **why);

/* The TCP port listened on (0 for a Unix socket). */
int httpd_port(const struct httpd *h);

/*
 * Stops listening and closes every connection; requests still awaiting
 * an answer are orphaned (their answer is dropped). NULL ok.
 */
void httpd_destroy(struct httpd *h);

const char *httpd_method(const struct httpd_req *rq);
const char *httpd_path(const struct httpd_req *rq); /* without the query */

/* A header (case-insensitive) or query argument; NULL when absent. */
const char *httpd_header(const struct httpd_req *rq, const char *name);
const char *httpd_arg(const struct httpd_req *rq, const char *name);

/* The raw query string ("a=1&b=2", "" when none), re-encoded. */
const char *httpd_query(const struct httpd_req *rq);

/* The body (NUL-terminated) and its length; "" when none. */
const char *httpd_body(const struct httpd_req *rq, size_t *len);

/*
 * Answers: status, a body of len bytes (copied), and extra headers as
 * NULL-terminated "Name: value" lines (may be NULL). Content-Type is
 * ctype. Returns 0, or ERR_NOMEM (the connection is then closed).
 */
int httpd_respond(struct httpd_req *rq, int status, const char *ctype,
                  const char *body, size_t len, const char *const *headers);

#endif
