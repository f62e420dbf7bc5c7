/* Unit tests for store/: every function against a real database file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "err.h"
#include "log.h"
#include "store.h"
#include "testutil.h"

#define T0 1763784000000LL /* 2025-11-22T04:00:00Z */

struct fx {
	char dir[256];
	char path[300];
	struct clock_fake clk;
	struct store *s;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char *cause = NULL;

	assert_non_null(f);
	assert_int_equal(tu_tmpdir(f->dir, sizeof(f->dir)), 0);
	tu_path(f->path, sizeof(f->path), f->dir, "state/hopxd.db");
	clock_fake_init(&f->clk, T0, 0);
	assert_int_equal(store_open(f->path, 0, &f->clk.clock, &f->s, &cause),
	                 0);
	assert_null(cause);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	/* Every statement finalised: close must succeed. */
	assert_int_equal(store_close(f->s), 0);
	tu_rmrf(f->dir);
	free(f);
	return 0;
}

/* Tracks a sandbox with an optional name; returns 0 or the error. */
static int track(struct fx *f, const char *id, const char *name,
                 enum sbx_status status)
{
	struct store_sandbox r;
	int rc;

	store_sandbox_init(&r);
	r.id = (char *)id;
	r.name = (char *)name;
	r.status = status;
	rc = store_sandbox_put(f->s, &r, STORE_CAUSE_USER, NULL);
	return rc;
}

struct evlist {
	int n;
	char types[64][32];
	char details[64][256];
	int64_t seqs[64];
	enum store_cause causes[64];
};

static int ev_cb(void *ud, const struct store_event *e)
{
	struct evlist *l = ud;

	if (l->n >= 64)
		return 1;
	snprintf(l->types[l->n], sizeof(l->types[0]), "%s", e->type);
	snprintf(l->details[l->n], sizeof(l->details[0]), "%s",
	         e->detail ? e->detail : "");
	l->seqs[l->n] = e->seq;
	l->causes[l->n] = e->cause;
	l->n++;
	return 0;
}

static void events(struct fx *f, int64_t after, struct evlist *l)
{
	memset(l, 0, sizeof(*l));
	assert_int_equal(store_event_since(f->s, after, 0, ev_cb, l), 0);
}

static void t_open_modes_and_pragmas(void **state)
{
	struct fx *f = *state;
	struct stat sb;
	char dir[300];
	sqlite3 *db;
	sqlite3_stmt *st;

	tu_path(dir, sizeof(dir), f->dir, "state");
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(store_schema_version(f->s), store_schema_latest());
	/* A second connection sees WAL mode and the schema version. */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(
	        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
	        SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_int_equal(store_check(f->s, 1, NULL), 0);
}

static void t_put_get(void **state)
{
	struct fx *f = *state;
	struct store_sandbox r, g;
	int created = -1;
	struct evlist l;

	store_sandbox_init(&r);
	r.id = "1761048129dsaqav4n";
	r.name = "web";
	r.status = SBX_RUNNING;
	r.template_name = "code-interpreter";
	r.public_host = "https://x.hopx.dev";
	r.vcpu = 2;
	r.expires_at = T0 + 3600000;
	r.keepalive_s = 600;
	assert_int_equal(
	        store_sandbox_put(f->s, &r, STORE_CAUSE_USER, &created), 0);
	assert_int_equal(created, 1);
	assert_int_equal(store_sandbox_get(f->s, "web", &g), 0);
	assert_string_equal(g.id, "1761048129dsaqav4n");
	assert_int_equal(g.status, SBX_RUNNING);
	assert_string_equal(g.template_name, "code-interpreter");
	assert_int_equal(g.vcpu, 2);
	assert_int_equal(g.memory_mb, STORE_NULL);
	assert_int_equal(g.expires_at, T0 + 3600000);
	assert_int_equal(g.tracked_at, T0);
	assert_int_equal(g.auto_resume, 1);
	assert_int_equal(g.keepalive_s, 600);
	assert_null(g.token);
	assert_int_equal(g.nlabels, 0);
	store_sandbox_finish(&g);
	/* Update: same id, tracked_at kept, no second "tracked" event. */
	clock_fake_advance(&f->clk, 5000);
	r.status = SBX_PAUSED;
	assert_int_equal(
	        store_sandbox_put(f->s, &r, STORE_CAUSE_AGENT, &created), 0);
	assert_int_equal(created, 0);
	assert_int_equal(store_sandbox_get(f->s, r.id, &g), 0);
	assert_int_equal(g.status, SBX_PAUSED);
	assert_int_equal(g.tracked_at, T0);
	assert_int_equal(g.updated_at, T0 + 5000);
	store_sandbox_finish(&g);
	events(f, 0, &l);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.types[0], "tracked");
	assert_int_equal(l.causes[0], STORE_CAUSE_USER);
	assert_int_equal(store_sandbox_get(f->s, "nope", &g), ERR_NOTFOUND);
	assert_int_equal(store_sandbox_get(f->s, NULL, &g), ERR_INVAL);
}

