/*
 * The store's writes into PostgreSQL. The journal only notes which parts
 * of which sandbox a write changed (and keeps its events); once per loop
 * turn each noted sandbox is pushed: its parts as the store holds them
 * then, its events, one transaction. Reading the store at push time,
 * not the write, makes many writes of a turn one push and a rolled-back
 * write harmless. Only the parts a write changed are sent, so agents
 * changing different parts of one sandbox never undo each other.
 */
#include "fleet_int.h"

#include "err.h"
#include "json.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct push {
	struct fleet *f;
	char *id;
	unsigned parts;
	struct fleet_ev *evs;
	struct fleet_waiter *waiters;
	int nq; /* queries not yet answered, +1 while queueing */
	int err;
	char msg[256];
};

char *fleet_i64(int64_t v)
{
	char buf[32];

	if (v == STORE_NULL)
		return NULL;
	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return strdup(buf);
}

static char *bool_text(int64_t v)
{
	return v == STORE_NULL ? NULL : strdup(v ? "t" : "f");
}

static char *str_dup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int has_work(const struct fleet_dirty *d)
{
	return d->parts || d->evs || d->waiters;
}

static void ev_free(struct fleet_ev *e)
{
	struct fleet_ev *next;

	for (; e; e = next) {
		next = e->next;
		free(e->type);
		free(e->detail);
		free(e);
	}
}

static void waiters_done(struct fleet_waiter *w, int err, const char *msg)
{
	struct fleet_waiter *next;

	for (; w; w = next) {
		next = w->next;
		w->fn(w->ud, err, msg);
		free(w);
	}
}

/* Drops an entry that has nothing left to do. */
static void dirty_settle(struct fleet *f, struct fleet_dirty *d)
{
	if (d->inflight || has_work(d) || d->refetch)
		return;
	HASH_DEL(f->dirty, d);
	free(d->id);
	free(d);
}

struct fleet_dirty *fleet_dirty_get(struct fleet *f, const char *id)
{
	struct fleet_dirty *d = NULL;

	HASH_FIND_STR(f->dirty, id, d);
	if (d)
		return d;
	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (d->id = strdup(id)) == NULL) {
		free(d);
		return NULL;
	}
	d->evtail = &d->evs;
	HASH_ADD_KEYPTR(hh, f->dirty, d->id, strlen(d->id), d);
	return d;
}

void fleet_on_flush(uv_check_t *h)
{
	fleet_push_all(h->data);
}

static void wake_flush(struct fleet *f)
{
	if (!f->closing && !uv_is_active((uv_handle_t *)&f->flush))
		uv_check_start(&f->flush, fleet_on_flush);
}

void fleet_journal_changed(void *ud, const char *sandbox_id, unsigned parts)
{
	struct fleet *f = ud;
	struct fleet_dirty *d = fleet_dirty_get(f, sandbox_id);

	if (d == NULL) {
		/* the copy is read whole again at the next reconnect */
		log_warn("fleet: out of memory noting a change of %s",
		         sandbox_id);
		return;
	}
	d->parts |= parts;
	wake_flush(f);
}

int fleet_journal_event(void *ud, const struct store_event *e)
{
	struct fleet *f = ud;
	struct fleet_dirty *d =
	        fleet_dirty_get(f, e->sandbox_id ? e->sandbox_id : "");
	struct fleet_ev *ev = calloc(1, sizeof(*ev));

	if (d == NULL || ev == NULL || (ev->type = strdup(e->type)) == NULL ||
	    (e->detail && (ev->detail = strdup(e->detail)) == NULL)) {
		ev_free(ev);
		return ERR_NOMEM;
	}
	ev->at = e->at;
	ev->cause = e->cause;
	*d->evtail = ev;
	d->evtail = &ev->next;
	wake_flush(f);
	return 0;
}

/* ---- one push ---- */

static void push_done(struct push *p);

