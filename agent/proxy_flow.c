/*
 * One client connection's requests through the proxy: its head read and
 * checked for proof, a token got (waking the sandbox when paused), the
 * head rewritten and sent to the sandbox's agent, bodies streamed both
 * ways (read buffers handed on to the other side's writes, reading
 * paused while that side's queue is long), a 401 answered by a refresh
 * and one replay, a 101 turned into a tunnel.
 */
#include "proxy_int.h"

#include "agent.h"
#include "connect.h"
#include "err.h"
#include "log.h"
#include "secret.h"
#include "sessions.h"
#include "store.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A token handed to a request lasts at least this long. */
#define MIN_TTL_MS         2000
#define CONNECT_TIMEOUT_NS (10000ull * 1000000)
/* Output not moving for this long (a client that stopped reading). */
#define STALL_NS (60000ull * 1000000)

struct pwrite {
	uv_write_t req;
	char *base;
	struct pconn *c; /* a write to the client */
	struct pup *up;  /* a write to the sandbox */
};

static void try_head(struct pconn *c);
static void up_connect(struct pconn *c);
static void up_eof(struct pconn *c);
static void resp_body(struct pconn *c, char *base, size_t n);

/* ---- reading and writing ---- */

/*
 * Read blocks come from a small pool and go back to it once written: in
 * the heap, blocks freed in the order many connections finish with them
 * get carved by small allocations, and the heap grows (20 stalled
 * downloads held 30 MB that way, for 8 MB of queued data).
 */
static char *blk_get(struct proxy *px)
{
	return px->npool ? px->pool[--px->npool] : malloc(PX_READ_CHUNK);
}

static void blk_free(struct proxy *px, char *p)
{
	size_t n = p ? malloc_usable_size(p) : 0;

	if (n >= PX_READ_CHUNK && n < 2 * PX_READ_CHUNK && px->npool < PX_POOL)
		px->pool[px->npool++] = p;
	else
		free(p);
}

static void cli_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct pconn *c = h->data;

	(void)hint;
	b->base = blk_get(c->px);
	b->len = b->base ? PX_READ_CHUNK : 0;
}

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct pup *u = h->data;

	(void)hint;
	b->base = u->c ? blk_get(u->c->px) : NULL;
	b->len = b->base ? PX_READ_CHUNK : 0;
}

static void cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* Reads each side when its phase wants it and the other side's output
 * queue has room (a slow reader slows the writer, never the agent's
 * memory). */
static void reads(struct pconn *c)
{
	struct pup *u = c->up;
	size_t upq = u && u->open ? u->tcp.write_queue_size : 0;
	size_t cq = c->cli.s.write_queue_size;
	int want;

	if (c->closing)
		return;
	want = !c->finishing &&
	       (c->draining || c->tunnel || c->rq == RQ_HEAD ||
	        c->rq == RQ_BODY) &&
	       (c->cli_reading ? upq <= PX_HIGH : upq < PX_LOW);
	if (want != c->cli_reading) {
		if (want)
			uv_read_start((uv_stream_t *)&c->cli, cli_alloc,
			              cli_read);
		else
			uv_read_stop((uv_stream_t *)&c->cli);
		c->cli_reading = want;
	}
	if (u == NULL || !u->open)
		return;
	want = !c->finishing && (u->reading ? cq <= PX_HIGH : cq < PX_LOW);
	if (want != u->reading) {
		if (want)
			uv_read_start((uv_stream_t *)&u->tcp, up_alloc,
			              up_read);
		else
			uv_read_stop((uv_stream_t *)&u->tcp);
		u->reading = want;
	}
}

static void finish(struct pconn *c);

static void on_written(uv_write_t *req, int status)
{
	struct pwrite *w = req->data;
	struct pup *u = w->up;
	struct pconn *c = u ? u->c : w->c;

	if (c == NULL || c->closing)
		free(w->base);
	else
		blk_free(c->px, w->base);
	free(w);
	if (c == NULL || c->closing || status == UV_ECANCELED)
		return;
	if (status < 0) {
		if (u)
			up_eof(c);
		else
			pconn_close(c);
		return;
	}
	c->progress = uv_hrtime();
	reads(c);
}

