/*
 * agent/sessions.c and agent/reconcile.c on a libuv loop, with a store in
 * a temp dir, the real HopX client against hopx-sim and a wall clock that
 * the test moves together with the simulator's: single-flight
 * refreshes and resumes, tokens served from memory until the clock says
 * otherwise, renewal planned inside its window, an unknown id refused,
 * and a reconcile that resumes, marks stopped and gone, and takes an
 * outage for stale, never gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "agent.h"
#include "clock.h"
#include "err.h"
#include "hopx.h"
#include "log.h"
#include "reconcile.h"
#include "sessions.h"
#include "simclient.h"
#include "store.h"
#include "testutil.h"

#define LIFE_S 3600

static const char *sim_bin;

struct fx {
	struct simproc p;
	char dir[256];
	uv_loop_t loop;
	struct clock clk; /* the system's, with wall time moved by offset */
	int64_t offset;
	struct agent a;
	int loaded;
	/* what the callbacks saw */
	int ndone;
	struct sess_outcome out[4];
	char tok[4][2048];
	int rec_err;
	int rec_done;
};

/* Timers and backoff run on real monotonic time; only the wall clock,
 * what tokens are judged by, is moved. */
static int64_t moved_wall(void *ctx)
{
	const struct fx *f = ctx;

	return clock_wall_ms(clock_system()) + f->offset;
}

static int64_t real_mono(void *ctx)
{
	(void)ctx;
	return clock_mono_ms(clock_system());
}

static void on_loaded(void *ud)
{
	((struct fx *)ud)->loaded = 1;
}

static int setup(void **state)
{
	static const char *const extra[] = {"--token-lifetime", "3600", NULL};
	struct fx *f = calloc(1, sizeof(*f));
	struct hopx_opts o = {0};
	char db[300];

	assert_non_null(f);
	if (simproc_start(&f->p, sim_bin, extra) != 0)
		fail_msg("hopx-sim did not start");
	assert_int_equal(tu_tmpdir(f->dir, sizeof(f->dir)), 0);
	tu_path(db, sizeof(db), f->dir, "h.db");
	f->clk = (struct clock){moved_wall, real_mono, f};
	uv_loop_init(&f->loop);
	f->a.loop = &f->loop;
	f->a.clk = &f->clk;
	assert_int_equal(store_open(db, 0, f->a.clk, &f->a.store, NULL), 0);
	o.base_url = f->p.api_url;
	o.api_key = SIM_TEST_KEY;
	o.budget_per_min = 6000;
	o.backoff_base_ms = 50;
	o.backoff_cap_ms = 200;
	o.clk = f->a.clk;
	assert_int_equal(hopx_create(&f->loop, &o, &f->a.hopx), 0);
	assert_int_equal(
	        sessions_create(&f->a, f->a.hopx, on_loaded, f, &f->a.sess), 0);
	assert_int_equal(reconcile_create(&f->a, f->a.sess, f->a.hopx,
	                                  3600 * 1000, &f->a.rec),
	                 0);
	sessions_load_all(f->a.sess);
	assert_true(f->loaded);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	reconcile_destroy(f->a.rec);
	sessions_destroy(f->a.sess);
	hopx_destroy(f->a.hopx);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_int_equal(store_close(f->a.store), 0);
	assert_int_equal(simproc_destroy(&f->p), 0); /* exit 0 at SIGTERM */
	tu_rmrf(f->dir);
	free(f);
	return 0;
}

/* Runs the loop until n callbacks came (or 60 s of real time passed). */
static void run_until(struct fx *f, int *counter, int n)
{
	uint64_t end = uv_hrtime() + 60ULL * 1000000000ULL;

	while (*counter < n && uv_hrtime() < end)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(*counter, n);
}

/* A sandbox at HopX (status as the admin API makes it) and its record. */
static void make_sandbox(struct fx *f, const char *status, char *id,
                         enum sbx_status recorded)
{
	struct sc_result r;
	struct store_sandbox rec;
	char body[128];
	const cJSON *ids;