static void t_put_rejects(void **state)
{
	struct fx *f = *state;
	struct store_sandbox r;

	assert_int_equal(track(f, "a1", "dup", SBX_RUNNING), 0);
	assert_int_equal(track(f, "a2", "dup", SBX_RUNNING), ERR_EXISTS);
	assert_int_equal(track(f, "bad id", NULL, SBX_RUNNING), ERR_INVAL);
	assert_int_equal(track(f, "a3", "-bad", SBX_RUNNING), ERR_INVAL);
	store_sandbox_init(&r);
	r.id = "a4";
	r.keepalive_s = -5;
	assert_int_equal(store_sandbox_put(f->s, &r, STORE_CAUSE_USER, NULL),
	                 ERR_INVAL);
	/* Nothing of the refused writes is left behind. */
	assert_int_equal(store_sandbox_get(f->s, "a2", &r), ERR_NOTFOUND);
	assert_int_equal(store_sandbox_get(f->s, "a4", &r), ERR_NOTFOUND);
}

static void t_get_prefers_id_over_name(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;

	/* Sandbox b is named "a1", which is also sandbox a1's id. */
	assert_int_equal(track(f, "a1", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "b", "a1", SBX_PAUSED), 0);
	assert_int_equal(store_sandbox_get(f->s, "a1", &g), 0);
	assert_string_equal(g.id, "a1");
	store_sandbox_finish(&g);
}

struct idlist {
	int n;
	char ids[32][16];
};

static int id_cb(void *ud, const struct store_sandbox *r)
{
	struct idlist *l = ud;

	snprintf(l->ids[l->n++], sizeof(l->ids[0]), "%s", r->id);
	return l->n >= 32;
}

static int list(struct fx *f, const struct store_filter *flt, struct idlist *l)
{
	memset(l, 0, sizeof(*l));
	return store_sandbox_list(f->s, flt, id_cb, l);
}

static void t_list_filters_and_paging(void **state)
{
	struct fx *f = *state;
	struct store_filter flt;
	struct idlist l;
	size_t counts[SBX_STATUS_COUNT];

	assert_int_equal(track(f, "s1", "one", SBX_RUNNING), 0);
	assert_int_equal(track(f, "s2", NULL, SBX_PAUSED), 0);
	assert_int_equal(track(f, "s3", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "s4", NULL, SBX_STOPPED), 0);
	assert_int_equal(
	        store_label_set(f->s, "s1", "team", "core", STORE_CAUSE_USER),
	        0);
	assert_int_equal(
	        store_label_set(f->s, "s3", "team", "web", STORE_CAUSE_USER),
	        0);
	assert_int_equal(list(f, NULL, &l), 0);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.ids[0], "s1");
	assert_string_equal(l.ids[3], "s4");
	memset(&flt, 0, sizeof(flt));
	flt.has_status = 1;
	flt.status = SBX_RUNNING;
	assert_int_equal(list(f, &flt, &l), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.ids[1], "s3");
	memset(&flt, 0, sizeof(flt));
	flt.label_key = "team";
	assert_int_equal(list(f, &flt, &l), 0);
	assert_int_equal(l.n, 2);
	flt.label_value = "web";
	assert_int_equal(list(f, &flt, &l), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.ids[0], "s3");
	memset(&flt, 0, sizeof(flt));
	flt.name = "one";
	assert_int_equal(list(f, &flt, &l), 0);
	assert_int_equal(l.n, 1);
	/* Keyset paging: two pages of two. */
	memset(&flt, 0, sizeof(flt));
	flt.limit = 2;
	assert_int_equal(list(f, &flt, &l), 0);
	assert_int_equal(l.n, 2);
	flt.after_id = "s2";
	assert_int_equal(list(f, &flt, &l), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.ids[0], "s3");
	assert_int_equal(store_sandbox_count(f->s, counts), 0);
	assert_int_equal(counts[SBX_RUNNING], 2);
	assert_int_equal(counts[SBX_PAUSED], 1);
	assert_int_equal(counts[SBX_STOPPED], 1);
	assert_int_equal(counts[SBX_GONE], 0);
}