/* Writes len bytes of base (malloc'd, now the write's) to the client, or
 * to the sandbox when u is not NULL. */
static void send_bytes(struct pconn *c, struct pup *u, char *base, size_t len)
{
	struct pwrite *w = calloc(1, sizeof(*w));
	uv_stream_t *s = u ? (uv_stream_t *)&u->tcp : (uv_stream_t *)&c->cli;
	uv_buf_t b = uv_buf_init(base, (unsigned)len);

	if (w == NULL) {
		blk_free(c->px, base);
		pconn_close(c);
		return;
	}
	w->base = base;
	w->c = c;
	w->up = u;
	w->req.data = w;
	if (u)
		c->px->st.bytes_up += len;
	else
		c->px->st.bytes_down += len;
	if (uv_write(&w->req, s, &b, 1, on_written) != 0) {
		blk_free(c->px, base);
		free(w);
		pconn_close(c);
		return;
	}
	/* A queue past PX_HIGH stops the reading that feeds it now, not at
	 * the next write's end (which a reader that stopped never brings). */
	reads(c);
}

/* Sends a copy of p. */
static void send_copy(struct pconn *c, struct pup *u, const char *p, size_t n)
{
	char *copy = malloc(n ? n : 1);

	if (copy == NULL) {
		pconn_close(c);
		return;
	}
	memcpy(copy, p, n);
	send_bytes(c, u, copy, n);
}

/* Keeps client bytes not carried yet. */
static int keep_in(struct pconn *c, const char *p, size_t n)
{
	char *in;

	if (n == 0)
		return 0;
	if (c->in_len + n > PX_IN_CAP)
		return ERR_TOOBIG;
	if (c->in_len + n > c->in_cap) {
		if ((in = realloc(c->in, c->in_len + n)) == NULL)
			return ERR_NOMEM;
		c->in = in;
		c->in_cap = c->in_len + n;
	}
	memcpy(c->in + c->in_len, p, n);
	c->in_len += n;
	return 0;
}

/* Drops the first n bytes kept (a request carried). */
static void drop_in(struct pconn *c, size_t n)
{
	if (c->in == NULL)
		return;
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
	c->head_len = c->sent_len = 0;
	if (c->in_len == 0) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

/* ---- the sandbox held in use ---- */

static void lease(struct pconn *c)
{
	struct sessions *ss = c->px->a->sess;

	sessions_use(ss, c->id);
	if (!c->leased && sessions_lease(ss, c->id, +1) == 0)
		c->leased = 1;
}

static void unlease(struct pconn *c)
{
	if (!c->leased)
		return;
	c->leased = 0;
	sessions_lease(c->px->a->sess, c->id, -1);
}

/* ---- the connection's end ---- */

static void on_up_closed(uv_handle_t *h)
{
	struct pup *u = h->data;

	u->closed = 1;
	if (!u->resolving)
		free(u);
}

/* Lets go of the connection to the sandbox. */
static void drop_up(struct pconn *c)
{
	struct pup *u = c->up;

	if (u == NULL)
		return;
	c->up = NULL;
	u->c = NULL;
	free(u->rbuf);
	u->rbuf = NULL;
	if (u->resolving)
		uv_cancel((uv_req_t *)&u->gai);
	uv_close((uv_handle_t *)&u->tcp, on_up_closed);
}

void pflow_release(struct pconn *c)
{
	unlease(c);
	drop_up(c);
	free(c->in);
	free(c->head);
	free(c->tok);
	free(c->proven);
	c->in = c->head = c->tok = c->proven = NULL;
}

static void on_shut(uv_shutdown_t *req, int status)
{
	struct pconn *c = req->data;

	free(req);
	if (c->closing)
		return;
	if (status != 0) {
		pconn_close(c);
		return;
	}
	/* What the client still sends is read and dropped, so that closing
	 * with it unread does not reset the connection (and lose the
	 * answer on the way). */
	c->finishing = 0;
	c->draining = 1;
	c->rq = RQ_DONE;
	pconn_arm(c);
	reads(c);
}

/* Closes once what is queued for the client has gone. */
static void finish(struct pconn *c)
{
	uv_shutdown_t *req;

	if (c->finishing || c->draining || c->closing)
		return;
	unlease(c);
	drop_up(c);
	c->finishing = 1;
	reads(c);
	if ((req = calloc(1, sizeof(*req))) == NULL ||
	    uv_shutdown(req, (uv_stream_t *)&c->cli, on_shut) != 0) {
		free(req);
		pconn_close(c);
		return;
	}
	req->data = c;
}

static const char *reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Service Unavailable";
	}
}

