/*
 * Migrations and bad databases: each migration from an empty database and
 * from every earlier version, empty and with rows in every status (the
 * backfills checked); newer, read-only, corrupt and foreign files
 * each give their own clear error and never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "err.h"
#include "log.h"
#include "migrations.h"
#include "store.h"
#include "testutil.h"

struct fx {
	char dir[256];
	char path[300];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_int_equal(tu_tmpdir(f->dir, sizeof(f->dir)), 0);
	tu_path(f->path, sizeof(f->path), f->dir, "h.db");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	tu_rmrf(f->dir);
	free(f);
	return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("SQL failed: %s", err);
}

/* Builds a database at schema version v as an older hopxd would have. */
static void make_db_at(const char *path, int v)
{
	char sql[128];
	sqlite3 *db;
	int i;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	for (i = 0; i < v; i++) {
		exec_ok(db, migrations[i].sql);
		snprintf(sql, sizeof(sql),
		         "PRAGMA application_id = 1752201316; "
		         "PRAGMA user_version = %d",
		         i + 1);
		exec_ok(db, sql);
	}
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int user_version(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void t_migrations_numbered(void **state)
{
	int i;

	(void)state;
	assert_true(migrations_count >= 1);
	assert_int_equal(store_schema_latest(), migrations_count);
	for (i = 0; i < migrations_count; i++)
		assert_int_equal(migrations[i].version, i + 1);
}

/* From every earlier version, including empty (0), to the latest. */
static void t_upgrade_from_each_version(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	int v;

	for (v = 0; v < migrations_count; v++) {
		unlink(f->path);
		make_db_at(f->path, v);
		assert_int_equal(
		        store_open(f->path, STORE_OPEN_CHECK, NULL, &s, NULL),
		        0);
		assert_int_equal(store_schema_version(s), migrations_count);
		assert_int_equal(store_check(s, 1, NULL), 0);
		assert_int_equal(store_close(s), 0);
		assert_int_equal(user_version(f->path), migrations_count);
		/* Opening again applies nothing and still works. */
		assert_int_equal(store_open(f->path, 0, NULL, &s, NULL), 0);
		assert_int_equal(store_close(s), 0);
	}
}

/*
 * Rows an older hopxd would have written at schema version v: a sandbox in
 * every status (each updated at its own time), labels, tokens, events, an
 * intent, and what the later columns and tables of v hold.
 */
static const char populate_v1[] =
        "INSERT INTO sandboxes (id, name, status, tracked_at, updated_at) "
        "VALUES ('s-unknown', NULL, 'unknown', 1, 101),"
        " ('s-creating', 'mk', 'creating', 1, 102),"
        " ('s-running', 'web', 'running', 1, 103),"
        " ('s-running2', NULL, 'running', 1, 104),"
        " ('s-paused', 'db', 'paused', 1, 105),"
        " ('s-stopped', NULL, 'stopped', 1, 106),"
        " ('s-gone', 'old', 'gone', 1, 107);"
        "INSERT INTO labels VALUES ('s-running', 'team', 'core'),"
        " ('s-running', 'tier', '1'), ('s-paused', 'team', 'data');"
        "INSERT INTO tokens VALUES ('s-running', 'tok-a', 9000, 10),"
        " ('s-running2', 'tok-b', 9001, 11);"
        "INSERT INTO events (at, sandbox_id, type, cause, detail) VALUES"
        " (1, 's-running', 'tracked', 'user', '{}'),"
        " (2, 's-paused', 'status', 'remote', '{\"to\":\"paused\"}'),"
        " (3, NULL, 'reconciled', 'agent', '{}');"
        "INSERT INTO intents (kind, request, name, created_at) VALUES"
        " ('create', '{\"template_name\":\"base\"}', 'mk', 50);";
static const char populate_v2[] =
        "UPDATE sandboxes SET paused_by_agent = 1 WHERE id = 's-paused';"
        "INSERT INTO reports (trigger, started_at, finished_at, report) "
        "VALUES ('start', 1, 2, '{}');";
static const char populate_v3[] =
        "UPDATE intents SET sent_at = 51 WHERE name = 'mk';";

static void populate(const char *path, int v)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	exec_ok(db, populate_v1);
	if (v >= 2)
		exec_ok(db, populate_v2);
	if (v >= 3)
		exec_ok(db, populate_v3);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The first column of the first row of sql, as text ("" for none). */
static void query(sqlite3 *db, const char *sql, char *out, size_t n)
{
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	out[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, n, "%s",
		         (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

static void expect(sqlite3 *db, const char *sql, const char *want)
{
	char got[512];

	query(db, sql, got, sizeof(got));
	if (strcmp(got, want) != 0)
		fail_msg("%s\n  got  %s\n  want %s", sql, got, want);
}

/* What every migration after v must have kept and backfilled. */
static void check_populated(const char *path, int v)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	expect(db,
	       "SELECT group_concat(id || ':' || status || ':' || "
	       "ifnull(name, '-'), ' ') FROM (SELECT * FROM sandboxes "
	       "ORDER BY id)",
	       "s-creating:creating:mk s-gone:gone:old s-paused:paused:db "
	       "s-running:running:web s-running2:running:- "
	       "s-stopped:stopped:- s-unknown:unknown:-");
	/* 0004: the counts of the rows that were there */
	expect(db,
	       "SELECT group_concat(status || '=' || n, ' ') FROM "
	       "(SELECT * FROM status_counts WHERE n > 0 ORDER BY status)",
	       "creating=1 gone=1 paused=1 running=2 stopped=1 unknown=1");
	/* 0005: each row's status since its last update */
	expect(db,
	       "SELECT count(*) FROM sandboxes WHERE status_since IS NOT "
	       "updated_at",
	       "0");
	expect(db, "SELECT status_since FROM sandboxes WHERE id = 's-paused'",
	       "105");
	expect(db,
	       "SELECT group_concat(sandbox_id || '.' || key || '=' || "
	       "value, ' ') FROM (SELECT * FROM labels ORDER BY 1, 2)",
	       "s-paused.team=data s-running.team=core s-running.tier=1");
	expect(db,
	       "SELECT group_concat(sandbox_id || ':' || token || ':' || "
	       "expires_at, ' ') FROM (SELECT * FROM tokens ORDER BY 1)",
	       "s-running:tok-a:9000 s-running2:tok-b:9001");
	expect(db, "SELECT group_concat(seq || type, ' ') FROM events",
	       "1tracked 2status 3reconciled");
	expect(db,
	       "SELECT paused_by_agent FROM sandboxes WHERE id = "
	       "'s-paused'",
	       v >= 2 ? "1" : "0");
	expect(db,
	       "SELECT ifnull(sent_at, 'null') || ' ' || state FROM "
	       "intents",
	       v >= 3 ? "51 open" : "null open");
	expect(db, "SELECT count(*) FROM reports", v >= 2 ? "1" : "0");
	/* 0006: the idle policy starts off, expiry is HopX's kill */
	expect(db,
	       "SELECT count(*) FROM sandboxes WHERE idle_pause_s = 0 "
	       "AND on_expiry = 'kill'",
	       "7");
	/* the triggers work on the migrated rows */
	exec_ok(db, "UPDATE sandboxes SET status = 'paused', updated_at = 900 "
	            "WHERE id = 's-running2'");
	expect(db, "SELECT n FROM status_counts WHERE status = 'running'", "1");
	expect(db,
	       "SELECT status_since FROM sandboxes WHERE id = "
	       "'s-running2'",
	       "900");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* From every earlier version with rows in it: nothing lost, every
 * backfill right. */
static void t_upgrade_populated(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	int v;

	for (v = 1; v < migrations_count; v++) {
		unlink(f->path);
		make_db_at(f->path, v);
		populate(f->path, v);
		assert_int_equal(store_open(f->path, 0, NULL, &s, NULL), 0);
		assert_int_equal(store_check(s, 1, NULL), 0);
		assert_int_equal(store_close(s), 0);
		assert_int_equal(user_version(f->path), migrations_count);
		check_populated(f->path, v);
	}
}

static void t_newer_refused(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	char *cause = NULL, want[64];
	sqlite3 *db;

	make_db_at(f->path, migrations_count);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	exec_ok(db, "PRAGMA user_version = 999");
	sqlite3_close(db);
	assert_int_equal(store_open(f->path, 0, NULL, &s, &cause), ERR_TOONEW);
	assert_null(s);
	assert_non_null(cause);
	/* The message names both versions. */
	assert_non_null(strstr(cause, "999"));
	snprintf(want, sizeof(want), "version %d", migrations_count);
	assert_non_null(strstr(cause, want));
	free(cause);
	/* Nothing was changed. */
	assert_int_equal(user_version(f->path), 999);
}

static void t_garbage_refused(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	char *cause = NULL;
	char junk[8192];

	memset(junk, 'Z', sizeof(junk));
	assert_int_equal(tu_write_file(f->path, junk, sizeof(junk)), 0);
	assert_int_equal(store_open(f->path, 0, NULL, &s, &cause), ERR_CORRUPT);
	assert_null(s);
	assert_non_null(strstr(cause, "corrupt or not an SQLite database"));
	free(cause);
}

static void t_damaged_pages_detected(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	char *cause = NULL, junk[4096];
	struct store_sandbox r;
	FILE *fp;
	char id[16];
	int i;

	assert_int_equal(store_open(f->path, 0, NULL, &s, NULL), 0);
	store_sandbox_init(&r);
	r.id = id;
	assert_int_equal(store_begin(s), 0);
	for (i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "sbx%05d", i);
		assert_int_equal(
		        store_sandbox_put(s, &r, STORE_CAUSE_USER, NULL), 0);
	}
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(store_close(s), 0); /* checkpoints the WAL */
	/* Overwrite pages in the middle of the file with garbage. */
	memset(junk, 0xA5, sizeof(junk));
	fp = fopen(f->path, "r+b");
	assert_non_null(fp);
	fseek(fp, 4096 * 6, SEEK_SET);
	fwrite(junk, 1, sizeof(junk), fp);
	fwrite(junk, 1, sizeof(junk), fp);
	fclose(fp);
	assert_int_equal(
	        store_open(f->path, STORE_OPEN_CHECK, NULL, &s, &cause),
	        ERR_CORRUPT);
	assert_null(s);
	assert_non_null(cause);
	free(cause);
}

static void t_foreign_db_refused(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	char *cause = NULL;
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	exec_ok(db, "CREATE TABLE photos (id INTEGER PRIMARY KEY)");
	sqlite3_close(db);
	assert_int_equal(store_open(f->path, 0, NULL, &s, &cause), ERR_CORRUPT);
	assert_non_null(strstr(cause, "not a hopxd database"));
	free(cause);
}

static void t_readonly_needs_upgrade(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	char *cause = NULL;

	make_db_at(f->path, 0);
	assert_int_equal(
	        store_open(f->path, STORE_OPEN_READONLY, NULL, &s, &cause),
	        ERR_READONLY);
	assert_non_null(strstr(cause, "read-only"));
	free(cause);
	/* Up to date: a read-only open works and reads. */
	make_db_at(f->path, migrations_count);
	assert_int_equal(
	        store_open(f->path, STORE_OPEN_READONLY, NULL, &s, NULL), 0);
	assert_int_equal(store_close(s), 0);
}

/* Opens path read-write as an unprivileged user; returns the code. */
static int open_as_nobody(const char *path)
{
	struct store *s = NULL;
	char *cause = NULL;
	int r;

	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 99;
	r = store_open(path, 0, NULL, &s, &cause);
	if (r == ERR_READONLY && (cause == NULL || !strstr(cause, "read-only")))
		r = 98;
	store_close(s);
	free(cause);
	return -r;
}

static void t_readonly_file(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	int status;
	pid_t pid;

	assert_int_equal(store_open(f->path, 0, NULL, &s, NULL), 0);
	assert_int_equal(store_close(s), 0);
	/* A file we may read but not write (as root: owned by root, opened
	 * by nobody; otherwise mode 0400). */
	chmod(f->dir, 0755);
	chmod(f->path, geteuid() == 0 ? 0644 : 0400);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(open_as_nobody(f->path));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), -ERR_READONLY);
}

static void t_missing_dir_unwritable(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	char *cause = NULL;
	int r;

	r = store_open("/proc/hopxd-no/such/h.db", 0, NULL, &s, &cause);
	assert_true(r < 0);
	assert_null(s);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "/proc/hopxd-no"));
	free(cause);
	(void)f;
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_migrations_numbered), T(t_upgrade_from_each_version),
	        T(t_upgrade_populated),   T(t_newer_refused),
	        T(t_garbage_refused),     T(t_damaged_pages_detected),
	        T(t_foreign_db_refused),  T(t_readonly_needs_upgrade),
	        T(t_readonly_file),       T(t_missing_dir_unwritable),
	};
#undef T

	log_init("test", LOG_LVL_WARN);
	return cmocka_run_group_tests_name("migrations", tests, NULL, NULL);
}