/* The per-status counts are kept by triggers: every kind of write moves
 * them, and they always equal a count of the rows. */
static void t_counts_follow_writes(void **state)
{
	struct fx *f = *state;
	size_t counts[SBX_STATUS_COUNT];

	assert_int_equal(track(f, "c1", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "c2", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "c3", NULL, SBX_PAUSED), 0);
	assert_int_equal(track(f, "c2", NULL, SBX_RUNNING),
	                 0); /* an upsert, same status */
	assert_int_equal(store_sandbox_set_status(f->s, "c1", SBX_PAUSED,
	                                          STORE_CAUSE_AGENT, NULL),
	                 0);
	assert_int_equal(track(f, "c3", NULL, SBX_STOPPED),
	                 0); /* an upsert changing status */
	assert_int_equal(store_sandbox_forget(f->s, "c2", STORE_CAUSE_USER), 0);
	assert_int_equal(store_sandbox_count(f->s, counts), 0);
	assert_int_equal(counts[SBX_RUNNING], 0);
	assert_int_equal(counts[SBX_PAUSED], 1);
	assert_int_equal(counts[SBX_STOPPED], 1);
}

/* status_since moves when the status changes, and only then. */
static int64_t since_of(struct fx *f, const char *id)
{
	struct store_sandbox g;
	int64_t t;

	store_sandbox_init(&g);
	assert_int_equal(store_sandbox_get(f->s, id, &g), 0);
	t = g.status_since;
	store_sandbox_finish(&g);
	return t;
}

static void t_status_since_follows_status(void **state)
{
	struct fx *f = *state;

	assert_int_equal(track(f, "d1", NULL, SBX_RUNNING), 0);
	assert_int_equal(since_of(f, "d1"), T0);
	clock_fake_advance(&f->clk, 5000);
	assert_int_equal(track(f, "d1", "web", SBX_RUNNING), 0);
	assert_int_equal(since_of(f, "d1"), T0); /* same status: unchanged */
	clock_fake_advance(&f->clk, 5000);
	assert_int_equal(store_sandbox_set_status(f->s, "d1", SBX_PAUSED,
	                                          STORE_CAUSE_AGENT, NULL),
	                 0);
	assert_int_equal(since_of(f, "d1"), T0 + 10000);
	clock_fake_advance(&f->clk, 5000);
	assert_int_equal(track(f, "d1", "web", SBX_STOPPED), 0);
	assert_int_equal(since_of(f, "d1"), T0 + 15000);
}

static int stop_cb(void *ud, const struct store_sandbox *r)
{
	(void)r;
	return ++*(int *)ud == 2 ? 42 : 0;
}

static void t_list_callback_stops(void **state)
{
	struct fx *f = *state;
	int calls = 0;

	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "s2", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "s3", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_sandbox_list(f->s, NULL, stop_cb, &calls), 42);
	assert_int_equal(calls, 2);
}

