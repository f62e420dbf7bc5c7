/* agent/timerq.c on a libuv loop: entries run in due order, each not
 * before its due time by the queue's clock (a loop that wakes early
 * re-arms), moved and cancelled entries, re-queueing from the callback,
 * room made ahead, and a close with entries still queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <uv.h>

#include "clock.h"
#include "err.h"
#include "timerq.h"

#define N 512 /* a power of two: the room reserved is exactly N */

struct item {
	struct timerq_entry e;
	int64_t ran_at; /* the clock's time when it ran; 0: not run */
	int again;      /* queue it again this much later when it runs */
};

struct fx {
	uv_loop_t loop;
	struct clock clk;
	int64_t offset; /* the queue's wall clock: the loop's, moved by this */
	struct timerq *q;
	struct item it[N];
	int order[N];
	int nran;
};

static int64_t fx_wall(void *ctx)
{
	struct fx *f = ctx;

	return (int64_t)uv_now(&f->loop) + f->offset;
}

static void ran(void *ud, struct timerq_entry *e)
{
	struct fx *f = ud;
	struct item *it =
	        (struct item *)(void *)((char *)e - offsetof(struct item, e));

	assert_int_equal(e->at, 0); /* off the queue before it runs */
	it->ran_at = fx_wall(f);
	f->order[f->nran++] = (int)(it - f->it);
	if (it->again) {
		assert_int_equal(timerq_set(f->q, e, e->due + it->again), 0);
		it->again = 0;
	}
}

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	uv_loop_init(&f->loop);
	f->clk = (struct clock){fx_wall, fx_wall, f};
	assert_int_equal(timerq_new(&f->loop, &f->clk, ran, f, &f->q), 0);
	assert_int_equal(timerq_reserve(f->q, N), 0);
	return f;
}

static void fx_free(struct fx *f)
{
	timerq_close(f->q);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
}

/* Due in the past in random order, moved, some cancelled: all that are
 * queued run at the next turn, earliest first. */
static void t_order(void **state)
{
	struct fx *f = fx_new();
	int64_t now = fx_wall(f);
	uint32_t r = 7;
	int i, cancelled = 0;

	(void)state;
	for (i = 0; i < N; i++) {
		r = r * 1103515245u + 12345u;
		assert_int_equal(timerq_set(f->q, &f->it[i].e,
		                            now - 1 - (int64_t)(r % 100000)),
		                 0);
	}
	for (i = 0; i < N; i += 7) /* moved, some later, some earlier */
		timerq_set(f->q, &f->it[i].e,
		           f->it[i].e.due + (i % 2 ? 500 : -500));
	for (i = 3; i < N; i += 11, cancelled++)
		timerq_cancel(f->q, &f->it[i].e);
	timerq_cancel(f->q, &f->it[3].e); /* twice: nothing */
	assert_int_equal(timerq_count(f->q), N - cancelled);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->nran, N - cancelled);
	for (i = 1; i < f->nran; i++)
		assert_true(f->it[f->order[i - 1]].e.due <=
		            f->it[f->order[i]].e.due);
	for (i = 3; i < N; i += 11)
		assert_int_equal(f->it[i].ran_at, 0);
	assert_int_equal(timerq_count(f->q), 0);
	fx_free(f);
}

/* In the future: each runs at or after its due time by the clock, also
 * when the clock is set back after the timer was armed (the loop wakes
 * early by that clock and the queue waits again), and one queued again
 * from its callback runs again. */
static void t_not_early(void **state)
{
	struct fx *f = fx_new();
	int64_t now = fx_wall(f);
	int i;

	(void)state;
	for (i = 0; i < 5; i++)
		timerq_set(f->q, &f->it[i].e, now + 20 + 10 * i);
	f->it[4].again = 15;
	f->offset -= 25; /* the clock steps back once armed */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nran, 6);
	for (i = 0; i < 5; i++)
		assert_true(f->it[i].ran_at >= f->it[i].e.due ||
		            (i == 4 && f->it[i].ran_at >= now + 60 + 15));
	assert_int_equal(f->order[5], 4);
	fx_free(f);
}

/* No room: refused, nothing queued; a close forgets what is queued. */
static void t_room_and_close(void **state)
{
	struct fx *f = fx_new();
	static struct timerq_entry more[N + 1];
	int i;

	(void)state;
	for (i = 0; i < N; i++)
		assert_int_equal(timerq_set(f->q, &more[i], fx_wall(f) + 60000),
		                 0);
	assert_int_equal(timerq_set(f->q, &more[N], 1), ERR_NOMEM);
	assert_int_equal(more[N].at, 0);
	/* moving a queued one needs no room */
	assert_int_equal(timerq_set(f->q, &more[0], fx_wall(f) + 1), 0);
	assert_int_equal(timerq_reserve(f->q, N + 1), 0);
	assert_int_equal(timerq_set(f->q, &more[N], fx_wall(f) + 1), 0);
	timerq_close(f->q);
	assert_int_equal(more[0].at, 0);
	assert_int_equal(more[N].at, 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nran, 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_order),
	        cmocka_unit_test(t_not_early),
	        cmocka_unit_test(t_room_and_close),
	};

	return cmocka_run_group_tests_name("timerq", tests, NULL, NULL);
}
