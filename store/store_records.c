#include "store_int.h"

#include "err.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* Column order of SBX_COLS in store.c. */

void store_sandbox_init(struct store_sandbox *r)
{
	memset(r, 0, sizeof(*r));
	r->status = SBX_UNKNOWN;
	r->vcpu = r->memory_mb = r->disk_mb = STORE_NULL;
	r->internet_access = r->timeout_seconds = STORE_NULL;
	r->expires_at = r->created_at = STORE_NULL;
	r->tracked_at = r->updated_at = r->confirmed_at = STORE_NULL;
	r->token_expires_at = r->token_issued_at = STORE_NULL;
	r->status_since = STORE_NULL;
	r->auto_resume = 1;
}

void store_sandbox_finish(struct store_sandbox *r)
{
	size_t i;

	if (r == NULL)
		return;
	free(r->id);
	free(r->name);
	free(r->template_id);
	free(r->template_name);
	free(r->region);
	free(r->public_host);
	free(r->last_error);
	free(r->token);
	for (i = 0; i < r->nlabels; i++) {
		free(r->labels[i].key);
		free(r->labels[i].value);
	}
	free(r->labels);
	store_sandbox_init(r);
}

/* A copy of a text column, NULL for SQL NULL. *err is set on ENOMEM. */
static char *col_str(sqlite3_stmt *st, int i, int *err)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	char *p;

	if (t == NULL)
		return NULL;
	p = strdup((const char *)t);
	if (p == NULL)
		*err = ERR_NOMEM;
	return p;
}

static int64_t col_i64(sqlite3_stmt *st, int i)
{
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return STORE_NULL;
	return sqlite3_column_int64(st, i);
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_label *)a)->key,
	              ((const struct store_label *)b)->key);
}

/* Labels come as the JSON text [["k","v"],...]; "[]" when none. */
static int read_labels(sqlite3_stmt *st, struct store_sandbox *r)
{
	const char *t = (const char *)sqlite3_column_text(st, C_LABELS);
	const cJSON *pair;
	cJSON *arr = NULL;
	size_t n = 0;
	int r2;

	if (t == NULL || strcmp(t, "[]") == 0)
		return 0;
	if ((r2 = json_parse(t, strlen(t), &arr)) != 0)
		return ERR_CORRUPT;
	r->labels = calloc((size_t)cJSON_GetArraySize(arr), sizeof(*r->labels));
	if (r->labels == NULL) {
		cJSON_Delete(arr);
		return ERR_NOMEM;
	}
	cJSON_ArrayForEach(pair, arr)
	{
		const char *k =
		        cJSON_GetStringValue(cJSON_GetArrayItem(pair, 0));
		const char *v =
		        cJSON_GetStringValue(cJSON_GetArrayItem(pair, 1));

		if (k == NULL || v == NULL)
			continue;
		r->labels[n].key = strdup(k);
		r->labels[n].value = strdup(v);
		r->nlabels = ++n;
		if (!r->labels[n - 1].key || !r->labels[n - 1].value) {
			r2 = ERR_NOMEM;
			break;
		}
	}
	cJSON_Delete(arr);
	if (r2 == 0)
		qsort(r->labels, r->nlabels, sizeof(*r->labels), label_cmp);
	return r2;
}

