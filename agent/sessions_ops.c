/*
 * Sessions: the operation state machine (one HopX call at a time per
 * record, joined by the same asks) and what each answer means.
 */
#include "sessions_int.h"

#include "agent.h"
#include "err.h"
#include "events.h"
#include "heap.h"
#include "ipc_server.h"
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

/* ---- applying what HopX said ---- */

void sess_check_waits(struct sess *s)
{
	struct swait *w, *tmp;

	DL_FOREACH_SAFE(s->waits, w, tmp)
	{
		if (w->want == s->status)
			sess_swait_end(w, 0, NULL);
	}
}

static void meta_from(struct store_meta *m, const struct hopx_sandbox *h)
{
	m->template_id = h->template_id[0] ? h->template_id : NULL;
	m->template_name = h->template_name[0] ? h->template_name : NULL;
	m->region = h->region[0] ? h->region : NULL;
	m->public_host = h->public_host[0] ? h->public_host : NULL;
	m->timeout_seconds =
	        h->timeout_seconds >= 0 ? h->timeout_seconds : STORE_NULL;
	m->expires_at = h->expires_at > 0 ? h->expires_at : STORE_NULL;
	m->created_at = h->created_at > 0 ? h->created_at : STORE_NULL;
	m->vcpu = h->vcpu >= 0 ? h->vcpu : STORE_NULL;
	m->memory_mb = h->memory_mb >= 0 ? h->memory_mb : STORE_NULL;
	m->disk_mb = h->disk_mb >= 0 ? h->disk_mb : STORE_NULL;
}

/* Records a status (and metadata) HopX confirmed. */
void sess_set_status(struct sess *s, enum sbx_status st,
                     const struct store_meta *meta, enum store_cause cause,
                     const char *why)
{
	sess_cache_clear(s);
	int e = store_sandbox_observe(s->ss->a->store, s->id, st, meta, cause,
	                              why, NULL);

	if (e != 0) {
		log_error("cannot record the status of %s: %s", s->id,
		          err_str(e));
		return;
	}
	if (st != s->status) {
		s->polls = 0;
		s->paused_by_agent = 0;
		if (st == SBX_CREATING)
			s->poll_at = sess_now(s->ss) + timing_poll_delay(0);
	}
	s->status = st;
	if (meta)
		s->expires_at =
		        meta->expires_at == STORE_NULL ? 0 : meta->expires_at;
	sess_check_waits(s);
}

static void put_token(struct sess *s, const struct hopx_sandbox *h,
                      enum store_cause cause)
{
	int64_t now = sess_now(s->ss);
	int replaced = 0, e;
	cJSON *d;
	char *text;

	if (h->token[0] == '\0' || h->token_expires_at <= now)
		return;
	e = store_token_put(s->ss->a->store, s->id, h->token,
	                    h->token_expires_at, now, &replaced);
	if (e != 0 || !replaced)
		return;
	sess_cache_clear(s);
	s->tok_exp = h->token_expires_at;
	s->tok_issued = now;
	sess_renew_book(s);
	d = cJSON_CreateObject();
	json_add_i64(d, "expires_at", h->token_expires_at);
	text = json_print(d);
	cJSON_Delete(d);
	store_event_append(s->ss->a->store, s->id, "token", cause, text, NULL);
	free(text);
}

void sess_observe_full(struct sess *s, const struct hopx_sandbox *h,
                       enum store_cause cause)
{
	sess_cache_clear(s);
	struct store_meta m;

	meta_from(&m, h);
	sess_set_status(s, h->status, &m, cause, NULL);
	put_token(s, h, cause);
}

static void set_timeout(struct sess *s, const struct hopx_sandbox *h,
                        enum store_cause cause)
{
	struct store_meta m = {.timeout_seconds = h->timeout_seconds,
	                       .expires_at = h->expires_at,
	                       .created_at = STORE_NULL,
	                       .vcpu = STORE_NULL,
	                       .memory_mb = STORE_NULL,
	                       .disk_mb = STORE_NULL};
	cJSON *d = cJSON_CreateObject();
	char *text;

	sess_set_status(s, s->status, &m, cause, NULL);
	json_add_i64(d, "timeout_seconds", h->timeout_seconds);
	json_add_i64(d, "expires_at", h->expires_at);
	text = json_print(d);
	cJSON_Delete(d);
	store_event_append(s->ss->a->store, s->id, "timeout", cause, text,
	                   NULL);
	free(text);
}

/* ---- operations ---- */

static void op_finish(struct sess *s, int err, const char *fmt, ...)
        LOG_PRINTF(3, 4);

