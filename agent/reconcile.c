#include "reconcile.h"

#include "adopt.h"
#include "agent.h"
#include "err.h"
#include "events.h"
#include "fleet.h"
#include "hopx.h"
#include "json.h"
#include "log.h"
#include "rfc3339.h"
#include "timing.h"
#include "sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

/* Below this many records a GET each costs no more than listing. */
#define LIST_MIN             4
#define PAGE_LIMIT           100
#define PAGES_MAX            1000 /* a full list (adoption) stops here */
#define REPORT_MAX           5000 /* sandbox lines kept in one report */
#define RETRY_FIRST_MS       2000
#define FLEET_FIRST_MS       10000 /* a fleet's first run, if this is the leader */
#define FLEET_ADOPT_RETRY_MS 2000
/* After a count of no other claim, this copy reads up to the count's
 * newest event: checked this often, for at most this long (the run's
 * cap, a second before it starts, keeps creates begun since out). */
#define FLEET_CATCH_UP_STEP_MS 20
#define FLEET_CATCH_UP_MS      500
/* The event log keeps this much history; pruned after each run. */
#define EVENTS_KEEP    100000
#define EVENTS_MAX_AGE (30LL * 86400 * 1000)
/* Proofs of access (tokens held for a sandbox): one never presented is
 * kept two days, one presented a month since its last use. */
#define PROOF_UNUSED_MS (2LL * 86400 * 1000)
#define PROOF_USED_MS   (30LL * 86400 * 1000)

struct entry {
	UT_hash_handle hh;
	struct run *run;
	char id[SBX_ID_MAX + 1];
	enum sbx_status before, after;
	const char *action; /* static string; NULL: nothing to do */
	int seen;           /* the list mentioned it */
	int err;
	char msg[256];
};

struct rwaiter {
	reconcile_fn fn;
	void *ud;
	struct rwaiter *next;
};

struct run {
	struct reconcile *rc;
	char trigger[16];
	int64_t started_at;
	unsigned attempts_before;
	enum hopx_prio prio;
	struct entry *entries; /* array of n */
	struct entry *byid;    /* hash over the array */
	size_t n, seen;
	int pending; /* list pages and actions out */
	int pages;
	int listing; /* a list page is out */
	int closing; /* the agent is stopping: free once pending is 0 */
	int err;     /* what stopped the run from learning HopX's state */
	char msg[256];
	struct adopt_run *adopt; /* open create intents; NULL: none */
	size_t adopted;
	struct rwaiter *waiters;
};

struct reconcile {
	struct agent *a;
	struct sessions *ss;
	struct hopx *hx;
	int64_t interval_ms;
	uv_timer_t timer;
	int64_t next_at;
	int failures; /* runs in a row that could not reach HopX */
	uint32_t rng;
	struct run *run;
	int first_done;
	int adopt_ok; /* a fleet's run may adopt (no other agent's claim) */
	/* adopt once the copy holds the registry at seq, by then; what a
	 * run adopts was made before the count was asked */
	int64_t adopt_seq, adopt_by, adopt_asked;
	int64_t *held; /* create intents whose answer is still to come */
	size_t nheld, capheld;
};

static int64_t now_wall(const struct reconcile *rc)
{
	return clock_wall_ms(rc->a->clk);
}

static void finish(struct run *run);
static void run_free(struct run *run, int err, const cJSON *rep);

/* One step less to wait for; the last one ends the run. */
static void step_done(struct run *run)
{
	if (--run->pending > 0)
		return;
	if (run->closing)
		run_free(run, ERR_STATE, NULL);
	else
		finish(run);
}

/* ---- per-sandbox decisions ---- */

/*
 * A refused key or an unreachable API fails the run (the first such
 * error names it): the caller sees why, and the next run comes sooner.
 */
static void note_err(struct entry *e)
{
	struct run *run = e->run;

	if (run->err == 0 && (e->err == ERR_AUTH || err_transient(e->err))) {
		run->err = e->err;
		snprintf(run->msg, sizeof(run->msg), "%s", e->msg);
	}
}

static void action_done(void *ud, const struct sess_outcome *o)
{
	struct entry *e = ud;
	struct run *run = e->run;
	struct sess_view v;

	if (run->closing) {
		step_done(run);
		return;
	}
	e->err = o->err;
	snprintf(e->msg, sizeof(e->msg), "%s", o->err ? o->msg : "");
	note_err(e);
	if (sessions_view(run->rc->ss, e->id, &v) == 0)
		e->after = v.status;
	step_done(run);
}