/* A JSON string's characters (the messages are the agent's own). */
static void json_text(char *out, size_t n, const char *s)
{
	size_t o = 0;

	for (; *s && o + 2 < n; s++) {
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = (unsigned char)*s < ' ' ? ' ' : *s;
	}
	out[o] = '\0';
}

void pflow_fail(struct pconn *c, int status, const char *code, const char *msg)
{
	char body[768], text[512], *out;
	int bn, n;

	if (c->closing)
		return;
	if (c->rs == RS_BODY || c->tunnel || c->finishing || c->draining) {
		pconn_close(c);
		return;
	}
	if (status == 401)
		c->px->st.refused++;
	else
		c->px->st.errors++;
	json_text(text, sizeof(text), msg);
	bn = snprintf(body, sizeof(body),
	              "{\"error\":\"%s\",\"code\":\"%s\",\"request_id\":"
	              "\"hopxd-proxy\"}\n",
	              text, code);
	if ((out = malloc(sizeof(body) + 256)) == NULL) {
		pconn_close(c);
		return;
	}
	n = snprintf(out, sizeof(body) + 256,
	             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	             "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	             status, reason(status), bn, body);
	c->rs = RS_BODY;
	send_bytes(c, NULL, out, (size_t)n);
	finish(c);
}

/* ---- proof of access ---- */

/* The token or key a request carries (Bearer, or X-API-Key). */
static int given_key(const struct phead *h, char *out, size_t n)
{
	const struct phead_str *a = phead_get(h, "authorization");
	const struct phead_str *k = phead_get(h, "x-api-key");
	struct phead_str v;

	if (a && a->n > 7 && strncasecmp(a->p, "Bearer ", 7) == 0)
		v = (struct phead_str){a->p + 7, a->n - 7};
	else if (k)
		v = *k;
	else
		return ERR_NOTFOUND;
	if (v.n == 0 || v.n >= n)
		return ERR_NOTFOUND;
	memcpy(out, v.p, v.n);
	out[v.n] = '\0';
	return 0;
}

/* Whether key proves access to the sandbox: a key of the agent, its
 * current token, or any token it held for it. */
static int proves(struct pconn *c, const char *key)
{
	struct agent *a = c->px->a;
	unsigned char fp[STORE_PROOF_LEN];
	struct store_sandbox r;
	struct sess_token tk;
	int ok;

	if (secret_eq(key, c->px->key) || secret_eq(key, a->cfg.api_key))
		return 1;
	if (sessions_token_cached(a->sess, c->id, 0, &tk) == 0 &&
	    secret_eq(key, tk.token))
		return 1;
	store_proof_of(key, fp);
	if (store_proof_check(a->store, c->id, fp) == 0)
		return 1;
	/* A token stored before proofs were kept is only the current one. */
	if (store_sandbox_get(a->store, c->id, &r) != 0)
		return 0;
	ok = r.token && secret_eq(key, r.token);
	store_sandbox_finish(&r);
	return ok;
}

static int proven(struct pconn *c, const struct phead *h)
{
	char key[4096];

	if (c->trusted)
		return 1;
	if (given_key(h, key, sizeof(key)) != 0)
		return 0;
	if (c->proven && strcmp(c->proven, key) == 0)
		return 1;
	if (!proves(c, key))
		return 0;
	free(c->proven);
	c->proven = strdup(key);
	return 1;
}

/* ---- the request ---- */

/* Fields the proxy sets itself or that must not reach the sandbox. */
static int dropped(const struct phead_field *f, int upgrade)
{
	static const char *const always[] = {"authorization", "host",
	                                     "x-api-key", "proxy-authorization",
	                                     "proxy-connection"};
	size_t i;

	for (i = 0; i < sizeof(always) / sizeof(*always); i++)
		if (phead_eq(&f->name, always[i]))
			return 1;
	/* An upgrade to anything but a WebSocket (h2c) is not carried:
	 * the request goes as plain HTTP/1.1. */
	return !upgrade && (phead_eq(&f->name, "upgrade") ||
	                    phead_eq(&f->name, "http2-settings") ||
	                    phead_eq(&f->name, "connection"));
}

/* The head to send, but for Host and Authorization (added per send). */
static int rewrite(struct pconn *c, const struct phead *h)
{
	char *out = malloc(PHEAD_MAX), *p;
	size_t i, left = PHEAD_MAX;
	int n;

	if (out == NULL)
		return ERR_NOMEM;
	p = out;
	n = snprintf(p, left, "%.*s %.*s HTTP/1.%d\r\n", (int)h->method.n,
	             h->method.p, (int)h->target.n, h->target.p, h->minor);
	for (i = 0; i < h->nfields && n >= 0 && (size_t)n < left; i++) {
		const struct phead_field *f = &h->fields[i];

		p += n;
		left -= (size_t)n;
		n = dropped(f, c->upgrade)
		            ? 0
		            : snprintf(p, left, "%.*s: %.*s\r\n",
		                       (int)f->name.n, f->name.p,
		                       (int)f->value.n, f->value.p);
	}
	if (n < 0 || (size_t)n >= left) {
		free(out);
		return ERR_TOOBIG;
	}
	free(c->head);
	c->head = out;
	c->head_n = (size_t)(p + n - out);
	return 0;
}

/* Sends the request (head with the token, and the body kept) upstream. */
static void send_request(struct pconn *c)
{
	size_t cap = c->head_n + strlen(c->upauth) + strlen(c->tok) + 64;
	char *out = malloc(cap);
	int n;

	if (out == NULL) {
		pconn_close(c);
		return;
	}
	memcpy(out, c->head, c->head_n);
	n = snprintf(out + c->head_n, cap - c->head_n,
	             "Host: %s\r\nAuthorization: Bearer %s\r\n\r\n", c->upauth,
	             c->tok);
	send_bytes(c, c->up, out, c->head_n + (size_t)n);
	if (c->sent_len > c->head_len)
		send_copy(c, c->up, c->in + c->head_len,
		          c->sent_len - c->head_len);
	c->rs = RS_HEAD;
	c->rq = c->replayable ? RQ_DONE : RQ_BODY;
	if (!c->replayable)
		drop_in(c, c->sent_len);
	reads(c);
	pconn_arm(c);
}

static void go_upstream(struct pconn *c, const char *token)
{
	free(c->tok);
	if ((c->tok = strdup(token)) == NULL) {
		pflow_fail(c, 503, "SERVICE_UNAVAILABLE", "out of memory");
		return;
	}
	if (c->up && c->up->open) {
		c->up->used = 1;
		send_request(c);
		return;
	}
	drop_up(c);
	up_connect(c);
}

/* What a failed connect() answers, in HopX's words. */
static void connect_failed(struct pconn *c, const struct connect_result *r)
{
	static const struct {
		int err, status;
		const char *code;
	} map[] = {
	        {ERR_STATE, 409, "SANDBOX_NOT_RUNNING"},
	        {ERR_NOTFOUND, 404, "SANDBOX_NOT_FOUND"},
	        {ERR_RATE, 429, "RATE_LIMIT_EXCEEDED"},
	        {ERR_TIMEOUT, 504, "GATEWAY_TIMEOUT"},
	        {ERR_AUTH, 502, "HOPX_REFUSED_API_KEY"},
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(*map); i++)
		if (map[i].err == r->err) {
			pflow_fail(c, map[i].status, map[i].code, r->msg);
			return;
		}
	pflow_fail(c, 503, "SERVICE_UNAVAILABLE", r->msg);
}

static void on_token(void *ud, const struct connect_result *r)
{
	struct pconn *c = ud;

	if (c->closing) {
		pconn_unhold(c);
		return;
	}
	c->holds--;
	if (r->err != 0) {
		connect_failed(c, r);
		return;
	}
	if (r->resumed)
		c->px->st.wakes++;
	go_upstream(c, r->token);
}

/* A token for the request: from memory when it has one, else connect()
 * (a paused sandbox is woken; rejected: the one the sandbox refused). */
static void get_token(struct pconn *c, const char *rejected)
{
	struct sess_token tk;

	if (rejected == NULL && sessions_token_cached(c->px->a->sess, c->id,
	                                              MIN_TTL_MS, &tk) == 0) {
		go_upstream(c, tk.token);
		return;
	}
	c->holds++;
	connect_sandbox(c->px->a->sess, c->id, c->id, MIN_TTL_MS,
	                CONNECT_TRAFFIC, rejected, on_token, c);
}

static void bad_head(struct pconn *c, ssize_t e)
{
	if (e == ERR_TOOBIG)
		pflow_fail(c, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
		           "the request head is over 16 KiB or 100 fields");
	else if (e == ERR_RANGE)
		pflow_fail(c, 505, "HTTP_VERSION_NOT_SUPPORTED",
		           "only HTTP/1.0 and 1.1 go through the proxy");
	else if (e == ERR_UNSUPPORTED)
		pflow_fail(c, 501, "NOT_IMPLEMENTED",
		           "no transfer coding but chunked goes through the "
		           "proxy");
	else
		pflow_fail(c, 400, "INVALID_REQUEST",
		           "the request is not well-formed HTTP/1.1");
}

static void begin(struct pconn *c, const struct phead *h, size_t len)
{
	ssize_t used;
	int done = 0;

	c->rq = RQ_WAIT;
	reads(c);
	c->t0 = uv_hrtime();
	c->px->st.requests++;
	if (!proven(c, h)) {
		pflow_fail(c, 401, "INVALID_TOKEN", "Invalid or expired token");
		return;
	}
	c->head_len = len;
	pframe_request(&c->reqf, h);
	used = pframe_feed(&c->reqf, c->in + len, c->in_len - len, &done);
	c->head_req = phead_eq(&h->method, "HEAD");
	c->upgrade = h->conn_upgrade && h->upgrade_ws;
	c->cli_close = h->conn_close;
	c->retried = 0;
	if (used < 0 || rewrite(c, h) != 0) {
		bad_head(c, used < 0 ? ERR_PARSE : ERR_TOOBIG);
		return;
	}
	c->sent_len = len + (size_t)used;
	c->replayable = done;
	lease(c);
	get_token(c, NULL);
}

/*
 * A small body is read whole before the request goes on, so that it can
 * be sent again after a 401 (it may come in reads after its head); one
 * whose client waits for 100 Continue first, or a larger or chunked one,
 * streams.
 */
static int body_first(const struct pconn *c, const struct phead *h, size_t len)
{
	return h->content_length > 0 && h->content_length <= PX_REPLAY_MAX &&
	       phead_get(h, "expect") == NULL &&
	       c->in_len - len < (size_t)h->content_length;
}

static void try_head(struct pconn *c)
{
	struct phead *h = malloc(sizeof(*h));
	ssize_t n;

	if (h == NULL) {
		pconn_close(c);
		return;
	}
	n = phead_parse(c->in, c->in_len, 0, h);
	if (n < 0)
		bad_head(c, n);
	else if (n > 0 && !body_first(c, h, (size_t)n))
		begin(c, h, (size_t)n);
	free(h);
}

/* Body bytes of the request: those of this request go upstream; any
 * after it (a pipelined request) wait. */
static void body_in(struct pconn *c, char *base, size_t n)
{
	ssize_t used;
	int done = 0;

	if ((used = pframe_feed(&c->reqf, base, n, &done)) < 0 ||
	    keep_in(c, base + used, n - (size_t)used) != 0) {
		blk_free(c->px, base);
		pflow_fail(c, 400, "INVALID_REQUEST",
		           "the request's chunked body is malformed");
		return;
	}
	if (used > 0)
		send_bytes(c, c->up, base, (size_t)used);
	else
		blk_free(c->px, base);
	if (done)
		c->rq = RQ_DONE;
	reads(c);
}

static void cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct pconn *c = s->data;
	int was_empty = c->in_len == 0;

	if (n <= 0 || c->draining) {
		blk_free(c->px, b->base);
		if (n < 0)
			pconn_close(c);
		return;
	}
	c->progress = uv_hrtime();
	if (c->tunnel && c->up) {
		send_bytes(c, c->up, b->base, (size_t)n);
	} else if (c->rq == RQ_BODY) {
		body_in(c, b->base, (size_t)n);
	} else {
		n = keep_in(c, b->base, (size_t)n);
		blk_free(c->px, b->base);
		if (n != 0) {
			bad_head(c, ERR_TOOBIG);
			return;
		}
		if (was_empty)
			pconn_arm(c);
		if (c->rq == RQ_HEAD)
			try_head(c);
	}
}

