/*
 * agent/hopx.c against hopx-sim: typed calls, validation, error mapping,
 * retries (what the simulator's request log shows was sent, and when),
 * the request budget and its priorities, teardown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "err.h"
#include "hopx.h"
#include "log.h"
#include "simclient.h"

static const char *sim_bin;

struct fx {
	struct simproc p;
	uv_loop_t loop;
	struct hopx *hx;
	int done;
	struct hopx_result last;
	char order[8][SBX_ID_MAX + 1]; /* ids in completion order */
	int norder;
};

static struct hopx *client(struct fx *f, const char *key, int budget, int burst)
{
	struct hopx_opts o = {0};
	struct hopx *hx = NULL;

	o.base_url = f->p.api_url;
	o.api_key = key;
	o.budget_per_min = budget;
	o.burst = burst;
	o.backoff_base_ms = 50;
	o.backoff_cap_ms = 200;
	assert_int_equal(hopx_create(&f->loop, &o, &hx), 0);
	return hx;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	if (simproc_start(&f->p, sim_bin, NULL) != 0)
		fail_msg("hopx-sim did not start");
	uv_loop_init(&f->loop);
	f->hx = client(f, SIM_TEST_KEY, 6000, 100);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	hopx_destroy(f->hx);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_int_equal(simproc_destroy(&f->p), 0); /* exit 0 at SIGTERM */
	free(f);
	return 0;
}

static void on_done(void *ud, const struct hopx_result *r)
{
	struct fx *f = ud;

	f->done++;
	f->last = *r;
	f->last.items = NULL;
	if (r->nitems > 0)
		snprintf(f->last.next_cursor, sizeof(f->last.next_cursor), "%s",
		         r->next_cursor);
	if (f->norder < 8)
		snprintf(f->order[f->norder++], sizeof(f->order[0]), "%s",
		         r->sbx.id);
}

/* Runs one call to completion and returns its error. */
static int call(struct fx *f, enum hopx_op op, const char *id, const char *body,
                const char *query)
{
	struct hopx_call c = {0};

	c.op = op;
	c.id = id;
	c.body = body;
	c.query = query;
	c.timeout_s = 600;
	f->done = 0;
	assert_int_equal(hopx_call(f->hx, &c, on_done, f), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 1);
	return f->last.err;
}

static void admin(struct fx *f, const char *path, const char *body)
{
	struct sc_result r;

	sc_api(&r, &f->p,
	       strncmp(path, "/_sim/faults", 12) == 0 &&
	                       strstr(path, "script") == NULL
	               ? "PUT"
	               : "POST",
	       path, body);
	assert_int_equal(r.status, 200);
	sc_free(&r);
}

/* Number of logged requests to route, and the gap between the last two. */
static int logged(struct fx *f, const char *route, int64_t *gap_ms)
{
	const cJSON *e;
	struct sc_result r;
	int64_t prev = 0, at;
	int n = 0;

	sc_api(&r, &f->p, "GET", "/_sim/log", NULL);
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(r.json, "entries"))
	{
		if (strcmp(cJSON_GetStringValue(
		                   cJSON_GetObjectItem(e, "route")),
		           route) != 0)
			continue;
		at = (int64_t)cJSON_GetNumberValue(
		        cJSON_GetObjectItem(e, "at_ms"));
		if (gap_ms && n > 0)
			*gap_ms = at - prev;
		prev = at;
		n++;
	}
	sc_free(&r);
	return n;
}