static void op_finish(struct sess *s, int err, const char *fmt, ...)
{
	struct op *op = s->cur;
	struct sess_outcome o = {.err = err, .before = op->before};
	struct waiter *w, *next;
	int64_t now = sess_now(s->ss);
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(o.msg, sizeof(o.msg), fmt, ap);
		va_end(ap);
	}
	o.after = s->status;
	s->cur = NULL;
	if (op->act == SESS_REFRESH && op->prio == HOPX_PRIO_RENEW)
		++*(err ? &s->ss->a->stats.renewal_failures
		        : &s->ss->a->stats.renewals);
	s->fails = err == 0 ? 0 : s->fails + 1;
	s->retry_at = 0;
	if (err_transient(err))
		s->retry_at = now + sess_retry_delay(s, now);
	else if (err == ERR_AUTH)
		s->retry_at = now + AUTH_RETRY_MS;
	if (err != 0 && op->act == SESS_PAUSE && op->arg != 0) {
		/* A pause of the agent's own that HopX refused: reported, and
		 * tried again later (an idle period, a minute), never in a
		 * loop. */
		log_warn("could not pause sandbox %s (%s): %s", s->id,
		         op->arg == PAUSE_IDLE ? "idle" : "before its deadline",
		         o.msg);
		s->pause_after = now + RETRY_CAP_MS;
	}
	s->refs++; /* a waiter may forget the sandbox */
	for (w = op->waiters; w; w = next) {
		next = w->next;
		if (w->fn)
			w->fn(w->ud, &o);
		free(w);
	}
	free(op);
	if (!s->dropped && s->queue)
		sess_op_start(s);
	else if (!s->dropped)
		sess_schedule(s);
	sess_unref(s);
}

static enum hopx_op call_for(const struct op *op)
{
	static const enum hopx_op first[SESS_NACTS] = {
	        [SESS_SYNC] = HOPX_GET,      [SESS_REFRESH] = HOPX_REFRESH,
	        [SESS_RESUME] = HOPX_RESUME, [SESS_PAUSE] = HOPX_PAUSE,
	        [SESS_START] = HOPX_START,   [SESS_STOP] = HOPX_STOP,
	        [SESS_KILL] = HOPX_DELETE,   [SESS_TIMEOUT] = HOPX_TIMEOUT};

	if (op->probe)
		return HOPX_GET;
	return op->step ? HOPX_REFRESH : first[op->act];
}

static void on_answer(void *ud, const struct hopx_result *r);

static void op_issue(struct sess *s)
{
	struct op *op = s->cur;
	struct hopx_call c = {.op = call_for(op),
	                      .id = s->id,
	                      .timeout_s = op->arg,
	                      .prio = op->prio,
	                      .batch = 1};
	int e;

	s->refs++;
	if ((e = hopx_call(s->ss->hx, &c, on_answer, s)) != 0) {
		s->refs--;
		op_finish(s, e, "cannot queue the call: %s", err_str(e));
	}
}

void sess_op_start(struct sess *s)
{
	struct op *op = s->queue;
	int64_t now = sess_now(s->ss);

	DL_DELETE(s->queue, op);
	s->cur = op;
	op->before = s->status;
	timerq_cancel(s->ss->tq, &s->due);
	/* A token just issued (e.g. by the resume queued before) is fresh,
	 * unless the sandbox refused it. */
	if (op->act == SESS_REFRESH && op->arg == 0 && s->tok_exp > now &&
	    now - s->tok_issued < REFRESH_MIN_AGE_MS) {
		op_finish(s, 0, NULL);
		return;
	}
	op_issue(s);
}

/* Whether the session now holds a token with life left on HopX's clock. */
static int token_usable(const struct sess *s)
{
	return s->tok_exp - sess_now(s->ss) >= TOKEN_MIN_TTL_MS;
}

/*
 * A refresh answered with a token already expired on HopX's clock as far
 * as this machine can tell: a failure, retried with backoff like any
 * other (never at once: that was a loop spending the budget).
 */
static void unusable_token(struct sess *s, const struct hopx_sandbox *h)
{
	op_finish(s, ERR_BADRESP,
	          "HopX returned a token for %s that has %lld ms left by "
	          "HopX's clock as this machine sees it (skew %+lld ms); "
	          "retrying later. Check the clock: timedatectl",
	          s->id, (long long)(h->token_expires_at - sess_now(s->ss)),
	          (long long)(s->ss->hx ? hopx_skew_ms(s->ss->hx, NULL) : 0));
}