	snprintf(body, sizeof(body), "{\"count\":1,\"mix\":{\"%s\":1.0}}",
	         status);
	sc_api(&r, &f->p, "POST", "/_sim/sandboxes/bulk", body);
	assert_int_equal(r.status, 200);
	ids = cJSON_GetObjectItemCaseSensitive(r.json, "ids");
	snprintf(id, SBX_ID_MAX + 1, "%s",
	         cJSON_GetArrayItem(ids, 0)->valuestring);
	sc_free(&r);
	store_sandbox_init(&rec);
	rec.id = id;
	rec.status = recorded;
	assert_int_equal(
	        store_sandbox_put(f->a.store, &rec, STORE_CAUSE_USER, NULL), 0);
	rec.id = NULL;
	store_sandbox_finish(&rec);
	assert_int_equal(sessions_track(f->a.sess, id), 0);
}

static void admin(struct fx *f, const char *path, const char *body)
{
	struct sc_result r;

	sc_api(&r, &f->p, "POST", path, body);
	assert_int_equal(r.status, 200);
	sc_free(&r);
}

/* Requests to route (e.g. "POST /v1/sandboxes/{id}/resume") so far. */
static int sent(struct fx *f, const char *route)
{
	struct sc_result r;
	const cJSON *e;
	int n = 0;

	sc_api(&r, &f->p, "GET", "/_sim/log?since=0&limit=10000", NULL);
	assert_int_equal(r.status, 200);
	cJSON_ArrayForEach(e,
	                   cJSON_GetObjectItemCaseSensitive(r.json, "entries"))
	{
		const cJSON *rt = cJSON_GetObjectItemCaseSensitive(e, "route");
		n += cJSON_IsString(rt) && strcmp(rt->valuestring, route) == 0;
	}
	sc_free(&r);
	return n;
}

/* Moves this machine's clock and HopX's forward together. */
static void advance(struct fx *f, int64_t ms)
{
	char body[64];

	snprintf(body, sizeof(body), "{\"advance_ms\":%lld}", (long long)ms);
	admin(f, "/_sim/time", body);
	f->offset += ms;
}

static void on_token(void *ud, const struct sess_outcome *o, const char *token,
                     int64_t expires_at)
{
	struct fx *f = ud;

	(void)expires_at;
	f->out[f->ndone] = *o;
	snprintf(f->tok[f->ndone], sizeof(f->tok[0]), "%s", token ? token : "");
	f->ndone++;
}

/* Counts answers only: a wave's tokens are many (out[] holds four). */
static void on_done_token(void *ud, const struct sess_outcome *o,
                          const char *token, int64_t expires_at)
{
	struct fx *f = ud;

	(void)token;
	(void)expires_at;
	assert_int_equal(o->err, 0);
	f->ndone++;
}

static void on_done(void *ud, const struct sess_outcome *o)
{
	struct fx *f = ud;

	f->out[f->ndone++] = *o;
}

static void ask_tokens(struct fx *f, const char *id, int n, int64_t min_ttl)
{
	int i;

	f->ndone = 0;
	for (i = 0; i < n; i++)
		assert_int_equal(
		        sessions_token(f->a.sess, id, min_ttl, on_token, f), 0);
	run_until(f, &f->ndone, n);
	for (i = 0; i < n; i++) {
		assert_int_equal(f->out[i].err, 0);
		assert_string_equal(f->tok[i], f->tok[0]);
	}
}

#define REFRESH "POST /v1/sandboxes/{id}/token/refresh"

/* Two asks for a token the record lacks: one refresh, both served. */
static void t_refresh_single_flight(void **state)
{
	struct fx *f = *state;
	char id[SBX_ID_MAX + 1];
	struct store_sandbox r;

	make_sandbox(f, "running", id, SBX_RUNNING);
	ask_tokens(f, id, 2, 60000);
	assert_int_equal(sent(f, REFRESH), 1);
	store_sandbox_init(&r);
	assert_int_equal(store_sandbox_get(f->a.store, id, &r), 0);
	assert_string_equal(r.token, f->tok[0]);
	store_sandbox_finish(&r);
}

