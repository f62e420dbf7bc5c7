/*
 * The registry's changes into the store. After every (re)connect the
 * whole registry is read again (a page at a time) and the store made the
 * same; from then on each event after the newest one seen is read by
 * sequence (woken by NOTIFY, and by the heartbeat in case a notification
 * was lost), copied into the store's log, and the sandboxes other agents
 * changed are read and applied. A sandbox with changes of this agent not
 * yet pushed is left alone and read again after its push.
 */
#include "fleet_int.h"

#include "err.h"
#include "json.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 500

static const char sql_cols[] =
        "SELECT s.id, s.name, s.status, s.template_id, s.template_name, "
        "s.region, s.public_host, s.vcpu, s.memory_mb, s.disk_mb, "
        "s.internet_access, s.timeout_seconds, s.expires_at, s.created_at, "
        "s.tracked_at, s.updated_at, s.confirmed_at, s.stale, s.last_error, "
        "s.auto_resume, s.keepalive_s, s.pause_on_shutdown, s.idle_pause_s, "
        "s.on_expiry, s.paused_by_agent, t.token, t.expires_at, t.issued_at, "
        "(SELECT jsonb_object_agg(key, value) FROM labels l WHERE "
        "l.sandbox_id = s.id) FROM sandboxes s LEFT JOIN tokens t ON "
        "t.sandbox_id = s.id ";

enum {
	K_ID,
	K_NAME,
	K_STATUS,
	K_TEMPLATE_ID,
	K_TEMPLATE_NAME,
	K_REGION,
	K_PUBLIC_HOST,
	K_VCPU,
	K_MEMORY,
	K_DISK,
	K_INTERNET,
	K_TIMEOUT,
	K_EXPIRES,
	K_CREATED,
	K_TRACKED,
	K_UPDATED,
	K_CONFIRMED,
	K_STALE,
	K_LAST_ERROR,
	K_AUTO_RESUME,
	K_KEEPALIVE,
	K_POS,
	K_IDLE,
	K_ON_EXPIRY,
	K_PBA,
	K_TOKEN,
	K_TOKEN_EXP,
	K_TOKEN_ISSUED,
	K_LABELS
};

