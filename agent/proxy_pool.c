/*
 * Connections to sandbox agents kept between clients: a client that
 * opens a connection per request (curl in a loop, a browser's new tabs)
 * gets one that is already open, saving a connect and, to HopX's https
 * hosts, a TLS handshake. A connection is kept only between whole
 * exchanges, for a few seconds (servers drop idle ones: Node's after 5),
 * and dropped as soon as it becomes readable, since a server says nothing
 * unasked but that it closes.
 */
#include "proxy_int.h"

#include "agent.h"

#include <stdio.h>
#include <string.h>
#include <utlist.h>

/* Shorter than the idle timeouts servers commonly use (Node: 5 s). */
#define IDLE_MS  4000
#define SWEEP_MS 1000
#define PER_SBX  8
#define POOL_MAX 64

/* Nothing of an exchange is left on it: the answer read whole (and not
 * the last), the request sent whole, nothing queued. */
static int reusable(const struct pconn *c, const struct pup *u)
{
	return px_up_ready(u) && !c->tunnel && !c->sp && !c->resp_close &&
	       u->rlen == 0 && u->tcp.write_queue_size == 0 &&
	       ((c->rs == RS_DONE && c->rq == RQ_DONE) ||
	        (c->rs == RS_NONE && c->rq == RQ_HEAD));
}

static void unlink_idle(struct proxy *px, struct pup *u)
{
	DL_DELETE(px->idle, u);
	px->st.up_idle--;
	u->parked = 0;
}

void px_pool_evict(struct pup *u)
{
	unlink_idle(u->px, u);
	px_up_close(u);
}

static void on_sweep(uv_timer_t *t)
{
	struct proxy *px = t->data;
	uint64_t now = uv_now(px->a->loop);
	struct pup *u, *tmp;

	DL_FOREACH_SAFE(px->idle, u, tmp)
	{
		if (now - u->idle_at >= IDLE_MS)
			px_pool_evict(u);
	}
	if (px->idle == NULL)
		uv_timer_stop(t);
}

/* The oldest of id's (or of all, id NULL) past the cap goes. */
static void cap(struct proxy *px, const char *id, unsigned max)
{
	struct pup *u, *oldest = NULL;
	unsigned n = 0;

	DL_FOREACH(px->idle, u)
	{
		if (id && strcmp(u->id, id) != 0)
			continue;
		n++;
		oldest = u;
	}
	if (n > max)
		px_pool_evict(oldest);
}

static void park(struct pconn *c, struct pup *u)
{
	struct proxy *px = c->px;

	c->up = NULL;
	u->c = NULL;
	snprintf(u->id, sizeof(u->id), "%s", c->id);
	snprintf(u->auth, sizeof(u->auth), "%s", c->upauth);
	u->idle_at = uv_now(px->a->loop);
	u->parked = 1;
	DL_PREPEND(px->idle, u);
	px->st.up_idle++;
	/* Watched for readability: a close (or anything) drops it. */
	if (!u->reading)
		uv_read_start((uv_stream_t *)&u->tcp, px_up_alloc, px_up_read);
	u->reading = 1;
	cap(px, u->id, PER_SBX);
	cap(px, NULL, POOL_MAX);
	if (!uv_is_active((uv_handle_t *)&px->sweep))
		uv_timer_start(&px->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}

void px_pool_put(struct pconn *c)
{
	struct pup *u = c->up;

	if (u && reusable(c, u))
		park(c, u);
	else
		px_drop_up(c);
}

struct pup *px_pool_take(struct pconn *c)
{
	struct proxy *px = c->px;
	struct pup *u;

	DL_FOREACH(px->idle, u)
	{
		if (strcmp(u->id, c->id) == 0 &&
		    strcmp(u->auth, c->upauth) == 0)
			break;
	}
	if (u == NULL)
		return NULL;
	unlink_idle(px, u);
	u->c = c;
	u->used = 1;
	c->up = u;
	px->st.up_reused++;
	return u;
}

void px_pool_close_all(struct proxy *px)
{
	while (px->idle)
		px_pool_evict(px->idle);
	uv_timer_stop(&px->sweep);
}