/* The outbox keeps only what of the sandbox is still to push. */
static void outbox_clear(struct fleet *f, struct fleet_dirty *d)
{
	if (*d->id && !d->inflight &&
	    store_outbox_done(f->st, d->id, d->parts) != 0)
		log_warn("fleet: cannot clear %s from the outbox", d->id);
}

static void q_done(void *ud, int err, const PGresult *res, const char *msg)
{
	struct push *p = ud;

	(void)res;
	if (err && p->err == 0) {
		p->err = err;
		snprintf(p->msg, sizeof(p->msg), "%s", msg ? msg : "");
	}
	if (--p->nq == 0)
		push_done(p);
}

/*
 * A push someone waits for (a user's change, answered once stored) goes
 * ahead of the background's (renewed tokens, HopX's statuses): on a busy
 * fleet hundreds of those may be queued. One push per sandbox is on its
 * way at a time, so a sandbox's pushes keep their order.
 */
static void query(struct push *p, const char *sql, int n, char **params)
{
	int i;

	p->nq++;
	(p->waiters ? pgconn_query_urgent : pgconn_query)(
	        p->f->pc, sql, n, (const char *const *)params, q_done, p);
	for (i = 0; i < n; i++)
		free(params[i]);
}

/*
 * A push is one statement, so one round trip and its own transaction:
 * the sandbox deleted ($27 & 1) or its row ($27 & 2: a new row inserted
 * whole, an existing one only the columns of the parts that changed, $1
 * the mask of STORE_PART_*), labels ($28, JSON), token ($29-$31, never
 * rolled back, like the store), events ($32, JSON; by $33). Events are
 * numbered in the order they commit, so that whoever read up to a number
 * has seen everything before it: they take a lock held to the commit
 * (the insert reads lk, so the lock comes before the numbers).
 */
