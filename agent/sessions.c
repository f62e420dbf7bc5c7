/*
 * Sessions: the in-memory map of tracked sandboxes and the state machine
 * that runs HopX operations on them one at a time. This file keeps their
 * lifetime, loading, the API state, views and shutdown; when a record acts
 * on its own is in sessions_sched.c (the rules themselves in timing.c),
 * the operations and what each answer means in sessions_ops.c, tokens and
 * waits in sessions_token.c.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

static const char *const act_names[SESS_NACTS] = {
        [SESS_SYNC] = "sync",     [SESS_REFRESH] = "refresh",
        [SESS_RESUME] = "resume", [SESS_PAUSE] = "pause",
        [SESS_START] = "start",   [SESS_STOP] = "stop",
        [SESS_KILL] = "kill",     [SESS_TIMEOUT] = "timeout"};

const char *sess_act_str(enum sess_act act)
{
	return act < SESS_NACTS ? act_names[act] : "?";
}

const char *sess_api_str(enum sess_api s)
{
	static const char *const names[] = {"off", "unknown", "ok",
	                                    "auth_error", "unreachable"};

	return s <= SESS_API_UNREACHABLE ? names[s] : "?";
}

int64_t sess_now(const struct sessions *ss)
{
	return clock_wall_ms(ss->clk);
}

void sess_schedule(struct sess *s);
void sess_op_start(struct sess *s);

/* ---- lifetime ---- */

void sess_cache_clear(struct sess *s)
{
	free(s->tok_text);
	free(s->host);
	s->tok_text = s->host = NULL;
}

void sess_unref(struct sess *s)
{
	if (--s->refs != 0)
		return;
	sess_cache_clear(s);
	free(s);
}

static void swait_closed(uv_handle_t *h)
{
	free(h->data);
}

void sess_swait_end(struct swait *w, int err, const char *msg)
{
	struct sess_outcome o = {.err = err, .after = w->s->status};

	snprintf(o.msg, sizeof(o.msg), "%s", msg ? msg : "");
	DL_DELETE(w->s->waits, w);
	uv_close((uv_handle_t *)&w->timer, swait_closed);
	w->fn(w->ud, &o);
}

static void fail_waiters(struct waiter *w, int err, const char *msg)
{
	struct sess_outcome o = {.err = err};
	struct waiter *next;

	snprintf(o.msg, sizeof(o.msg), "%s", msg);
	for (; w; w = next) {
		next = w->next;
		if (w->fn)
			w->fn(w->ud, &o);
		free(w);
	}
}

/* Ends a record's life here: nothing more runs for it. */
static void sess_drop(struct sess *s, int err, const char *msg)
{
	struct op *op, *tmp;

	s->dropped = 1;
	s->ss->nleased -= s->leases > 0;
	HASH_DEL(s->ss->map, s);
	DL_FOREACH_SAFE(s->queue, op, tmp)
	{
		DL_DELETE(s->queue, op);
		fail_waiters(op->waiters, err, msg);
		free(op);
	}
	if (s->cur) {
		fail_waiters(s->cur->waiters, err, msg);
		free(s->cur);
		s->cur = NULL;
	}
	while (s->waits)
		sess_swait_end(s->waits, err, msg);
	timerq_cancel(s->ss->tq, &s->due);
	sess_renew_unbook(s);
	sess_unref(s); /* the map's */
}

/* ---- loading from the store ---- */

static void sess_load(struct sess *s, const struct store_sandbox *r)
{
	sess_cache_clear(s);
	if (!r->token || r->token_expires_at != s->tok_exp)
		sess_renew_unbook(s); /* another token (another agent's) */
	s->status = r->status;
	s->tok_exp = r->token ? r->token_expires_at : 0;
	s->tok_issued = r->token ? r->token_issued_at : 0;
	s->expires_at = r->expires_at == STORE_NULL ? 0 : r->expires_at;
	s->keepalive_s = r->keepalive_s;
	s->idle_pause_s = r->idle_pause_s;
	s->on_expiry = r->on_expiry;
	s->timeout_s = r->timeout_seconds > 0 ? r->timeout_seconds : 0;
	s->auto_resume = r->auto_resume;
	s->pause_on_shutdown = r->pause_on_shutdown;
	s->paused_by_agent = r->paused_by_agent;
}