void pflow_start(struct pconn *c)
{
	c->rq = RQ_HEAD;
	c->progress = uv_hrtime();
	pconn_arm(c);
	reads(c);
}

/* ---- the connection upstream ---- */

static void on_connected(uv_connect_t *req, int status)
{
	struct pup *u = req->data;
	struct pconn *c = u->c;
	char msg[768];

	if (c == NULL || status == UV_ECANCELED)
		return;
	if (status < 0) {
		snprintf(msg, sizeof(msg),
		         "cannot reach the sandbox's agent at %s: %s; "
		         "'hopxctl show %s' says its state",
		         c->upauth, uv_strerror(status), c->id);
		pflow_fail(c, 502, "BAD_GATEWAY", msg);
		return;
	}
	u->open = 1;
	uv_tcp_nodelay(&u->tcp, 1);
	uv_tcp_keepalive(&u->tcp, 1, 60);
	send_request(c);
}

static void connect_to(struct pconn *c, const struct sockaddr *sa)
{
	struct pup *u = c->up;

	u->creq.data = u;
	if (uv_tcp_connect(&u->creq, &u->tcp, sa, on_connected) != 0)
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "cannot open a connection to the sandbox's agent");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct pup *u = req->data;
	struct pconn *c = u->c;

	u->resolving = 0;
	if (c == NULL) {
		uv_freeaddrinfo(res);
		if (u->closed)
			free(u);
		return;
	}
	if (status < 0 || res == NULL)
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "cannot resolve the sandbox's agent's address");
	else
		connect_to(c, res->ai_addr);
	uv_freeaddrinfo(res);
}