static void act(struct entry *e, enum sess_act a, const char *what)
{
	struct run *run = e->run;

	e->action = what;
	run->pending++;
	sessions_do(run->rc->ss, e->id, a, 0, run->prio, STORE_CAUSE_AGENT,
	            action_done, e);
}

/*
 * A running record keeps its token until the renewal rule the sessions
 * follow says it is due: one rule for both.
 */
static int token_good(const struct sess_view *v, int64_t now)
{
	return v->renew_at > now;
}

/*
 * In a fleet a token is renewed by the agent holding the sandbox's lease
 * (its sessions do it on time): the leader's reconcile, which sees every
 * sandbox, leaves the others' tokens alone, or both would renew them.
 */
static int renews(const struct entry *e)
{
	const struct agent *a = e->run->rc->a;

	return a->fleet == NULL || fleet_owns(a->fleet, e->id);
}

/* What a record needs now that its status is known. */
static void decide(struct entry *e)
{
	struct sess_view v;

	if (sessions_view(e->run->rc->ss, e->id, &v) != 0) {
		e->err = ERR_NOTFOUND;
		snprintf(e->msg, sizeof(e->msg), "detached meanwhile");
		return;
	}
	e->after = v.status;
	if (v.status == SBX_RUNNING &&
	    !token_good(&v, clock_wall_ms(hopx_clock(e->run->rc->hx)))) {
		if (renews(e))
			act(e, SESS_REFRESH, "refresh");
	} else if (v.status == SBX_PAUSED &&
	           (v.auto_resume || v.paused_by_agent))
		act(e, SESS_RESUME, "resume");
	else if (v.status == SBX_CREATING)
		e->action = "poll";
}

static void synced(void *ud, const struct sess_outcome *o)
{
	struct entry *e = ud;
	struct run *run = e->run;

	if (run->closing) {
		step_done(run);
		return;
	}
	if (o->err != 0) {
		e->err = o->err;
		snprintf(e->msg, sizeof(e->msg), "%s", o->msg);
		e->after = o->after;
		if (o->err == ERR_NOTFOUND)
			e->err = 0; /* gone is an answer, not a failure */
		note_err(e);
	} else {
		decide(e);
	}
	step_done(run);
}

/* GETs every record the list did not mention. */
static void get_rest(struct run *run)
{
	size_t i;

	run->pending++; /* held while queueing */
	for (i = 0; i < run->n; i++) {
		struct entry *e = &run->entries[i];

		if (e->seen)
			continue;
		run->pending++;
		sessions_do(run->rc->ss, e->id, SESS_SYNC, 0, run->prio,
		            STORE_CAUSE_REMOTE, synced, e);
	}
	step_done(run);
}

/* ---- listing ---- */

static void list_page(struct run *run, const char *cursor);

static void mark_all_stale(struct run *run)
{
	size_t i;

	for (i = 0; i < run->n; i++) {
		struct entry *e = &run->entries[i];

		e->err = run->err;
		snprintf(e->msg, sizeof(e->msg), "%s", run->msg);
		if (run->err != ERR_AUTH)
			store_sandbox_mark_stale(run->rc->a->store, e->id,
			                         run->msg);
	}
}

static void on_item(struct run *run, const struct hopx_sandbox *h)
{
	struct sess_view v;
	struct entry *e;

	HASH_FIND_STR(run->byid, h->id, e);
	if (e == NULL && run->adopt && sessions_view(run->rc->ss, h->id, &v))
		adopt_run_offer(run->adopt, h);
	if (e == NULL || e->seen)
		return;
	e->seen = 1;
	run->seen++;
	/* Busy: the operation in flight will report the status itself. */
	if (sessions_observe(run->rc->ss, h) == 0)
		decide(e);
	else
		e->after = e->before;
}

static void adopted(void *ud, const char *id)
{
	struct reconcile *rc = ud;

	sessions_track(rc->ss, id);
}

static int known(void *ud, const char *id)
{
	struct reconcile *rc = ud;
	struct sess_view v;

	return sessions_view(rc->ss, id, &v) == 0;
}

/* In a fleet, a create that made nothing gives its name back. */
static void made_nothing(void *ud, const char *name)
{
	struct reconcile *rc = ud;

	if (rc->a->fleet)
		fleet_drop_claim(rc->a->fleet, name);
}