static const char *col(const PGresult *res, int row, int c)
{
	return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

static char *col_dup(const PGresult *res, int row, int c)
{
	const char *v = col(res, row, c);

	return v ? strdup(v) : NULL;
}

static int64_t col_i64(const PGresult *res, int row, int c)
{
	const char *v = col(res, row, c);

	return v ? strtoll(v, NULL, 10) : STORE_NULL;
}

static int64_t col_bool(const PGresult *res, int row, int c)
{
	const char *v = col(res, row, c);

	return v ? *v == 't' : STORE_NULL;
}

static void row_read(const PGresult *res, int i, struct store_sandbox *r)
{
	store_sandbox_init(r);
	r->id = col_dup(res, i, K_ID);
	r->name = col_dup(res, i, K_NAME);
	sbx_status_parse(col(res, i, K_STATUS), &r->status);
	r->template_id = col_dup(res, i, K_TEMPLATE_ID);
	r->template_name = col_dup(res, i, K_TEMPLATE_NAME);
	r->region = col_dup(res, i, K_REGION);
	r->public_host = col_dup(res, i, K_PUBLIC_HOST);
	r->vcpu = col_i64(res, i, K_VCPU);
	r->memory_mb = col_i64(res, i, K_MEMORY);
	r->disk_mb = col_i64(res, i, K_DISK);
	r->internet_access = col_bool(res, i, K_INTERNET);
	r->timeout_seconds = col_i64(res, i, K_TIMEOUT);
	r->expires_at = col_i64(res, i, K_EXPIRES);
	r->created_at = col_i64(res, i, K_CREATED);
	r->confirmed_at = col_i64(res, i, K_CONFIRMED);
	r->stale = col_bool(res, i, K_STALE) == 1;
	r->last_error = col_dup(res, i, K_LAST_ERROR);
	r->auto_resume = col_bool(res, i, K_AUTO_RESUME) == 1;
	r->keepalive_s = col_i64(res, i, K_KEEPALIVE);
	r->pause_on_shutdown = col_bool(res, i, K_POS) == 1;
	r->idle_pause_s = col_i64(res, i, K_IDLE);
	r->on_expiry = store_expiry_parse(col(res, i, K_ON_EXPIRY));
	r->paused_by_agent = col_bool(res, i, K_PBA) == 1;
}

/* A sandbox with changes of ours not yet stored there is left alone. */
static int held_back(struct fleet *f, const char *id)
{
	struct fleet_dirty *d = NULL;

	HASH_FIND_STR(f->dirty, id, d);
	if (d == NULL)
		return 0;
	if (d->inflight || d->parts || d->evs || d->waiters) {
		d->refetch = 1;
		return 1;
	}
	d->refetch = 0;
	return 0;
}

/* put, giving up a name another local record still holds (renamed). */
static int put_row(struct fleet *f, const struct store_sandbox *r)
{
	struct store_sandbox other;
	int e = store_sandbox_put(f->st, r, STORE_CAUSE_REMOTE, NULL);

	if (e != ERR_EXISTS || r->name == NULL)
		return e;
	if (store_sandbox_get(f->st, r->name, &other) == 0 &&
	    strcmp(other.id, r->id) != 0)
		e = store_sandbox_rename(f->st, other.id, NULL,
		                         STORE_CAUSE_REMOTE);
	store_sandbox_finish(&other);
	return e ? e : store_sandbox_put(f->st, r, STORE_CAUSE_REMOTE, NULL);
}

static int apply_labels(struct fleet *f, const char *id, const char *json)
{
	struct store_sandbox cur;
	cJSON *want = json ? cJSON_Parse(json) : NULL, *l;
	size_t i;
	int e;

	if ((e = store_sandbox_get(f->st, id, &cur)) != 0)
		goto out;
	for (i = 0; e == 0 && i < cur.nlabels; i++)
		if (!cJSON_GetObjectItemCaseSensitive(want, cur.labels[i].key))
			e = store_label_unset(f->st, id, cur.labels[i].key,
			                      STORE_CAUSE_REMOTE);
	cJSON_ArrayForEach(l, want)
	{
		if (e == 0 && cJSON_IsString(l))
			e = store_label_set(f->st, id, l->string,
			                    l->valuestring, STORE_CAUSE_REMOTE);
	}
out:
	store_sandbox_finish(&cur);
	cJSON_Delete(want);
	return e;
}

/* Makes the store's record of row i what the registry holds. */
static int apply_row(struct fleet *f, const PGresult *res, int i)
{
	struct store_sandbox r;
	const char *tok = col(res, i, K_TOKEN);
	int e;

	row_read(res, i, &r);
	e = put_row(f, &r);
	if (e == 0)
		e = store_sandbox_set_paused_by_agent(f->st, r.id,
		                                      r.paused_by_agent);
	if (e == 0)
		e = apply_labels(f, r.id, col(res, i, K_LABELS));
	if (e == 0 && tok)
		e = store_token_put(f->st, r.id, tok,
		                    col_i64(res, i, K_TOKEN_EXP),
		                    col_i64(res, i, K_TOKEN_ISSUED), NULL);
	if (e)
		log_warn("fleet: could not copy %s into the local store: %s",
		         r.id, err_str(e));
	store_sandbox_finish(&r);
	return e;
}

/* ---- reading given sandboxes ---- */

struct fetch {
	struct fleet *f;
	cJSON *ids;
};

static int in_result(const PGresult *res, const char *id)
{
	int i;

	for (i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, K_ID), id) == 0)
			return 1;
	return 0;
}

static void forget_local(struct fleet *f, const char *id)
{
	if (store_sandbox_forget(f->st, id, STORE_CAUSE_REMOTE) == 0 &&
	    f->o.applied)
		f->o.applied(f->o.ud, id, 1);
}

