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

/* Starts a request with the API key; 0 or the error. */
static int req(struct fx *f, struct http *h, const char *method,
               const char *url, const char *body, unsigned flags,
               struct http_req **out)
{
	const char *const hdrs[] = {f->key, NULL};
	struct http_send snd = {.method = method,
	                        .url = url,
	                        .headers = hdrs,
	                        .body = body,
	                        .flags = flags};

	return http_request(h, &snd, on_done, f, out);
}

static void get(struct fx *f, const char *url)
{
	assert_int_equal(req(f, f->h, "GET", url, NULL, 0, NULL), 0);
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
	char url[300];

	snprintf(url, sizeof(url), "%s/pause", f->url);
	assert_int_equal(req(f, f->h, "POST", url, NULL, 0, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.status, 200);
	assert_non_null(strstr(f->last.body, "\"paused\""));
	snprintf(url, sizeof(url), "%s/timeout", f->url);
	assert_int_equal(
	        req(f, f->h, "PUT", url, "{\"timeout_seconds\":0}", 0, NULL),
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
		assert_int_equal(req(f, small, "GET", url, NULL, 0, NULL), 0);
	}
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->last.err, ERR_TOOBIG);
	http_destroy(small);
}

static void t_cancel_and_destroy_in_flight(void **state)
{
	struct fx *f = *state;
	struct http_req *a = NULL, *b = NULL;
	int i;

	faults(f, "{\"rate_stall\":1}");
	assert_int_equal(req(f, f->h, "GET", f->url, NULL, 0, &a), 0);
	for (i = 0; i < 6; i++) /* some run, some wait in the queue */
		get(f, f->url);
	assert_int_equal(req(f, f->h, "GET", f->url, NULL, 0, &b), 0);
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

/* Counts the batch calls; an answer must come between them. */
struct batch_seen {
	struct fx *f;
	int begins, ends, open, outside, most;
	int done_at_begin;
	struct http_req *victim;
	int cancelled;
};

static void on_batch(void *ud, int end)
{
	struct batch_seen *b = ud;

	if (end) {
		assert_int_equal(b->open, 1);
		b->ends++;
		if (b->f->done - b->done_at_begin > b->most)
			b->most = b->f->done - b->done_at_begin;
	} else {
		assert_int_equal(b->open, 0);
		b->begins++;
		b->done_at_begin = b->f->done;
	}
	b->open = !end;
}

static void on_done_batched(void *ud, const struct http_result *res)
{
	struct batch_seen *b = ud;

	if (!b->open)
		b->outside++;
	on_done(b->f, res);
}

static void on_first(void *ud, const struct http_result *res)
{
	struct batch_seen *b = ud;

	on_done_batched(ud, res);
	if (b->victim) {
		http_cancel(b->victim);
		b->victim = NULL;
		b->cancelled++;
	}
}

static void on_victim(void *ud, const struct http_result *res)
{
	struct batch_seen *b = ud;

	on_done_batched(ud, res);
	b->victim = NULL;
}

/*
 * HTTP_BATCH answers come between the batch calls, those of one turn
 * together; plain ones outside; a batched answer cancelled while it waits
 * for its turn's end never comes.
 */
static void t_batch(void **state)
{
	struct fx *f = *state;
	struct batch_seen b = {.f = f};
	const char *const hdrs[] = {f->key, NULL};
	struct http_send snd = {.method = "GET",
	                        .url = f->url,
	                        .headers = hdrs,
	                        .flags = HTTP_BATCH};
	int i;

	http_on_batch(f->h, on_batch, &b);
	for (i = 0; i < 40; i++)
		assert_int_equal(
		        http_request(f->h, &snd, on_done_batched, &b, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 40);
	assert_int_equal(b.outside, 0);
	assert_int_equal(b.begins, b.ends);
	assert_true(b.begins >= 1 && b.begins <= 40);
	/* four in flight answer close together: some turns had several */
	assert_true(b.most >= 2);
	get(f, f->url);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->done, 41);
	assert_int_equal(b.outside, 0); /* a plain one: no batch calls */
	/* Pairs: the first's answer cancels the second, which has often
	 * finished in the same turn and waits on the ready list (ASan
	 * watches that it is then never reported nor freed twice). */
	for (i = 0; i < 20; i++) {
		assert_int_equal(http_request(f->h, &snd, on_first, &b, NULL),
		                 0);
		assert_int_equal(
		        http_request(f->h, &snd, on_victim, &b, &b.victim), 0);
		uv_run(&f->loop, UV_RUN_DEFAULT);
	}
	/* each second request was either cancelled or answered, not both */
	assert_int_equal(f->done + b.cancelled, 81);
	assert_int_equal(b.outside, 0);
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
	        T(t_batch),
	};
#undef T
	int r;

	sim_bin = argc > 1 ? argv[1] : "hopx-sim";
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests_name("http", tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