/*
 * Adopts after the last page. A create started since the run began may
 * still be in flight, its sandbox in the list and untracked: then this
 * run leaves the intents to the next.
 */
static void settle_adoption(struct run *run)
{
	const struct adopt_hooks hk = {known, adopted, run->rc, made_nothing};

	if (run->rc->nheld > 0) {
		log_info("a create is in flight: adoption waits for the next "
		         "reconcile");
		return;
	}
	run->adopted = adopt_run_settle(
	        run->adopt, run->rc->a->store,
	        run->started_at + hopx_skew_ms(run->rc->hx, NULL), &hk);
}

static void on_list(void *ud, const struct hopx_result *r)
{
	struct run *run = ud;
	int i, more, grouped;

	sessions_note_api(run->rc->ss, r->err, r->message);
	run->listing = 0;
	if (r->err == ERR_AUTH ||
	    (r->err != 0 && r->err != ERR_NOTFOUND && r->err != ERR_INVAL)) {
		run->err = r->err;
		snprintf(run->msg, sizeof(run->msg),
		         "listing sandboxes: %s%s%s", err_str(r->err),
		         r->message[0] ? ": " : "", r->message);
		mark_all_stale(run);
		step_done(run);
		return;
	}
	/* what a page changes is one transaction, not one per sandbox */
	grouped = store_begin(run->rc->a->store) == 0;
	for (i = 0; i < r->nitems; i++)
		on_item(run, &r->items[i]);
	if (grouped && store_commit(run->rc->a->store) != 0)
		log_warn("cannot store what a list page said");
	/*
	 * Page on while a page may still save GETs, never past n pages;
	 * open create intents need the whole list.
	 */
	more = r->err == 0 && r->has_more && r->next_cursor[0] &&
	       (run->adopt ? run->pages < PAGES_MAX
	                   : run->n - run->seen >= LIST_MIN &&
	                             (size_t)run->pages < run->n);
	if (run->adopt && r->err == 0 && !r->has_more)
		settle_adoption(run);
	events_publish(run->rc->a);
	if (more)
		list_page(run, r->next_cursor);
	else
		get_rest(run);
	step_done(run); /* this page */
}

static void list_page(struct run *run, const char *cursor)
{
	char query[256];
	/* A page goes ahead of the actions the pages before it started:
	 * behind them, the pages would come one per queue's wait and leave
	 * the rest of the list to be read alone at the end. */
	struct hopx_call c = {.op = HOPX_LIST,
	                      .query = query,
	                      .prio = run->prio == HOPX_PRIO_SYNC
	                                      ? HOPX_PRIO_RESUME
	                                      : run->prio};

	snprintf(query, sizeof(query), "limit=%d%s%s", PAGE_LIMIT,
	         cursor ? "&cursor=" : "", cursor ? cursor : "");
	run->pages++;
	run->pending++;
	run->listing = 1;
	if (hopx_call(run->rc->hx, &c, on_list, run) != 0) {
		run->pending--;
		run->listing = 0;
		get_rest(run);
	}
}

/* ---- the report ---- */

static void add_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[RFC3339_MAX];

	if (rfc3339_format(ms, 1, buf, sizeof(buf)) == 0)
		json_add_str(o, key, buf);
}

static int changed(const struct entry *e)
{
	return e->action || e->err || e->before != e->after;
}

static cJSON *entry_json(const struct entry *e)
{
	cJSON *o = cJSON_CreateObject();

	json_add_str(o, "id", e->id);
	json_add_str(o, "before", sbx_status_str(e->before));
	json_add_str(o, "after", sbx_status_str(e->after));
	json_add_str(o, "action", e->action ? e->action : "none");
	if (e->err) {
		json_add_str(o, "error", err_name(e->err));
		json_add_str(o, "message", e->msg);
	}
	return o;
}

/* Counts by outcome, for the summary. */
static void count(const struct run *run, cJSON *sum)
{
	size_t i, unchanged = 0, errors = 0, by[SBX_STATUS_COUNT] = {0};
	cJSON *after;

	for (i = 0; i < run->n; i++) {
		const struct entry *e = &run->entries[i];

		unchanged += !changed(e);
		errors += e->err != 0;
		by[e->after]++;
	}
	json_add_i64(sum, "checked", (int64_t)run->n);
	json_add_i64(sum, "unchanged", (int64_t)unchanged);
	json_add_i64(sum, "errors", (int64_t)errors);
	after = cJSON_AddObjectToObject(sum, "after");
	for (i = 0; i < SBX_STATUS_COUNT; i++)
		if (by[i])
			json_add_i64(after, sbx_status_str((enum sbx_status)i),
			             (int64_t)by[i]);
}

