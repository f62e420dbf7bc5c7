/*
 * Store benchmark: prints figures, never fails on a timing. Each hopxd
 * store figure is measured beside the same work done with bare SQLite
 * prepared statements on the same file in the same run (the peer), so the
 * ratio holds on a noisy machine.
 *
 *   store_bench [--records N] [--dir DIR]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "clock.h"
#include "log.h"
#include "store.h"

#define LOOKUPS        200000
#define SINGLE_UPDATES 2000
#define BATCH          500

struct bench {
	char path[512];
	size_t records;
	struct store *s;
};

static double now_s(void)
{
	return (double)clock_mono_ms(clock_system()) / 1000.0;
}

static void row(const char *figure, double ours, double peer, const char *unit)
{
	printf("%-38s %12.0f %12.0f %8.2f  %s\n", figure, ours, peer,
	       peer > 0 ? ours / peer : 0.0, unit);
}

static void id_of(char *out, size_t n, size_t i)
{
	snprintf(out, n, "17630000%010zu", i);
}

static int fill(struct bench *b)
{
	struct store_sandbox r;
	char id[32], host[96];
	size_t i;
	double t0 = now_s();

	store_sandbox_init(&r);
	r.id = id;
	r.public_host = host;
	r.template_name = "code-interpreter";
	r.region = "us-east";
	r.vcpu = 2;
	r.memory_mb = 4096;
	r.disk_mb = 10240;
	if (store_begin(b->s) != 0)
		return -1;
	for (i = 0; i < b->records; i++) {
		id_of(id, sizeof(id), i);
		snprintf(host, sizeof(host), "https://%s.hopx.dev", id);
		r.status = i % 10 < 6 ? SBX_RUNNING : SBX_PAUSED;
		if (store_sandbox_put(b->s, &r, STORE_CAUSE_USER, NULL) != 0 ||
		    store_token_put(b->s, id,
		                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
		                    1800000000000LL, 1700000000000LL,
		                    NULL) != 0)
			return -1;
	}
	if (store_commit(b->s) != 0)
		return -1;
	printf("%-38s %12.0f %12s %8s  %s\n", "fill (put+token, one txn)",
	       (double)b->records / (now_s() - t0), "-", "-", "records/s");
	return 0;
}

static int count_cb(void *ud, const struct store_sandbox *r)
{
	(void)r;
	++*(size_t *)ud;
	return 0;
}

static double peer_scan(const char *path, size_t *n)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	double t0 = now_s();

	sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	sqlite3_prepare_v2(db,
	                   "SELECT s.*, t.token, t.expires_at FROM sandboxes s "
	                   "LEFT JOIN tokens t ON t.sandbox_id = s.id",
	                   -1, &st, NULL);
	*n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		/* Touch the text the way a loader would. */
		if (sqlite3_column_text(st, 0) && sqlite3_column_text(st, 22))
			++*n;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return now_s() - t0;
}

static int open_and_load(struct bench *b)
{
	double t0 = now_s(), t_open, t_load, peer;
	size_t n = 0, pn = 0;

	store_close(b->s);
	b->s = NULL;
	if (store_open(b->path, STORE_OPEN_CHECK, NULL, &b->s, NULL) != 0)
		return -1;
	t_open = now_s() - t0;
	t0 = now_s();
	if (store_sandbox_list(b->s, NULL, count_cb, &n) != 0 ||
	    n != b->records)
		return -1;
	t_load = now_s() - t0;
	peer = peer_scan(b->path, &pn);
	if (pn != b->records)
		return -1;
	printf("%-38s %12.1f %12s %8s  %s\n", "open + migrate + quick_check",
	       t_open * 1000, "-", "-", "ms");
	row("load all records into memory", t_load * 1000, peer * 1000, "ms");
	return 0;
}

static int lookups(struct bench *b)
{
	struct store_sandbox r;
	sqlite3 *db;
	sqlite3_stmt *st;
	char id[32];
	double t0, ours, peer;
	size_t i;

	t0 = now_s();
	for (i = 0; i < LOOKUPS; i++) {
		id_of(id, sizeof(id), (i * 7919) % b->records);
		if (store_sandbox_get(b->s, id, &r) != 0)
			return -1;
		store_sandbox_finish(&r);
	}
	ours = LOOKUPS / (now_s() - t0);
	sqlite3_open_v2(b->path, &db, SQLITE_OPEN_READONLY, NULL);
	sqlite3_prepare_v2(db,
	                   "SELECT s.*, t.token FROM sandboxes s LEFT JOIN "
	                   "tokens t ON t.sandbox_id = s.id WHERE s.id = ?1",
	                   -1, &st, NULL);
	t0 = now_s();
	for (i = 0; i < LOOKUPS; i++) {
		id_of(id, sizeof(id), (i * 7919) % b->records);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_ROW)
			return -1;
		sqlite3_reset(st);
	}
	peer = LOOKUPS / (now_s() - t0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	row("point lookups by id", ours, peer, "lookups/s");
	return 0;
}