/* public_host's host and port: "http://host[:port][/...]". */
static int parse_host(const char *url, char *host, size_t n, int *port)
{
	const char *p, *end;
	size_t len;

	if (url == NULL || strncmp(url, "http://", 7) != 0)
		return url && strncmp(url, "https://", 8) == 0 ? ERR_UNSUPPORTED
		                                               : ERR_INVAL;
	p = url + 7;
	end = p + strcspn(p, "/?#");
	*port = 80;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));

		if (rb == NULL)
			return ERR_INVAL;
		len = (size_t)(rb - p - 1);
		p++;
		if (rb + 1 < end && rb[1] == ':')
			*port = atoi(rb + 2);
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		len = (size_t)((colon ? colon : end) - p);
		if (colon)
			*port = atoi(colon + 1);
	}
	if (len == 0 || len >= n || *port <= 0 || *port > 65535)
		return ERR_INVAL;
	memcpy(host, p, len);
	host[len] = '\0';
	return 0;
}

/* Where the sandbox's agent is, from its record. */
static int upstream_of(struct pconn *c, char *host, size_t n, int *port)
{
	struct store_sandbox r;
	const char *end;
	int e;

	if ((e = store_sandbox_get(c->px->a->store, c->id, &r)) != 0)
		return e;
	if ((e = parse_host(r.public_host, host, n, port)) == 0) {
		end = r.public_host + 7 + strcspn(r.public_host + 7, "/?#");
		snprintf(c->upauth, sizeof(c->upauth), "%.*s",
		         (int)(end - r.public_host - 7), r.public_host + 7);
	}
	store_sandbox_finish(&r);
	return e;
}