/* Fills an initialised record from the current row of a SBX_COLS query. */
static int read_row(sqlite3_stmt *st, struct store_sandbox *r)
{
	int err = 0;

	r->id = col_str(st, C_ID, &err);
	r->name = col_str(st, C_NAME, &err);
	sbx_status_parse((const char *)sqlite3_column_text(st, C_STATUS),
	                 &r->status);
	r->template_id = col_str(st, C_TEMPLATE_ID, &err);
	r->template_name = col_str(st, C_TEMPLATE_NAME, &err);
	r->region = col_str(st, C_REGION, &err);
	r->public_host = col_str(st, C_PUBLIC_HOST, &err);
	r->vcpu = col_i64(st, C_VCPU);
	r->memory_mb = col_i64(st, C_MEMORY_MB);
	r->disk_mb = col_i64(st, C_DISK_MB);
	r->internet_access = col_i64(st, C_INTERNET);
	r->timeout_seconds = col_i64(st, C_TIMEOUT_S);
	r->expires_at = col_i64(st, C_EXPIRES_AT);
	r->created_at = col_i64(st, C_CREATED_AT);
	r->tracked_at = col_i64(st, C_TRACKED_AT);
	r->updated_at = col_i64(st, C_UPDATED_AT);
	r->confirmed_at = col_i64(st, C_CONFIRMED_AT);
	r->stale = sqlite3_column_int(st, C_STALE);
	r->last_error = col_str(st, C_LAST_ERROR, &err);
	r->auto_resume = sqlite3_column_int(st, C_AUTO_RESUME);
	r->keepalive_s = sqlite3_column_int64(st, C_KEEPALIVE_S);
	r->pause_on_shutdown = sqlite3_column_int(st, C_PAUSE_ON_SHUTDOWN);
	r->paused_by_agent = sqlite3_column_int(st, C_PAUSED_BY_AGENT);
	r->token = col_str(st, C_TOKEN, &err);
	r->token_expires_at = col_i64(st, C_TOKEN_EXPIRES);
	r->token_issued_at = col_i64(st, C_TOKEN_ISSUED);
	r->status_since = col_i64(st, C_STATUS_SINCE);
	r->idle_pause_s = sqlite3_column_int64(st, C_IDLE_PAUSE_S);
	r->on_expiry = store_expiry_parse(
	        (const char *)sqlite3_column_text(st, C_ON_EXPIRY));
	return err ? err : read_labels(st, r);
}

/* Appends an event whose detail is built from a cJSON object. */
static int event_json(struct store *s, const char *id, const char *type,
                      enum store_cause cause, cJSON *detail)
{
	char *text = detail ? json_print(detail) : NULL;
	int r;

	if (detail && text == NULL)
		r = ERR_NOMEM;
	else
		r = store_event_append(s, id, type, cause, text, NULL);
	free(text);
	cJSON_Delete(detail);
	return r;
}