/* The step after a successful call, or the end of the operation. */
static void answered_ok(struct sess *s, const struct hopx_result *r)
{
	struct op *op = s->cur;
	enum store_cause cause = op->cause;

	switch (call_for(op)) {
	case HOPX_RESUME:
	case HOPX_START:
		sess_set_status(s, SBX_RUNNING, NULL, cause,
		                op->act == SESS_RESUME ? "resumed" : "started");
		op->step = 1;
		op_issue(s);
		return;
	case HOPX_REFRESH:
		put_token(s, &r->sbx, cause);
		if (!token_usable(s)) {
			unusable_token(s, &r->sbx);
			return;
		}
		break;
	case HOPX_PAUSE:
		sess_set_status(s, SBX_PAUSED, NULL, cause,
		                op->arg == PAUSE_IDLE     ? "idle"
		                : op->arg == PAUSE_EXPIRY ? "deadline"
		                                          : "paused");
		break;
	case HOPX_STOP:
		sess_set_status(s, SBX_STOPPED, NULL, cause, "stopped");
		break;
	case HOPX_DELETE:
		sess_set_status(s, SBX_GONE, NULL, cause, "killed");
		break;
	case HOPX_TIMEOUT:
		set_timeout(s, &r->sbx, cause);
		break;
	default:
		sess_observe_full(s, &r->sbx, cause);
		break;
	}
	op_finish(s, 0, NULL);
}

static void mark_gone(struct sess *s)
{
	sess_set_status(s, SBX_GONE, NULL, STORE_CAUSE_REMOTE,
	                "HopX answered 404: deleted or expired");
}

/* The answer to the GET sent to learn why a call was refused. */
static void probe_answered(struct sess *s, const struct hopx_result *r)
{
	struct op *op = s->cur;
	enum sbx_status st;

	op->probe = 0;
	op->probed = 1;
	if (r->err == ERR_NOTFOUND) {
		mark_gone(s);
		op_finish(s, ERR_NOTFOUND,
		          "HopX has no sandbox %s (deleted or expired); "
		          "marked gone",
		          s->id);
		return;
	}
	if (r->err != 0) {
		op_finish(s, op->probe_err, "HopX refused to %s %s",
		          sess_act_str(op->act), s->id);
		return;
	}
	sess_observe_full(s, &r->sbx, STORE_CAUSE_REMOTE);
	st = s->status;
	if (op->probe_err == ERR_NOTFOUND) {
		op_finish(
		        s, ERR_UNSUPPORTED,
		        "HopX no longer offers '%s' (POST /v1/sandboxes/%s/%s "
		        "answered 404 while the sandbox exists); use "
		        "pause/resume or kill",
		        sess_act_str(op->act), s->id, sess_act_str(op->act));
	} else if ((op->act == SESS_RESUME || op->act == SESS_START) &&
	           st == SBX_RUNNING) {
		op->step = 1; /* already running: only the token is needed */
		op_issue(s);
	} else if ((op->act == SESS_PAUSE && st == SBX_PAUSED) ||
	           (op->act == SESS_STOP && st == SBX_STOPPED)) {
		op_finish(s, 0, NULL);
	} else {
		op_finish(s, op->act == SESS_REFRESH ? ERR_STATE : ERR_CONFLICT,
		          "cannot %s %s: it is %s", sess_act_str(op->act),
		          s->id, sbx_status_str(st));
	}
}

/* Asks HopX what the sandbox is now, to explain a refusal. */
static void probe(struct sess *s, int err)
{
	s->cur->probe = 1;
	s->cur->probe_err = err;
	op_issue(s);
}

static void answered_err(struct sess *s, const struct hopx_result *r)
{
	struct op *op = s->cur;
	enum hopx_op call = call_for(op);
	char msg[240];

	snprintf(msg, sizeof(msg), "%s: %s%s%s", err_str(r->err), r->code,
	         r->code[0] ? " " : "", r->message);
	s->wait_ms = r->retry_after_ms;
	if (r->err == ERR_NOTFOUND &&
	    (call == HOPX_START || call == HOPX_STOP) && !op->probed) {
		probe(s, ERR_NOTFOUND);
	} else if (r->err == ERR_NOTFOUND) {
		mark_gone(s);
		op_finish(s, ERR_NOTFOUND,
		          "HopX has no sandbox %s (deleted or expired); "
		          "marked gone",
		          s->id);
	} else if (r->err == ERR_CONFLICT && !op->probed) {
		probe(s, ERR_CONFLICT);
	} else if (r->err == ERR_AUTH) {
		op_finish(s, ERR_AUTH,
		          "HopX refused the API key (HTTP %ld); nothing was "
		          "changed",
		          r->status);
	} else {
		if (err_transient(r->err))
			store_sandbox_mark_stale(s->ss->a->store, s->id, msg);
		op_finish(s, r->err, "%s %s failed: %s", sess_act_str(op->act),
		          s->id, msg);
	}
}

static void handle_answer(struct sess *s, const struct hopx_result *r)
{
	sessions_note_api(s->ss, r->err, r->message);
	if (s->cur->probe)
		probe_answered(s, r);
	else if (r->err == 0)
		answered_ok(s, r);
	else
		answered_err(s, r);
}