static const char sql_push[] =
        "WITH lk AS (SELECT pg_advisory_xact_lock(7311) WHERE $32::jsonb IS "
        "NOT NULL), "
        "del AS (DELETE FROM sandboxes WHERE id = $2::text AND $27::int & 1 "
        "<> 0), "
        "rw AS (INSERT INTO sandboxes AS s (id, name, status, template_id, "
        "template_name, region, public_host, vcpu, memory_mb, disk_mb, "
        "internet_access, timeout_seconds, expires_at, created_at, "
        "tracked_at, updated_at, confirmed_at, stale, last_error, "
        "auto_resume, keepalive_s, pause_on_shutdown, idle_pause_s, "
        "on_expiry, paused_by_agent) SELECT $2::text, $3::text, $4::text, "
        "$5::text, $6::text, $7::text, $8::text, $9::bigint, $10::bigint, "
        "$11::bigint, $12::boolean, $13::bigint, $14::bigint, $15::bigint, "
        "$16::bigint, $17::bigint, $18::bigint, $19::boolean, $20::text, "
        "$21::boolean, $22::bigint, $23::boolean, $24::bigint, $25::text, "
        "$26::boolean WHERE $27::int & 2 <> 0 ON CONFLICT (id) DO UPDATE SET "
        "name = CASE WHEN $1::int & 1 <> 0 THEN EXCLUDED.name ELSE s.name END, "
        "status = CASE WHEN $1::int & 2 <> 0 THEN EXCLUDED.status ELSE "
        "s.status END, "
        "confirmed_at = CASE WHEN $1::int & 2 <> 0 THEN EXCLUDED.confirmed_at "
        "ELSE s.confirmed_at END, "
        "stale = CASE WHEN $1::int & 2 <> 0 THEN EXCLUDED.stale ELSE s.stale "
        "END, "
        "last_error = CASE WHEN $1::int & 2 <> 0 THEN EXCLUDED.last_error ELSE "
        "s.last_error END, "
        "paused_by_agent = CASE WHEN $1::int & 2 <> 0 THEN "
        "EXCLUDED.paused_by_agent ELSE s.paused_by_agent END, "
        "template_id = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.template_id "
        "ELSE s.template_id END, "
        "template_name = CASE WHEN $1::int & 4 <> 0 THEN "
        "EXCLUDED.template_name ELSE s.template_name END, "
        "region = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.region ELSE "
        "s.region END, "
        "public_host = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.public_host "
        "ELSE s.public_host END, "
        "vcpu = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.vcpu ELSE s.vcpu END, "
        "memory_mb = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.memory_mb ELSE "
        "s.memory_mb END, "
        "disk_mb = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.disk_mb ELSE "
        "s.disk_mb END, "
        "internet_access = CASE WHEN $1::int & 4 <> 0 THEN "
        "EXCLUDED.internet_access ELSE s.internet_access END, "
        "timeout_seconds = CASE WHEN $1::int & 4 <> 0 THEN "
        "EXCLUDED.timeout_seconds ELSE s.timeout_seconds END, "
        "expires_at = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.expires_at ELSE "
        "s.expires_at END, "
        "created_at = CASE WHEN $1::int & 4 <> 0 THEN EXCLUDED.created_at ELSE "
        "s.created_at END, "
        "auto_resume = CASE WHEN $1::int & 8 <> 0 THEN EXCLUDED.auto_resume "
        "ELSE s.auto_resume END, "
        "keepalive_s = CASE WHEN $1::int & 8 <> 0 THEN EXCLUDED.keepalive_s "
        "ELSE s.keepalive_s END, "
        "pause_on_shutdown = CASE WHEN $1::int & 8 <> 0 THEN "
        "EXCLUDED.pause_on_shutdown ELSE s.pause_on_shutdown END, "
        "idle_pause_s = CASE WHEN $1::int & 8 <> 0 THEN EXCLUDED.idle_pause_s "
        "ELSE s.idle_pause_s END, "
        "on_expiry = CASE WHEN $1::int & 8 <> 0 THEN EXCLUDED.on_expiry ELSE "
        "s.on_expiry END, "
        "updated_at = EXCLUDED.updated_at), "
        "lg AS (DELETE FROM labels WHERE sandbox_id = $2::text AND "
        "$28::jsonb IS NOT NULL AND NOT ($28::jsonb ? key)), "
        "li AS (INSERT INTO labels (sandbox_id, key, value) SELECT $2::text, "
        "key, value FROM jsonb_each_text($28::jsonb) ON CONFLICT "
        "(sandbox_id, key) DO UPDATE SET value = EXCLUDED.value), "
        "tk AS (INSERT INTO tokens (sandbox_id, token, expires_at, "
        "issued_at) SELECT $2::text, $29::text, $30::bigint, $31::bigint "
        "WHERE $29::text IS NOT NULL ON CONFLICT (sandbox_id) DO UPDATE SET "
        "token = EXCLUDED.token, expires_at = EXCLUDED.expires_at, "
        "issued_at = EXCLUDED.issued_at WHERE tokens.expires_at < "
        "EXCLUDED.expires_at OR (tokens.expires_at = EXCLUDED.expires_at "
        "AND tokens.token <> EXCLUDED.token AND tokens.issued_at < "
        "EXCLUDED.issued_at)), "
        "ev AS (INSERT INTO events (at, sandbox_id, type, cause, host, "
        "detail) SELECT (e->>'at')::bigint, nullif($2::text, ''), "
        "e->>'type', e->>'cause', $33::text, e->>'detail' FROM lk, "
        "jsonb_array_elements($32::jsonb) WITH ORDINALITY AS x(e, n) ORDER "
        "BY n) "
        "SELECT 1";

enum {
	P_MASK,
	P_ROW,
	P_FLAGS = 26,
	P_LABELS,
	P_TOKEN,
	P_EVENTS = 31,
	P_HOST,
	P_N
};

#define FLAG_DELETE 1
#define FLAG_ROW    2