static cJSON *report_json(const struct run *run, int64_t now)
{
	cJSON *o = cJSON_CreateObject(), *sum, *arr;
	size_t i, lines = 0;

	json_add_str(o, "trigger", run->trigger);
	add_time(o, "started_at", run->started_at);
	add_time(o, "finished_at", now);
	json_add_i64(o, "duration_ms", now - run->started_at);
	json_add_i64(
	        o, "requests",
	        (int64_t)(hopx_attempts(run->rc->hx) - run->attempts_before));
	json_add_i64(o, "list_pages", run->pages);
	if (run->adopted)
		json_add_i64(o, "adopted", (int64_t)run->adopted);
	json_add_str(o, "api", sess_api_str(sessions_api(run->rc->ss, NULL)));
	if (run->err) {
		json_add_str(o, "error", err_name(run->err));
		json_add_str(o, "message", run->msg);
	}
	sum = cJSON_AddObjectToObject(o, "summary");
	count(run, sum);
	arr = cJSON_AddArrayToObject(o, "sandboxes");
	for (i = 0; i < run->n; i++) {
		if (!changed(&run->entries[i]))
			continue;
		if (++lines > REPORT_MAX) {
			cJSON_AddBoolToObject(o, "truncated", 1);
			break;
		}
		cJSON_AddItemToArray(arr, entry_json(&run->entries[i]));
	}
	return o;
}

/* Stores the report and a "reconciled" event with its summary. */
static void store_report(struct run *run, const cJSON *rep, int64_t now)
{
	struct store *st = run->rc->a->store;
	cJSON *d = cJSON_CreateObject();
	char *text = json_print(rep), *dt;
	int64_t id = 0;

	if (text == NULL || store_report_add(st, run->trigger, run->started_at,
	                                     now, text, &id) != 0)
		log_error("cannot store the reconcile report");
	json_add_i64(d, "report", id);
	json_add_str(d, "trigger", run->trigger);
	cJSON_AddItemToObject(
	        d, "summary",
	        cJSON_Duplicate(cJSON_GetObjectItem(rep, "summary"), 1));
	if (run->err)
		json_add_str(d, "error", err_name(run->err));
	dt = json_print(d);
	store_event_append(st, NULL, "reconciled", STORE_CAUSE_AGENT, dt, NULL);
	free(dt);
	free(text);
	cJSON_Delete(d);
}

/* ---- runs ---- */

static void on_timer(uv_timer_t *t);
static int open_intents(struct reconcile *rc);

static void arm(struct reconcile *rc, int64_t delay)
{
	rc->next_at = now_wall(rc) + delay;
	uv_timer_start(&rc->timer, on_timer, (uint64_t)delay, 0);
}

/* After a failed run, retry sooner than the interval, backing off. */
static int64_t next_delay(struct reconcile *rc, int err)
{
	int64_t d;

	if (err == 0 || err == ERR_AUTH) {
		rc->failures = 0;
		return rc->interval_ms;
	}
	d = timing_backoff(++rc->failures, RETRY_FIRST_MS, rc->interval_ms,
	                   timing_rand(&rc->rng), RETRY_FIRST_MS / 2);
	return d < rc->interval_ms ? d : rc->interval_ms;
}

static void run_free(struct run *run, int err, const cJSON *rep)
{
	struct rwaiter *w, *next;

	for (w = run->waiters; w; w = next) {
		next = w->next;
		if (w->fn)
			w->fn(w->ud, err, rep);
		free(w);
	}
	HASH_CLEAR(hh, run->byid);
	adopt_run_free(run->adopt);
	free(run->entries);
	free(run);
}