/* The token is served from memory until the clock says it is too short. */
static void t_clock_decides_refresh(void **state)
{
	struct fx *f = *state;
	char id[SBX_ID_MAX + 1], first[2048];

	make_sandbox(f, "running", id, SBX_RUNNING);
	ask_tokens(f, id, 1, 60000);
	snprintf(first, sizeof(first), "%s", f->tok[0]);
	advance(f, (LIFE_S - 1200) * 1000LL); /* 20 min left */
	ask_tokens(f, id, 3, 15 * 60000);
	assert_int_equal(sent(f, REFRESH), 1);
	assert_string_equal(f->tok[0], first);
	ask_tokens(f, id, 1, 30 * 60000); /* wants more than is left */
	assert_int_equal(sent(f, REFRESH), 2);
	assert_string_not_equal(f->tok[0], first);
}

/* Renewal is planned 83-90% into the token's life. */
static void t_renewal_in_window(void **state)
{
	struct fx *f = *state;
	char id[SBX_ID_MAX + 1];
	struct sess_view v;
	int64_t life;

	make_sandbox(f, "running", id, SBX_RUNNING);
	ask_tokens(f, id, 1, 60000);
	assert_int_equal(sessions_view(f->a.sess, id, &v), 0);
	life = v.token_expires_at - v.token_issued_at;
	assert_true(life > (LIFE_S - 5) * 1000LL);
	assert_true(v.renew_at >= v.token_issued_at + life * 83 / 100);
	assert_true(v.renew_at <= v.token_issued_at + life * 90 / 100);
}

/* A wave of tokens issued together is renewed at an even rate: each is
 * placed in the second of its window with the fewest renewals (random
 * places would heap up: with 200 over ~250 s, a dozen seconds of 3+). */
static void t_renewals_even(void **state)
{
	enum { WAVE = 200 };
	struct fx *f = *state;
	static char ids[WAVE][SBX_ID_MAX + 1];
	struct sc_result r;
	struct store_sandbox rec;
	struct sess_view v;
	const cJSON *id;
	int i = 0, per[400] = {0}, most = 0;
	int64_t first = INT64_MAX, sec;

	sc_api(&r, &f->p, "POST", "/_sim/sandboxes/bulk",
	       "{\"count\":200,\"mix\":{\"running\":1.0}}");
	assert_int_equal(r.status, 200);
	cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(r.json, "ids"))
	{
		snprintf(ids[i], sizeof(ids[i]), "%s", id->valuestring);
		store_sandbox_init(&rec);
		rec.id = ids[i++];
		rec.status = SBX_RUNNING;
		assert_int_equal(store_sandbox_put(f->a.store, &rec,
		                                   STORE_CAUSE_USER, NULL),
		                 0);
		rec.id = NULL;
		store_sandbox_finish(&rec);
		assert_int_equal(sessions_track(f->a.sess, ids[i - 1]), 0);
	}
	sc_free(&r);
	assert_int_equal(i, WAVE);
	f->ndone = 0;
	for (i = 0; i < WAVE; i++)
		assert_int_equal(sessions_token(f->a.sess, ids[i], 60000,
		                                on_done_token, f),
		                 0);
	run_until(f, &f->ndone, WAVE);
	for (i = 0; i < WAVE; i++) {
		assert_int_equal(sessions_view(f->a.sess, ids[i], &v), 0);
		first = v.renew_at < first ? v.renew_at : first;
	}
	for (i = 0; i < WAVE; i++) {
		assert_int_equal(sessions_view(f->a.sess, ids[i], &v), 0);
		sec = v.renew_at / 1000 - first / 1000; /* whole seconds */
		assert_true(sec >= 0 && sec < 400);
		most = ++per[sec] > most ? per[sec] : most;
	}
	assert_true(most <= 2);
}