static void t_calls_and_parsing(void **state)
{
	struct fx *f = *state;
	char id[SBX_ID_MAX + 1];

	assert_int_equal(call(f, HOPX_CREATE, NULL,
	                      "{\"template_name\":\"code-interpreter\","
	                      "\"timeout_seconds\":600}",
	                      NULL),
	                 0);
	assert_int_equal(f->last.status, 201);
	snprintf(id, sizeof(id), "%s", f->last.sbx.id);
	assert_int_equal(f->last.sbx.status, SBX_RUNNING);
	assert_true(strncmp(f->last.sbx.token, "eyJ", 3) == 0);
	assert_true(f->last.sbx.token_expires_at > 0);
	assert_string_equal(f->last.sbx.template_id, "73");
	assert_true(f->last.sbx.expires_at > f->last.sbx.created_at);
	assert_int_equal(call(f, HOPX_GET, id, NULL, NULL), 0);
	assert_string_equal(f->last.sbx.id, id);
	assert_true(strncmp(f->last.sbx.public_host, "http://127.1.", 13) == 0);
	assert_int_equal(f->last.sbx.token[0], '\0'); /* GET carries none */
	assert_int_equal(call(f, HOPX_REFRESH, id, NULL, NULL), 0);
	assert_true(strncmp(f->last.sbx.token, "eyJ", 3) == 0);
	assert_int_equal(call(f, HOPX_TIMEOUT, id, NULL, NULL), 0);
	assert_true(f->last.sbx.expires_at > 0);
	assert_int_equal(call(f, HOPX_PAUSE, id, NULL, NULL), 0);
	/* Refused, missing: no retry, the API's code is kept. */
	assert_int_equal(call(f, HOPX_PAUSE, id, NULL, NULL), ERR_CONFLICT);
	assert_int_equal(f->last.attempts, 1);
	assert_string_equal(f->last.code, "CONFLICT");
	assert_int_equal(call(f, HOPX_GET, "nosuchid", NULL, NULL),
	                 ERR_NOTFOUND);
	assert_int_equal(f->last.attempts, 1);
	assert_int_equal(call(f, HOPX_DELETE, id, NULL, NULL), 0);
	assert_int_equal(call(f, HOPX_HEALTH, NULL, NULL, NULL), 0);
	admin(f, "/_sim/sandboxes/bulk", "{\"count\":5}");
	assert_int_equal(call(f, HOPX_LIST, NULL, NULL, "limit=2"), 0);
	assert_true(f->last.has_more);
	assert_true(strlen(f->last.next_cursor) > 0);
}

static void t_wrong_key_not_retried(void **state)
{
	struct fx *f = *state;

	hopx_destroy(f->hx);
	f->hx = client(f, "hopx_test_wrong.key", 6000, 100);
	assert_int_equal(call(f, HOPX_LIST, NULL, NULL, NULL), ERR_AUTH);
	assert_int_equal(f->last.attempts, 1);
	assert_int_equal(logged(f, "GET /v1/sandboxes", NULL), 1);
}

static void t_retries_then_succeeds(void **state)
{
	struct fx *f = *state;
	char body[300];
	struct sc_result r;
	int64_t gap = 0;

	sc_api(&r, &f->p, "POST", "/v1/sandboxes",
	       "{\"template_name\":\"base\"}");
	snprintf(body, sizeof(body),
	         "{\"route\":\"GET /v1/sandboxes/{id}\",\"count\":2,"
	         "\"status\":503}");
	admin(f, "/_sim/faults/script", body);
	assert_int_equal(call(f, HOPX_GET, sc_str(&r, "id"), NULL, NULL), 0);
	assert_int_equal(f->last.attempts, 3);
	assert_int_equal(logged(f, "GET /v1/sandboxes/{id}", NULL), 3);
	/* 429 with retry_after 1: the retry waits at least a second. */
	admin(f, "/_sim/faults/script",
	      "{\"route\":\"GET /v1/sandboxes/{id}\",\"count\":1,"
	      "\"status\":429,\"retry_after\":1}");
	assert_int_equal(call(f, HOPX_GET, sc_str(&r, "id"), NULL, NULL), 0);
	assert_int_equal(f->last.attempts, 2);
	logged(f, "GET /v1/sandboxes/{id}", &gap);
	assert_true(gap >= 1000);
	/* A garbled answer is retried too. */
	admin(f, "/_sim/faults/script",
	      "{\"route\":\"GET /v1/sandboxes/{id}\",\"count\":1,"
	      "\"action\":\"malformed\"}");
	assert_int_equal(call(f, HOPX_GET, sc_str(&r, "id"), NULL, NULL), 0);
	assert_int_equal(f->last.attempts, 2);
	/* Always garbled: a bad-response error after a user call's third
	 * and last attempt. */
	admin(f, "/_sim/faults", "{\"rate_malformed\":1}");
	assert_int_equal(call(f, HOPX_GET, sc_str(&r, "id"), NULL, NULL),
	                 ERR_BADRESP);
	assert_int_equal(f->last.attempts, 3);
	sc_free(&r);
}

static void t_create_not_retried(void **state)
{
	struct fx *f = *state;

	admin(f, "/_sim/faults/script",
	      "{\"route\":\"POST /v1/sandboxes\",\"count\":1,\"status\":503}");
	assert_int_equal(call(f, HOPX_CREATE, NULL,
	                      "{\"template_name\":\"base\"}", NULL),
	                 ERR_UNAVAIL);
	assert_int_equal(f->last.attempts, 1);
	assert_int_equal(logged(f, "POST /v1/sandboxes", NULL), 1);
}