static void row_params(char **v, unsigned parts, const struct store_sandbox *r)
{
	char *row[25] = {
	        str_dup(r->id),
	        str_dup(r->name),
	        str_dup(sbx_status_str(r->status)),
	        str_dup(r->template_id),
	        str_dup(r->template_name),
	        str_dup(r->region),
	        str_dup(r->public_host),
	        fleet_i64(r->vcpu),
	        fleet_i64(r->memory_mb),
	        fleet_i64(r->disk_mb),
	        bool_text(r->internet_access),
	        fleet_i64(r->timeout_seconds),
	        fleet_i64(r->expires_at),
	        fleet_i64(r->created_at),
	        fleet_i64(r->tracked_at),
	        fleet_i64(r->updated_at),
	        fleet_i64(r->confirmed_at),
	        bool_text(r->stale),
	        str_dup(r->last_error),
	        bool_text(r->auto_resume),
	        fleet_i64(r->keepalive_s),
	        bool_text(r->pause_on_shutdown),
	        fleet_i64(r->idle_pause_s),
	        str_dup(store_expiry_str(r->on_expiry)),
	        bool_text(r->paused_by_agent),
	};

	v[P_MASK] = fleet_i64(parts & STORE_PART_ROW);
	memcpy(v + P_ROW + 1, row + 1, sizeof(row) - sizeof(*row));
	free(row[0]); /* the id is there already */
}

static char *labels_json(const struct store_sandbox *r)
{
	cJSON *o = cJSON_CreateObject();
	char *text;
	size_t i;

	for (i = 0; i < r->nlabels; i++)
		json_add_str(o, r->labels[i].key, r->labels[i].value);
	text = json_print(o);
	cJSON_Delete(o);
	return text;
}

static char *events_json(const struct fleet_ev *evs)
{
	cJSON *a = cJSON_CreateArray(), *o;
	const struct fleet_ev *e;
	char *text;

	for (e = evs; e; e = e->next) {
		o = cJSON_CreateObject();
		json_add_i64(o, "at", e->at);
		json_add_str(o, "type", e->type);
		json_add_str(o, "cause", store_cause_str(e->cause));
		json_add_str(o, "detail", e->detail);
		cJSON_AddItemToArray(a, o);
	}
	text = json_print(a);
	cJSON_Delete(a);
	return text;
}

/* The store's parts of the sandbox, as it holds them now. */
static unsigned part_params(struct push *p, char **v)
{
	struct store_sandbox r;
	unsigned flags = 0;

	store_sandbox_init(&r);
	if ((p->parts & ~STORE_PART_GONE) == 0 ||
	    store_sandbox_get(p->f->st, p->id, &r) != 0) {
		store_sandbox_finish(&r);
		return 0;
	}
	if (p->parts & STORE_PART_ROW) {
		row_params(v, p->parts, &r);
		flags |= FLAG_ROW;
	}
	if (p->parts & STORE_PART_LABELS)
		v[P_LABELS] = labels_json(&r);
	if ((p->parts & STORE_PART_TOKEN) && r.token) {
		v[P_TOKEN] = strdup(r.token);
		v[P_TOKEN + 1] = fleet_i64(r.token_expires_at);
		v[P_TOKEN + 2] = fleet_i64(r.token_issued_at);
	}
	store_sandbox_finish(&r);
	return flags;
}

static void push_start(struct fleet *f, struct fleet_dirty *d)
{
	struct push *p = calloc(1, sizeof(*p));
	char *v[P_N] = {0};
	unsigned flags = 0;

	if (p == NULL || (p->id = strdup(d->id)) == NULL) {
		free(p);
		return; /* left as it is: tried again next turn */
	}
	p->f = f;
	p->parts = d->parts;
	p->evs = d->evs;
	p->waiters = d->waiters;
	d->parts = 0;
	d->evs = NULL;
	d->evtail = &d->evs;
	d->waiters = NULL;
	d->inflight = 1;
	p->nq = 1;
	log_debug("fleet: pushing %s (parts %#x%s)", *p->id ? p->id : "-",
	          p->parts, p->evs ? ", events" : "");
	if ((p->parts & STORE_PART_GONE) && *p->id)
		flags |= FLAG_DELETE;
	flags |= part_params(p, v);
	v[P_ROW] = strdup(p->id);
	v[P_FLAGS] = fleet_i64(flags);
	v[P_EVENTS] = p->evs ? events_json(p->evs) : NULL;
	v[P_HOST] = strdup(f->host_id);
	query(p, sql_push, P_N, v);
	if (--p->nq == 0)
		push_done(p);
}

