/*
 * The proxy's connections at the byte level: reading each side while the
 * other has room (read buffers handed on to the other side's writes,
 * reading paused while that side's queue is long), the sandbox held in
 * use while a request is in flight, the answers and ends of the proxy's
 * own, and the deadlines.
 */
#include "proxy_int.h"

#include "agent.h"
#include "err.h"
#include "log.h"
#include "sessions.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output not moving for this long (a client that stopped reading). */
#define STALL_NS           (60000ull * 1000000)
#define CONNECT_TIMEOUT_NS (10000ull * 1000000)

struct pwrite {
	uv_write_t req;
	char *base;
	struct pconn *c; /* a write to the client */
	struct pup *up;  /* a write to the sandbox */
};

/* ---- reading and writing ---- */

/*
 * Read blocks come from a small pool and go back to it once written: in
 * the heap, blocks freed in the order many connections finish with them
 * get carved by small allocations, and the heap grows (20 stalled
 * downloads held 30 MB that way, for 8 MB of queued data).
 */
char *px_blk_get(struct proxy *px)
{
	return px->npool ? px->pool[--px->npool] : malloc(PX_READ_CHUNK);
}

void px_blk_free(struct proxy *px, char *p)
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
	b->base = px_blk_get(c->px);
	b->len = b->base ? PX_READ_CHUNK : 0;
}

void px_up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct pup *u = h->data;

	(void)hint;
	b->base = u->c ? px_blk_get(u->c->px) : NULL;
	b->len = b->base ? PX_READ_CHUNK : 0;
}

void px_cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
void px_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* Reads each side when its phase wants it and the other side's output
 * queue has room (a slow reader slows the writer, never the agent's
 * memory). */
void px_reads(struct pconn *c)
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
			              px_cli_read);
		else
			uv_read_stop((uv_stream_t *)&c->cli);
		c->cli_reading = want;
	}
	if (u == NULL || !u->open)
		return;
	want = !c->finishing && !c->sp &&
	       (u->reading ? cq <= PX_HIGH : cq < PX_LOW);
	if (want != u->reading) {
		if (want)
			uv_read_start((uv_stream_t *)&u->tcp, px_up_alloc,
			              px_up_read);
		else
			uv_read_stop((uv_stream_t *)&u->tcp);
		u->reading = want;
	}
}

void px_finish(struct pconn *c);

static void on_written(uv_write_t *req, int status)
{
	struct pwrite *w = req->data;
	struct pup *u = w->up;
	struct pconn *c = u ? u->c : w->c;

	if (c == NULL || c->closing)
		free(w->base);
	else
		px_blk_free(c->px, w->base);
	free(w);
	if (c == NULL || c->closing || status == UV_ECANCELED)
		return;
	if (status < 0) {
		if (u)
			px_up_eof(c);
		else
			pconn_close(c);
		return;
	}
	c->progress = uv_hrtime();
	px_reads(c);
}

/* Writes len bytes of base (malloc'd, now the write's) to the client, or
 * to the sandbox when u is not NULL. */
void px_send(struct pconn *c, struct pup *u, char *base, size_t len)
{
	if (u)
		c->px->st.bytes_up += len;
	else
		c->px->st.bytes_down += len;
	if (u && u->tls)
		px_tls_send(c, u, base, len);
	else
		px_write(c, u, base, len);
}

void px_write(struct pconn *c, struct pup *u, char *base, size_t len)
{
	struct pwrite *w = calloc(1, sizeof(*w));
	uv_stream_t *s = u ? (uv_stream_t *)&u->tcp : (uv_stream_t *)&c->cli;
	uv_buf_t b = uv_buf_init(base, (unsigned)len);

	if (w == NULL) {
		px_blk_free(c->px, base);
		pconn_close(c);
		return;
	}
	w->base = base;
	w->c = c;
	w->up = u;
	w->req.data = w;
	if (uv_write(&w->req, s, &b, 1, on_written) != 0) {
		px_blk_free(c->px, base);
		free(w);
		pconn_close(c);
		return;
	}
	/* A queue past PX_HIGH stops the reading that feeds it now, not at
	 * the next write's end (which a reader that stopped never brings). */
	px_reads(c);
}

/* Sends a copy of p. */
void px_send_copy(struct pconn *c, struct pup *u, const char *p, size_t n)
{
	char *copy = malloc(n ? n : 1);

	if (copy == NULL) {
		pconn_close(c);
		return;
	}
	memcpy(copy, p, n);
	px_send(c, u, copy, n);
}

/* Keeps client bytes not carried yet. */
int px_keep_in(struct pconn *c, const char *p, size_t n)
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
void px_drop_in(struct pconn *c, size_t n)
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

void px_lease(struct pconn *c)
{
	struct sessions *ss = c->px->a->sess;

	sessions_use(ss, c->id);
	if (!c->leased && sessions_lease(ss, c->id, +1) == 0) {
		c->leased = 1;
		c->leased_at = clock_wall_ms(c->px->a->clk);
	}
}

void px_unlease(struct pconn *c)
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
	px_tls_free(u);
	if (!u->resolving)
		free(u);
}

/* Lets go of the connection to the sandbox. */
void px_drop_up(struct pconn *c)
{
	struct pup *u = c->up;

	if (u == NULL)
		return;
	c->up = NULL;
	u->c = NULL;
	free(u->rbuf);
	u->rbuf = NULL;
	px_up_close(u);
}

void px_up_close(struct pup *u)
{
	if (u->resolving)
		uv_cancel((uv_req_t *)&u->gai);
	uv_close((uv_handle_t *)&u->tcp, on_up_closed);
}

void pflow_release(struct pconn *c)
{
	px_splice_stop(c);
	px_unlease(c);
	px_pool_put(c);
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
	px_reads(c);
}

/* Closes once what is queued for the client has gone. */
void px_finish(struct pconn *c)
{
	uv_shutdown_t *req;

	if (c->finishing || c->draining || c->closing)
		return;
	px_unlease(c);
	px_pool_put(c);
	c->finishing = 1;
	px_reads(c);
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
	/* Refused before a request began (its head bad, the cap reached):
	 * counted here, so that carried = requests - refused - errors. */
	if (c->rq == RQ_HEAD)
		c->px->st.requests++;
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
	px_send(c, NULL, out, (size_t)n);
	px_finish(c);
}

/* ---- deadlines ---- */

void pflow_timeout(struct pconn *c)
{
	uint64_t now = uv_hrtime();
	size_t q = c->cli.s.write_queue_size + c->spliced +
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
	} else if (c->up && !px_up_ready(c->up) &&
	           now - c->t0 > CONNECT_TIMEOUT_NS) {
		pflow_fail(c, 504, "GATEWAY_TIMEOUT",
		           c->up->open ? "the sandbox's agent did not finish "
		                         "the TLS handshake in 10 s"
		                       : "the sandbox's agent did not accept a "
		                         "connection in 10 s");
	} else if (q > 0 && now - c->progress > STALL_NS) {
		pconn_close(c);
	} else {
		pconn_arm(c);
	}
}
