/*
 * pgconn against a real PostgreSQL 15 (tests/pgserver.sh starts one in a
 * temporary directory): parameters and results, error codes, LISTEN and
 * NOTIFY, a query past its deadline, a server restart (queries fail fast
 * while it is down, the connection and its LISTENs come back), a server
 * that is not there, and a loop that keeps turning all along.
 *
 *   test_pgconn PGSERVER_SH
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "pgconn.h"
#include "pgschema.h"
#include "testutil.h"

static const char *script;
static char dir[4096], conninfo[512];

struct seen {
	int ups, downs;
	char why[256];
	int err;
	char value[256];
	char msg[512];
	int answered;
	char order[256]; /* the values answered, in turn */
	char channel[64], payload[256];
	int notified;
	int64_t max_gap_ms, last_tick;
};

static int pg(const char *cmd, char *out, size_t n)
{
	char line[8192];
	FILE *f;
	int rc;

	snprintf(line, sizeof(line), "'%s' %s '%s'", script, cmd, dir);
	if ((f = popen(line, "r")) == NULL)
		return -1;
	if (out && fgets(out, (int)n, f))
		out[strcspn(out, "\n")] = '\0';
	while (fgets(line, sizeof(line), f)) /* the rest: no SIGPIPE */
		;
	rc = pclose(f);
	return rc;
}

static void on_state(void *ud, int up, const char *why)
{
	struct seen *s = ud;

	*(up ? &s->ups : &s->downs) += 1;
	snprintf(s->why, sizeof(s->why), "%s", why);
}

static void on_notify(void *ud, const char *channel, const char *payload)
{
	struct seen *s = ud;

	snprintf(s->channel, sizeof(s->channel), "%s", channel);
	snprintf(s->payload, sizeof(s->payload), "%s", payload);
	s->notified++;
}

static void answered(void *ud, int err, const PGresult *res, const char *msg)
{
	struct seen *s = ud;

	s->err = err;
	s->value[0] = '\0';
	if (err == 0 && PQntuples(res) > 0)
		snprintf(s->value, sizeof(s->value), "%s",
		         PQgetvalue(res, 0, 0));
	snprintf(s->msg, sizeof(s->msg), "%s", msg ? msg : "");
	s->answered++;
	if (strlen(s->order) + strlen(s->value) + 3 < sizeof(s->order))
		strcat(strcat(s->order, s->value[0] ? s->value : "-"), ",");
}

/*
 * The loop never waits on the network: a 10 ms timer keeps ticking. A
 * blocking call would stall it for seconds (connect_timeout, pg_sleep);
 * the bound leaves room for a loaded machine's scheduling.
 */
#define GAP_MAX_MS 500

static void tick(uv_timer_t *t)
{
	struct seen *s = t->data;
	int64_t now = (int64_t)uv_now(t->loop);

	if (s->last_tick && now - s->last_tick > s->max_gap_ms)
		s->max_gap_ms = now - s->last_tick;
	s->last_tick = now;
}

/* The test itself kept the loop from running (a blocking helper, another
 * loop): that gap is not the loop's. */
static void loop_was_idle(struct seen *s)
{
	s->last_tick = 0;
}

