/*
 * Sessions: when each record acts on its own (renewal, keep-alive and
 * lease re-arming, idle and deadline pauses, polls, retries).
 */
#include "sessions_int.h"

#include "agent.h"
#include "err.h"
#include "events.h"
#include "fleet.h"
#include "heap.h"
#include "json.h"
#include "log.h"
#include "skew.h"
#include "timing.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

/* ---- scheduling background work ---- */

/* When this sandbox's token is due for renewal (wall ms); 0: no token. */
int64_t sess_renew_at(const struct sess *s)
{
	return s->tok_exp > 0
	               ? timing_renew_at(s->tok_issued, s->tok_exp, s->jitter)
	               : 0;
}

/* ---- the renewal load: renewals booked per second ---- */

#define RENEW_CHOICES 8

struct renew_slot {
	int64_t sec;
	int n;
	UT_hash_handle hh;
};

static int renew_booked(const struct sessions *ss, int64_t sec)
{
	struct renew_slot *r;

	HASH_FIND(hh, ss->renew_load, &sec, sizeof(sec), r);
	return r ? r->n : 0;
}

/* Adds d renewals at second sec; the slot goes when it is empty. */
static int renew_count(struct sessions *ss, int64_t sec, int d)
{
	struct renew_slot *r;

	HASH_FIND(hh, ss->renew_load, &sec, sizeof(sec), r);
	if (r == NULL && d > 0) {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return ERR_NOMEM;
		r->sec = sec;
		HASH_ADD(hh, ss->renew_load, sec, sizeof(r->sec), r);
	}
	if (r == NULL)
		return 0;
	if ((r->n += d) <= 0) {
		HASH_DEL(ss->renew_load, r);
		free(r);
	}
	return 0;
}

void sess_renew_unbook(struct sess *s)
{
	if (s->booked)
		renew_count(s->ss, s->booked, -1);
	s->booked = 0;
}

void sess_renew_book(struct sess *s)
{
	uint32_t r = timing_rand(&s->ss->rng), j;
	int best = -1, n, k;
	int64_t sec;

	sess_renew_unbook(s);
	for (k = 0; k < RENEW_CHOICES; k++) {
		j = r + (uint32_t)k * (UINT32_MAX / RENEW_CHOICES);
		sec = timing_renew_at(s->tok_issued, s->tok_exp, j) / 1000;
		n = renew_booked(s->ss, sec);
		if (best < 0 || n < best) {
			best = n;
			s->jitter = j;
		}
	}
	sec = timing_renew_at(s->tok_issued, s->tok_exp, s->jitter) / 1000;
	/* out of memory: renewed where it was placed, only not counted */
	if (sec > 0 && renew_count(s->ss, sec, 1) == 0)
		s->booked = sec;
}

void sess_renew_load_free(struct sessions *ss)
{
	struct renew_slot *r, *tmp;

	HASH_ITER(hh, ss->renew_load, r, tmp)
	{
		HASH_DEL(ss->renew_load, r);
		free(r);
	}
}

/*
 * The period HopX's deadline is re-armed to: the keep-alive policy's;
 * else the sandbox's own timeout while a client holds a lease (a sandbox
 * in use is never killed by it), with on_expiry extend, or with on_expiry
 * pause once paused (whether HopX's clock runs while paused or not, the
 * deadline never comes). 0: nothing to re-arm.
 */
static int64_t rearm_period(const struct sess *s)
{
	if (s->expires_at <= 0 ||
	    (s->status != SBX_RUNNING && s->status != SBX_PAUSED))
		return 0;
	if (s->keepalive_s > 0)
		return s->keepalive_s;
	if (s->leases > 0 || s->on_expiry == STORE_EXPIRY_EXTEND ||
	    (s->on_expiry == STORE_EXPIRY_PAUSE && s->status == SBX_PAUSED))
		return s->timeout_s;
	return 0;
}

/*
 * on_expiry pause: a running sandbox nobody holds is paused this long
 * before HopX's deadline (a tenth of its timeout, 2-60 s); 0: never.
 */
static int64_t expiry_pause_at(const struct sess *s)
{
	int64_t margin = s->timeout_s * 100;

	if (s->on_expiry != STORE_EXPIRY_PAUSE || s->status != SBX_RUNNING ||
	    s->leases > 0 || s->expires_at <= 0)
		return 0;
	margin = margin < EXPIRY_MARGIN_MIN_MS   ? EXPIRY_MARGIN_MIN_MS
	         : margin > EXPIRY_MARGIN_MAX_MS ? EXPIRY_MARGIN_MAX_MS
	                                         : margin;
	return s->expires_at - margin;
}