static void t_rename(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;
	struct evlist l;

	assert_int_equal(track(f, "s1", "old", SBX_RUNNING), 0);
	assert_int_equal(track(f, "s2", "taken", SBX_RUNNING), 0);
	assert_int_equal(
	        store_sandbox_rename(f->s, "s1", "new", STORE_CAUSE_USER), 0);
	assert_int_equal(store_sandbox_get(f->s, "new", &g), 0);
	assert_string_equal(g.id, "s1");
	store_sandbox_finish(&g);
	assert_int_equal(store_sandbox_get(f->s, "old", &g), ERR_NOTFOUND);
	assert_int_equal(
	        store_sandbox_rename(f->s, "s1", "taken", STORE_CAUSE_USER),
	        ERR_EXISTS);
	assert_int_equal(
	        store_sandbox_rename(f->s, "zz", "x", STORE_CAUSE_USER),
	        ERR_NOTFOUND);
	assert_int_equal(
	        store_sandbox_rename(f->s, "s1", "bad name", STORE_CAUSE_USER),
	        ERR_INVAL);
	assert_int_equal(
	        store_sandbox_rename(f->s, "s1", NULL, STORE_CAUSE_USER), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_null(g.name);
	store_sandbox_finish(&g);
	events(f, 0, &l);
	/* tracked, tracked, renamed old->new, renamed new->null. */
	assert_int_equal(l.n, 4);
	assert_string_equal(l.types[2], "renamed");
	assert_string_equal(l.details[2], "{\"from\":\"old\",\"to\":\"new\"}");
	assert_string_equal(l.details[3], "{\"from\":\"new\",\"to\":null}");
}

static void t_status_with_event(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;
	struct evlist l;
	int64_t seq = -1, last = 0;

	assert_int_equal(track(f, "s1", NULL, SBX_UNKNOWN), 0);
	assert_int_equal(store_sandbox_mark_stale(f->s, "s1", "HTTP 503"), 0);
	assert_int_equal(store_sandbox_mark_stale(f->s, "s1", "timeout"), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.stale, 1);
	assert_string_equal(g.last_error, "timeout");
	assert_int_equal(g.status, SBX_UNKNOWN); /* an outage is not "gone" */
	store_sandbox_finish(&g);
	clock_fake_advance(&f->clk, 1000);
	assert_int_equal(store_sandbox_set_status(f->s, "s1", SBX_RUNNING,
	                                          STORE_CAUSE_REMOTE, &seq),
	                 0);
	assert_true(seq > 0);
	assert_int_equal(store_event_last_seq(f->s, &last), 0);
	assert_int_equal(seq, last);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.status, SBX_RUNNING);
	assert_int_equal(g.stale, 0);
	assert_null(g.last_error);
	assert_int_equal(g.confirmed_at, T0 + 1000);
	store_sandbox_finish(&g);
	/* Same status again: confirmed, but no event. */
	assert_int_equal(store_sandbox_set_status(f->s, "s1", SBX_RUNNING,
	                                          STORE_CAUSE_REMOTE, &seq),
	                 0);
	assert_int_equal(seq, 0);
	events(f, 0, &l);
	/* tracked, stale (once only), status. */
	assert_int_equal(l.n, 3);
	assert_string_equal(l.types[1], "stale");
	assert_string_equal(l.types[2], "status");
	assert_string_equal(l.details[2],
	                    "{\"from\":\"unknown\",\"to\":\"running\"}");
	assert_int_equal(l.causes[2], STORE_CAUSE_REMOTE);
	assert_int_equal(store_sandbox_set_status(f->s, "zz", SBX_GONE,
	                                          STORE_CAUSE_REMOTE, NULL),
	                 ERR_NOTFOUND);
	assert_int_equal(store_sandbox_mark_stale(f->s, "zz", "x"),
	                 ERR_NOTFOUND);
}

static int set_policy(struct fx *f, const char *id, int64_t auto_resume,
                      int64_t keepalive_s, int64_t pause_on_shutdown,
                      int64_t idle_pause_s)
{
	struct store_policy p = {auto_resume, keepalive_s, pause_on_shutdown,
	                         idle_pause_s, -1};

	return store_sandbox_set_policy(f->s, id, &p, STORE_CAUSE_USER);
}

static void t_policy(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;
	struct evlist l;

	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(set_policy(f, "s1", 0, -1, 1, -1), 0);
	assert_int_equal(set_policy(f, "s1", -1, 300, -1, 900), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.auto_resume, 0);
	assert_int_equal(g.keepalive_s, 300);
	assert_int_equal(g.pause_on_shutdown, 1);
	assert_int_equal(g.idle_pause_s, 900);
	store_sandbox_finish(&g);
	events(f, 0, &l);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.details[2], "{\"auto_resume\":false,"
	                                  "\"keepalive_s\":300,"
	                                  "\"pause_on_shutdown\":true,"
	                                  "\"idle_pause_s\":900,"
	                                  "\"on_expiry\":\"kill\"}");
	assert_int_equal(set_policy(f, "zz", 1, -1, -1, -1), ERR_NOTFOUND);
	assert_int_equal(set_policy(f, "s1", 2, -1, -1, -1), ERR_INVAL);
}

static void t_labels(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;

	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(
	        store_label_set(f->s, "s1", "b", "2", STORE_CAUSE_USER), 0);
	assert_int_equal(
	        store_label_set(f->s, "s1", "a", "1", STORE_CAUSE_USER), 0);
	assert_int_equal(
	        store_label_set(f->s, "s1", "b", "two", STORE_CAUSE_USER), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.nlabels, 2);
	assert_string_equal(g.labels[0].key, "a"); /* sorted by key */
	assert_string_equal(g.labels[1].value, "two");
	store_sandbox_finish(&g);
	assert_int_equal(store_label_unset(f->s, "s1", "a", STORE_CAUSE_USER),
	                 0);
	assert_int_equal(store_label_unset(f->s, "s1", "a", STORE_CAUSE_USER),
	                 ERR_NOTFOUND);
	assert_int_equal(
	        store_label_set(f->s, "zz", "a", "1", STORE_CAUSE_USER),
	        ERR_NOTFOUND);
	assert_int_equal(
	        store_label_set(f->s, "s1", "bad key", "1", STORE_CAUSE_USER),
	        ERR_INVAL);
	assert_int_equal(
	        store_label_set(f->s, "s1", "k", "a\x01", STORE_CAUSE_USER),
	        ERR_INVAL);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.nlabels, 1);
	store_sandbox_finish(&g);
}

