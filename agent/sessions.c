/*
 * Sessions: the in-memory map of tracked sandboxes and the state machine
 * that runs HopX operations on them one at a time. The libuv and HopX
 * callbacks are thin; the rules of when to act live in timing.c and the
 * rules of what an answer means in handle_answer() and its helpers.
 */
#include "sessions.h"

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

/* A token younger than this is not refreshed again: it would not last. */
#define REFRESH_MIN_AGE_MS 1000
/* A handed-out token lasts at least this long, whatever was asked. */
#define TOKEN_MIN_TTL_MS 1000
/* SESS_PAUSE's arg when the agent pauses a sandbox nobody uses, and
 * when it pauses one before HopX's deadline (on_expiry pause). */
#define PAUSE_IDLE           1
#define PAUSE_EXPIRY         2
#define EXPIRY_MARGIN_MIN_MS 2000
#define EXPIRY_MARGIN_MAX_MS 60000
#define RETRY_BASE_MS        1000
#define RETRY_CAP_MS         60000
/* A renewal retries within a third of what is left of its token. */
#define RETRY_MIN_MS  500
#define AUTH_RETRY_MS 60000
/* Records loaded per loop iteration at start (~5 ms of work). */
#define LOAD_CHUNK 1000
/* The page cache while loading: a scan reads each page once. */
#define LOAD_CACHE_KIB 2048

struct waiter {
	sess_done_fn fn;
	void *ud;
	struct waiter *next;
};

struct op {
	enum sess_act act;
	int64_t arg;
	enum hopx_prio prio;
	enum store_cause cause;
	int step;      /* RESUME, START: 1 once the token is being refreshed */
	int probe;     /* a GET is out to learn why the call was refused */
	int probe_err; /* ... and the error that refused it */
	int probed;
	enum sbx_status before;
	struct waiter *waiters;
	struct op *prev, *next;
};

struct swait {
	struct sess *s;
	enum sbx_status want;
	uv_timer_t timer;
	sess_done_fn fn;
	void *ud;
	struct swait *prev, *next;
};

struct sess {
	UT_hash_handle hh;
	struct sessions *ss;
	enum sbx_status status;
	int64_t tok_issued, tok_exp; /* wall ms; 0: no token */
	int64_t expires_at;          /* HopX's kill deadline; 0: none */
	int64_t keepalive_s;
	int64_t idle_pause_s; /* policy: pause when unused this long; 0 off */
	int64_t timeout_s;    /* HopX's kill period, re-armed while leased */
	int64_t used_at;      /* last use (a token asked, a lease let go) */
	int leases;           /* clients holding it in use */
	int on_expiry;        /* STORE_EXPIRY_*: what HopX's deadline does */
	int64_t pause_after;  /* the agent's own pauses wait (one refused) */
	int auto_resume, pause_on_shutdown, paused_by_agent;
	uint32_t jitter; /* where in the renewal window this one renews */
	int fails;       /* consecutive failed operations */
	int64_t wait_ms; /* Retry-After of the last failed answer, or -1 */
	int polls;       /* polls while creating */
	int64_t retry_at;
	int64_t poll_at;
	uv_timer_t timer;
	struct op *cur;   /* in flight */
	struct op *queue; /* waiting their turn */
	struct swait *waits;
	int refs; /* the timer handle, a call in flight, a running finish */
	int dropped;
	/* The stored token and host, once a client asked (NULL: ask the
	 * store): the token broker's answer without SQL. Emptied by every
	 * change, so it is never newer or older than the store. */
	char *tok_text, *host;
	char id[]; /* sized to fit: 100k records are 100k of these */
};

/* The records not yet in memory: a keyset cursor over the store. */
struct loader {
	uv_idle_t idle;
	struct sessions *ss;
	char after[SBX_ID_MAX + 1];
	size_t got; /* rows in the current chunk */
	int64_t t0;
	void (*fn)(void *ud);
	void *ud;
};