static void queue_get(struct fx *f, const char *id, enum hopx_prio prio)
{
	struct hopx_call c = {0};

	c.op = HOPX_GET;
	c.id = id;
	c.prio = prio;
	assert_int_equal(hopx_call(f->hx, &c, on_done, f), 0);
}

static void t_budget_by_priority(void **state)
{
	struct fx *f = *state;
	char a[64], b[64], c[64];
	struct sc_result r;

	hopx_destroy(f->hx);
	f->hx = client(f, SIM_TEST_KEY, 60, 1); /* one per second */
	sc_api(&r, &f->p, "POST", "/v1/sandboxes",
	       "{\"template_name\":\"base\"}");
	snprintf(a, sizeof(a), "%s", sc_str(&r, "id"));
	sc_free(&r);
	sc_api(&r, &f->p, "POST", "/v1/sandboxes",
	       "{\"template_name\":\"base\"}");
	snprintf(b, sizeof(b), "%s", sc_str(&r, "id"));
	sc_free(&r);
	sc_api(&r, &f->p, "POST", "/v1/sandboxes",
	       "{\"template_name\":\"base\"}");
	snprintf(c, sizeof(c), "%s", sc_str(&r, "id"));
	sc_free(&r);
	queue_get(f, a, HOPX_PRIO_SYNC); /* takes the one unit at once */
	queue_get(f, b, HOPX_PRIO_SYNC);
	queue_get(f, c, HOPX_PRIO_USER); /* queued after b, served before */
	assert_int_equal(hopx_pending(f->hx), 3);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 3);
	assert_string_equal(f->order[0], a);
	assert_string_equal(f->order[1], c);
	assert_string_equal(f->order[2], b);
	assert_int_equal(hopx_spent_last_minute(f->hx), 3);
}

static void make_sandboxes(struct fx *f, char ids[][64], int n)
{
	struct sc_result r;

	for (int i = 0; i < n; i++) {
		sc_api(&r, &f->p, "POST", "/v1/sandboxes",
		       "{\"template_name\":\"base\"}");
		snprintf(ids[i], 64, "%s", sc_str(&r, "id"));
		sc_free(&r);
	}
}

/* Background calls fill every slot but one: a user's call made while
 * they run starts at once instead of a round trip later. */
static void t_user_keeps_a_slot(void **state)
{
	struct fx *f = *state;
	struct hopx_opts o = {0};
	char ids[5][64];
	int pos = -1;

	hopx_destroy(f->hx);
	o.base_url = f->p.api_url;
	o.api_key = SIM_TEST_KEY;
	o.budget_per_min = 6000;
	o.burst = 100;
	o.max_inflight = 2;
	assert_int_equal(hopx_create(&f->loop, &o, &f->hx), 0);
	make_sandboxes(f, ids, 5);
	admin(f, "/_sim/faults", "{\"latency_ms\":300}");
	for (int i = 0; i < 4; i++)
		queue_get(f, ids[i], HOPX_PRIO_SYNC);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	queue_get(f, ids[4], HOPX_PRIO_USER);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 5);
	for (int i = 0; i < 5; i++)
		if (strcmp(f->order[i], ids[4]) == 0)
			pos = i;
	/* With both slots taken it would finish third or later. */
	assert_in_range(pos, 0, 1);
}

static void t_destroy_with_pending(void **state)
{
	struct fx *f = *state;

	hopx_destroy(f->hx);
	f->hx = client(f, SIM_TEST_KEY, 1, 1);
	queue_get(f, "sbxa", HOPX_PRIO_SYNC);
	queue_get(f, "sbxb", HOPX_PRIO_SYNC); /* waits a minute for budget */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	hopx_destroy(f->hx);
	f->hx = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 0); /* cancelled calls report nothing */
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_calls_and_parsing),     T(t_wrong_key_not_retried),
	        T(t_retries_then_succeeds), T(t_create_not_retried),
	        T(t_budget_by_priority),    T(t_user_keeps_a_slot),
	        T(t_destroy_with_pending),
	};
#undef T
	int r;

	sim_bin = argc > 1 ? argv[1] : "hopx-sim";
	log_init("test_hopx", LOG_LVL_WARN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("hopx", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