static int sess_add(struct sessions *ss, const struct store_sandbox *r)
{
	size_t n = strlen(r->id) + 1;
	struct sess *s = calloc(1, sizeof(*s) + n);

	/* room to queue every record's next action: scheduling never fails */
	if (s == NULL ||
	    timerq_reserve(ss->tq, (size_t)HASH_COUNT(ss->map) + 1) != 0) {
		free(s);
		return ERR_NOMEM;
	}
	s->ss = ss;
	memcpy(s->id, r->id, n);
	s->jitter = timing_rand(&ss->rng);
	s->used_at = sess_now(ss); /* idleness counts from when it is known */
	s->refs = 1;
	sess_load(s, r);
	HASH_ADD_STR(ss->map, id, s);
	sess_schedule(s);
	return 0;
}

struct sess *sess_find(const struct sessions *ss, const char *id)
{
	struct sess *s = NULL;

	if (id)
		HASH_FIND_STR(ss->map, id, s);
	return s;
}

/* sess_find(), loading the record first if its chunk has not come yet. */
struct sess *sess_lookup(struct sessions *ss, const char *id)
{
	struct sess *s = sess_find(ss, id);

	if (s || ss->loader == NULL || id == NULL ||
	    sessions_track(ss, id) != 0)
		return s;
	return sess_find(ss, id);
}

static int load_row(void *ud, const struct store_sandbox *r)
{
	struct sessions *ss = ud;
	struct loader *l = ss->loader;

	snprintf(l->after, sizeof(l->after), "%s", r->id);
	l->got++;
	return sess_find(ss, r->id) ? 0 : sess_add(ss, r);
}

static void loader_closed(uv_handle_t *h)
{
	free(h->data);
}

static void load_end(struct sessions *ss, int err)
{
	struct loader *l = ss->loader;

	ss->loader = NULL;
	uv_close((uv_handle_t *)&l->idle, loader_closed);
	/* The load read every row through a small cache and freed every
	 * row it built: hand that memory back, then the cache grows again
	 * for the reads clients make. */
	store_release_memory(ss->a->store);
	heap_trim();
	store_cache_kib(ss->a->store, STORE_CACHE_KIB);
	if (err != 0)
		log_error("cannot load the records: %s; %zu loaded",
		          err_str(err), (size_t)HASH_COUNT(ss->map));
	else
		log_info("%zu records loaded in %lld ms",
		         (size_t)HASH_COUNT(ss->map),
		         (long long)(clock_mono_ms(ss->a->clk) - l->t0));
	if (l->fn)
		l->fn(l->ud);
}

/* One chunk; the last (short) one ends the loading. */
static int load_chunk(struct sessions *ss)
{
	struct loader *l = ss->loader;
	struct store_filter f = {.after_id = l->after[0] ? l->after : NULL,
	                         .limit = LOAD_CHUNK};
	int e;

	l->got = 0;
	e = store_sandbox_list(ss->a->store, &f, load_row, ss);
	if (e != 0 || l->got < LOAD_CHUNK)
		load_end(ss, e);
	return e;
}

static void on_load_idle(uv_idle_t *h)
{
	load_chunk(((struct loader *)h->data)->ss);
}

void sessions_load_all(struct sessions *ss)
{
	while (ss->loader && load_chunk(ss) == 0)
		;
}