static void up_connect(struct pconn *c)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct sockaddr_storage sa;
	char host[256], port_s[8];
	struct pup *u;
	int port, e;

	if ((e = upstream_of(c, host, sizeof(host), &port)) != 0) {
		pflow_fail(c, 502, "BAD_GATEWAY",
		           e == ERR_UNSUPPORTED
		                   ? "the sandbox's agent is at an https "
		                     "address, which the proxy does not carry"
		                   : "HopX has not said where the sandbox's "
		                     "agent is: run 'hopxctl reconcile'");
		return;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		pconn_close(c);
		return;
	}
	u->c = c;
	c->up = u;
	uv_tcp_init(c->px->a->loop, &u->tcp);
	u->tcp.data = u;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) == 0 ||
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) == 0) {
		connect_to(c, (struct sockaddr *)&sa);
		return;
	}
	snprintf(port_s, sizeof(port_s), "%d", port);
	u->gai.data = u;
	u->resolving = 1;
	if (uv_getaddrinfo(c->px->a->loop, &u->gai, on_resolved, host, port_s,
	                   &hints) != 0) {
		u->resolving = 0;
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "cannot resolve the sandbox's agent's address");
	}
}

/* ---- the response ---- */

static void note_latency(struct pconn *c, int status)
{
	struct proxy_stats *st = &c->px->st;
	double s = (double)(uv_hrtime() - c->t0) / 1e9;
	size_t i;

	for (i = 0; i < 7 && s > proxy_lat_bounds[i]; i++)
		;
	st->lat_count[i]++;
	st->lat_sum_s += s;
	st->status[status / 100 <= 5 ? status / 100 : 0]++;
}