/* Runs the loop until *flag reaches want or ms pass; 0 if it did. */
static int run_until(uv_loop_t *loop, int *flag, int want, int64_t ms)
{
	uint64_t end = uv_now(loop) + (uint64_t)ms;

	while (*flag < want && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	return *flag >= want ? 0 : -1;
}

struct fixture {
	uv_loop_t loop;
	uv_timer_t ticker;
	struct pgconn *pc;
	struct seen s;
};

static int make(struct fixture *f, const char *ci, int64_t timeout_ms)
{
	static const char *const channels[] = {"hopxd_test", "hopxd_events",
	                                       NULL};
	struct pgconn_opts o = {.conninfo = ci,
	                        .timeout_ms = timeout_ms,
	                        .reconnect_ms = 200,
	                        .listen = channels,
	                        .on_state = on_state,
	                        .on_notify = on_notify,
	                        .ud = &f->s};

	memset(&f->s, 0, sizeof(f->s));
	uv_loop_init(&f->loop);
	uv_timer_init(&f->loop, &f->ticker);
	f->ticker.data = &f->s;
	uv_timer_start(&f->ticker, tick, 10, 10);
	return pgconn_create(&f->loop, &o, &f->pc);
}

static void unmake(struct fixture *f)
{
	pgconn_destroy(f->pc);
	uv_close((uv_handle_t *)&f->ticker, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void query(struct fixture *f, const char *sql, int n,
                  const char *const *params)
{
	int before = f->s.answered;

	assert_int_equal(pgconn_query(f->pc, sql, n, params, answered, &f->s),
	                 0);
	assert_int_equal(run_until(&f->loop, &f->s.answered, before + 1, 15000),
	                 0);
}

static void test_queries(void **state)
{
	struct fixture f;
	const char *const p[] = {"20", "22"};
	const char *const dup[] = {"web"};

	(void)state;
	assert_int_equal(make(&f, conninfo, 5000), 0);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 1, 15000), 0);
	assert_true(pgconn_up(f.pc));
	query(&f, "SELECT $1::int + $2::int", 2, p);
	assert_int_equal(f.s.err, 0);
	assert_string_equal(f.s.value, "42");
	query(&f, "CREATE TABLE t (name text PRIMARY KEY); SELECT 'two'", 0,
	      NULL);
	assert_int_equal(f.s.err, 0);
	assert_string_equal(f.s.value, "two");
	query(&f, "INSERT INTO t VALUES ($1)", 1, dup);
	assert_int_equal(f.s.err, 0);
	query(&f, "INSERT INTO t VALUES ($1)", 1, dup);
	assert_int_equal(f.s.err, ERR_EXISTS);
	assert_non_null(strstr(f.s.msg, "duplicate key"));
	query(&f, "SELEC nonsense", 0, NULL);
	assert_int_equal(f.s.err, ERR_INVAL);
	assert_non_null(strstr(f.s.msg, "syntax error"));
	/* The connection is still good after errors. */
	query(&f, "DROP TABLE t; SELECT 1", 0, NULL);
	assert_int_equal(f.s.err, 0);
	assert_true(f.s.max_gap_ms < GAP_MAX_MS);
	unmake(&f);
}

/*
 * Urgent queries go ahead of the queue but not into a transaction, and
 * take turns with queued ones rather than starve them.
 */
static void test_urgent_turns(void **state)
{
	static const char *const queued[] = {"BEGIN",      "SELECT 'a'",
	                                     "SELECT 'b'", "COMMIT",
	                                     "SELECT 'c'", "SELECT 'd'"};
	static const char *const urgent[] = {"SELECT 'U1'", "SELECT 'U2'",
	                                     "SELECT 'U3'"};
	struct fixture f;
	size_t i;

	(void)state;
	assert_int_equal(make(&f, conninfo, 5000), 0);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 1, 15000), 0);
	for (i = 0; i < 6; i++)
		assert_int_equal(
		        pgconn_query(f.pc, queued[i], 0, NULL, answered, &f.s),
		        0);
	for (i = 0; i < 3; i++)
		assert_int_equal(pgconn_query_urgent(f.pc, urgent[i], 0, NULL,
		                                     answered, &f.s),
		                 0);
	assert_int_equal(pgconn_pending(f.pc), 9);
	assert_int_equal(run_until(&f.loop, &f.s.answered, 9, 15000), 0);
	/* BEGIN was on the wire before anything else was queued. */
	assert_string_equal(f.s.order, "-,a,b,-,U1,c,U2,d,U3,");
	assert_int_equal(pgconn_pending(f.pc), 0);
	unmake(&f);
}

static void test_notify(void **state)
{
	struct fixture a, b;

	(void)state;
	assert_int_equal(make(&a, conninfo, 5000), 0);
	assert_int_equal(run_until(&a.loop, &a.s.ups, 1, 15000), 0);
	assert_int_equal(make(&b, conninfo, 5000), 0);
	assert_int_equal(run_until(&b.loop, &b.s.ups, 1, 15000), 0);
	query(&b, "SELECT pg_notify('hopxd_test', 'seq=7')", 0, NULL);
	assert_int_equal(b.s.err, 0);
	assert_int_equal(run_until(&a.loop, &a.s.notified, 1, 5000), 0);
	assert_string_equal(a.s.channel, "hopxd_test");
	assert_string_equal(a.s.payload, "seq=7");
	unmake(&b);
	unmake(&a);
}

