/*
 * connect(): one small state machine per caller over the sessions' own
 * single-flight operations, so that any number of callers share one GET,
 * one resume and one refresh.
 */
#include "connect.h"

#include "err.h"
#include "log.h"
#include "sbx.h"
#include "sessions.h"
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A sandbox still creating is waited for this long. */
#define CREATING_WAIT_MS 60000
/* Steps before giving up on a sandbox that keeps changing state. */
#define MAX_STEPS 8

struct conn {
	struct sessions *ss;
	char id[SBX_ID_MAX + 1];
	char ref[SBX_NAME_MAX + SBX_ID_MAX + 2];
	int64_t min_ttl;
	char *rejected;
	int confirm;   /* HopX is still to be asked */
	int refreshed; /* a refresh past the rejected token was asked */
	int resumed;
	int steps;
	enum store_cause cause;
	connect_fn fn;
	void *ud;
};

static void step(struct conn *k);

static void done(struct conn *k, int err, const char *token, int64_t exp,
                 const char *msg)
{
	struct connect_result r = {.err = err,
	                           .token = token,
	                           .expires_at = exp,
	                           .resumed = k->resumed};

	snprintf(r.msg, sizeof(r.msg), "%s", msg ? msg : "");
	k->fn(k->ud, &r);
	free(k->rejected);
	free(k);
}

static void fail(struct conn *k, int err, const char *fmt, ...)
        LOG_PRINTF(3, 4);

static void fail(struct conn *k, int err, const char *fmt, ...)
{
	char msg[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	done(k, err, NULL, 0, msg);
}

/* A sessions operation ended: its failure ends the connect, but for a
 * sandbox HopX no longer has, which is answered as gone. */
static void on_op(void *ud, const struct sess_outcome *o)
{
	struct conn *k = ud;

	if (o->err != 0 && o->err != ERR_NOTFOUND) {
		done(k, o->err, NULL, 0, o->msg);
		return;
	}
	step(k);
}

static void on_resumed(void *ud, const struct sess_outcome *o)
{
	struct conn *k = ud;

	k->resumed = o->err == 0 && o->before == SBX_PAUSED;
	on_op(ud, o);
}

static void on_token(void *ud, const struct sess_outcome *o, const char *token,
                     int64_t expires_at)
{
	struct conn *k = ud;

	if (o->err != 0) {
		done(k, o->err, NULL, 0, o->msg);
	} else if (k->rejected && strcmp(token, k->rejected) == 0) {
		if (k->refreshed) {
			fail(k, ERR_BADRESP,
			     "HopX renewed the token of %s, and it is the one "
			     "the sandbox refused",
			     k->ref);
			return;
		}
		k->refreshed = 1;
		sessions_do(k->ss, k->id, SESS_REFRESH, 1, HOPX_PRIO_USER,
		            k->cause, on_op, k);
	} else {
		done(k, 0, token, expires_at, NULL);
	}
}

/* What the status allows: the next operation, or the answer. */
static void act(struct conn *k, const struct sess_view *v)
{
	switch (v->status) {
	case SBX_RUNNING:
		sessions_token(k->ss, k->id, k->min_ttl, on_token, k);
		break;
	case SBX_PAUSED:
		if (v->auto_resume || v->paused_by_agent)
			sessions_do(k->ss, k->id, SESS_RESUME, 0,
			            HOPX_PRIO_USER, k->cause, on_resumed, k);
		else
			fail(k, ERR_STATE,
			     "sandbox %s is paused and its auto-resume policy "
			     "is off: run 'hopxctl resume %s'",
			     k->ref, k->ref);
		break;
	case SBX_CREATING:
		sessions_wait(k->ss, k->id, SBX_RUNNING, CREATING_WAIT_MS,
		              on_op, k);
		break;
	case SBX_STOPPED:
		fail(k, ERR_STATE,
		     "sandbox %s is stopped: run 'hopxctl start %s' (hopxd "
		     "never starts one by itself)",
		     k->ref, k->ref);
		break;
	case SBX_GONE:
		fail(k, ERR_STATE,
		     "sandbox %s is gone at HopX: 'hopxctl detach %s' forgets "
		     "it; 'hopxctl create --name NAME --template T' makes a "
		     "new "
		     "one",
		     k->ref, k->ref);
		break;
	default:
		fail(k, ERR_STATE,
		     "HopX has not said what state sandbox %s is in yet: run "
		     "'hopxctl reconcile'",
		     k->ref);
		break;
	}
}

static void step(struct conn *k)
{
	struct sess_view v;

	if (++k->steps > MAX_STEPS) {
		fail(k, ERR_STATE, "sandbox %s keeps changing state; try again",
		     k->ref);
		return;
	}
	if (k->confirm) {
		k->confirm = 0;
		sessions_do(k->ss, k->id, SESS_SYNC, 0, HOPX_PRIO_USER,
		            STORE_CAUSE_REMOTE, on_op, k);
		return;
	}
	/* Asked before its chunk of the start's load came: load it now. */
	if (sessions_view(k->ss, k->id, &v) != 0 &&
	    (!sessions_loading(k->ss) || sessions_track(k->ss, k->id) != 0 ||
	     sessions_view(k->ss, k->id, &v) != 0)) {
		fail(k, ERR_NOTFOUND,
		     "no tracked sandbox %s: 'hopxctl ls' lists them", k->ref);
		return;
	}
	act(k, &v);
}

int connect_sandbox(struct sessions *ss, const char *id, const char *ref,
                    int64_t min_ttl_ms, unsigned flags, const char *rejected,
                    connect_fn fn, void *ud)
{
	struct conn *k = calloc(1, sizeof(*k));
	struct connect_result r = {.err = ERR_NOMEM};

	if (k == NULL ||
	    (rejected && (k->rejected = strdup(rejected)) == NULL)) {
		free(k);
		snprintf(r.msg, sizeof(r.msg), "out of memory");
		fn(ud, &r);
		return ERR_NOMEM;
	}
	k->ss = ss;
	snprintf(k->id, sizeof(k->id), "%s", id);
	snprintf(k->ref, sizeof(k->ref), "%s", ref ? ref : id);
	k->min_ttl = min_ttl_ms;
	k->confirm = (flags & CONNECT_CONFIRM) || rejected;
	k->cause = flags & CONNECT_TRAFFIC ? STORE_CAUSE_TRAFFIC
	                                   : STORE_CAUSE_USER;
	k->fn = fn;
	k->ud = ud;
	step(k);
	return 0;
}