/* When an unused sandbox is paused for idleness (wall ms); 0: never. */
int64_t sess_idle_at(const struct sess *s)
{
	return s->status == SBX_RUNNING && s->idle_pause_s > 0 && s->leases == 0
	               ? s->used_at + s->idle_pause_s * 1000
	               : 0;
}

/* Makes (k, what, with) the next action if it comes before *due. */
static void earliest(int64_t *due, enum sess_act *act, int64_t *arg, int64_t k,
                     enum sess_act what, int64_t with)
{
	if (k < *due) {
		*due = k;
		*act = what;
		*arg = with;
	}
}

/* When one of the agent's own pauses may come (at), INT64_MAX: never. */
static int64_t pause_due(const struct sess *s, int64_t at)
{
	if (at == 0)
		return INT64_MAX;
	return at < s->pause_after ? s->pause_after : at;
}

/* When the next background action is due (wall ms), which, its arg. */
static int64_t next_due(const struct sess *s, int64_t now, enum sess_act *act,
                        int64_t *arg)
{
	int64_t due = INT64_MAX, period = rearm_period(s);

	*arg = 0;
	if (s->status == SBX_RUNNING)
		earliest(&due, act, arg,
		         s->tok_exp > 0 ? sess_renew_at(s) : now, SESS_REFRESH,
		         0);
	if (period > 0)
		earliest(&due, act, arg,
		         timing_keepalive_at(s->expires_at, period, now),
		         SESS_TIMEOUT, period);
	earliest(&due, act, arg, pause_due(s, sess_idle_at(s)), SESS_PAUSE,
	         PAUSE_IDLE);
	earliest(&due, act, arg, pause_due(s, expiry_pause_at(s)), SESS_PAUSE,
	         PAUSE_EXPIRY);
	if (s->status == SBX_CREATING)
		earliest(&due, act, arg, s->poll_at, SESS_SYNC, 0);
	if (due != INT64_MAX && due < s->retry_at)
		due = s->retry_at;
	return due;
}

/*
 * After a transient failure: backoff, but a token close to expiry cannot
 * wait out a long one, so a running sandbox retries within a third of
 * what is left of its token; never before the answer's Retry-After.
 */
int64_t sess_retry_delay(struct sess *s, int64_t now)
{
	int64_t d = timing_backoff(s->fails, RETRY_BASE_MS, RETRY_CAP_MS,
	                           timing_rand(&s->ss->rng), 0);
	int64_t left = (s->tok_exp - now) / 3;

	if (s->status == SBX_RUNNING && s->tok_exp > 0 && d > left)
		d = left > RETRY_MIN_MS ? left : RETRY_MIN_MS;
	if (d < s->wait_ms)
		d = s->wait_ms;
	s->wait_ms = -1;
	return d;
}

static void on_bg_done(void *ud, const struct sess_outcome *o)
{
	(void)ud;
	(void)o; /* failures were recorded by op_finish */
}

void sess_due(void *ud, struct timerq_entry *e)
{
	struct sess *s =
	        (struct sess *)(void *)((char *)e - offsetof(struct sess, due));
	enum sess_act act = SESS_SYNC;
	int64_t now = sess_now(s->ss), arg;

	if (s->cur)
		return; /* op_finish schedules again */
	/*
	 * What is due now may differ from when it was queued (a token
	 * stored meanwhile, the skew moved): re-queue, never drop it (a
	 * dropped timer left renewals to the next reconcile).
	 */
	if (next_due(s, now, &act, &arg) > now) {
		sess_schedule(s);
		return;
	}
	if (act == SESS_SYNC)
		s->poll_at = now + timing_poll_delay(++s->polls);
	sessions_do(s->ss, s->id, act, arg,
	            act == SESS_SYNC ? HOPX_PRIO_SYNC : HOPX_PRIO_RENEW,
	            STORE_CAUSE_AGENT, on_bg_done, NULL);
}

void sess_schedule(struct sess *s)
{
	enum sess_act act = SESS_SYNC;
	int64_t now = sess_now(s->ss), due, arg;

	timerq_cancel(s->ss->tq, &s->due);
	if (s->dropped || s->cur || s->ss->hx == NULL || s->ss->stopping ||
	    s->ss->held)
		return;
	/* in a fleet, the agent holding the sandbox's lease does it */
	if (s->ss->a->fleet && !fleet_owns(s->ss->a->fleet, s->id))
		return;
	due = next_due(s, now, &act, &arg);
	if (due == INT64_MAX)
		return;
	/* room was made when the record was added */
	(void)timerq_set(s->ss->tq, &s->due, due);
}
