/* The agent's timing rules: renewal window, backoff, keep-alive, polls,
 * clock jumps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "timing.h"

static void t_renew_window(void **state)
{
	const int64_t issued = 1000000, life = 3600 * 1000;
	int64_t lo = INT64_MAX, hi = 0, at;
	uint32_t rng = 12345;
	int i;

	(void)state;
	for (i = 0; i < 10000; i++) {
		at = timing_renew_at(issued, issued + life, timing_rand(&rng));
		lo = at < lo ? at : lo;
		hi = at > hi ? at : hi;
	}
	/* 83-90% of the life, and the draws cover the window. */
	assert_true(lo >= issued + life * 83 / 100);
	assert_true(hi <= issued + life * 90 / 100);
	assert_true(hi - lo > life * 6 / 100);
	/* Short tokens still renew a tenth of their life before expiry. */
	at = timing_renew_at(0, 5000, UINT32_MAX);
	assert_true(at <= 4500 && at >= 4150);
	/* Already expired or nonsense: now. */
	assert_int_equal(timing_renew_at(10, 10, 7), 10);
}

static void t_backoff(void **state)
{
	uint32_t rng = 99;
	int64_t d;
	int i, a;

	(void)state;
	for (a = 1; a <= 12; a++)
		for (i = 0; i < 1000; i++) {
			d = timing_backoff(a, 1000, 60000, timing_rand(&rng),
			                   0);
			assert_true(d >= 0);
			assert_true(d <= (a > 6 ? 60000 : 1000LL << (a - 1)));
		}
	/* Retry-After is a floor, whatever the draw. */
	assert_int_equal(timing_backoff(1, 1000, 60000, 0, 5000), 5000);
	assert_int_equal(timing_backoff(3, 0, 0, 77, 0), 0);
}

static void t_keepalive_and_polls(void **state)
{
	(void)state;
	/* A third of the period before the deadline. */
	assert_int_equal(timing_keepalive_at(100000, 30, 5), 90000);
	assert_int_equal(timing_poll_delay(0), 1000);
	assert_int_equal(timing_poll_delay(1), 2000);
	assert_int_equal(timing_poll_delay(4), 16000);
	assert_int_equal(timing_poll_delay(5), 30000);
	assert_int_equal(timing_poll_delay(50), 30000);
}

static void t_rand_never_sticks(void **state)
{
	uint32_t rng = 1, first = timing_rand(&rng);
	int i, same = 0;

	(void)state;
	for (i = 0; i < 1000; i++)
		same += timing_rand(&rng) == first;
	assert_true(rng != 0);
	assert_true(same <= 1);
}

/* The wall clock against the monotonic one: a suspend, a step, drift. */
static void t_clock_jump(void **state)
{
	(void)state;
	/* both moved 1 s: nothing */
	assert_int_equal(timing_clock_jump(1000, 50, 2000, 1050, 2000), 0);
	/* slept 2 h: the monotonic clock stood still */
	assert_int_equal(timing_clock_jump(0, 0, 7201000, 1000, 2000), 7200000);
	/* set back 10 min */
	assert_int_equal(timing_clock_jump(600000, 0, 1000, 1000, 2000),
	                 -600000);
	/* NTP slewing a little is no jump */
	assert_int_equal(timing_clock_jump(0, 0, 1150, 1000, 2000), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_renew_window),
	        cmocka_unit_test(t_backoff),
	        cmocka_unit_test(t_keepalive_and_polls),
	        cmocka_unit_test(t_rand_never_sticks),
	        cmocka_unit_test(t_clock_jump),
	};

	return cmocka_run_group_tests_name("timing", tests, NULL, NULL);
}