/* People hear of a skew past SKEW_WARN_MS once, and when it is gone. */
static void tell_skew(struct sessions *ss, int64_t skew)
{
	int past = llabs(skew) >= SKEW_WARN_MS;
	cJSON *d;
	char *text, msg[160];

	if (past == ss->skew_told)
		return;
	ss->skew_told = past;
	if (past)
		snprintf(
		        msg, sizeof(msg),
		        "this machine's clock is %lld s %s HopX's: token times "
		        "follow HopX's clock (fix it with NTP: timedatectl "
		        "set-ntp true)",
		        (long long)(llabs(skew) / 1000),
		        skew > 0 ? "behind" : "ahead of");
	else
		snprintf(msg, sizeof(msg),
		         "this machine's clock agrees with "
		         "HopX's again");
	if (past)
		log_warn("%s", msg);
	else
		log_info("%s", msg);
	d = cJSON_CreateObject();
	json_add_str(d, "state", sess_api_str(ss->api));
	json_add_i64(d, "clock_skew_ms", skew);
	json_add_str(d, "message", msg);
	text = json_print(d);
	cJSON_Delete(d);
	store_event_append(ss->a->store, NULL, "api", STORE_CAUSE_AGENT, text,
	                   NULL);
	free(text);
}

/* HopX's time moved against ours: what was timed on it is planned anew. */
static void on_skew(void *ud, int64_t before, int64_t after)
{
	struct sessions *ss = ud;

	log_info("HopX's clock is %+lld ms from this machine's (was %+lld)",
	         (long long)after, (long long)before);
	tell_skew(ss, after);
	sessions_replan(ss);
}

int sessions_create(struct agent *a, struct hopx *hx, void (*loaded)(void *ud),
                    void *ud, struct sessions **out)
{
	struct sessions *ss = calloc(1, sizeof(*ss));
	struct loader *l = calloc(1, sizeof(*l));
	const struct clock *clk = hx ? hopx_clock(hx) : a->clk;

	if (ss == NULL || l == NULL ||
	    timerq_new(a->loop, clk, sess_due, ss, &ss->tq) != 0) {
		free(ss);
		free(l);
		return ERR_NOMEM;
	}
	ss->a = a;
	ss->hx = hx;
	ss->clk = clk;
	if (hx)
		hopx_on_skew(hx, on_skew, ss);
	ss->rng = (uint32_t)clock_wall_ms(a->clk) | 1u;
	ss->api = hx ? SESS_API_UNKNOWN : SESS_API_OFF;
	ss->held = 1;
	if (hx == NULL)
		snprintf(ss->api_msg, sizeof(ss->api_msg),
		         "no HopX API key: set HOPX_API_KEY or "
		         "--api-key-file");
	*l = (struct loader){
	        .ss = ss, .t0 = clock_mono_ms(a->clk), .fn = loaded, .ud = ud};
	store_cache_kib(a->store, LOAD_CACHE_KIB);
	uv_idle_init(a->loop, &l->idle);
	l->idle.data = l;
	uv_idle_start(&l->idle, on_load_idle);
	ss->loader = l;
	*out = ss;
	return 0;
}

int sessions_loading(const struct sessions *ss)
{
	return ss->loader != NULL;
}

void sessions_destroy(struct sessions *ss)
{
	struct sess *s, *tmp;

	if (ss == NULL)
		return;
	if (ss->loader)
		uv_close((uv_handle_t *)&ss->loader->idle, loader_closed);
	HASH_ITER(hh, ss->map, s, tmp)
	{
		/* The HopX client was destroyed first: no answer will come. */
		if (s->cur)
			s->refs--;
		sess_drop(s, ERR_STATE, "hopxd is shutting down");
	}
	timerq_close(ss->tq);
	sess_renew_load_free(ss);
	free(ss->batch);
	free(ss);
}

int sessions_track(struct sessions *ss, const char *id)
{
	struct store_sandbox r;
	struct sess *s = sess_find(ss, id);
	int e = store_sandbox_get(ss->a->store, id, &r);

	if (e == 0 && s) {
		sess_load(s, &r);
		sess_schedule(s);
	} else if (e == 0) {
		e = sess_add(ss, &r);
	}
	store_sandbox_finish(&r);
	return e;
}

void sessions_forget(struct sessions *ss, const char *id)
{
	struct sess *s = sess_find(ss, id);

	if (s)
		sess_drop(s, ERR_NOTFOUND, "the sandbox was detached");
}

