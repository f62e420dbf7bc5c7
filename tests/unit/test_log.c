/* Unit tests for common/log.c: levels, sink, and that secrets never pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "log.h"

static char last[4096];
static int lines;

static void sink(void *ud, enum log_level lvl, const char *line)
{
	(void)ud;
	(void)lvl;
	snprintf(last, sizeof(last), "%s", line);
	lines++;
}

static int setup(void **state)
{
	(void)state;
	log_init("test", LOG_LVL_DEBUG);
	log_set_sink(sink, NULL);
	last[0] = '\0';
	lines = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_sink(NULL, NULL);
	log_clear_secrets();
	return 0;
}

static void t_levels(void **state)
{
	enum log_level l;

	(void)state;
	log_set_level(LOG_LVL_WARN);
	log_info("hidden %d", 1);
	assert_int_equal(lines, 0);
	log_warn("shown %d", 2);
	assert_int_equal(lines, 1);
	/* The function name is added automatically. */
	assert_string_equal(last, "t_levels: shown 2");
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("loud", &l), ERR_INVAL);
}

static void t_redacts_jwt_and_keys(void **state)
{
	const char *jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIx"
	                  "In0.c2lnbmF0dXJl";

	(void)state;
	log_info("token=%s end", jwt);
	assert_null(strstr(last, "eyJ"));
	assert_non_null(strstr(last, "token=[redacted] end"));
	log_info("key hopx_live_abcdefghijkl.c2VjcmV0c2VjcmV0+/= used");
	assert_null(strstr(last, "hopx_live_"));
	assert_non_null(strstr(last, "key [redacted] used"));
	log_info("Authorization: Bearer %s", jwt);
	assert_null(strstr(last, "c2lnbmF0dXJl"));
}

static void t_redacts_registered_secret(void **state)
{
	(void)state;
	assert_int_equal(log_add_secret("short"), ERR_INVAL);
	assert_int_equal(log_add_secret("plain-secret-key-123"), 0);
	assert_int_equal(log_add_secret("plain-secret-key-123"), 0);
	log_error("request failed with key plain-secret-key-123!");
	assert_null(strstr(last, "plain-secret"));
	assert_non_null(strstr(last, "key [redacted]!"));
}

static void t_redact_bounds(void **state)
{
	char out[12];
	size_t n;

	(void)state;
	/* Output is truncated, never overflowed, and still masked. */
	n = log_redact("ab eyJhbGciOiJIUzI1NiJ9.e30.sig tail", out,
	               sizeof(out));
	assert_int_equal(n, 1);
	assert_int_equal(strlen(out), sizeof(out) - 1);
	assert_null(strstr(out, "eyJ"));
	assert_int_equal(log_redact("x", out, 0), 0);
	/* "eyJ" alone in a word is not a token. */
	n = log_redact("eyJa", out, sizeof(out));
	assert_int_equal(n, 0);
	assert_string_equal(out, "eyJa");
}

static void t_fingerprint(void **state)
{
	char a[16], b[16], c[16];

	(void)state;
	log_fingerprint("eyJone", a, sizeof(a));
	log_fingerprint("eyJone", b, sizeof(b));
	log_fingerprint("eyJtwo", c, sizeof(c));
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strncmp(a, "tok:", 4), 0);
	assert_null(strstr(a, "eyJ"));
}

static void t_long_line_truncated(void **state)
{
	char big[8000];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_info("%s", big);
	assert_int_equal(lines, 1);
	assert_true(strlen(last) < 2100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(t_levels, setup, teardown),
	        cmocka_unit_test_setup_teardown(t_redacts_jwt_and_keys, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(t_redacts_registered_secret,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(t_redact_bounds, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(t_fingerprint, setup, teardown),
	        cmocka_unit_test_setup_teardown(t_long_line_truncated, setup,
	                                        teardown),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