static void finish(struct run *run)
{
	struct reconcile *rc = run->rc;
	int64_t now = now_wall(rc);
	cJSON *rep = report_json(run, now);

	store_report(run, rep, now);
	if (store_event_prune(rc->a->store, EVENTS_KEEP, EVENTS_MAX_AGE,
	                      NULL) != 0)
		log_warn("cannot prune the event log");
	if (store_proof_prune(rc->a->store, now - PROOF_UNUSED_MS,
	                      now - PROOF_USED_MS, NULL) != 0)
		log_warn("cannot prune the proofs of access");
	log_info("reconcile (%s): %zu checked, %s in %lld ms", run->trigger,
	         run->n, run->err ? run->msg : "done",
	         (long long)(now - run->started_at));
	rc->run = NULL;
	/* in a fleet, a create cut off here is settled as soon as it can */
	arm(rc, rc->a->fleet && open_intents(rc) > 0
	                ? FLEET_ADOPT_RETRY_MS
	                : next_delay(rc, run->err));
	if (!rc->first_done) {
		rc->first_done = 1;
		sessions_background(rc->ss, 1);
	}
	events_publish(rc->a);
	run_free(run, run->err, rep);
	cJSON_Delete(rep);
}

struct snap {
	struct run *run;
	size_t i;
};

static void take(void *ud, const char *id, const struct sess_view *v)
{
	struct snap *sn = ud;
	struct entry *e;

	if (v->status == SBX_GONE)
		return; /* gone stays gone: nothing left to ask */
	e = &sn->run->entries[sn->i++];
	e->run = sn->run;
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->before = e->after = v->status;
	HASH_ADD_STR(sn->run->byid, id, e);
}

static struct run *run_new(struct reconcile *rc, const char *trigger)
{
	struct run *run = calloc(1, sizeof(*run));
	size_t n = sessions_count(rc->ss);
	struct snap sn = {run, 0};

	if (run == NULL ||
	    (run->entries = calloc(n ? n : 1, sizeof(struct entry))) == NULL) {
		free(run);
		return NULL;
	}
	run->rc = rc;
	snprintf(run->trigger, sizeof(run->trigger), "%s", trigger);
	run->started_at = now_wall(rc);
	run->attempts_before = hopx_attempts(rc->hx);
	run->prio =
	        strcmp(trigger, "user") == 0 ? HOPX_PRIO_USER : HOPX_PRIO_SYNC;
	sessions_each(rc->ss, take, &sn);
	run->n = sn.i;
	return run;
}

static int add_rwaiter(struct run *run, reconcile_fn fn, void *ud)
{
	struct rwaiter *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return ERR_NOMEM;
	w->fn = fn;
	w->ud = ud;
	LL_APPEND(run->waiters, w);
	return 0;
}

int reconcile_run(struct reconcile *rc, const char *trigger, reconcile_fn fn,
                  void *ud)
{
	struct run *run;

	/* A record not yet loaded would look untracked (and adoptable). */
	sessions_load_all(rc->ss);
	run = rc->run;
	if (rc->hx == NULL)
		return ERR_AUTH;
	if (run)
		return add_rwaiter(run, fn, ud);
	if ((run = run_new(rc, trigger)) == NULL ||
	    add_rwaiter(run, fn, ud) != 0) {
		if (run)
			run_free(run, ERR_NOMEM, NULL);
		return ERR_NOMEM;
	}
	rc->run = run;
	uv_timer_stop(&rc->timer);
	log_info("reconcile (%s): %zu records", trigger, run->n);
	/* A create in flight could be taken for a lost one: wait for it. */
	if (rc->nheld == 0 && (rc->a->fleet == NULL || rc->adopt_ok) &&
	    adopt_run_open(rc->a->store, hopx_skew_ms(rc->hx, NULL),
	                   &run->adopt) != 0)
		log_warn("cannot read the open create intents");
	/* the gate saw every sandbox the fleet stored until it asked: only
	 * one made before that (HopX's clock, known to a second) may be
	 * ours */
	if (rc->a->fleet)
		adopt_run_cap(
		        run->adopt,
		        (rc->adopt_ok ? rc->adopt_asked : run->started_at) +
		                hopx_skew_ms(rc->hx, NULL) - 1000);
	run->pending++; /* held until the first step is queued */
	if (run->n >= LIST_MIN || run->adopt)
		list_page(run, NULL);
	else
		get_rest(run);
	step_done(run);
	return 0;
}

static int count_open(void *ud, const struct store_intent *in)
{
	(void)in;
	++*(int *)ud;
	return 0;
}

static int open_intents(struct reconcile *rc)
{
	int open = 0;

	store_intent_list_open(rc->a->store, count_open, &open);
	return open;
}

/*
 * A create this agent was cut off in is adopted by its own run, once no
 * other agent's create could have made the sandbox it would take.
 */