static void t_token_only_moves_forward(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;
	int replaced = -1;

	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(
	        store_token_put(f->s, "s1", "tokA", T0 + 1000, T0, &replaced),
	        0);
	assert_int_equal(replaced, 1);
	assert_int_equal(
	        store_token_put(f->s, "s1", "tokB", T0 + 2000, T0, &replaced),
	        0);
	assert_int_equal(replaced, 1);
	/* An older token, and an equally old one issued no later, are
	 * refused. */
	assert_int_equal(
	        store_token_put(f->s, "s1", "tokC", T0 + 1500, T0, &replaced),
	        0);
	assert_int_equal(replaced, 0);
	assert_int_equal(
	        store_token_put(f->s, "s1", "tokD", T0 + 2000, T0, &replaced),
	        0);
	assert_int_equal(replaced, 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_string_equal(g.token, "tokB");
	assert_int_equal(g.token_expires_at, T0 + 2000);
	store_sandbox_finish(&g);
	/* Another token as late but issued later (a refresh in the same
	 * second of HopX's clock) is kept; the same one again is not news. */
	assert_int_equal(store_token_put(f->s, "s1", "tokE", T0 + 2000, T0 + 10,
	                                 &replaced),
	                 0);
	assert_int_equal(replaced, 1);
	assert_int_equal(store_token_put(f->s, "s1", "tokE", T0 + 2000, T0 + 20,
	                                 &replaced),
	                 0);
	assert_int_equal(replaced, 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_string_equal(g.token, "tokE");
	store_sandbox_finish(&g);
	assert_int_equal(store_token_put(f->s, "zz", "t", T0, T0, NULL),
	                 ERR_NOTFOUND);
	assert_int_equal(store_token_put(f->s, "s1", "", T0 + 9000, T0, NULL),
	                 ERR_INVAL);
}

static void t_forget_cascades(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;
	struct evlist l;
	int replaced = 0;

	assert_int_equal(track(f, "s1", "n", SBX_RUNNING), 0);
	assert_int_equal(
	        store_label_set(f->s, "s1", "a", "1", STORE_CAUSE_USER), 0);
	assert_int_equal(store_token_put(f->s, "s1", "tok", T0 + 5, T0, NULL),
	                 0);
	assert_int_equal(store_sandbox_forget(f->s, "s1", STORE_CAUSE_USER), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), ERR_NOTFOUND);
	assert_int_equal(store_sandbox_forget(f->s, "s1", STORE_CAUSE_USER),
	                 ERR_NOTFOUND);
	/* Tracking it again starts clean: no old label, no old token. */
	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.nlabels, 0);
	assert_null(g.token);
	store_sandbox_finish(&g);
	assert_int_equal(
	        store_token_put(f->s, "s1", "tok2", T0 + 1, T0, &replaced), 0);
	assert_int_equal(replaced, 1);
	events(f, 0, &l);
	/* tracked, label, forgotten, tracked: the events outlive the row. */
	assert_int_equal(l.n, 4);
	assert_string_equal(l.types[2], "forgotten");
}

static void t_events_since_and_prune(void **state)
{
	struct fx *f = *state;
	struct evlist l;
	int64_t seq = 0, last = 0;
	size_t removed = 0;
	int i;

	for (i = 0; i < 10; i++) {
		assert_int_equal(store_event_append(f->s, i % 2 ? "s1" : NULL,
		                                    "custom", STORE_CAUSE_AGENT,
		                                    "{\"i\":1}", &seq),
		                 0);
		assert_int_equal(seq, i + 1);
		clock_fake_advance(&f->clk, 1000);
	}
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_event_since(f->s, 3, 4, ev_cb, &l), 0);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.seqs[0], 4);
	assert_int_equal(l.seqs[3], 7);
	/* Age: events older than 5.5 s go (the first five). */
	assert_int_equal(store_event_prune(f->s, 0, 5500, &removed), 0);
	assert_int_equal(removed, 5);
	/* Count: keep the newest 3. */
	assert_int_equal(store_event_prune(f->s, 3, 0, &removed), 0);
	assert_int_equal(removed, 2);
	events(f, 0, &l);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.seqs[0], 8);
	/* Sequence numbers are never reused after pruning. */
	assert_int_equal(store_event_prune(f->s, 0, 1, &removed), 0);
	assert_int_equal(store_event_last_seq(f->s, &last), 0);
	assert_int_equal(last, 10);
	assert_int_equal(store_event_append(f->s, NULL, "x", STORE_CAUSE_USER,
	                                    NULL, &seq),
	                 0);
	assert_int_equal(seq, 11);
	assert_int_equal(store_event_append(f->s, NULL, NULL, STORE_CAUSE_USER,
	                                    NULL, &seq),
	                 ERR_INVAL);
}