/* The answer ended: the next request, or the end of the connection. */
static void response_done(struct pconn *c)
{
	c->rs = RS_DONE;
	unlease(c);
	sessions_use(c->px->a->sess, c->id);
	if (c->resp_close || c->respf.kind == PFRAME_CLOSE)
		drop_up(c);
	if (c->rq != RQ_DONE || c->cli_close || c->respf.kind == PFRAME_CLOSE) {
		finish(c);
		return;
	}
	c->rq = RQ_HEAD;
	c->rs = RS_NONE;
	pconn_arm(c);
	reads(c);
	if (c->in_len)
		try_head(c);
}

/* A 401 from the sandbox: one refresh (shared with every request that
 * waits for it) and the request again. */
static void replay(struct pconn *c)
{
	char *rejected = c->tok;

	c->tok = NULL;
	c->retried = 1;
	c->px->st.retries++;
	drop_up(c);
	c->rs = RS_NONE;
	c->rq = RQ_WAIT;
	get_token(c, rejected);
	free(rejected);
}

static void start_tunnel(struct pconn *c, struct pup *u)
{
	c->tunnel = 1;
	c->rs = RS_BODY;
	c->px->st.websockets++;
	send_bytes(c, NULL, u->rbuf, u->rlen);
	u->rbuf = NULL;
	u->rlen = 0;
	drop_in(c, c->sent_len);
	if (c->in_len) {
		send_copy(c, u, c->in, c->in_len);
		drop_in(c, c->in_len);
	}
	reads(c);
	pconn_arm(c);
}

/* A final answer's head: to the client, and its body follows. */
static void final_head(struct pconn *c, struct pup *u, const struct phead *h,
                       size_t len)
{
	char *rest;
	size_t nrest = u->rlen - len;

	note_latency(c, h->status);
	pframe_response(&c->respf, h, c->head_req);
	c->resp_close = h->conn_close;
	c->rs = RS_BODY;
	if (c->replayable) {
		drop_in(c, c->sent_len);
		c->replayable = 0;
	}
	send_bytes(c, NULL, u->rbuf, len);
	rest = nrest ? malloc(nrest) : NULL;
	if (rest)
		memcpy(rest, u->rbuf + len, nrest);
	u->rbuf = NULL;
	u->rlen = 0;
	if (nrest && rest == NULL)
		pconn_close(c);
	else if (nrest)
		resp_body(c, rest, nrest);
	else if (c->respf.kind == PFRAME_NONE)
		response_done(c);
}

/* Response head bytes: interim answers pass on, a 401 is replayed, a
 * 101 opens the tunnel, the final head is carried. */
