/* hopxctl's human output: relative times, colour rules, widths. */
#include "fmt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#define NOW 1795000000000LL /* 2026-11-18T11:06:40Z */

static void t_duration(void **state)
{
	char b[32];

	(void)state;
	fmt_duration(b, sizeof(b), 0);
	assert_string_equal(b, "0s");
	fmt_duration(b, sizeof(b), 59999);
	assert_string_equal(b, "59s");
	fmt_duration(b, sizeof(b), 41 * 60000 + 59000);
	assert_string_equal(b, "41m");
	fmt_duration(b, sizeof(b), -2 * 3600000LL);
	assert_string_equal(b, "2h");
	fmt_duration(b, sizeof(b), 3 * 86400000LL + 1);
	assert_string_equal(b, "3d");
}

static void t_relative(void **state)
{
	char b[32];

	(void)state;
	fmt_relative(b, sizeof(b), "2026-11-18T11:47:40Z", NOW);
	assert_string_equal(b, "in 41m");
	fmt_relative(b, sizeof(b), "2026-11-18T09:06:40Z", NOW);
	assert_string_equal(b, "2h ago");
	fmt_relative(b, sizeof(b), "2026-11-18T11:06:40.500Z", NOW);
	assert_string_equal(b, "now");
	fmt_relative(b, sizeof(b), NULL, NOW);
	assert_string_equal(b, "-");
	fmt_relative(b, sizeof(b), "-", NOW);
	assert_string_equal(b, "-");
	fmt_relative(b, sizeof(b), "yesterday", NOW); /* shown as sent */
	assert_string_equal(b, "yesterday");
	fmt_relative(b, 5, "2026-11-18T09:06:40Z", NOW); /* bounded */
	assert_string_equal(b, "2h a");
}

static void t_colour(void **state)
{
	(void)state;
	assert_int_equal(fmt_colour_on(1, NULL), 1);
	assert_int_equal(fmt_colour_on(1, ""), 1); /* empty: not set */
	assert_int_equal(fmt_colour_on(1, "1"), 0);
	assert_int_equal(fmt_colour_on(0, NULL), 0);
	assert_string_equal(fmt_status_colour("running"), FMT_GREEN);
	assert_string_equal(fmt_status_colour("gone"), FMT_RED);
	assert_string_equal(fmt_status_colour("bogus"), "");
	assert_string_equal(fmt_status_colour(NULL), "");
}

static void t_width_and_fit(void **state)
{
	char s[32] = "team=core,env=prod";

	(void)state;
	/* fd -1 has no window: $COLUMNS, else 80, never under 40. */
	assert_int_equal(fmt_width(-1, "132"), 132);
	assert_int_equal(fmt_width(-1, NULL), 80);
	assert_int_equal(fmt_width(-1, "junk"), 80);
	assert_int_equal(fmt_width(-1, "10"), 40);
	fmt_fit(s, 32);
	assert_string_equal(s, "team=core,env=prod");
	fmt_fit(s, 12);
	assert_string_equal(s, "team=core...");
	fmt_fit(s, 2);
	assert_string_equal(s, "te");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_duration),
	        cmocka_unit_test(t_relative),
	        cmocka_unit_test(t_colour),
	        cmocka_unit_test(t_width_and_fit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
