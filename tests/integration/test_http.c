/*
 * agent/http.c against hopx-sim: the libcurl multi + libuv client under
 * concurrency, faults, limits, cancellation and teardown. Every test ends
 * with uv_loop_close() == 0: no handle may leak.
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
#include "http.h"
#include "simclient.h"

static const char *sim_bin;

struct fx {
	struct simproc p;
	uv_loop_t loop;
	struct http *h;
	char url[256];
	char key[80];
	int done;
	int max_seen_inflight;
	long connects;
	struct http_result last;
	char last_body[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct http_opts o = {0};
	struct sc_result r;

	assert_non_null(f);
	if (simproc_start(&f->p, sim_bin, NULL) != 0)
		fail_msg("hopx-sim did not start");
	sc_api(&r, &f->p, "POST", "/v1/sandboxes",
	       "{\"template_name\":\"base\"}");
	snprintf(f->url, sizeof(f->url), "%s/v1/sandboxes/%s", f->p.api_url,
	         sc_str(&r, "id"));
	sc_free(&r);
	snprintf(f->key, sizeof(f->key), "X-API-Key: %s", SIM_TEST_KEY);
	uv_loop_init(&f->loop);
	o.max_inflight = 4;
	o.timeout_ms = 2000;
	o.max_body = 64 * 1024;
	assert_int_equal(http_create(&f->loop, &o, &f->h), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	http_destroy(f->h);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_int_equal(simproc_destroy(&f->p), 0); /* exit 0 at SIGTERM */
	free(f);
	return 0;
}

static void on_done(void *ud, const struct http_result *res)
{
	struct fx *f = ud;

	f->done++;
	f->last = *res;
	f->connects += res->new_connections;
	snprintf(f->last_body, sizeof(f->last_body), "%s", res->body);
	f->last.body = f->last_body;
	if (http_inflight(f->h) + 1 > f->max_seen_inflight)
		f->max_seen_inflight = http_inflight(f->h) + 1;
}

static void get(struct fx *f, const char *url)
{
	const char *const hdrs[] = {f->key, NULL};

	assert_int_equal(
	        http_request(f->h, "GET", url, hdrs, NULL, on_done, f, NULL),
	        0);
}

static void faults(struct fx *f, const char *json)
{
	struct sc_result r;

	sc_api(&r, &f->p, "PUT", "/_sim/faults", json);
	assert_int_equal(r.status, 200);
	sc_free(&r);
}

static void t_many_requests_bounded_and_reused(void **state)
{
	struct fx *f = *state;
	int i;

	for (i = 0; i < 50; i++)
		get(f, f->url);
	assert_int_equal(http_inflight(f->h) + http_queued(f->h), 50);
	assert_true(http_inflight(f->h) <= 4);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 50);
	assert_int_equal(f->last.err, 0);
	assert_int_equal(f->last.status, 200);
	assert_non_null(strstr(f->last.body, "\"object\":\"sandbox\""));
	assert_true(strncmp(f->last.request_id, "req_", 4) == 0);
	/* Never more than max_inflight at once, and keep-alive: at most
	 * one connection per slot for fifty requests. */
	assert_true(f->max_seen_inflight <= 4);
	assert_true(f->connects >= 1 && f->connects <= 4);
}

static void t_post_put_and_status(void **state)
{
	struct fx *f = *state;
	const char *const hdrs[] = {f->key, NULL};
	char url[300];

	snprintf(url, sizeof(url), "%s/pause", f->url);
	assert_int_equal(
	        http_request(f->h, "POST", url, hdrs, NULL, on_done, f, NULL),
	        0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.status, 200);
	assert_non_null(strstr(f->last.body, "\"paused\""));
	snprintf(url, sizeof(url), "%s/timeout", f->url);
	assert_int_equal(http_request(f->h, "PUT", url, hdrs,
	                              "{\"timeout_seconds\":0}", on_done, f,
	                              NULL),
	                 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	/* An HTTP error status is not a transport error. */
	assert_int_equal(f->last.err, 0);
	assert_int_equal(f->last.status, 400);
}

static void t_transport_faults(void **state)
{
	static const struct {
		const char *faults;
		int err;
	} cases[] = {
	        {"{\"rate_reset\":1}", ERR_NET},
	        {"{\"rate_truncated\":1}", ERR_NET},
	        {"{\"rate_stall\":1}", ERR_TIMEOUT},
	};
	struct fx *f = *state;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		faults(f, cases[i].faults);
		get(f, f->url);
		uv_run(&f->loop, UV_RUN_DEFAULT);
		assert_int_equal(f->last.err, cases[i].err);
		assert_true(strlen(f->last.error) > 0);
	}
	/* Malformed JSON is a body problem, for the HopX client to see. */
	faults(f, "{\"rate_malformed\":1}");
	get(f, f->url);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.err, 0);
	assert_int_equal(f->last.status, 200);
}

static void t_retry_after_and_refused(void **state)
{
	struct fx *f = *state;

	faults(f, "{\"rate_429\":1,\"retry_after\":9}");
	get(f, f->url);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.status, 429);
	assert_int_equal(f->last.retry_after_s, 9);
	/* Nobody listening: a network error, quickly. */
	get(f, "http://127.0.0.1:9/v1/sandboxes");
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.err, ERR_NET);
}

static void t_body_cap(void **state)
{
	struct fx *f = *state;
	struct http_opts o = {0};
	struct http *small = NULL;
	const char *const hdrs[] = {f->key, NULL};

	o.max_body = 4096;
	assert_int_equal(http_create(&f->loop, &o, &small), 0);
	/* A sandbox object is ~600 bytes: a page of 100 is far over 4 KiB. */
	{
		struct sc_result r;
		char url[300];

		sc_api(&r, &f->p, "POST", "/_sim/sandboxes/bulk",
		       "{\"count\":100}");
		sc_free(&r);
		snprintf(url, sizeof(url), "%s/v1/sandboxes?limit=100",
		         f->p.api_url);
		assert_int_equal(http_request(small, "GET", url, hdrs, NULL,
		                              on_done, f, NULL),
		                 0);
	}
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.err, ERR_TOOBIG);
	http_destroy(small);
}

static void t_cancel_and_destroy_in_flight(void **state)
{
	struct fx *f = *state;
	const char *const hdrs[] = {f->key, NULL};
	struct http_req *a = NULL, *b = NULL;
	int i;

	faults(f, "{\"rate_stall\":1}");
	assert_int_equal(
	        http_request(f->h, "GET", f->url, hdrs, NULL, on_done, f, &a),
	        0);
	for (i = 0; i < 6; i++) /* some run, some wait in the queue */
		get(f, f->url);
	assert_int_equal(
	        http_request(f->h, "GET", f->url, hdrs, NULL, on_done, f, &b),
	        0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	http_cancel(a); /* running */
	http_cancel(b); /* queued */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	/* Destroy with transfers still in flight: no callback, no leak. */
	http_destroy(f->h);
	f->h = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 0);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(t_many_requests_bounded_and_reused),
	        T(t_post_put_and_status),
	        T(t_transport_faults),
	        T(t_retry_after_and_refused),
	        T(t_body_cap),
	        T(t_cancel_and_destroy_in_flight),
	};
#undef T
	int r;

	sim_bin = argc > 1 ? argv[1] : "hopx-sim";
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("http", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