static void test_deadline(void **state)
{
	struct fixture f;

	(void)state;
	assert_int_equal(make(&f, conninfo, 500), 0);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 1, 15000), 0);
	query(&f, "SELECT pg_sleep(3)", 0, NULL);
	assert_int_equal(f.s.err, ERR_UNAVAIL);
	assert_non_null(strstr(f.s.msg, "timed out"));
	/* A new connection replaces the stuck one. */
	assert_int_equal(run_until(&f.loop, &f.s.ups, 2, 15000), 0);
	query(&f, "SELECT 'back'", 0, NULL);
	assert_string_equal(f.s.value, "back");
	assert_true(f.s.max_gap_ms < GAP_MAX_MS);
	unmake(&f);
}

static void test_restart(void **state)
{
	struct fixture f, other;

	(void)state;
	assert_int_equal(make(&f, conninfo, 5000), 0);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 1, 15000), 0);
	assert_int_equal(pg("stop", NULL, 0), 0);
	loop_was_idle(&f.s);
	assert_int_equal(run_until(&f.loop, &f.s.downs, 1, 15000), 0);
	assert_false(pgconn_up(f.pc));
	/* Down: a query fails at once, it does not wait. */
	query(&f, "SELECT 1", 0, NULL);
	assert_int_equal(f.s.err, ERR_UNAVAIL);
	assert_non_null(strstr(f.s.msg, "unreachable"));
	assert_int_equal(pg("start", NULL, 0), 0);
	loop_was_idle(&f.s);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 2, 20000), 0);
	/* Its LISTEN came back with it. */
	assert_int_equal(make(&other, conninfo, 5000), 0);
	assert_int_equal(run_until(&other.loop, &other.s.ups, 1, 15000), 0);
	query(&other, "NOTIFY hopxd_test, 'after'", 0, NULL);
	loop_was_idle(&f.s);
	assert_int_equal(run_until(&f.loop, &f.s.notified, 1, 5000), 0);
	assert_string_equal(f.s.payload, "after");
	assert_true(f.s.max_gap_ms < GAP_MAX_MS);
	unmake(&other);
	unmake(&f);
}

static void test_nobody_there(void **state)
{
	struct fixture f;
	char ci[600];

	(void)state;
	/* A port nothing listens on: refused, said, retried. */
	snprintf(ci, sizeof(ci),
	         "host=127.0.0.1 port=1 user=x "
	         "connect_timeout=2");
	assert_int_equal(make(&f, ci, 2000), 0);
	assert_int_equal(run_until(&f.loop, &f.s.downs, 2, 5000), 0);
	assert_non_null(strstr(f.s.why, "refused"));
	query(&f, "SELECT 1", 0, NULL);
	assert_int_equal(f.s.err, ERR_UNAVAIL);
	/* Pending queries fail when it is destroyed. */
	assert_true(f.s.max_gap_ms < GAP_MAX_MS);
	unmake(&f);
}

static void test_destroy_pending(void **state)
{
	struct fixture f;
	struct seen q = {0};

	(void)state;
	assert_int_equal(make(&f, conninfo, 5000), 0);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 1, 15000), 0);
	pgconn_query(f.pc, "SELECT pg_sleep(1)", 0, NULL, answered, &q);
	pgconn_query(f.pc, "SELECT 2", 0, NULL, answered, &q);
	assert_int_equal(pgconn_pending(f.pc), 2);
	unmake(&f);
	assert_int_equal(q.answered, 2);
	assert_int_equal(q.err, ERR_UNAVAIL);
}

/* ---- the registry's schema ---- */

struct migrated {
	int n, err, version;
	char msg[512];
};

static void on_migrated(void *ud, int err, int version, const char *msg)
{
	struct migrated *m = ud;

	m->err = err;
	m->version = version;
	snprintf(m->msg, sizeof(m->msg), "%s", msg);
	m->n++;
}

/* A database of its own for a test, and the connection string to it. */
static void new_db(const char *name, char *ci, size_t n)
{
	struct fixture f;
	char sql[128];

	assert_int_equal(make(&f, conninfo, 5000), 0);
	assert_int_equal(run_until(&f.loop, &f.s.ups, 1, 15000), 0);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	query(&f, sql, 0, NULL);
	assert_int_equal(f.s.err, 0);
	unmake(&f);
	snprintf(ci, n, "%.*s dbname=%s",
	         (int)(strstr(conninfo, " dbname=") - conninfo), conninfo,
	         name);
}

static void migrate(struct fixture *f, struct migrated *m)
{
	int before = m->n;

	pgschema_migrate(f->pc, on_migrated, m);
	assert_int_equal(run_until(&f->loop, &m->n, before + 1, 30000), 0);
}