static void resp_head(struct pconn *c, struct pup *u, struct phead *h)
{
	ssize_t n;

	while ((n = phead_parse(u->rbuf, u->rlen, 1, h)) > 0) {
		if (h->status == 401 && c->replayable && !c->retried) {
			replay(c);
			return;
		}
		if (h->status == 101 && c->upgrade) {
			note_latency(c, 101);
			start_tunnel(c, u);
			return;
		}
		if (h->status >= 200 || h->status == 101) {
			final_head(c, u, h, (size_t)n);
			return;
		}
		send_copy(c, NULL, u->rbuf, (size_t)n);
		memmove(u->rbuf, u->rbuf + n, u->rlen - (size_t)n);
		u->rlen -= (size_t)n;
	}
	if (n < 0)
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "the sandbox's agent answered something that is "
		           "not HTTP/1.1");
}

static void resp_head_in(struct pconn *c, char *base, size_t n)
{
	struct pup *u = c->up;
	struct phead *h;
	char *grown;

	if (u->rlen + n > PX_IN_CAP ||
	    (grown = realloc(u->rbuf, u->rlen + n)) == NULL) {
		blk_free(c->px, base);
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "the sandbox's agent's answer has a head over "
		           "16 KiB");
		return;
	}
	u->rbuf = grown;
	memcpy(u->rbuf + u->rlen, base, n);
	u->rlen += n;
	blk_free(c->px, base);
	if ((h = malloc(sizeof(*h))) == NULL) {
		pconn_close(c);
		return;
	}
	resp_head(c, u, h);
	free(h);
}

static void resp_body(struct pconn *c, char *base, size_t n)
{
	ssize_t used;
	int done = 0;

	if ((used = pframe_feed(&c->respf, base, n, &done)) < 0) {
		blk_free(c->px, base);
		pconn_close(c);
		return;
	}
	if (used > 0)
		send_bytes(c, NULL, base, (size_t)used);
	else
		blk_free(c->px, base);
	/* Bytes past the answer: nothing asked for them; the connection
	 * is not used again. */
	if ((size_t)used < n)
		c->resp_close = 1;
	if (done)
		response_done(c);
}

/* The sandbox's side closed (or failed). */
static void up_eof(struct pconn *c)
{
	struct pup *u = c->up;

	if (c->tunnel) {
		finish(c);
	} else if (c->rs == RS_BODY && c->respf.kind == PFRAME_CLOSE) {
		response_done(c);
	} else if (c->rs == RS_HEAD && u && u->used && u->rlen == 0 &&
	           c->replayable && !c->retried) {
		/* A kept connection the sandbox had closed meanwhile. */
		c->retried = 1;
		drop_up(c);
		up_connect(c);
	} else if (c->rs == RS_HEAD) {
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "the sandbox's agent closed the connection without "
		           "an answer");
	} else if (c->rs == RS_BODY) {
		pconn_close(c);
	} else {
		drop_up(c);
	}
}

static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct pup *u = s->data;
	struct pconn *c = u->c;

	if (n <= 0 || c == NULL || c->closing) {
		free(b->base);
		if (n < 0 && c && !c->closing)
			up_eof(c);
		return;
	}
	c->progress = uv_hrtime();
	if (c->tunnel)
		send_bytes(c, NULL, b->base, (size_t)n);
	else if (c->rs == RS_HEAD)
		resp_head_in(c, b->base, (size_t)n);
	else if (c->rs == RS_BODY)
		resp_body(c, b->base, (size_t)n);
	else {
		blk_free(c->px, b->base);
		drop_up(c);
	}
}

/* ---- deadlines ---- */

void pflow_timeout(struct pconn *c)
{
	uint64_t now = uv_hrtime();
	size_t q = c->cli.s.write_queue_size +
	           (c->up && c->up->open ? c->up->tcp.write_queue_size : 0);

	if (c->closing)
		return;
	if (c->draining) {
		pconn_close(c);
	} else if (c->rq == RQ_HEAD && c->in_len) {
		pflow_fail(c, 408, "REQUEST_TIMEOUT",
		           "the request head did not come in time");
	} else if (c->rq == RQ_HEAD) {
		pconn_close(c);
	} else if (c->up && !c->up->open && now - c->t0 > CONNECT_TIMEOUT_NS) {
		pflow_fail(c, 504, "GATEWAY_TIMEOUT",
		           "the sandbox's agent did not accept a connection in "
		           "10 s");
	} else if (q > 0 && now - c->progress > STALL_NS) {
		pconn_close(c);
	} else {
		pconn_arm(c);
	}
}