static void fetched(void *ud, int err, const PGresult *res, const char *msg)
{
	struct fetch *x = ud;
	struct fleet *f = x->f;
	const cJSON *id;
	int i;

	f->fetching--;
	if (err) {
		log_warn("fleet: reading changed sandboxes failed: %s", msg);
		f->fetch_lost = 1;
		goto out; /* read again whole at the reconnect */
	}
	store_journal_mute(f->st, 1);
	store_begin(f->st);
	for (i = 0; i < PQntuples(res); i++)
		if (!held_back(f, PQgetvalue(res, i, K_ID)))
			apply_row(f, res, i);
	cJSON_ArrayForEach(id, x->ids)
	{
		if (!in_result(res, id->valuestring) &&
		    !held_back(f, id->valuestring))
			forget_local(f, id->valuestring);
	}
	store_commit(f->st);
	store_journal_mute(f->st, 0);
	for (i = 0; i < PQntuples(res); i++)
		if (f->o.applied)
			f->o.applied(f->o.ud, PQgetvalue(res, i, K_ID), 0);
out:
	cJSON_Delete(x->ids);
	free(x);
}

void fleet_fetch(struct fleet *f, const char *ids_json)
{
	struct fetch *x = calloc(1, sizeof(*x));
	const char *v[1] = {ids_json};
	char sql[sizeof(sql_cols) + 96];

	if (x == NULL || (x->ids = cJSON_Parse(ids_json)) == NULL) {
		free(x);
		return;
	}
	x->f = f;
	f->fetching++;
	snprintf(
	        sql, sizeof(sql),
	        "%sWHERE s.id IN (SELECT jsonb_array_elements_text($1::jsonb))",
	        sql_cols);
	pgconn_query_urgent(f->pc, sql, 1, v, fetched, x);
}

/* ---- events by sequence ---- */

static void caught_up(void *ud, int err, const PGresult *res, const char *msg)
{
	struct fleet *f = ud;
	cJSON *ids = cJSON_CreateArray();
	struct store_event e;
	const char *host;
	char *text;
	int i, n = err ? 0 : PQntuples(res);

	f->pulling = 0;
	if (err)
		log_warn("fleet: reading new events failed: %s", msg);
	store_begin(f->st);
	for (i = 0; i < n; i++) {
		memset(&e, 0, sizeof(e));
		e.seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		e.at = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		e.sandbox_id = col(res, i, 2);
		e.type = PQgetvalue(res, i, 3);
		e.cause = store_cause_parse(PQgetvalue(res, i, 4));
		e.host = host = col(res, i, 5);
		e.detail = col(res, i, 6);
		if (store_event_mirror(f->st, &e) != 0)
			log_warn("fleet: could not copy event %lld",
			         (long long)e.seq);
		f->seq = e.seq;
		if (e.sandbox_id && (host == NULL || strcmp(host, f->host_id)))
			cJSON_AddItemToArray(ids,
			                     cJSON_CreateString(e.sandbox_id));
	}
	store_commit(f->st);
	if (cJSON_GetArraySize(ids) > 0 && (text = json_print(ids)) != NULL) {
		fleet_fetch(f, text);
		free(text);
	}
	cJSON_Delete(ids);
	if (n > 0 && f->o.events)
		f->o.events(f->o.ud);
	if (n == 1000 || f->pull_again)
		fleet_catch_up(f);
}

void fleet_catch_up(struct fleet *f)
{
	char *v[1];

	if (f->state != FLEET_UP)
		return;
	if (f->pulling) {
		f->pull_again = 1;
		return;
	}
	f->pulling = 1;
	f->pull_again = 0;
	v[0] = fleet_i64(f->seq);
	pgconn_query_urgent(
	        f->pc,
	        "SELECT seq, at, sandbox_id, type, cause, host, detail "
	        "FROM events WHERE seq > $1 ORDER BY seq LIMIT 1000",
	        1, (const char *const *)v, caught_up, f);
	free(v[0]);
}

/* ---- the whole registry ---- */

struct resync {
	struct fleet *f;
	int64_t seq0; /* newest event before the first page was read */
	char *after;  /* id of the last row read */
	struct seen {
		char *id;
		UT_hash_handle hh;
	} * seen;
};

static void resync_page(struct resync *rs);

static void seen_add(struct resync *rs, const char *id)
{
	struct seen *s = calloc(1, sizeof(*s));

	if (s && (s->id = strdup(id)) != NULL)
		HASH_ADD_KEYPTR(hh, rs->seen, s->id, strlen(s->id), s);
	else
		free(s);
}