struct sessions {
	struct agent *a;
	struct loader *loader; /* NULL once every record is loaded */
	int64_t next_renewal, next_renewal_mono; /* and when it was found */
	struct hopx *hx;
	/* HopX's time (hopx_clock): token and deadline times are HopX's, so
	 * every decision about them is made on its clock. */
	const struct clock *clk;
	int skew_told; /* the skew was past SKEW_WARN_MS when last told */
	struct sess *map;
	uint32_t rng;
	enum sess_api api;
	char api_msg[256];
	int stopping;
	int held; /* background work waits for the first reconcile */
	int pauses_left;
	void (*shut_fn)(void *ud);
	void *shut_ud;
};

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

static int64_t now_wall(const struct sessions *ss)
{
	return clock_wall_ms(ss->clk);
}

static void schedule(struct sess *s);
static void op_start(struct sess *s);

/* ---- lifetime ---- */

static void cache_clear(struct sess *s)
{
	free(s->tok_text);
	free(s->host);
	s->tok_text = s->host = NULL;
}

static void sess_unref(struct sess *s)
{
	if (--s->refs != 0)
		return;
	cache_clear(s);
	free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
	sess_unref(h->data);
}

static void swait_closed(uv_handle_t *h)
{
	free(h->data);
}

static void swait_end(struct swait *w, int err, const char *msg)
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
		swait_end(s->waits, err, msg);
	uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

/* ---- loading from the store ---- */

static void sess_load(struct sess *s, const struct store_sandbox *r)
{
	cache_clear(s);
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

	if (s == NULL)
		return ERR_NOMEM;
	s->ss = ss;
	memcpy(s->id, r->id, n);
	s->jitter = timing_rand(&ss->rng);
	s->used_at = now_wall(ss); /* idleness counts from when it is known */
	s->refs = 1;
	uv_timer_init(ss->a->loop, &s->timer);
	s->timer.data = s;
	sess_load(s, r);
	HASH_ADD_STR(ss->map, id, s);
	schedule(s);
	return 0;
}

static struct sess *find(const struct sessions *ss, const char *id)
{
	struct sess *s = NULL;

	if (id)
		HASH_FIND_STR(ss->map, id, s);
	return s;
}

/* find(), loading the record first if its chunk has not come yet. */
static struct sess *lookup(struct sessions *ss, const char *id)
{
	struct sess *s = find(ss, id);

	if (s || ss->loader == NULL || id == NULL ||
	    sessions_track(ss, id) != 0)
		return s;
	return find(ss, id);
}

static int load_row(void *ud, const struct store_sandbox *r)
{
	struct sessions *ss = ud;
	struct loader *l = ss->loader;

	snprintf(l->after, sizeof(l->after), "%s", r->id);
	l->got++;
	return find(ss, r->id) ? 0 : sess_add(ss, r);
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

	if (ss == NULL || l == NULL) {
		free(ss);
		free(l);
		return ERR_NOMEM;
	}
	ss->a = a;
	ss->hx = hx;
	ss->clk = hx ? hopx_clock(hx) : a->clk;
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
	free(ss);
}

int sessions_track(struct sessions *ss, const char *id)
{
	struct store_sandbox r;
	struct sess *s = find(ss, id);
	int e = store_sandbox_get(ss->a->store, id, &r);

	if (e == 0 && s) {
		sess_load(s, &r);
		schedule(s);
	} else if (e == 0) {
		e = sess_add(ss, &r);
	}
	store_sandbox_finish(&r);
	return e;
}