/* Status, name and staleness of a row: ERR_NOTFOUND when absent. */
static int sbx_peek(struct store *s, const char *id, enum sbx_status *status,
                    char **name, int *stale)
{
	sqlite3_stmt *st = store_stmt(s, ST_SBX_EXISTS);
	int rc, err = 0;

	store_bind_str(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (status)
			sbx_status_parse(
			        (const char *)sqlite3_column_text(st, 0),
			        status);
		if (name)
			*name = col_str(st, 1, &err);
		if (stale)
			*stale = sqlite3_column_int(st, 2);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return err;
	return rc == SQLITE_DONE ? ERR_NOTFOUND : store_err(rc);
}

/* Notes the change in the outbox, in the change's own transaction. */
static int outbox_add(struct store *s, const char *id, unsigned parts)
{
	unsigned facts =
	        parts & STORE_PART_NEW ? parts : parts & STORE_PART_FACTS;
	/* a user's change is noted only on a record not yet confirmed */
	sqlite3_stmt *st =
	        store_stmt(s, facts ? ST_OUTBOX_ADD : ST_OUTBOX_OR_NEW);

	store_bind_str(st, 1, id);
	store_bind_i64(st, 2, (int64_t)(facts ? facts : parts));
	if (facts)
		store_bind_i64(st, 3, (int64_t)parts);
	return store_step_done(st);
}

/* store_wend, then the journal told of the change when it held. */
static int wend_changed(struct store *s, int r, const char *id, unsigned parts)
{
	if (r == 0 && parts && s->journal.changed && !s->journal_muted)
		r = outbox_add(s, id, parts);
	r = store_wend(s, r);
	if (r == 0 && parts)
		store_journal_changed(s, id, parts);
	return r;
}

static int bind_put(struct store *s, sqlite3_stmt *st,
                    const struct store_sandbox *r)
{
	int e = 0;

	e |= store_bind_str(st, 1, r->id);
	e |= store_bind_str(st, 2, r->name);
	e |= store_bind_str(st, 3, sbx_status_str(r->status));
	e |= store_bind_str(st, 4, r->template_id);
	e |= store_bind_str(st, 5, r->template_name);
	e |= store_bind_str(st, 6, r->region);
	e |= store_bind_str(st, 7, r->public_host);
	e |= store_bind_i64(st, 8, r->vcpu);
	e |= store_bind_i64(st, 9, r->memory_mb);
	e |= store_bind_i64(st, 10, r->disk_mb);
	e |= store_bind_i64(st, 11, r->internet_access);
	e |= store_bind_i64(st, 12, r->timeout_seconds);
	e |= store_bind_i64(st, 13, r->expires_at);
	e |= store_bind_i64(st, 14, r->created_at);
	e |= store_bind_i64(st, 15, r->confirmed_at);
	e |= store_bind_i64(st, 16, r->stale ? 1 : 0);
	e |= store_bind_str(st, 17, r->last_error);
	e |= store_bind_i64(st, 18, r->auto_resume ? 1 : 0);
	e |= store_bind_i64(st, 19, r->keepalive_s);
	e |= store_bind_i64(st, 20, r->pause_on_shutdown ? 1 : 0);
	e |= store_bind_i64(st, 21, store_now(s));
	e |= store_bind_i64(st, 22, r->idle_pause_s);
	e |= store_bind_str(st, 23, store_expiry_str(r->on_expiry));
	return e ? ERR_NOMEM : 0;
}

int store_sandbox_put(struct store *s, const struct store_sandbox *r,
                      enum store_cause cause, int *created)
{
	int r2, isnew;
	cJSON *d;

	if (sbx_id_check(r->id) != 0 ||
	    (r->name && sbx_name_check(r->name) != 0) || r->keepalive_s < 0)
		return ERR_INVAL;
	if ((r2 = store_wbegin(s)) != 0)
		return r2;
	r2 = sbx_peek(s, r->id, NULL, NULL, NULL);
	isnew = r2 == ERR_NOTFOUND;
	if (r2 == 0 || isnew)
		r2 = bind_put(s, s->st[ST_SBX_PUT], r);
	if (r2 == 0)
		r2 = store_step_done(s->st[ST_SBX_PUT]);
	if (r2 == 0 && isnew) {
		d = cJSON_CreateObject();
		json_add_str(d, "status", sbx_status_str(r->status));
		json_add_str(d, "name", r->name);
		r2 = event_json(s, r->id, "tracked", cause, d);
	}
	r2 = wend_changed(s, r2, r->id,
	                  STORE_PART_ROW | (isnew ? STORE_PART_NEW : 0));
	if (r2 == 0 && created)
		*created = isnew;
	return r2;
}

/* Reads the one row st selects into out; ERR_NOTFOUND when none. */
static int get_one(sqlite3_stmt *st, const char *key, struct store_sandbox *out)
{
	int rc, r;

	store_bind_str(st, 1, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = read_row(st, out);
	else
		r = rc == SQLITE_DONE ? ERR_NOTFOUND : store_err(rc);
	sqlite3_reset(st);
	if (r != 0)
		store_sandbox_finish(out);
	return r;
}

int store_sandbox_get(struct store *s, const char *ref,
                      struct store_sandbox *out)
{
	int r;

	store_sandbox_init(out);
	if (ref == NULL)
		return ERR_INVAL;
	r = get_one(store_stmt(s, ST_SBX_GET_ID), ref, out);
	if (r == ERR_NOTFOUND)
		r = get_one(store_stmt(s, ST_SBX_GET_NAME), ref, out);
	return r;
}

void store_bind_filter(sqlite3_stmt *st, const struct store_filter *f)
{
	if (f && f->has_status)
		store_bind_str(st, 1, sbx_status_str(f->status));
	store_bind_str(st, 2, f ? f->name : NULL);
	store_bind_str(st, 3, f ? f->label_key : NULL);
	store_bind_str(st, 4, f ? f->label_value : NULL);
	store_bind_str(st, 5, f && f->after_id ? f->after_id : "");
	store_bind_i64(st, 6, f && f->limit ? (int64_t)f->limit : -1);
}

int store_sandbox_list(struct store *s, const struct store_filter *f,
                       store_sandbox_cb cb, void *ud)
{
	sqlite3_stmt *st = store_stmt(s, ST_SBX_LIST);
	struct store_sandbox r;
	int rc, ret = 0;

	store_bind_filter(st, f);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		store_sandbox_init(&r);
		ret = read_row(st, &r);
		if (ret == 0)
			ret = cb(ud, &r);
		store_sandbox_finish(&r);
		if (ret != 0)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = store_err(rc);
	sqlite3_reset(st);
	return ret;
}

int store_sandbox_count(struct store *s, size_t counts[SBX_STATUS_COUNT])
{
	sqlite3_stmt *st = store_stmt(s, ST_SBX_COUNT);
	enum sbx_status status;
	int rc;

	memset(counts, 0, sizeof(size_t) * SBX_STATUS_COUNT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sbx_status_parse((const char *)sqlite3_column_text(st, 0),
		                     &status) == 0)
			counts[status] = (size_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

int store_sandbox_rename(struct store *s, const char *id, const char *name,
                         enum store_cause cause)
{
	sqlite3_stmt *st;
	char *old = NULL;
	cJSON *d;
	int r;

	if (name && sbx_name_check(name) != 0)
		return ERR_INVAL;
	if ((r = store_wbegin(s)) != 0)
		return r;
	r = sbx_peek(s, id, NULL, &old, NULL);
	if (r == 0) {
		st = store_stmt(s, ST_SBX_RENAME);
		store_bind_str(st, 1, id);
		store_bind_str(st, 2, name);
		store_bind_i64(st, 3, store_now(s));
		r = store_step_done(st);
	}
	if (r == 0) {
		d = cJSON_CreateObject();
		json_add_str(d, "from", old);
		json_add_str(d, "to", name);
		r = event_json(s, id, "renamed", cause, d);
	}
	free(old);
	return wend_changed(s, r, id, STORE_PART_NAME);
}

static int bind_meta(sqlite3_stmt *st, const char *id,
                     const struct store_meta *m)
{
	int e = 0;

	e |= store_bind_str(st, 1, id);
	e |= store_bind_str(st, 2, m->template_id);
	e |= store_bind_str(st, 3, m->template_name);
	e |= store_bind_str(st, 4, m->region);
	e |= store_bind_str(st, 5, m->public_host);
	e |= store_bind_i64(st, 6, m->timeout_seconds);
	e |= store_bind_i64(st, 7, m->expires_at);
	e |= store_bind_i64(st, 8, m->created_at);
	e |= store_bind_i64(st, 9, m->vcpu);
	e |= store_bind_i64(st, 10, m->memory_mb);
	e |= store_bind_i64(st, 11, m->disk_mb);
	return e ? ERR_NOMEM : 0;
}

static int status_event(struct store *s, const char *id, enum sbx_status old,
                        enum sbx_status status, enum store_cause cause,
                        const char *why, int64_t *seq)
{
	cJSON *d = cJSON_CreateObject();
	char *detail;
	int r;

	json_add_str(d, "from", sbx_status_str(old));
	json_add_str(d, "to", sbx_status_str(status));
	if (why)
		json_add_str(d, "why", why);
	detail = json_print(d);
	cJSON_Delete(d);
	r = detail ? store_event_append(s, id, "status", cause, detail, seq)
	           : ERR_NOMEM;
	free(detail);
	return r;
}

/*
 * What HopX said of a sandbox. Only what changed is journaled: a status
 * confirmed as it was (a reconcile's usual finding) moves confirmed_at
 * here and is no write for the fleet's registry.
 */
int store_sandbox_observe(struct store *s, const char *id,
                          enum sbx_status status, const struct store_meta *meta,
                          enum store_cause cause, const char *why, int64_t *seq)
{
	enum sbx_status old = SBX_UNKNOWN;
	int64_t evseq = 0;
	unsigned parts = 0;
	sqlite3_stmt *st;
	int r, was_stale = 0;

	if ((r = store_wbegin(s)) != 0)
		return r;
	r = sbx_peek(s, id, &old, NULL, &was_stale);
	if (old != status || was_stale)
		parts |= STORE_PART_STATUS;
	if (r == 0) {
		st = store_stmt(s, ST_SBX_STATUS);
		store_bind_str(st, 1, id);
		store_bind_str(st, 2, sbx_status_str(status));
		store_bind_i64(st, 3, store_now(s));
		r = store_step_done(st);
	}
	if (r == 0 && meta) {
		st = store_stmt(s, ST_SBX_META);
		if ((r = bind_meta(st, id, meta)) == 0)
			r = store_step_done(st);
		else
			sqlite3_reset(st);
		if (r == 0 && sqlite3_changes(s->db) > 0)
			parts |= STORE_PART_META;
	}
	if (r == 0 && old != status)
		r = status_event(s, id, old, status, cause, why, &evseq);
	r = wend_changed(s, r, id, parts);
	if (r == 0 && seq)
		*seq = evseq;
	return r;
}

int store_sandbox_set_status(struct store *s, const char *id,
                             enum sbx_status status, enum store_cause cause,
                             int64_t *seq)
{
	return store_sandbox_observe(s, id, status, NULL, cause, NULL, seq);
}

int store_sandbox_set_paused_by_agent(struct store *s, const char *id, int on)
{
	sqlite3_stmt *st = store_stmt(s, ST_SBX_PAUSED_BY_AGENT);
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	store_bind_str(st, 1, id);
	store_bind_i64(st, 2, on ? 1 : 0);
	r = store_step_done(st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = ERR_NOTFOUND;
	return wend_changed(s, r, id, STORE_PART_STATUS);
}

int store_sandbox_mark_stale(struct store *s, const char *id, const char *error)
{
	sqlite3_stmt *st;
	int r, was_stale = 0;
	cJSON *d;

	if ((r = store_wbegin(s)) != 0)
		return r;
	r = sbx_peek(s, id, NULL, NULL, &was_stale);
	if (r == 0) {
		st = store_stmt(s, ST_SBX_STALE);
		store_bind_str(st, 1, id);
		store_bind_str(st, 2, error);
		store_bind_i64(st, 3, store_now(s));
		r = store_step_done(st);
	}
	if (r == 0 && !was_stale) {
		d = cJSON_CreateObject();
		json_add_str(d, "error", error);
		r = event_json(s, id, "stale", STORE_CAUSE_AGENT, d);
	}
	return wend_changed(s, r, id, STORE_PART_STATUS);
}

static int policy_event(struct store *s, const char *id, sqlite3_stmt *st,
                        enum store_cause cause)
{
	cJSON *d = cJSON_CreateObject();

	json_add_bool(d, "auto_resume", sqlite3_column_int(st, 0));
	json_add_i64(d, "keepalive_s", sqlite3_column_int64(st, 1));
	json_add_bool(d, "pause_on_shutdown", sqlite3_column_int(st, 2));
	json_add_i64(d, "idle_pause_s", sqlite3_column_int64(st, 3));
	json_add_str(d, "on_expiry", (const char *)sqlite3_column_text(st, 4));
	sqlite3_reset(st);
	return event_json(s, id, "policy", cause, d);
}

void store_policy_keep(struct store_policy *p)
{
	p->auto_resume = p->keepalive_s = p->pause_on_shutdown = -1;
	p->idle_pause_s = p->on_expiry = -1;
}

static const char *const expiry_names[] = {"kill", "pause", "extend"};

const char *store_expiry_str(int on_expiry)
{
	return on_expiry >= 0 && on_expiry <= STORE_EXPIRY_EXTEND
	               ? expiry_names[on_expiry]
	               : NULL;
}

int store_expiry_parse(const char *s)
{
	int i;

	for (i = 0; s && i <= STORE_EXPIRY_EXTEND; i++)
		if (strcmp(s, expiry_names[i]) == 0)
			return i;
	return -1;
}

static int64_t or_null(int64_t v)
{
	return v < 0 ? STORE_NULL : v;
}

int store_sandbox_set_policy(struct store *s, const char *id,
                             const struct store_policy *p,
                             enum store_cause cause)
{
	sqlite3_stmt *st;
	int r, rc;

	if (p->auto_resume > 1 || p->pause_on_shutdown > 1 ||
	    p->on_expiry > STORE_EXPIRY_EXTEND)
		return ERR_INVAL;
	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_SBX_POLICY);
	store_bind_str(st, 1, id);
	store_bind_i64(st, 2, or_null(p->auto_resume));
	store_bind_i64(st, 3, or_null(p->keepalive_s));
	store_bind_i64(st, 4, or_null(p->pause_on_shutdown));
	store_bind_i64(st, 5, store_now(s));
	store_bind_i64(st, 6, or_null(p->idle_pause_s));
	store_bind_str(st, 7, store_expiry_str((int)p->on_expiry));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = policy_event(s, id, st, cause);
	else
		r = rc == SQLITE_DONE ? ERR_NOTFOUND : store_err(rc);
	sqlite3_reset(st);
	return wend_changed(s, r, id, STORE_PART_POLICY);
}

int store_sandbox_forget(struct store *s, const char *id,
                         enum store_cause cause)
{
	sqlite3_stmt *st;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_SBX_FORGET);
	store_bind_str(st, 1, id);
	r = store_step_done(st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = ERR_NOTFOUND;
	if (r == 0)
		r = store_event_append(s, id, "forgotten", cause, NULL, NULL);
	return wend_changed(s, r, id, STORE_PART_GONE);
}

static int label_event(struct store *s, const char *id, const char *key,
                       const char *value, enum store_cause cause)
{
	cJSON *d = cJSON_CreateObject();

	json_add_str(d, "key", key);
	json_add_str(d, "value", value);
	return event_json(s, id, "label", cause, d);
}

int store_label_set(struct store *s, const char *id, const char *key,
                    const char *value, enum store_cause cause)
{
	sqlite3_stmt *st;
	int r;

	if (sbx_label_check(key, value) != 0)
		return ERR_INVAL;
	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_LABEL_SET);
	store_bind_str(st, 1, id);
	store_bind_str(st, 2, key);
	store_bind_str(st, 3, value);
	r = store_step_done(st);
	if (r == 0)
		r = label_event(s, id, key, value, cause);
	return wend_changed(s, r, id, STORE_PART_LABELS);
}

int store_label_unset(struct store *s, const char *id, const char *key,
                      enum store_cause cause)
{
	sqlite3_stmt *st;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_LABEL_UNSET);
	store_bind_str(st, 1, id);
	store_bind_str(st, 2, key);
	r = store_step_done(st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = ERR_NOTFOUND;
	if (r == 0)
		r = label_event(s, id, key, NULL, cause);
	return wend_changed(s, r, id, STORE_PART_LABELS);
}

int store_token_put(struct store *s, const char *id, const char *token,
                    int64_t expires_at, int64_t issued_at, int *replaced)
{
	sqlite3_stmt *st;
	int r, changed = 0;

	if (token == NULL || *token == '\0' || expires_at == STORE_NULL)
		return ERR_INVAL;
	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_TOKEN_PUT);
	store_bind_str(st, 1, id);
	store_bind_str(st, 2, token);
	store_bind_i64(st, 3, expires_at);
	store_bind_i64(st, 4,
	               issued_at == STORE_NULL ? store_now(s) : issued_at);
	r = store_step_done(st);
	if (r == 0)
		changed = sqlite3_changes(s->db) > 0;
	if (r == 0 && changed)
		r = store_proof_add(s, id, token, issued_at);
	r = wend_changed(s, r, id, changed ? STORE_PART_TOKEN : 0);
	if (r == 0 && replaced)
		*replaced = changed;
	return r;
}

/* ---- events ---- */

/* Where an event goes when a journal is installed: 1 = handled there. */
static int journal_event(struct store *s, const struct store_event *e, int *r)
{
	if (s->journal.event == NULL)
		return 0;
	*r = s->journal_muted ? 0 : s->journal.event(s->journal.ud, e);
	return 1;
}

static int event_insert(struct store *s, const struct store_event *e,
                        int64_t *seq)
{
	sqlite3_stmt *st;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_EVENT_ADD);
	store_bind_i64(st, 1, e->at);
	store_bind_str(st, 2, e->sandbox_id);
	store_bind_str(st, 3, e->type);
	store_bind_str(st, 4, store_cause_str(e->cause));
	store_bind_str(st, 5, e->detail);
	store_bind_str(st, 6, e->host);
	store_bind_i64(st, 7, e->seq > 0 ? e->seq : STORE_NULL);
	r = store_step_done(st);
	if (r == 0 && seq)
		*seq = sqlite3_last_insert_rowid(s->db);
	return store_wend(s, r);
}

int store_event_append(struct store *s, const char *sandbox_id,
                       const char *type, enum store_cause cause,
                       const char *detail, int64_t *seq)
{
	struct store_event e = {.at = store_now(s),
	                        .sandbox_id = sandbox_id,
	                        .type = type,
	                        .cause = cause,
	                        .detail = detail};
	int r;

	if (type == NULL)
		return ERR_INVAL;
	if (seq)
		*seq = 0;
	if (journal_event(s, &e, &r))
		return r;
	return event_insert(s, &e, seq);
}

int store_event_mirror(struct store *s, const struct store_event *e)
{
	int r;

	if (e->type == NULL || e->seq <= 0)
		return ERR_INVAL;
	r = event_insert(s, e, NULL);
	return r == ERR_EXISTS ? 0 : r;
}

int store_outbox_list(struct store *s, store_outbox_cb cb, void *ud)
{
	sqlite3_stmt *st = store_stmt(s, ST_OUTBOX_LIST);
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = cb(ud, (const char *)sqlite3_column_text(st, 0),
		         (unsigned)sqlite3_column_int64(st, 1));
		if (ret)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = store_err(rc);
	sqlite3_reset(st);
	return ret;
}

int store_outbox_done(struct store *s, const char *sandbox_id, unsigned left)
{
	sqlite3_stmt *st;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, left ? ST_OUTBOX_SET : ST_OUTBOX_DEL);
	store_bind_str(st, 1, sandbox_id);
	if (left)
		store_bind_i64(st, 2, (int64_t)left);
	return store_wend(s, store_step_done(st));
}

