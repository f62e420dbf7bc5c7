/* HopX's clock against ours, from Date headers: median, deadband, moves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "skew.h"

#define H (3600 * 1000LL)

/* Samples: HopX's Date (truncated to the second) read when ours read
 * local; HopX is `off` ms ahead. */
static int feed(struct skew *k, int64_t local, int64_t off)
{
	int64_t hopx = local + off;

	return skew_sample(k, local, hopx - hopx % 1000, 1000);
}

static void t_unknown_is_zero(void **state)
{
	struct skew k;

	(void)state;
	skew_init(&k);
	assert_int_equal(skew_offset(&k), 0);
	assert_false(k.known);
}

/* Within the Date header's resolution: no skew at all. */
static void t_deadband(void **state)
{
	struct skew k;
	int i, moved = 0;

	(void)state;
	skew_init(&k);
	for (i = 0; i < 20; i++)
		moved |= feed(&k, 1000000 + i * 337, 300);
	assert_true(k.known);
	assert_int_equal(skew_offset(&k), 0);
	assert_false(moved);
}

/* Two hours ahead or behind: known from the first answer, to a second. */
static void t_hours(void **state)
{
	struct skew k;

	(void)state;
	skew_init(&k);
	assert_true(feed(&k, 5 * H + 123, -2 * H));
	assert_true(llabs(skew_offset(&k) + 2 * H) <= 1000);
	skew_init(&k);
	assert_true(feed(&k, 5 * H + 777, 10 * 60000));
	assert_true(llabs(skew_offset(&k) - 10 * 60000) <= 1000);
}

/* One slow or odd answer does not move the median of several. */
static void t_outlier(void **state)
{
	struct skew k;
	int i;

	(void)state;
	skew_init(&k);
	for (i = 0; i < 6; i++)
		feed(&k, 1000000 + i * 1000, 60000);
	assert_false(feed(&k, 1010000, 60000 + 20000));
	assert_true(llabs(skew_offset(&k) - 60000) <= 1000);
}

/* After ours jumped, the next answer alone sets the new offset. */
static void t_restart(void **state)
{
	struct skew k;
	int i;

	(void)state;
	skew_init(&k);
	for (i = 0; i < 9; i++)
		feed(&k, 1000000 + i * 1000, 0);
	skew_restart(&k);
	assert_int_equal(skew_offset(&k), 0); /* kept until told otherwise */
	assert_true(feed(&k, 2000000, -2 * H));
	assert_true(llabs(skew_offset(&k) + 2 * H) <= 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_unknown_is_zero),
	        cmocka_unit_test(t_deadband),
	        cmocka_unit_test(t_hours),
	        cmocka_unit_test(t_outlier),
	        cmocka_unit_test(t_restart),
	};

	return cmocka_run_group_tests_name("skew", tests, NULL, NULL);
}