void sessions_forget(struct sessions *ss, const char *id)
{
	struct sess *s = find(ss, id);

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

/* ---- scheduling background work ---- */

/* When this sandbox's token is due for renewal (wall ms); 0: no token. */
static int64_t renew_at(const struct sess *s)
{
	return s->tok_exp > 0
	               ? timing_renew_at(s->tok_issued, s->tok_exp, s->jitter)
	               : 0;
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
static int64_t idle_at(const struct sess *s)
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
		earliest(&due, act, arg, s->tok_exp > 0 ? renew_at(s) : now,
		         SESS_REFRESH, 0);
	if (period > 0)
		earliest(&due, act, arg,
		         timing_keepalive_at(s->expires_at, period, now),
		         SESS_TIMEOUT, period);
	earliest(&due, act, arg, pause_due(s, idle_at(s)), SESS_PAUSE,
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
static int64_t retry_delay(struct sess *s, int64_t now)
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

static void on_due(uv_timer_t *t)
{
	struct sess *s = t->data;
	enum sess_act act = SESS_SYNC;
	int64_t now = now_wall(s->ss), arg;

	if (s->cur)
		return; /* op_finish schedules again */
	/*
	 * The loop's clock is monotonic and whole milliseconds, due is wall
	 * time: a timer may fire a hair early. Re-arm, never drop it (a
	 * dropped timer left renewals to the next reconcile).
	 */
	if (next_due(s, now, &act, &arg) > now) {
		schedule(s);
		return;
	}
	if (act == SESS_SYNC)
		s->poll_at = now + timing_poll_delay(++s->polls);
	sessions_do(s->ss, s->id, act, arg,
	            act == SESS_SYNC ? HOPX_PRIO_SYNC : HOPX_PRIO_RENEW,
	            STORE_CAUSE_AGENT, on_bg_done, NULL);
}

static void schedule(struct sess *s)
{
	enum sess_act act = SESS_SYNC;
	int64_t now = now_wall(s->ss), due, arg;

	uv_timer_stop(&s->timer);
	if (s->dropped || s->cur || s->ss->hx == NULL || s->ss->stopping ||
	    s->ss->held)
		return;
	due = next_due(s, now, &act, &arg);
	if (due == INT64_MAX)
		return;
	uv_timer_start(&s->timer, on_due, due > now ? (uint64_t)(due - now) : 0,
	               0);
}

/* ---- applying what HopX said ---- */

static void check_waits(struct sess *s)
{
	struct swait *w, *tmp;

	DL_FOREACH_SAFE(s->waits, w, tmp)
	{
		if (w->want == s->status)
			swait_end(w, 0, NULL);
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
	m->vcpu = m->memory_mb = m->disk_mb = STORE_NULL;
}

/* Records a status (and metadata) HopX confirmed. */
static void set_status(struct sess *s, enum sbx_status st,
                       const struct store_meta *meta, enum store_cause cause,
                       const char *why)
{
	cache_clear(s);
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
			s->poll_at = now_wall(s->ss) + timing_poll_delay(0);
	}
	s->status = st;
	if (meta)
		s->expires_at =
		        meta->expires_at == STORE_NULL ? 0 : meta->expires_at;
	check_waits(s);
}

static void put_token(struct sess *s, const struct hopx_sandbox *h,
                      enum store_cause cause)
{
	int64_t now = now_wall(s->ss);
	int replaced = 0, e;
	cJSON *d;
	char *text;

	if (h->token[0] == '\0' || h->token_expires_at <= now)
		return;
	e = store_token_put(s->ss->a->store, s->id, h->token,
	                    h->token_expires_at, now, &replaced);
	if (e != 0 || !replaced)
		return;
	cache_clear(s);
	s->tok_exp = h->token_expires_at;
	s->tok_issued = now;
	s->jitter = timing_rand(&s->ss->rng);
	d = cJSON_CreateObject();
	json_add_i64(d, "expires_at", h->token_expires_at);
	text = json_print(d);
	cJSON_Delete(d);
	store_event_append(s->ss->a->store, s->id, "token", cause, text, NULL);
	free(text);
}

static void observe_full(struct sess *s, const struct hopx_sandbox *h,
                         enum store_cause cause)
{
	cache_clear(s);
	struct store_meta m;

	meta_from(&m, h);
	set_status(s, h->status, &m, cause, NULL);
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

	set_status(s, s->status, &m, cause, NULL);
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
	int64_t now = now_wall(s->ss);
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(o.msg, sizeof(o.msg), fmt, ap);
		va_end(ap);
	}
	o.after = s->status;
	s->cur = NULL;
	s->fails = err == 0 ? 0 : s->fails + 1;
	s->retry_at = 0;
	if (err_transient(err))
		s->retry_at = now + retry_delay(s, now);
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
		op_start(s);
	else if (!s->dropped)
		schedule(s);
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
	                      .prio = op->prio};
	int e;

	s->refs++;
	if ((e = hopx_call(s->ss->hx, &c, on_answer, s)) != 0) {
		s->refs--;
		op_finish(s, e, "cannot queue the call: %s", err_str(e));
	}
}

static void op_start(struct sess *s)
{
	struct op *op = s->queue;
	int64_t now = now_wall(s->ss);

	DL_DELETE(s->queue, op);
	s->cur = op;
	op->before = s->status;
	uv_timer_stop(&s->timer);
	/* A token just issued (e.g. by the resume queued before) is fresh. */
	if (op->act == SESS_REFRESH && s->tok_exp > now &&
	    now - s->tok_issued < REFRESH_MIN_AGE_MS) {
		op_finish(s, 0, NULL);
		return;
	}
	op_issue(s);
}

/* Whether the session now holds a token with life left on HopX's clock. */
static int token_usable(const struct sess *s)
{
	return s->tok_exp - now_wall(s->ss) >= TOKEN_MIN_TTL_MS;
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
	          s->id, (long long)(h->token_expires_at - now_wall(s->ss)),
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
		set_status(s, SBX_RUNNING, NULL, cause,
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
		set_status(s, SBX_PAUSED, NULL, cause,
		           op->arg == PAUSE_IDLE     ? "idle"
		           : op->arg == PAUSE_EXPIRY ? "deadline"
		                                     : "paused");
		break;
	case HOPX_STOP:
		set_status(s, SBX_STOPPED, NULL, cause, "stopped");
		break;
	case HOPX_DELETE:
		set_status(s, SBX_GONE, NULL, cause, "killed");
		break;
	case HOPX_TIMEOUT:
		set_timeout(s, &r->sbx, cause);
		break;
	default:
		observe_full(s, &r->sbx, cause);
		break;
	}
	op_finish(s, 0, NULL);
}

static void mark_gone(struct sess *s)
{
	set_status(s, SBX_GONE, NULL, STORE_CAUSE_REMOTE,
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
	observe_full(s, &r->sbx, STORE_CAUSE_REMOTE);
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

static void on_answer(void *ud, const struct hopx_result *r)
{
	struct sess *s = ud;
	struct store *st = s->ss->a->store;
	int grouped, e;

	if (s->dropped) {
		sess_unref(s);
		return;
	}
	/* The call's reference is held until the answer is handled. */
	sessions_note_api(s->ss, r->err, r->message);
	/* Everything one answer changes is one transaction (one fsync). */
	grouped = store_begin(st) == 0;
	if (s->cur->probe)
		probe_answered(s, r);
	else if (r->err == 0)
		answered_ok(s, r);
	else
		answered_err(s, r);
	if (grouped && (e = store_commit(st)) != 0) {
		log_error("%s: cannot store what HopX answered: %s", s->id,
		          err_str(e));
		/* Memory follows the database: a token not stored is not
		 * counted on, so its renewal is asked for again. */
		if (!s->dropped)
			sessions_track(s->ss, s->id);
	}
	events_publish(s->ss->a);
	sess_unref(s);
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

static int refuse(sess_done_fn fn, void *ud, int err, const char *msg)
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
	struct sess *s = lookup(ss, id);
	struct op *op;

	if (s == NULL)
		return refuse(fn, ud, ERR_NOTFOUND, "no such tracked sandbox");
	if (ss->hx == NULL)
		return refuse(fn, ud, ERR_AUTH, ss->api_msg);
	if ((op = find_joinable(s, act, arg)) != NULL) {
		if (op->prio > prio)
			op->prio = prio; /* only matters while queued here */
		return add_waiter(op, fn, ud) == 0
		               ? 0
		               : refuse(fn, ud, ERR_NOMEM, "out of memory");
	}
	if ((op = calloc(1, sizeof(*op))) == NULL ||
	    add_waiter(op, fn, ud) != 0) {
		free(op);
		return refuse(fn, ud, ERR_NOMEM, "out of memory");
	}
	op->act = act;
	op->arg = arg;
	op->prio = prio;
	op->cause = cause;
	DL_APPEND(s->queue, op);
	if (s->cur == NULL)
		op_start(s);
	return 0;
}

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
	return r->token && token_serves(now_wall(ss), r->token_expires_at,
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
		cache_clear(s);
}

int sessions_token_cached(const struct sessions *ss, const char *id,
                          int64_t min_ttl_ms, struct sess_token *out)
{
	const struct sess *s = find(ss, id);

	if (s == NULL || s->status != SBX_RUNNING || s->tok_text == NULL ||
	    !token_serves(now_wall(ss), s->tok_exp, s->tok_issued, min_ttl_ms))
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
	struct sess *s = lookup(ss, id);
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

	swait_end(w, ERR_TIMEOUT, "timed out");
}

int sessions_wait(struct sessions *ss, const char *id, enum sbx_status want,
                  int64_t timeout_ms, sess_done_fn fn, void *ud)
{
	struct sess *s = lookup(ss, id);
	struct swait *w;

	if (s == NULL)
		return refuse(fn, ud, ERR_NOTFOUND, "no such tracked sandbox");
	if (s->status == want) {
		struct sess_outcome o = {.before = want, .after = want};

		fn(ud, &o);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return refuse(fn, ud, ERR_NOMEM, "out of memory");
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

/* ---- views ---- */

int sessions_observe(struct sessions *ss, const struct hopx_sandbox *h)
{
	struct sess *s = lookup(ss, h->id);

	if (s == NULL)
		return ERR_NOTFOUND;
	if (s->cur)
		return ERR_BUSY;
	observe_full(s, h, STORE_CAUSE_REMOTE);
	schedule(s);
	return 0;
}

static void view_of(const struct sess *s, struct sess_view *v)
{
	v->leases = s->leases;
	v->idle_at = idle_at(s);
	v->status = s->status;
	v->token_expires_at = s->tok_exp;
	v->token_issued_at = s->tok_issued;
	v->renew_at = renew_at(s);
	v->auto_resume = s->auto_resume;
	v->paused_by_agent = s->paused_by_agent;
	v->pause_on_shutdown = s->pause_on_shutdown;
	v->busy = s->cur != NULL;
}

int sessions_view(const struct sessions *ss, const char *id,
                  struct sess_view *out)
{
	const struct sess *s = find(ss, id);

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

void sessions_use(struct sessions *ss, const char *id)
{
	struct sess *s = find(ss, id);

	/* No re-planning here (the token broker's path): an idle timer that
	 * fires early re-arms itself from used_at. */
	if (s)
		s->used_at = now_wall(ss);
}

int sessions_lease(struct sessions *ss, const char *id, int delta)
{
	struct sess *s = lookup(ss, id);

	if (s == NULL)
		return ERR_NOTFOUND;
	s->leases += delta;
	if (s->leases < 0)
		s->leases = 0;
	s->used_at = now_wall(ss); /* idle from the moment it is let go */
	schedule(s);
	return 0;
}

int sessions_policy_changed(struct sessions *ss, const char *id)
{
	return lookup(ss, id) ? sessions_track(ss, id) : ERR_NOTFOUND;
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
		at = renew_at(s);
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
		schedule(s);
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
	struct sess *s = find(ss, p->id);

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
		uv_timer_stop(&s->timer);
		if (ss->hx && s->pause_on_shutdown && s->status == SBX_RUNNING)
			shut_pause(ss, s);
	}
	if (--ss->pauses_left == 0 && fn)
		fn(ud);
}