static void adopt_when_caught_up(struct reconcile *rc)
{
	if (rc->run || now_wall(rc) >= rc->adopt_by) {
		rc->adopt_by = 0; /* count again */
		arm(rc, FLEET_ADOPT_RETRY_MS);
		return;
	}
	if (!fleet_caught_up(rc->a->fleet, rc->adopt_seq)) {
		arm(rc, FLEET_CATCH_UP_STEP_MS);
		return;
	}
	rc->adopt_by = 0;
	rc->adopt_ok = 1;
	reconcile_run(rc, "start", NULL, NULL);
	rc->adopt_ok = 0;
}

static void claims_counted(void *ud, int err, int64_t n, int64_t seq)
{
	struct reconcile *rc = ud;

	if (err || n > 0 || rc->run) {
		arm(rc, FLEET_ADOPT_RETRY_MS);
		return;
	}
	rc->adopt_seq = seq;
	rc->adopt_by = now_wall(rc) + FLEET_CATCH_UP_MS;
	adopt_when_caught_up(rc);
}

static void on_timer(uv_timer_t *t)
{
	struct reconcile *rc = t->data;

	if (rc->a->fleet && open_intents(rc) > 0) {
		if (rc->adopt_by)
			adopt_when_caught_up(rc);
		else {
			rc->adopt_asked = now_wall(rc);
			fleet_foreign_claims(rc->a->fleet, claims_counted, rc);
		}
		return;
	}
	if (rc->a->fleet && !fleet_leader(rc->a->fleet)) {
		arm(rc, rc->interval_ms);
		return;
	}
	reconcile_run(rc, "periodic", NULL, NULL);
}

void reconcile_fleet_start(struct reconcile *rc)
{
	/* creates cut off here are settled first (on_timer) */
	int open = open_intents(rc);

	rc->first_done = 1;
	sessions_background(rc->ss, 1);
	arm(rc, open                               ? 0
	        : rc->interval_ms < FLEET_FIRST_MS ? rc->interval_ms
	                                           : FLEET_FIRST_MS);
}

int reconcile_create(struct agent *a, struct sessions *ss, struct hopx *hx,
                     int64_t interval_ms, struct reconcile **out)
{
	struct reconcile *rc = calloc(1, sizeof(*rc));

	if (rc == NULL)
		return ERR_NOMEM;
	rc->a = a;
	rc->ss = ss;
	rc->hx = hx;
	rc->interval_ms = interval_ms;
	rc->rng = (uint32_t)clock_wall_ms(a->clk) | 1u;
	uv_timer_init(a->loop, &rc->timer);
	rc->timer.data = rc;
	*out = rc;
	return 0;
}

static void rc_closed(uv_handle_t *h)
{
	free(h->data);
}

void reconcile_destroy(struct reconcile *rc)
{
	if (rc == NULL)
		return;
	/*
	 * The HopX client is gone (no list answer will come), but sessions
	 * still owe answers to the actions: free the run after the last.
	 */
	if (rc->run) {
		rc->run->closing = 1;
		rc->run->pending -= rc->run->listing;
		if (rc->run->pending <= 0)
			run_free(rc->run, ERR_STATE, NULL);
	}
	rc->run = NULL;
	free(rc->held);
	uv_close((uv_handle_t *)&rc->timer, rc_closed);
}

void reconcile_hold(struct reconcile *rc, int64_t intent, int on)
{
	size_t i;
	void *a;

	if (rc == NULL || intent <= 0)
		return;
	for (i = 0; i < rc->nheld; i++)
		if (rc->held[i] == intent)
			break;
	if (!on && i < rc->nheld)
		rc->held[i] = rc->held[--rc->nheld];
	if (!on || i < rc->nheld)
		return;
	if (rc->nheld == rc->capheld) {
		a = realloc(rc->held,
		            (rc->capheld * 2 + 4) * sizeof(*rc->held));
		if (a == NULL)
			return; /* the answer still writes the record */
		rc->held = a;
		rc->capheld = rc->capheld * 2 + 4;
	}
	rc->held[rc->nheld++] = intent;
}

void reconcile_settle_soon(struct reconcile *rc)
{
	if (rc == NULL || rc->a->fleet == NULL || rc->run ||
	    rc->next_at <= now_wall(rc) + FLEET_ADOPT_RETRY_MS)
		return;
	arm(rc, FLEET_ADOPT_RETRY_MS);
}

int reconcile_running(const struct reconcile *rc)
{
	return rc->run != NULL;
}

int64_t reconcile_next_at(const struct reconcile *rc)
{
	return rc->run ? 0 : rc->next_at;
}