/* Bare SQLite upserts with the same durability settings. */
static double peer_updates(const char *path, size_t n, size_t batch,
                           int64_t base)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char id[32];
	double t0;
	size_t i;

	sqlite3_open(path, &db);
	sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	sqlite3_prepare_v2(db,
	                   "INSERT INTO tokens VALUES (?1, 'tok', ?2, 0) ON "
	                   "CONFLICT (sandbox_id) DO UPDATE SET token = "
	                   "excluded.token, expires_at = ?2 WHERE ?2 > "
	                   "tokens.expires_at",
	                   -1, &st, NULL);
	t0 = now_s();
	for (i = 0; i < n; i++) {
		if (i % batch == 0)
			sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		id_of(id, sizeof(id), i % 1000);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, base + (int64_t)i);
		if (sqlite3_step(st) != SQLITE_DONE) {
			fprintf(stderr, "peer: %s\n", sqlite3_errmsg(db));
			t0 = -1;
			break;
		}
		sqlite3_reset(st);
		if (i % batch == batch - 1 || i == n - 1)
			sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	t0 = t0 < 0 ? -1 : now_s() - t0;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return t0 < 0 ? -1 : (double)n / t0;
}

static double our_updates(struct bench *b, size_t n, size_t batch, int64_t base)
{
	char id[32];
	double t0 = now_s();
	size_t i;

	for (i = 0; i < n; i++) {
		if (batch > 1 && i % batch == 0 && store_begin(b->s) != 0)
			return -1;
		id_of(id, sizeof(id), i % 1000);
		if (store_token_put(b->s, id, "tok", base + (int64_t)i, 0,
		                    NULL) != 0)
			return -1;
		if (batch > 1 && (i % batch == batch - 1 || i == n - 1) &&
		    store_commit(b->s) != 0)
			return -1;
	}
	return (double)n / (now_s() - t0);
}

static int updates(struct bench *b)
{
	double ours, peer;

	/* Each run stores later expiries than the last, so every upsert
	 * really writes (an unchanged row would commit nothing). */
	ours = our_updates(b, SINGLE_UPDATES, 1, 2000000000000LL);
	peer = peer_updates(b->path, SINGLE_UPDATES, 1, 2100000000000LL);
	row("token updates, one txn each (FULL)", ours, peer, "updates/s");
	ours = our_updates(b, SINGLE_UPDATES * 50, BATCH, 2200000000000LL);
	peer = peer_updates(b->path, SINGLE_UPDATES * 50, BATCH,
	                    2300000000000LL);
	row("token updates, 500 per txn", ours, peer, "updates/s");
	return ours > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct bench b = {.records = 100000};
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *cause = NULL;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--records") == 0 && i + 1 < argc)
			b.records = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
	}
	if (b.records < 1000)
		b.records = 1000;
	log_init("store_bench", LOG_LVL_WARN);
	snprintf(b.path, sizeof(b.path), "%s/hopxd-bench-%ld.db", dir,
	         (long)time(NULL));
	if (store_open(b.path, 0, NULL, &b.s, &cause) != 0) {
		fprintf(stderr, "store_bench: %s\n", cause ? cause : "open");
		return 1;
	}
	printf("store: %zu records, file %s\n", b.records, b.path);
	printf("%-38s %12s %12s %8s  %s\n", "figure", "hopxd", "sqlite3",
	       "ratio", "unit");
	r = fill(&b) || open_and_load(&b) || lookups(&b) || updates(&b);
	store_close(b.s);
	remove(b.path);
	snprintf(b.path + strlen(b.path), 8, "-wal");
	remove(b.path);
	b.path[strlen(b.path) - 4] = '\0';
	snprintf(b.path + strlen(b.path), 8, "-shm");
	remove(b.path);
	if (r)
		fprintf(stderr, "store_bench: a step failed\n");
	return r ? 1 : 0;
}