struct intents {
	int n;
	int64_t ids[8];
	char names[8][32];
};

static int intent_cb(void *ud, const struct store_intent *in)
{
	struct intents *l = ud;

	l->ids[l->n] = in->id;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s",
	         in->name ? in->name : "");
	l->n++;
	return 0;
}

static void t_intents(void **state)
{
	struct fx *f = *state;
	struct intents l;
	int64_t a = 0, b = 0, c = 0;

	assert_int_equal(store_intent_add(f->s, "create",
	                                  "{\"template_name\":\"base\"}", "web",
	                                  &a),
	                 0);
	assert_int_equal(store_intent_add(f->s, "create", "{}", "web", &c),
	                 ERR_EXISTS);
	assert_int_equal(store_intent_add(f->s, "create", "{}", NULL, &b), 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_intent_list_open(f->s, intent_cb, &l), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.names[0], "web");
	assert_int_equal(store_intent_resolve(f->s, a, "sbx1"), 0);
	assert_int_equal(store_intent_resolve(f->s, a, "sbx1"), ERR_NOTFOUND);
	assert_int_equal(store_intent_resolve(f->s, b, NULL), 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_intent_list_open(f->s, intent_cb, &l), 0);
	assert_int_equal(l.n, 0);
	/* The name is free again once its intent is resolved. */
	assert_int_equal(store_intent_add(f->s, "create", "{}", "web", &c), 0);
	assert_int_equal(store_intent_add(f->s, NULL, "{}", NULL, &c),
	                 ERR_INVAL);
}

