/*
 * The sandbox's answer through the proxy: interim answers passed on, a
 * 401 answered by one refresh and the request again, a 101 turned into a
 * tunnel of raw bytes, the final head carried and its body streamed, and
 * then the client's next request.
 */
#include "proxy_int.h"

#include "agent.h"
#include "sessions.h"

#include <stdlib.h>
#include <string.h>

static void resp_body(struct pconn *c, char *base, size_t n);

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

void px_response_done(struct pconn *c)
{
	c->rs = RS_DONE;
	px_unlease(c);
	sessions_use(c->px->a->sess, c->id);
	if (c->resp_close || c->respf.kind == PFRAME_CLOSE)
		px_drop_up(c);
	if (c->rq != RQ_DONE || c->cli_close || c->respf.kind == PFRAME_CLOSE) {
		px_finish(c);
		return;
	}
	c->rq = RQ_HEAD;
	c->rs = RS_NONE;
	pconn_arm(c);
	px_reads(c);
	if (c->in_len)
		px_try_head(c);
}

/* A 401 from the sandbox: one refresh (shared with every request that
 * waits for it) and the request again. */
static void replay(struct pconn *c)
{
	char *rejected = c->tok;

	c->tok = NULL;
	c->retried = 1;
	c->px->st.retries++;
	px_drop_up(c);
	c->rs = RS_NONE;
	c->rq = RQ_WAIT;
	px_get_token(c, rejected);
	free(rejected);
}

static void start_tunnel(struct pconn *c, struct pup *u)
{
	c->tunnel = 1;
	c->rs = RS_BODY;
	c->px->st.websockets++;
	px_send(c, NULL, u->rbuf, u->rlen);
	u->rbuf = NULL;
	u->rlen = 0;
	px_drop_in(c, c->sent_len);
	if (c->in_len) {
		px_send_copy(c, u, c->in, c->in_len);
		px_drop_in(c, c->in_len);
	}
	px_reads(c);
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
		px_drop_in(c, c->sent_len);
		c->replayable = 0;
	}
	px_send(c, NULL, u->rbuf, len);
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
		px_response_done(c);
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
		px_send_copy(c, NULL, u->rbuf, (size_t)n);
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
		px_blk_free(c->px, base);
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "the sandbox's agent's answer has a head over "
		           "16 KiB");
		return;
	}
	u->rbuf = grown;
	memcpy(u->rbuf + u->rlen, base, n);
	u->rlen += n;
	px_blk_free(c->px, base);
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
		px_blk_free(c->px, base);
		pconn_close(c);
		return;
	}
	if (used > 0)
		px_send(c, NULL, base, (size_t)used);
	else
		px_blk_free(c->px, base);
	/* Bytes past the answer: nothing asked for them; the connection
	 * is not used again. */
	if ((size_t)used < n)
		c->resp_close = 1;
	if (done)
		px_response_done(c);
	else
		px_splice_try(c);
}

/* The sandbox's side closed (or failed). */
void px_up_eof(struct pconn *c)
{
	struct pup *u = c->up;

	if (c->tunnel) {
		px_finish(c);
	} else if (c->rs == RS_BODY && c->respf.kind == PFRAME_CLOSE) {
		px_response_done(c);
	} else if (c->rs == RS_HEAD && u && u->used && u->rlen == 0 &&
	           c->replayable && !c->retried) {
		/* A kept connection the sandbox had closed meanwhile. */
		c->retried = 1;
		px_drop_up(c);
		px_up_connect(c);
	} else if (c->rs == RS_HEAD) {
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "the sandbox's agent closed the connection without "
		           "an answer");
	} else if (c->rs == RS_BODY) {
		pconn_close(c);
	} else {
		px_drop_up(c);
	}
}

void px_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct pup *u = s->data;
	struct pconn *c = u->c;

	if (u->parked) {
		free(b->base);
		if (n != 0)
			px_pool_evict(u);
		return;
	}
	if (n <= 0 || c == NULL || c->closing) {
		free(b->base);
		if (n < 0 && c && !c->closing)
			px_up_eof(c);
		return;
	}
	c->progress = uv_hrtime();
	if (u->tls)
		px_tls_read(c, u, b->base, (size_t)n);
	else
		px_up_data(c, u, b->base, (size_t)n);
}

void px_up_data(struct pconn *c, struct pup *u, char *base, size_t n)
{
	if (c->tunnel)
		px_send(c, NULL, base, n);
	else if (c->rs == RS_HEAD)
		resp_head_in(c, base, n);
	else if (c->rs == RS_BODY)
		resp_body(c, base, n);
	else {
		px_blk_free(c->px, base);
		if (c->up == u)
			px_drop_up(c);
	}
}