/* ---- the API state ---- */

void sessions_note_api(struct sessions *ss, int err, const char *msg)
{
	enum sess_api st = SESS_API_OK;
	cJSON *d;
	char *text;

	if (err == ERR_AUTH)
		st = SESS_API_AUTH;
	else if (err == ERR_NET || err == ERR_TIMEOUT || err == ERR_UNAVAIL ||
	         err == ERR_BADRESP)
		st = SESS_API_UNREACHABLE;
	if (st == SESS_API_OK)
		msg = "";
	if (st == ss->api && strcmp(ss->api_msg, msg ? msg : "") == 0)
		return;
	if (st != ss->api && st == SESS_API_OK)
		log_info("HopX API: ok");
	else if (st != ss->api)
		log_warn("HopX API: %s: %s", sess_api_str(st), msg ? msg : "");
	snprintf(ss->api_msg, sizeof(ss->api_msg), "%s", msg ? msg : "");
	if (st == ss->api)
		return;
	ss->api = st;
	d = cJSON_CreateObject();
	json_add_str(d, "state", sess_api_str(st));
	if (*ss->api_msg)
		json_add_str(d, "error", ss->api_msg);
	text = json_print(d);
	cJSON_Delete(d);
	store_event_append(ss->a->store, NULL, "api", STORE_CAUSE_REMOTE, text,
	                   NULL);
	free(text);
}

enum sess_api sessions_api(const struct sessions *ss, const char **msg)
{
	if (msg)
		*msg = ss->api_msg;
	return ss->api;
}

/* ---- views ---- */

int sessions_observe(struct sessions *ss, const struct hopx_sandbox *h)
{
	struct sess *s = sess_lookup(ss, h->id);

	if (s == NULL)
		return ERR_NOTFOUND;
	if (s->cur)
		return ERR_BUSY;
	sess_observe_full(s, h, STORE_CAUSE_REMOTE);
	sess_schedule(s);
	return 0;
}

static void view_of(const struct sess *s, struct sess_view *v)
{
	v->leases = s->leases;
	v->idle_at = sess_idle_at(s);
	v->status = s->status;
	v->token_expires_at = s->tok_exp;
	v->token_issued_at = s->tok_issued;
	v->renew_at = sess_renew_at(s);
	v->auto_resume = s->auto_resume;
	v->paused_by_agent = s->paused_by_agent;
	v->pause_on_shutdown = s->pause_on_shutdown;
	v->busy = s->cur != NULL;
}

int sessions_view(const struct sessions *ss, const char *id,
                  struct sess_view *out)
{
	const struct sess *s = sess_find(ss, id);

	if (s == NULL)
		return ERR_NOTFOUND;
	view_of(s, out);
	return 0;
}

void sessions_each(const struct sessions *ss, sess_each_fn fn, void *ud)
{
	const struct sess *s, *tmp;
	struct sess_view v;

	HASH_ITER(hh, ss->map, s, tmp)
	{
		view_of(s, &v);
		fn(ud, s->id, &v);
	}
}

/* A use: the idle period starts again, here and (in a fleet) on the
 * agent that may pause it. */
static void touch(struct sessions *ss, struct sess *s)
{
	s->used_at = sess_now(ss);
	if (ss->a->fleet && s->idle_pause_s > 0)
		fleet_note_use(ss->a->fleet, s->id);
}

void sessions_use(struct sessions *ss, const char *id)
{
	struct sess *s = sess_find(ss, id);

	/* No re-planning here (the token broker's path): an idle timer that
	 * fires early re-arms itself from used_at. */
	if (s)
		touch(ss, s);
}

void sessions_used_elsewhere(struct sessions *ss, const char *id,
                             int64_t ago_ms)
{
	struct sess *s = sess_find(ss, id);
	int64_t at = sess_now(ss) - ago_ms;

	if (s && at > s->used_at)
		s->used_at = at;
}