/* Two resumes of a paused sandbox: one resume and one refresh at HopX. */
static void t_resume_joins(void **state)
{
	struct fx *f = *state;
	char id[SBX_ID_MAX + 1];
	int i;

	make_sandbox(f, "paused", id, SBX_PAUSED);
	f->ndone = 0;
	for (i = 0; i < 2; i++)
		assert_int_equal(sessions_do(f->a.sess, id, SESS_RESUME, 0,
		                             HOPX_PRIO_USER, STORE_CAUSE_USER,
		                             on_done, f),
		                 0);
	run_until(f, &f->ndone, 2);
	for (i = 0; i < 2; i++) {
		assert_int_equal(f->out[i].err, 0);
		assert_int_equal(f->out[i].after, SBX_RUNNING);
	}
	assert_int_equal(sent(f, "POST /v1/sandboxes/{id}/resume"), 1);
	assert_int_equal(sent(f, REFRESH), 1);
}

/* An id nobody tracks: refused through the callback, nothing sent. */
static void t_unknown_refused(void **state)
{
	struct fx *f = *state;
	int r;

	f->ndone = 0;
	r = sessions_do(f->a.sess, "sbx_nobody", SESS_PAUSE, 0, HOPX_PRIO_USER,
	                STORE_CAUSE_USER, on_done, f);
	assert_int_equal(r, ERR_NOTFOUND);
	assert_int_equal(f->ndone, 1);
	assert_int_equal(f->out[0].err, ERR_NOTFOUND);
	assert_int_equal(sent(f, "POST /v1/sandboxes/{id}/pause"), 0);
}

static void on_reconciled(void *ud, int err, const cJSON *report)
{
	struct fx *f = ud;

	(void)report;
	f->rec_err = err;
	f->rec_done++;
}

static enum sbx_status recorded(struct fx *f, const char *id, int *stale)
{
	struct store_sandbox r;
	enum sbx_status st;

	store_sandbox_init(&r);
	assert_int_equal(store_sandbox_get(f->a.store, id, &r), 0);
	st = r.status;
	*stale = r.stale;
	store_sandbox_finish(&r);
	return st;
}

static void reconcile_now(struct fx *f)
{
	f->rec_done = 0;
	assert_int_equal(reconcile_run(f->a.rec, "user", on_reconciled, f), 0);
	run_until(f, &f->rec_done, 1);
}

/*
 * Paused behind the agent's back: resumed (policy); stopped: marked;
 * deleted: gone. Then HopX down: every record stale, none gone.
 */
static void t_reconcile(void **state)
{
	struct fx *f = *state;
	char p[SBX_ID_MAX + 1], s[SBX_ID_MAX + 1], d[SBX_ID_MAX + 1];
	char path[SBX_ID_MAX + 32];
	int stale;

	sessions_background(f->a.sess, 1);
	make_sandbox(f, "paused", p, SBX_RUNNING);
	make_sandbox(f, "stopped", s, SBX_RUNNING);
	make_sandbox(f, "running", d, SBX_RUNNING);
	snprintf(path, sizeof(path), "/_sim/sandboxes/%s/delete", d);
	admin(f, path, NULL);
	reconcile_now(f);
	assert_int_equal(f->rec_err, 0);
	assert_int_equal(recorded(f, p, &stale), SBX_RUNNING);
	assert_int_equal(sent(f, "POST /v1/sandboxes/{id}/resume"), 1);
	assert_int_equal(recorded(f, s, &stale), SBX_STOPPED);
	assert_int_equal(recorded(f, d, &stale), SBX_GONE);

	assert_true(simproc_stop(&f->p) == 0);
	reconcile_now(f);
	assert_int_not_equal(f->rec_err, 0);
	assert_int_equal(recorded(f, p, &stale), SBX_RUNNING);
	assert_true(stale);
	assert_int_equal(recorded(f, s, &stale), SBX_STOPPED);
	assert_true(stale);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_refresh_single_flight),
	        T(t_clock_decides_refresh),
	        T(t_renewal_in_window),
	        T(t_renewals_even),
	        T(t_resume_joins),
	        T(t_unknown_refused),
	        T(t_reconcile),
	};
#undef T

	if (argc != 2) {
		fprintf(stderr, "usage: %s HOPX_SIM\n", argv[0]);
		return 2;
	}
	sim_bin = argv[1];
	log_init("test", LOG_LVL_WARN);
	store_global_init();
	return cmocka_run_group_tests_name("sessions", tests, NULL, NULL);
}
