/*
 * Sessions: handing out tokens (from memory when possible) and waiting
 * for a status.
 */
#include "sessions_int.h"

#include "agent.h"
#include "err.h"
#include "events.h"
#include "heap.h"
#include "json.h"
#include "log.h"
#include "skew.h"
#include "timing.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

/* ---- tokens ---- */

struct tokreq {
	struct sessions *ss;
	char id[SBX_ID_MAX + 1];
	sess_token_fn fn;
	void *ud;
};

/* Reads the stored token; 0 when it lasts min_ttl or is brand new. */
/*
 * Whether a token expiring at exp, issued at issued, can be handed out
 * to a caller wanting min_ttl: it lasts that long, or it is too young to
 * refresh again (it would not last longer), and never under a second.
 */
static int token_serves(int64_t now, int64_t exp, int64_t issued,
                        int64_t min_ttl)
{
	if (exp - now < TOKEN_MIN_TTL_MS)
		return 0;
	return exp - now >= min_ttl || now - issued < REFRESH_MIN_AGE_MS;
}

static int stored_token(struct sessions *ss, const char *id, int64_t min_ttl,
                        struct store_sandbox *r)
{
	int e = store_sandbox_get(ss->a->store, id, r);

	if (e != 0)
		return e;
	return r->token && token_serves(sess_now(ss), r->token_expires_at,
	                                r->token_issued_at, min_ttl)
	               ? 0
	               : ERR_NOTFOUND;
}

/* Keeps what the store answered if it is the token the session counts on. */
static void cache_fill(struct sess *s, const struct store_sandbox *r)
{
	if (s->tok_text || r->token_expires_at != s->tok_exp)
		return;
	s->tok_text = strdup(r->token);
	s->host = r->public_host ? strdup(r->public_host) : NULL;
	if (s->tok_text == NULL || (r->public_host && s->host == NULL))
		sess_cache_clear(s);
}

int sessions_token_cached(const struct sessions *ss, const char *id,
                          int64_t min_ttl_ms, struct sess_token *out)
{
	const struct sess *s = sess_find(ss, id);

	if (s == NULL || s->status != SBX_RUNNING || s->tok_text == NULL ||
	    !token_serves(sess_now(ss), s->tok_exp, s->tok_issued, min_ttl_ms))
		return ERR_NOTFOUND;
	out->id = s->id;
	out->token = s->tok_text;
	out->expires_at = s->tok_exp;
	out->public_host = s->host;
	return 0;
}

static void token_refreshed(void *ud, const struct sess_outcome *o)
{
	struct tokreq *q = ud;
	struct sess_outcome out = *o;
	struct store_sandbox r;

	/* Finished below on every path, a failed refresh included. */
	store_sandbox_init(&r);
	if (o->err == 0 && stored_token(q->ss, q->id, 0, &r) != 0) {
		out.err = ERR_BADRESP;
		snprintf(out.msg, sizeof(out.msg),
		         "HopX returned no usable token for %s", q->id);
	}
	if (out.err == 0)
		q->fn(q->ud, &out, r.token, r.token_expires_at);
	else
		q->fn(q->ud, &out, NULL, 0);
	store_sandbox_finish(&r);
	free(q);
}

int sessions_token(struct sessions *ss, const char *id, int64_t min_ttl_ms,
                   sess_token_fn fn, void *ud)
{
	struct sess *s = sess_lookup(ss, id);
	struct sess_outcome o = {0};
	struct store_sandbox r;
	struct tokreq *q;

	if (s == NULL || s->status != SBX_RUNNING) {
		o.err = s == NULL ? ERR_NOTFOUND : ERR_STATE;
		snprintf(o.msg, sizeof(o.msg),
		         "sandbox %s is %s: its agent takes no token until "
		         "it runs",
		         id, s ? sbx_status_str(s->status) : "not tracked");
		fn(ud, &o, NULL, 0);
		return o.err;
	}
	if (stored_token(ss, id, min_ttl_ms, &r) == 0) {
		cache_fill(s, &r);
		o.after = s->status;
		fn(ud, &o, r.token, r.token_expires_at);
		store_sandbox_finish(&r);
		return 0;
	}
	store_sandbox_finish(&r);
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		o.err = ERR_NOMEM;
		fn(ud, &o, NULL, 0);
		return ERR_NOMEM;
	}
	q->ss = ss;
	snprintf(q->id, sizeof(q->id), "%s", id);
	q->fn = fn;
	q->ud = ud;
	return sessions_do(ss, id, SESS_REFRESH, 0, HOPX_PRIO_USER,
	                   STORE_CAUSE_USER, token_refreshed, q);
}

/* ---- waiting for a status ---- */

static void on_wait_timeout(uv_timer_t *t)
{
	struct swait *w = t->data;

	sess_swait_end(w, ERR_TIMEOUT, "timed out");
}

int sessions_wait(struct sessions *ss, const char *id, enum sbx_status want,
                  int64_t timeout_ms, sess_done_fn fn, void *ud)
{
	struct sess *s = sess_lookup(ss, id);
	struct swait *w;

	if (s == NULL)
		return sess_refuse(fn, ud, ERR_NOTFOUND,
		                   "no such tracked sandbox");
	if (s->status == want) {
		struct sess_outcome o = {.before = want, .after = want};

		fn(ud, &o);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return sess_refuse(fn, ud, ERR_NOMEM, "out of memory");
	w->s = s;
	w->want = want;
	w->fn = fn;
	w->ud = ud;
	uv_timer_init(ss->a->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)timeout_ms, 0);
	DL_APPEND(s->waits, w);
	return 0;
}