void sessions_note_held(struct sessions *ss)
{
	struct sess *s, *tmp;

	if (ss->nleased == 0) /* the usual case: no walk of every record */
		return;
	HASH_ITER(hh, ss->map, s, tmp)
	{
		if (s->leases > 0 && s->idle_pause_s > 0)
			fleet_note_use(ss->a->fleet, s->id);
	}
}

int sessions_lease(struct sessions *ss, const char *id, int delta)
{
	struct sess *s = sess_lookup(ss, id);

	if (s == NULL)
		return ERR_NOTFOUND;
	ss->nleased -= s->leases > 0;
	s->leases += delta;
	if (s->leases < 0)
		s->leases = 0;
	ss->nleased += s->leases > 0;
	touch(ss, s); /* idle from the moment it is let go */
	sess_schedule(s);
	return 0;
}

int sessions_policy_changed(struct sessions *ss, const char *id)
{
	return sess_lookup(ss, id) ? sessions_track(ss, id) : ERR_NOTFOUND;
}

size_t sessions_count(const struct sessions *ss)
{
	return HASH_COUNT(ss->map);
}

#define NEXT_RENEWAL_REUSE_MS 1000

int64_t sessions_next_renewal(struct sessions *ss)
{
	const struct sess *s, *tmp;
	int64_t best = 0, at, now = clock_mono_ms(ss->a->clk);

	if (ss->next_renewal_mono &&
	    now - ss->next_renewal_mono < NEXT_RENEWAL_REUSE_MS)
		return ss->next_renewal;
	HASH_ITER(hh, ss->map, s, tmp)
	{
		if (s->status != SBX_RUNNING || s->tok_exp == 0)
			continue;
		at = sess_renew_at(s);
		if (at < s->retry_at)
			at = s->retry_at;
		if (best == 0 || at < best)
			best = at;
	}
	ss->next_renewal = best;
	ss->next_renewal_mono = now;
	return best;
}

void sessions_replan(struct sessions *ss)
{
	struct sess *s, *tmp;

	ss->next_renewal_mono = 0;
	HASH_ITER(hh, ss->map, s, tmp)
	{
		sess_schedule(s);
	}
}

void sessions_background(struct sessions *ss, int on)
{
	ss->held = !on;
	sessions_replan(ss);
}

/* ---- shutdown ---- */

struct shut {
	struct sessions *ss;
	char id[SBX_ID_MAX + 1];
};

static void shut_one_done(void *ud, const struct sess_outcome *o)
{
	struct shut *p = ud;
	struct sessions *ss = p->ss;
	struct sess *s = sess_find(ss, p->id);

	if (o->err == 0 && s &&
	    store_sandbox_set_paused_by_agent(ss->a->store, p->id, 1) == 0)
		s->paused_by_agent = 1;
	else if (o->err != 0)
		log_warn("could not pause %s at shutdown: %s", p->id, o->msg);
	free(p);
	if (--ss->pauses_left == 0 && ss->shut_fn)
		ss->shut_fn(ss->shut_ud);
}

static void shut_pause(struct sessions *ss, struct sess *s)
{
	struct shut *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return;
	p->ss = ss;
	snprintf(p->id, sizeof(p->id), "%s", s->id);
	ss->pauses_left++;
	sessions_do(ss, s->id, SESS_PAUSE, 0, HOPX_PRIO_USER, STORE_CAUSE_AGENT,
	            shut_one_done, p);
}

void sessions_shutdown(struct sessions *ss, void (*fn)(void *ud), void *ud)
{
	struct sess *s, *tmp;

	sessions_load_all(ss);
	ss->stopping = 1;
	ss->pauses_left = 1; /* held until every pause is queued */
	ss->shut_fn = fn;
	ss->shut_ud = ud;
	HASH_ITER(hh, ss->map, s, tmp)
	{
		timerq_cancel(ss->tq, &s->due);
		if (ss->hx && s->pause_on_shutdown && s->status == SBX_RUNNING)
			shut_pause(ss, s);
	}
	if (--ss->pauses_left == 0 && fn)
		fn(ud);
}