static void resync_free(struct resync *rs)
{
	struct seen *s, *tmp;

	HASH_ITER(hh, rs->seen, s, tmp)
	{
		HASH_DEL(rs->seen, s);
		free(s->id);
		free(s);
	}
	free(rs->after);
	free(rs);
}

/* The newest event seen so far in the store, if it is of this registry. */
static int64_t start_seq(struct fleet *f, int64_t seq0)
{
	int64_t local = 0;

	store_event_last_seq(f->st, &local);
	if (local > 0 && local <= seq0)
		return local;
	return seq0;
}

static void resync_done(struct resync *rs)
{
	struct fleet *f = rs->f;

	f->seq = start_seq(f, rs->seq0);
	f->fetch_lost = 0;
	resync_free(rs);
	fleet_set_state(f, FLEET_UP, "");
	fleet_catch_up(f);
	fleet_push_all(f);
}

struct gone_walk {
	struct resync *rs;
	cJSON *gone;
};

/* Records the registry no longer has are forgotten here too. */
static int note_gone(void *ud, const struct store_sandbox *r)
{
	struct gone_walk *g = ud;
	struct seen *s = NULL;

	HASH_FIND_STR(g->rs->seen, r->id, s);
	if (s == NULL)
		cJSON_AddItemToArray(g->gone, cJSON_CreateString(r->id));
	return 0;
}

static void forget_unseen(struct resync *rs)
{
	struct gone_walk g = {rs, cJSON_CreateArray()};
	const cJSON *id;

	store_sandbox_list(rs->f->st, NULL, note_gone, &g);
	store_journal_mute(rs->f->st, 1);
	cJSON_ArrayForEach(id, g.gone)
	{
		if (!held_back(rs->f, id->valuestring))
			forget_local(rs->f, id->valuestring);
	}
	store_journal_mute(rs->f->st, 0);
	cJSON_Delete(g.gone);
}

static void page_read(void *ud, int err, const PGresult *res, const char *msg)
{
	struct resync *rs = ud;
	struct fleet *f = rs->f;
	int i, n;

	if (err) {
		log_warn("fleet: reading the registry failed: %s", msg);
		resync_free(rs); /* read again at the reconnect */
		return;
	}
	n = PQntuples(res);
	store_journal_mute(f->st, 1);
	store_begin(f->st);
	for (i = 0; i < n; i++) {
		seen_add(rs, PQgetvalue(res, i, K_ID));
		if (!held_back(f, PQgetvalue(res, i, K_ID)))
			apply_row(f, res, i);
	}
	store_commit(f->st);
	store_journal_mute(f->st, 0);
	for (i = 0; i < n && f->o.applied; i++)
		f->o.applied(f->o.ud, PQgetvalue(res, i, K_ID), 0);
	if (n == PAGE) {
		free(rs->after);
		rs->after = strdup(PQgetvalue(res, n - 1, K_ID));
		resync_page(rs);
		return;
	}
	forget_unseen(rs);
	resync_done(rs);
}

static void resync_page(struct resync *rs)
{
	const char *v[1] = {rs->after ? rs->after : ""};
	char sql[sizeof(sql_cols) + 64];

	snprintf(sql, sizeof(sql), "%sWHERE s.id > $1 ORDER BY s.id LIMIT %d",
	         sql_cols, PAGE);
	pgconn_query(rs->f->pc, sql, 1, v, page_read, rs);
}

static void seq_read(void *ud, int err, const PGresult *res, const char *msg)
{
	struct resync *rs = ud;

	if (err) {
		log_warn("fleet: reading the registry failed: %s", msg);
		resync_free(rs);
		return;
	}
	rs->seq0 = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	resync_page(rs);
}

void fleet_resync(struct fleet *f)
{
	struct resync *rs = calloc(1, sizeof(*rs));

	if (rs == NULL) {
		fleet_set_state(f, FLEET_UNAVAILABLE, "out of memory");
		return;
	}
	rs->f = f;
	fleet_set_state(f, FLEET_SYNCING, "");
	pgconn_query(f->pc, "SELECT coalesce(max(seq), 0) FROM events", 0, NULL,
	             seq_read, rs);
}