void store_set_journal(struct store *s, const struct store_journal *j)
{
	memset(&s->journal, 0, sizeof(s->journal));
	if (j)
		s->journal = *j;
}

void store_journal_mute(struct store *s, int on)
{
	s->journal_muted = on;
}

void store_journal_changed(struct store *s, const char *id, unsigned parts)
{
	if (s->journal.changed && !s->journal_muted && id)
		s->journal.changed(s->journal.ud, id, parts);
}

enum store_cause store_cause_parse(const char *c)
{
	if (c && strcmp(c, "user") == 0)
		return STORE_CAUSE_USER;
	if (c && strcmp(c, "remote") == 0)
		return STORE_CAUSE_REMOTE;
	if (c && strcmp(c, "traffic") == 0)
		return STORE_CAUSE_TRAFFIC;
	return STORE_CAUSE_AGENT;
}

int store_event_since(struct store *s, int64_t after, size_t limit,
                      store_event_cb cb, void *ud)
{
	sqlite3_stmt *st = store_stmt(s, ST_EVENT_SINCE);
	struct store_event e;
	int rc, ret = 0;

	store_bind_i64(st, 1, after);
	store_bind_i64(st, 2, limit ? (int64_t)limit : -1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		e.seq = sqlite3_column_int64(st, 0);
		e.at = sqlite3_column_int64(st, 1);
		e.sandbox_id = (const char *)sqlite3_column_text(st, 2);
		e.type = (const char *)sqlite3_column_text(st, 3);
		e.cause = store_cause_parse(
		        (const char *)sqlite3_column_text(st, 4));
		e.detail = (const char *)sqlite3_column_text(st, 5);
		e.host = (const char *)sqlite3_column_text(st, 6);
		if ((ret = cb(ud, &e)) != 0)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = store_err(rc);
	sqlite3_reset(st);
	return ret;
}

int store_event_last_seq(struct store *s, int64_t *seq)
{
	sqlite3_stmt *st = store_stmt(s, ST_EVENT_LAST);
	int rc = sqlite3_step(st);

	*seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_err(rc);
}

int store_event_prune(struct store *s, size_t keep, int64_t max_age_ms,
                      size_t *removed)
{
	sqlite3_stmt *st;
	size_t n = 0;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	if (max_age_ms > 0) {
		st = store_stmt(s, ST_EVENT_PRUNE_AGE);
		store_bind_i64(st, 1, store_now(s) - max_age_ms);
		if ((r = store_step_done(st)) == 0)
			n += (size_t)sqlite3_changes(s->db);
	}
	if (r == 0 && keep > 0) {
		st = store_stmt(s, ST_EVENT_PRUNE_COUNT);
		store_bind_i64(st, 1, (int64_t)keep);
		if ((r = store_step_done(st)) == 0)
			n += (size_t)sqlite3_changes(s->db);
	}
	r = store_wend(s, r);
	if (r == 0 && removed)
		*removed = n;
	return r;
}

/* ---- intents ---- */

int store_intent_add(struct store *s, const char *kind, const char *request,
                     const char *name, int64_t *id)
{
	sqlite3_stmt *st;
	int r, rc;

	if (kind == NULL || request == NULL)
		return ERR_INVAL;
	if ((r = store_wbegin(s)) != 0)
		return r;
	if (name) {
		st = store_stmt(s, ST_INTENT_NAME_OPEN);
		store_bind_str(st, 1, name);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		r = rc == SQLITE_ROW ? ERR_EXISTS
		                     : (rc == SQLITE_DONE ? 0 : store_err(rc));
	}
	if (r == 0) {
		st = store_stmt(s, ST_INTENT_ADD);
		store_bind_str(st, 1, kind);
		store_bind_str(st, 2, request);
		store_bind_str(st, 3, name);
		store_bind_i64(st, 4, store_now(s));
		r = store_step_done(st);
	}
	if (r == 0 && id)
		*id = sqlite3_last_insert_rowid(s->db);
	return store_wend(s, r);
}

int store_intent_sent(struct store *s, int64_t id)
{
	sqlite3_stmt *st;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_INTENT_SENT);
	store_bind_i64(st, 1, id);
	store_bind_i64(st, 2, store_now(s));
	return store_wend(s, store_step_done(st));
}