static const char *push_msg(struct push *p)
{
	if (p->err == ERR_EXISTS)
		return "the name belongs to another sandbox of the fleet";
	if (p->err == ERR_UNAVAIL && (p->parts & STORE_PART_NEW))
		return "the fleet's database (PostgreSQL) could not be reached "
		       "while storing the new sandbox: it is kept here and "
		       "stored when the database answers again ('hopxctl "
		       "status' shows the store)";
	if (p->err == ERR_UNAVAIL)
		return "the fleet's database (PostgreSQL) could not be reached "
		       "while storing the change: it may or may not have been "
		       "stored; 'hopxctl show' tells";
	return p->msg;
}

/*
 * A push that failed. Unreachable (its outcome unknown): what HopX said
 * (and a new record, whole) is kept and sent again once the database is
 * back, as a sandbox HopX made must not be forgotten for an outage; a
 * user's change was not acknowledged and is dropped, as the registry
 * may hold a newer one by then: the copy is read again. Refused (a name
 * the registry gives another sandbox): dropped, the copy read again.
 */
static void push_failed(struct push *p, struct fleet_dirty *d)
{
	unsigned keep = 0;
	struct fleet_ev **tail;

	waiters_done(p->waiters, p->err, push_msg(p));
	if (p->err != ERR_UNAVAIL)
		log_warn("fleet: a change of %s was not stored (%s): it is "
		         "read again from the registry",
		         *p->id ? p->id : "the agent", p->msg);
	else if (p->parts & STORE_PART_NEW)
		keep = p->parts;
	else if (p->waiters == NULL)
		keep = p->parts & STORE_PART_FACTS;
	p->waiters = NULL;
	if (keep != p->parts)
		d->refetch = 1;
	if (keep == 0) { /* those who came while it was on its way */
		waiters_done(d->waiters, p->err, push_msg(p));
		d->waiters = NULL;
	}
	d->parts |= keep;
	if (keep == 0 || p->evs == NULL) {
		outbox_clear(p->f, d);
		return;
	}
	/* its events go back in front of those that came since */
	for (tail = &p->evs; *tail; tail = &(*tail)->next)
		;
	*tail = d->evs;
	if (d->evs == NULL)
		d->evtail = tail;
	d->evs = p->evs;
	p->evs = NULL;
}

static void push_done(struct push *p)
{
	struct fleet *f = p->f;
	struct fleet_dirty *d = NULL;

	log_debug("fleet: pushed %s: %s", *p->id ? p->id : "-",
	          p->err ? p->msg : "ok");
	HASH_FIND_STR(f->dirty, p->id, d);
	if (d) {
		d->inflight = 0;
		if (p->err) {
			push_failed(p, d);
		} else {
			waiters_done(p->waiters, 0, NULL);
			outbox_clear(f, d);
		}
		if (d->refetch && f->state == FLEET_UP && !has_work(d)) {
			cJSON *a = cJSON_CreateArray();
			char *ids;

			d->refetch = 0;
			cJSON_AddItemToArray(a, cJSON_CreateString(p->id));
			ids = json_print(a);
			cJSON_Delete(a);
			if (ids)
				fleet_fetch(f, ids);
			free(ids);
		}
		if (has_work(d))
			wake_flush(f);
		dirty_settle(f, d);
	} else {
		waiters_done(p->waiters, p->err, p->err ? push_msg(p) : NULL);
	}
	ev_free(p->evs);
	free(p->id);
	free(p);
}