/* Keeps s (and the call's reference) until the batch commits. */
static int batch_add(struct sessions *ss, struct sess *s)
{
	struct sess **b;
	size_t cap;

	if (!ss->batch_open && store_begin(ss->a->store) != 0)
		return -1;
	ss->batch_open = 1;
	if (ss->nbatch == ss->batch_cap) {
		cap = ss->batch_cap ? ss->batch_cap * 2 : 16;
		if ((b = realloc(ss->batch, cap * sizeof(*b))) == NULL)
			return -1; /* answered alone, inside the batch */
		ss->batch = b;
		ss->batch_cap = cap;
	}
	ss->batch[ss->nbatch++] = s;
	return 0;
}

/* Memory follows the database: a token not stored is not counted on, so
 * its renewal is asked for again. */
static void not_stored(struct sess *s, int e)
{
	log_error("%s: cannot store what HopX answered: %s", s->id, err_str(e));
	if (!s->dropped)
		sessions_track(s->ss, s->id);
}

/* The call's reference is held until the answer is handled (and, in a
 * batch, stored). */
static void on_answer(void *ud, const struct hopx_result *r)
{
	struct sess *s = ud;
	struct sessions *ss = s->ss;
	int alone = !ss->batching;

	if (s->dropped) {
		sess_unref(s);
		return;
	}
	/* An answer outside a turn's batch (a call refused at once) is a
	 * batch of one: everything one answer changes is one transaction. */
	if (alone)
		sessions_batch(ss, 0);
	if (batch_add(ss, s) == 0) {
		handle_answer(s, r); /* stored and told at the batch's end */
	} else {
		handle_answer(s, r);
		sess_unref(s);
	}
	if (alone)
		sessions_batch(ss, 1);
}

/* At a batch's end: one commit for its answers, then their events and
 * the replies they made. */
void sessions_batch(struct sessions *ss, int end)
{
	size_t i;
	int e;

	ss->batching = !end;
	if (!end) {
		ipc_server_cork(ss->a->ipc, 1);
		return;
	}
	if (ss->batch_open) {
		ss->batch_open = 0;
		e = store_commit(ss->a->store);
		for (i = 0; i < ss->nbatch; i++) {
			if (e != 0)
				not_stored(ss->batch[i], e);
			sess_unref(ss->batch[i]);
		}
		ss->nbatch = 0;
	}
	events_publish(ss->a);
	ipc_server_cork(ss->a->ipc, 0);
}

static int same_op(const struct op *op, enum sess_act act, int64_t arg)
{
	return op && op->act == act && !op->step &&
	       (act != SESS_TIMEOUT || op->arg == arg);
}

static int add_waiter(struct op *op, sess_done_fn fn, void *ud)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return ERR_NOMEM;
	w->fn = fn;
	w->ud = ud;
	LL_APPEND(op->waiters, w);
	return 0;
}

int sess_refuse(sess_done_fn fn, void *ud, int err, const char *msg)
{
	struct sess_outcome o = {.err = err};

	snprintf(o.msg, sizeof(o.msg), "%s", msg);
	if (fn)
		fn(ud, &o);
	return err;
}

static struct op *find_joinable(struct sess *s, enum sess_act act, int64_t arg)
{
	struct op *op;

	if (same_op(s->cur, act, arg))
		return s->cur;
	DL_FOREACH(s->queue, op)
	{
		if (same_op(op, act, arg))
			return op;
	}
	return NULL;
}

int sessions_do(struct sessions *ss, const char *id, enum sess_act act,
                int64_t arg, enum hopx_prio prio, enum store_cause cause,
                sess_done_fn fn, void *ud)
{
	struct sess *s = sess_lookup(ss, id);
	struct op *op;

	if (s == NULL)
		return sess_refuse(fn, ud, ERR_NOTFOUND,
		                   "no such tracked sandbox");
	if (ss->hx == NULL)
		return sess_refuse(fn, ud, ERR_AUTH, ss->api_msg);
	if ((op = find_joinable(s, act, arg)) != NULL) {
		if (op->prio > prio)
			op->prio = prio; /* only matters while queued here */
		if (act == SESS_REFRESH && arg)
			op->arg =
			        arg; /* forced: a waiter's token was refused */
		return add_waiter(op, fn, ud) == 0
		               ? 0
		               : sess_refuse(fn, ud, ERR_NOMEM,
		                             "out of memory");
	}
	if ((op = calloc(1, sizeof(*op))) == NULL ||
	    add_waiter(op, fn, ud) != 0) {
		free(op);
		return sess_refuse(fn, ud, ERR_NOMEM, "out of memory");
	}
	op->act = act;
	op->arg = arg;
	op->prio = prio;
	op->cause = cause;
	DL_APPEND(s->queue, op);
	if (s->cur == NULL)
		sess_op_start(s);
	return 0;
}