static void test_schema(void **state)
{
	struct fixture f;
	struct migrated m = {0};
	char ci[600];
	const char *const ins[] = {"sb1"};

	(void)state;
	new_db("fresh", ci, sizeof(ci));
	assert_int_equal(make(&f, ci, 5000), 0);
	migrate(&f, &m);
	assert_int_equal(m.err, 0);
	assert_int_equal(m.version, pgschema_latest());
	assert_true(pgschema_latest() >= 2);
	/* Again: nothing to do. */
	migrate(&f, &m);
	assert_int_equal(m.err, 0);
	assert_int_equal(m.version, pgschema_latest());
	/* The triggers: status_since follows the status; events notify. */
	query(&f,
	      "INSERT INTO sandboxes (id, status, tracked_at, updated_at) "
	      "VALUES ($1, 'running', 10, 10)",
	      1, ins);
	assert_int_equal(f.s.err, 0);
	query(&f,
	      "UPDATE sandboxes SET status = 'paused', updated_at = 20; "
	      "SELECT status_since FROM sandboxes",
	      0, NULL);
	assert_string_equal(f.s.value, "20");
	query(&f,
	      "INSERT INTO events (at, sandbox_id, type, cause, host) "
	      "VALUES (30, 'sb1', 'status', 'user', 'a') RETURNING seq",
	      0, NULL);
	assert_int_equal(f.s.err, 0);
	assert_int_equal(run_until(&f.loop, &f.s.notified, 1, 5000), 0);
	assert_string_equal(f.s.channel, "hopxd_events");
	assert_string_equal(f.s.payload, f.s.value);
	unmake(&f);
}

static void test_schema_together(void **state)
{
	struct fixture f[3];
	struct migrated m[3] = {{0}};
	char ci[600];
	int i, all = 0;

	(void)state;
	new_db("together", ci, sizeof(ci));
	for (i = 0; i < 3; i++)
		assert_int_equal(make(&f[i], ci, 10000), 0);
	for (i = 0; i < 3; i++)
		pgschema_migrate(f[i].pc, on_migrated, &m[i]);
	/* Three loops, one thread: turn each until all have answered. */
	for (int turns = 0; turns < 100000 && all < 3; turns++) {
		all = 0;
		for (i = 0; i < 3; i++) {
			uv_run(&f[i].loop, UV_RUN_NOWAIT);
			all += m[i].n;
		}
	}
	for (i = 0; i < 3; i++) {
		assert_int_equal(m[i].n, 1);
		assert_int_equal(m[i].err, 0);
		assert_int_equal(m[i].version, pgschema_latest());
		unmake(&f[i]);
	}
}

static void test_schema_newer(void **state)
{
	struct fixture f;
	struct migrated m = {0};
	char ci[600];

	(void)state;
	new_db("newer", ci, sizeof(ci));
	assert_int_equal(make(&f, ci, 5000), 0);
	migrate(&f, &m);
	assert_int_equal(m.err, 0);
	query(&f, "UPDATE hopxd_schema SET version = 99", 0, NULL);
	migrate(&f, &m);
	assert_int_equal(m.err, ERR_TOONEW);
	assert_non_null(strstr(m.msg, "upgrade hopxd"));
	/* Refused, untouched: the version stays. */
	query(&f, "SELECT version FROM hopxd_schema", 0, NULL);
	assert_string_equal(f.s.value, "99");
	unmake(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_queries),
	        cmocka_unit_test(test_urgent_turns),
	        cmocka_unit_test(test_notify),
	        cmocka_unit_test(test_deadline),
	        cmocka_unit_test(test_restart),
	        cmocka_unit_test(test_nobody_there),
	        cmocka_unit_test(test_destroy_pending),
	        cmocka_unit_test(test_schema),
	        cmocka_unit_test(test_schema_together),
	        cmocka_unit_test(test_schema_newer),
	};
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: test_pgconn PGSERVER_SH\n");
		return 2;
	}
	script = argv[1];
	/* PostgreSQL runs as nobody under root: its directory must be
	 * reachable, so it is not under a private temp dir. */
	snprintf(dir, sizeof(dir), "/tmp/hopxd-pg-%ld", (long)getpid());
	if (pg("start", conninfo, sizeof(conninfo)) != 0 || !conninfo[0]) {
		fprintf(stderr,
		        "test_pgconn: cannot start PostgreSQL in %s "
		        "(scripts/setup installs postgresql-15)\n",
		        dir);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (pg("stop", NULL, 0) != 0)
		rc = rc ? rc : 1;
	tu_rmrf(dir);
	return rc;
}