void fleet_push_all(struct fleet *f)
{
	struct fleet_dirty *d, *tmp;
	int left = 0;

	HASH_ITER(hh, f->dirty, d, tmp)
	{
		if (f->state == FLEET_UP && !d->inflight &&
		    (d->parts || d->evs))
			push_start(f, d);
		if (!d->inflight && !d->parts && !d->evs && d->waiters) {
			waiters_done(d->waiters, 0, NULL);
			d->waiters = NULL;
		}
		left |= f->state == FLEET_UP && !d->inflight && has_work(d);
		dirty_settle(f, d);
	}
	if (!left)
		uv_check_stop(&f->flush);
}

/*
 * The database went away between the check that let the change be made
 * and now: the change is not stored; a new record is kept and stored
 * once the database is back, anything else the registry's copy replaces.
 */
static void barrier_refused(struct fleet *f, struct fleet_dirty *d)
{
	struct fleet_waiter *w = d->waiters;
	struct push p = {.f = f, .err = ERR_UNAVAIL, .parts = d->parts};

	d->waiters = NULL;
	if ((d->parts & STORE_PART_NEW) == 0) {
		d->parts &= STORE_PART_FACTS;
		d->refetch = 1;
	}
	waiters_done(w, ERR_UNAVAIL, push_msg(&p));
}

void fleet_barrier(struct fleet *f, const char *sandbox_id, fleet_done_fn fn,
                   void *ud)
{
	struct fleet_dirty *d = NULL;
	struct fleet_waiter *w;

	HASH_FIND_STR(f->dirty, sandbox_id ? sandbox_id : "", d);
	/* a change being pushed now is waited for too */
	if (d == NULL || (!d->parts && !d->evs && !d->inflight)) {
		if (f->state == FLEET_UP)
			fn(ud, 0, NULL);
		else
			fn(ud, ERR_UNAVAIL,
			   "the fleet's database (PostgreSQL) is unreachable: "
			   "'hopxctl status' shows the store");
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		fn(ud, ERR_NOMEM, NULL);
		return;
	}
	w->fn = fn;
	w->ud = ud;
	w->next = d->waiters;
	d->waiters = w;
	if (f->state != FLEET_UP)
		barrier_refused(f, d);
	wake_flush(f);
}

size_t fleet_pending(const struct fleet *f)
{
	const struct fleet_dirty *d, *tmp;
	size_t n = 0;

	HASH_ITER(hh, f->dirty, d, tmp)
	n += has_work(d) || d->inflight;
	return n;
}

/*
 * What a run before this one left unpushed. A user's change in it was
 * never acknowledged (that waits for the registry) or is stored already:
 * sending it now could undo a newer one made on another agent since, so
 * only what HopX said (and a new record, whole) is sent again, the rest
 * read from the registry like after an unreachable push.
 */
static int outbox_load_one(void *ud, const char *sandbox_id, unsigned parts)
{
	struct fleet_dirty *d = fleet_dirty_get(ud, sandbox_id);
	unsigned keep =
	        parts & STORE_PART_NEW ? parts : parts & STORE_PART_FACTS;

	if (d)
		d->parts |= keep;
	return 0;
}

void fleet_outbox_load(struct fleet *f)
{
	struct fleet_dirty *d, *tmp;

	if (store_outbox_list(f->st, outbox_load_one, f) != 0)
		log_warn("fleet: cannot read the outbox: changes made before "
		         "a crash may not reach the registry");
	HASH_ITER(hh, f->dirty, d, tmp)
	{
		outbox_clear(f, d); /* what was dropped */
		dirty_settle(f, d);
	}
	if (f->dirty)
		log_info("fleet: %u sandbox(es) with changes not yet in the "
		         "registry",
		         HASH_COUNT(f->dirty));
}

void fleet_dirty_free(struct fleet *f)
{
	struct fleet_dirty *d, *tmp;

	HASH_ITER(hh, f->dirty, d, tmp)
	{
		waiters_done(d->waiters, ERR_UNAVAIL, "the agent is stopping");
		ev_free(d->evs);
		HASH_DEL(f->dirty, d);
		free(d->id);
		free(d);
	}
}