static void t_group_commit_and_rollback(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_grouped(f->s), 1);
	assert_int_equal(track(f, "s1", "n1", SBX_RUNNING), 0);
	assert_int_equal(track(f, "s2", NULL, SBX_RUNNING), 0);
	/* A failing write inside the group is undone alone. */
	assert_int_equal(track(f, "s3", "n1", SBX_RUNNING), ERR_EXISTS);
	assert_int_equal(store_token_put(f->s, "s2", "t", T0 + 1, T0, NULL), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(store_sandbox_get(f->s, "s2", &g), 0);
	assert_string_equal(g.token, "t");
	store_sandbox_finish(&g);
	assert_int_equal(store_sandbox_get(f->s, "s3", &g), ERR_NOTFOUND);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(track(f, "s4", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_rollback(f->s), 0);
	assert_int_equal(store_sandbox_get(f->s, "s4", &g), ERR_NOTFOUND);
	assert_int_equal(store_commit(f->s), ERR_STATE);
	assert_int_equal(store_rollback(f->s), ERR_STATE);
	assert_int_equal(store_grouped(f->s), 0);
}

/* A group inside a group: all or nothing itself, durable with the outer. */
static void t_group_nested(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;

	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(track(f, "s2", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_rollback(f->s), 0); /* s2 only */
	assert_int_equal(store_grouped(f->s), 1);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(track(f, "s3", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(store_rollback(f->s), 0); /* the outer: s1 and s3 */
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), ERR_NOTFOUND);
	assert_int_equal(store_sandbox_get(f->s, "s3", &g), ERR_NOTFOUND);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(track(f, "s4", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(track(f, "s5", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_rollback(f->s), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(store_sandbox_get(f->s, "s4", &g), 0);
	store_sandbox_finish(&g);
	assert_int_equal(store_sandbox_get(f->s, "s5", &g), ERR_NOTFOUND);
}

static void t_survives_reopen(void **state)
{
	struct fx *f = *state;
	struct store_sandbox g;

	assert_int_equal(track(f, "s1", "n", SBX_PAUSED), 0);
	assert_int_equal(store_token_put(f->s, "s1", "tok", T0 + 9, T0, NULL),
	                 0);
	assert_int_equal(store_close(f->s), 0);
	f->s = NULL;
	assert_int_equal(store_open(f->path, STORE_OPEN_CHECK, &f->clk.clock,
	                            &f->s, NULL),
	                 0);
	assert_int_equal(store_sandbox_get(f->s, "n", &g), 0);
	assert_int_equal(g.status, SBX_PAUSED);
	assert_string_equal(g.token, "tok");
	store_sandbox_finish(&g);
}

/* What HopX said: status with a why, metadata, paused_by_agent cleared. */
static void t_observe_meta_and_paused_by_agent(void **state)
{
	struct fx *f = *state;
	struct store_meta m = {.template_name = "base",
	                       .public_host = "https://h",
	                       .timeout_seconds = 600,
	                       .expires_at = T0 + 600000,
	                       .created_at = STORE_NULL,
	                       .vcpu = STORE_NULL,
	                       .memory_mb = STORE_NULL,
	                       .disk_mb = STORE_NULL};
	struct store_sandbox g;
	struct evlist l;

	assert_int_equal(track(f, "s1", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_sandbox_observe(f->s, "s1", SBX_PAUSED, &m,
	                                       STORE_CAUSE_AGENT, "paused",
	                                       NULL),
	                 0);
	assert_int_equal(store_sandbox_set_paused_by_agent(f->s, "s1", 1), 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.status, SBX_PAUSED);
	assert_int_equal(g.paused_by_agent, 1);
	assert_string_equal(g.template_name, "base");
	assert_string_equal(g.public_host, "https://h");
	assert_int_equal(g.timeout_seconds, 600);
	assert_int_equal(g.expires_at, T0 + 600000);
	store_sandbox_finish(&g);
	/* The same status keeps the mark; a change ends it. */
	assert_int_equal(store_sandbox_observe(f->s, "s1", SBX_PAUSED, NULL,
	                                       STORE_CAUSE_REMOTE, NULL, NULL),
	                 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.paused_by_agent, 1);
	store_sandbox_finish(&g);
	m.timeout_seconds = STORE_NULL; /* no auto-kill any more */
	m.expires_at = STORE_NULL;
	assert_int_equal(store_sandbox_observe(f->s, "s1", SBX_RUNNING, &m,
	                                       STORE_CAUSE_AGENT, "resumed",
	                                       NULL),
	                 0);
	assert_int_equal(store_sandbox_get(f->s, "s1", &g), 0);
	assert_int_equal(g.paused_by_agent, 0);
	assert_int_equal(g.timeout_seconds, STORE_NULL);
	assert_int_equal(g.expires_at, STORE_NULL);
	assert_string_equal(g.template_name, "base"); /* NULL keeps it */
	store_sandbox_finish(&g);
	events(f, 0, &l);
	assert_string_equal(l.details[l.n - 1],
	                    "{\"from\":\"paused\",\"to\":\"running\","
	                    "\"why\":\"resumed\"}");
	assert_int_equal(store_sandbox_set_paused_by_agent(f->s, "zz", 1),
	                 ERR_NOTFOUND);
}

/* Reports: the newest is returned, only the last 20 are kept. */
static void t_reports(void **state)
{
	struct fx *f = *state;
	char text[64], *got = NULL;
	int64_t id = 0, last = 0;
	int i;

	assert_int_equal(store_report_last(f->s, &id, &got), ERR_NOTFOUND);
	for (i = 1; i <= 25; i++) {
		snprintf(text, sizeof(text), "{\"n\":%d}", i);
		assert_int_equal(
		        store_report_add(f->s, "user", T0, T0 + i, text, &last),
		        0);
	}
	assert_int_equal(store_report_last(f->s, &id, &got), 0);
	assert_int_equal(id, last);
	assert_string_equal(got, "{\"n\":25}");
	free(got);
	assert_int_equal(store_report_add(f->s, "bogus", T0, T0, "{}", NULL),
	                 ERR_INVAL);
}

/* Proxy numbers: given once, kept, never given again after a forget. */
static void t_proxy_hosts(void **state)
{
	struct fx *f = *state;
	int64_t a = 0, b = 0, again = 0, c = 0;
	char id[64];

	assert_int_equal(track(f, "aa", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "bb", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_proxy_host(f->s, "zz", &a), ERR_NOTFOUND);
	assert_int_equal(store_proxy_host(f->s, "aa", &a), 0);
	assert_int_equal(store_proxy_host(f->s, "bb", &b), 0);
	assert_int_equal(store_proxy_host(f->s, "aa", &again), 0);
	assert_int_equal(a, again);
	assert_true(a != b && a > 0 && b > 0);
	assert_int_equal(store_proxy_host_id(f->s, b, id, sizeof(id)), 0);
	assert_string_equal(id, "bb");
	assert_int_equal(store_proxy_host_id(f->s, b, id, 2), ERR_NOTFOUND);
	assert_int_equal(store_sandbox_forget(f->s, "bb", STORE_CAUSE_USER), 0);
	assert_int_equal(store_proxy_host_id(f->s, b, id, sizeof(id)),
	                 ERR_NOTFOUND);
	assert_int_equal(track(f, "cc", NULL, SBX_RUNNING), 0);
	assert_int_equal(store_proxy_host(f->s, "cc", &c), 0);
	assert_true(c > b);
}

/* Every token stored is a proof for its own sandbox only, expired or
 * not; its use is noted; unused ones are pruned. */
static void t_token_proofs(void **state)
{
	struct fx *f = *state;
	unsigned char fp1[STORE_PROOF_LEN], fp2[STORE_PROOF_LEN];
	unsigned char other[STORE_PROOF_LEN];
	size_t removed = 0;

	assert_int_equal(track(f, "aa", NULL, SBX_RUNNING), 0);
	assert_int_equal(track(f, "bb", NULL, SBX_RUNNING), 0);
	assert_int_equal(
	        store_token_put(f->s, "aa", "tok-1", T0 + 1000, T0, NULL), 0);
	assert_int_equal(
	        store_token_put(f->s, "aa", "tok-2", T0 + 2000, T0 + 500, NULL),
	        0);
	/* Not stored (it would roll back): no proof either. */
	assert_int_equal(
	        store_token_put(f->s, "aa", "tok-0", T0 + 10, T0, NULL), 0);
	store_proof_of("tok-1", fp1);
	store_proof_of("tok-2", fp2);
	store_proof_of("tok-0", other);
	assert_memory_not_equal(fp1, fp2, STORE_PROOF_LEN);
	f->clk.wall += 24 * 3600 * 1000LL;
	assert_int_equal(store_proof_check(f->s, "aa", fp1), 0);
	assert_int_equal(store_proof_check(f->s, "aa", fp2), 0);
	assert_int_equal(store_proof_check(f->s, "bb", fp1), ERR_NOTFOUND);
	assert_int_equal(store_proof_check(f->s, "aa", other), ERR_NOTFOUND);
	/* tok-2 is used again later; tok-1 not: pruning keeps the used. */
	f->clk.wall += 2 * 3600 * 1000LL;
	assert_int_equal(store_proof_check(f->s, "aa", fp2), 0);
	assert_int_equal(store_proof_prune(f->s, T0 + 1000,
	                                   f->clk.wall - 3600000, &removed),
	                 0);
	assert_int_equal(removed, 1);
	assert_int_equal(store_proof_check(f->s, "aa", fp1), ERR_NOTFOUND);
	assert_int_equal(store_proof_check(f->s, "aa", fp2), 0);
	assert_int_equal(store_sandbox_forget(f->s, "aa", STORE_CAUSE_USER), 0);
	assert_int_equal(store_proof_check(f->s, "aa", fp2), ERR_NOTFOUND);
}

/* The cause of traffic through the proxy is kept as such. */
static void t_cause_traffic(void **state)
{
	struct fx *f = *state;
	struct evlist l = {0};

	assert_int_equal(store_event_append(f->s, NULL, "x",
	                                    STORE_CAUSE_TRAFFIC, NULL, NULL),
	                 0);
	events(f, 0, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.causes[0], STORE_CAUSE_TRAFFIC);
	assert_string_equal(store_cause_str(STORE_CAUSE_TRAFFIC), "traffic");
	assert_int_equal(store_cause_parse("traffic"), STORE_CAUSE_TRAFFIC);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_open_modes_and_pragmas),
	        T(t_put_get),
	        T(t_put_rejects),
	        T(t_get_prefers_id_over_name),
	        T(t_list_filters_and_paging),
	        T(t_counts_follow_writes),
	        T(t_status_since_follows_status),
	        T(t_list_callback_stops),
	        T(t_rename),
	        T(t_status_with_event),
	        T(t_policy),
	        T(t_labels),
	        T(t_token_only_moves_forward),
	        T(t_forget_cascades),
	        T(t_events_since_and_prune),
	        T(t_intents),
	        T(t_group_commit_and_rollback),
	        T(t_group_nested),
	        T(t_survives_reopen),
	        T(t_observe_meta_and_paused_by_agent),
	        T(t_reports),
	        T(t_proxy_hosts),
	        T(t_token_proofs),
	        T(t_cause_traffic),
	};
#undef T

	log_init("test_store", LOG_LVL_WARN);
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