int store_intent_resolve(struct store *s, int64_t id, const char *sandbox_id)
{
	sqlite3_stmt *st;
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_INTENT_RESOLVE);
	store_bind_i64(st, 1, id);
	store_bind_str(st, 2, sandbox_id ? "done" : "failed");
	store_bind_str(st, 3, sandbox_id);
	store_bind_i64(st, 4, store_now(s));
	r = store_step_done(st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = ERR_NOTFOUND;
	return store_wend(s, r);
}

int store_intent_list_open(struct store *s, store_intent_cb cb, void *ud)
{
	sqlite3_stmt *st = store_stmt(s, ST_INTENT_OPEN);
	struct store_intent in;
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		in.id = sqlite3_column_int64(st, 0);
		in.kind = (const char *)sqlite3_column_text(st, 1);
		in.request = (const char *)sqlite3_column_text(st, 2);
		in.name = (const char *)sqlite3_column_text(st, 3);
		in.created_at = sqlite3_column_int64(st, 4);
		in.sent_at = sqlite3_column_int64(st, 5); /* NULL: 0 */
		if ((ret = cb(ud, &in)) != 0)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = store_err(rc);
	sqlite3_reset(st);
	return ret;
}

/* Reports kept: enough to compare a few runs, bounded in size. */
#define REPORTS_KEEP 20

int store_report_add(struct store *s, const char *trigger, int64_t started_at,
                     int64_t finished_at, const char *report, int64_t *id)
{
	sqlite3_stmt *st = store_stmt(s, ST_REPORT_ADD);
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	store_bind_str(st, 1, trigger);
	store_bind_i64(st, 2, started_at);
	store_bind_i64(st, 3, finished_at);
	store_bind_str(st, 4, report);
	r = store_step_done(st);
	if (r == 0 && id)
		*id = sqlite3_last_insert_rowid(s->db);
	if (r == 0) {
		st = store_stmt(s, ST_REPORT_PRUNE);
		store_bind_i64(st, 1, REPORTS_KEEP);
		r = store_step_done(st);
	}
	return store_wend(s, r);
}

int store_report_last(struct store *s, int64_t *id, char **report)
{
	sqlite3_stmt *st = store_stmt(s, ST_REPORT_LAST);
	int rc, r = 0;

	*report = NULL;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		*report = col_str(st, 1, &r);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return r;
	return rc == SQLITE_DONE ? ERR_NOTFOUND : store_err(rc);
}
