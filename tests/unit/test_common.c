/* Unit tests for common/: err, buf, json, rfc3339, sbx, clock, paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "clock.h"
#include "err.h"
#include "json.h"
#include "paths.h"
#include "rfc3339.h"
#include "sbx.h"

static void t_err_names_round_trip(void **state)
{
	int c;

	(void)state;
	for (c = 0; c > ERR_LAST_; c--) {
		assert_non_null(err_str(c));
		assert_int_equal(err_from_name(err_name(c)), c);
	}
	assert_string_equal(err_name(ERR_NOTFOUND), "not_found");
	assert_string_equal(err_str(-999), "unknown error");
	assert_string_equal(err_str(5), "unknown error");
	assert_int_equal(err_from_name("no such name"), ERR_INVAL);
	assert_int_equal(err_from_errno(28 /* ENOSPC */), ERR_FULL);
}

static void t_buf_limit(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_string_equal(buf_str(&b), "");
	assert_int_equal(buf_puts(&b, "hello"), 0);
	assert_int_equal(buf_printf(&b, "%d", 1234), 0);
	assert_string_equal(buf_str(&b), "hello1234");
	/* One more byte fits exactly; the next is refused, nothing added. */
	assert_int_equal(buf_puts(&b, "!"), 0);
	assert_int_equal(buf_puts(&b, "?"), ERR_TOOBIG);
	assert_int_equal(buf_printf(&b, "%s", "xy"), ERR_TOOBIG);
	assert_int_equal(buf_len(&b), 10);
	buf_consume(&b, 5);
	assert_string_equal(buf_str(&b), "1234!");
	buf_consume(&b, 100);
	assert_int_equal(buf_len(&b), 0);
	buf_finish(&b);
	buf_finish(&b); /* twice is fine */
}

static void t_buf_detach(void **state)
{
	struct buf b;
	size_t len = 0;
	char *p;

	(void)state;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_puts(&b, "0123456789"), 0);
	p = buf_detach(&b, &len);
	assert_int_equal(len, 10000);
	assert_int_equal(strlen(p), 10000);
	assert_int_equal(buf_len(&b), 0);
	free(p);
	p = buf_detach(&b, &len); /* empty buffer gives "" */
	assert_string_equal(p, "");
	free(p);
}

static void t_json_getters(void **state)
{
	const char *txt = "{\"s\":\"x\",\"i\":42,\"f\":1.5,\"big\":1e300,"
	                  "\"b\":true,\"n\":null,\"o\":{},\"a\":[1],"
	                  "\"t\":\"2025-01-28T01:00:00Z\",\"bt\":\"nope\"}";
	const cJSON *o2;
	const char *s = "default";
	int64_t i = 7;
	int b = -1;
	cJSON *j;

	(void)state;
	assert_int_equal(json_parse(txt, strlen(txt), &j), 0);
	assert_int_equal(json_get_str(j, "s", &s), 0);
	assert_string_equal(s, "x");
	assert_int_equal(json_get_str(j, "i", &s), ERR_TYPE);
	assert_int_equal(json_get_str(j, "missing", &s), ERR_NOTFOUND);
	assert_int_equal(json_get_str(j, "n", &s), ERR_NOTFOUND);
	assert_int_equal(json_get_i64(j, "i", &i), 0);
	assert_int_equal(i, 42);
	assert_int_equal(json_get_i64(j, "f", &i), ERR_TYPE);
	assert_int_equal(json_get_i64(j, "big", &i), ERR_TYPE);
	assert_int_equal(json_get_i64(j, "s", &i), ERR_TYPE);
	assert_int_equal(json_get_bool(j, "b", &b), 0);
	assert_int_equal(b, 1);
	assert_int_equal(json_get_obj(j, "o", &o2), 0);
	assert_int_equal(json_get_arr(j, "o", &o2), ERR_TYPE);
	assert_int_equal(json_get_arr(j, "a", &o2), 0);
	assert_int_equal(json_get_time(j, "t", &i), 0);
	assert_int_equal(i, 1738026000000LL);
	assert_int_equal(json_get_time(j, "bt", &i), ERR_PARSE);
	i = 99;
	assert_int_equal(json_get_i64_opt(j, "missing", &i), 0);
	assert_int_equal(i, 99);
	assert_int_equal(json_get_i64_opt(j, "s", &i), ERR_TYPE);
	cJSON_Delete(j);
}

static void t_json_parse_rejects(void **state)
{
	static const char *bad[] = {"",     "{",   "{\"a\":}",  "{} x",
	                            "[1,]", "nul", "{\"a\":1}}"};
	cJSON *j = NULL;
	size_t k;
	char deep[3000];

	(void)state;
	for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		assert_int_equal(json_parse(bad[k], strlen(bad[k]), &j),
		                 ERR_PARSE);
		assert_null(j);
	}
	/* Nesting past cJSON's limit is refused, not a stack overflow. */
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	assert_int_equal(json_parse(deep, strlen(deep), &j), ERR_PARSE);
	assert_int_equal(json_parse("{} \n", 4, &j), 0);
	cJSON_Delete(j);
}

static void t_rfc3339_parse(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
	        {"1970-01-01T00:00:00Z", 0},
	        {"2025-01-28T00:00:00Z", 1738022400000LL},
	        {"2025-01-28t00:00:00z", 1738022400000LL},
	        {"2025-01-28T00:00:00.5Z", 1738022400500LL},
	        {"2025-01-28T00:00:00.123456789Z", 1738022400123LL},
	        {"2025-01-28T01:00:00+01:00", 1738022400000LL},
	        {"2025-01-27T23:30:00-00:30", 1738022400000LL},
	        {"2024-02-29T12:00:00Z", 1709208000000LL},
	        {"1969-12-31T23:59:59Z", -1000},
	};
	static const char *bad[] = {
	        "2025-01-28",
	        "2025-13-01T00:00:00Z",
	        "2025-02-29T00:00:00Z",
	        "2025-01-28T24:00:00Z",
	        "2025-01-28T00:00:00",
	        "x",
	        "2025-01-28T00:00:00Zjunk",
	        "2025-01-28T00:00:00.Z",
	        "2025-1-28T00:00:00Z",
	        "2025-01-28T00:00:00+25:00",
	        "",
	};
	int64_t ms;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(rfc3339_parse(good[i].s, &ms), 0);
		assert_int_equal(ms, good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rfc3339_parse(bad[i], &ms), ERR_PARSE);
	assert_int_equal(rfc3339_parse(NULL, &ms), ERR_PARSE);
}

static void t_rfc3339_format(void **state)
{
	char out[RFC3339_MAX], small[8];
	int64_t back, t;

	(void)state;
	assert_int_equal(rfc3339_format(1738022400000LL, 0, out, sizeof(out)),
	                 0);
	assert_string_equal(out, "2025-01-28T00:00:00Z");
	assert_int_equal(rfc3339_format(1738022400123LL, 1, out, sizeof(out)),
	                 0);
	assert_string_equal(out, "2025-01-28T00:00:00.123Z");
	assert_int_equal(rfc3339_format(-1000, 0, out, sizeof(out)), 0);
	assert_string_equal(out, "1969-12-31T23:59:59Z");
	assert_int_equal(rfc3339_format(0, 0, small, sizeof(small)),
	                 ERR_TOOBIG);
	/* Round trip over many instants, leap years included. */
	for (t = -5000000000000LL; t < 5000000000000LL; t += 86399123) {
		assert_int_equal(rfc3339_format(t, 1, out, sizeof(out)), 0);
		assert_int_equal(rfc3339_parse(out, &back), 0);
		assert_int_equal(back, t);
	}
}

static void t_sbx_checks(void **state)
{
	enum sbx_status st;
	char longid[SBX_ID_MAX + 2];

	(void)state;
	assert_int_equal(sbx_status_parse("paused", &st), 0);
	assert_int_equal(st, SBX_PAUSED);
	assert_string_equal(sbx_status_str(SBX_GONE), "gone");
	assert_int_equal(sbx_status_parse("deleted", &st), ERR_INVAL);
	assert_string_equal(sbx_status_str((enum sbx_status)99), "unknown");
	assert_int_equal(sbx_id_check("1761048129dsaqav4n"), 0);
	assert_int_equal(sbx_id_check("a/b"), ERR_INVAL);
	assert_int_equal(sbx_id_check(""), ERR_INVAL);
	assert_int_equal(sbx_id_check("x y"), ERR_INVAL);
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(sbx_id_check(longid), ERR_INVAL);
	longid[SBX_ID_MAX] = '\0'; /* exactly the limit */
	assert_int_equal(sbx_id_check(longid), 0);
	assert_int_equal(sbx_name_check("web-1.dev"), 0);
	assert_int_equal(sbx_name_check("-web"), ERR_INVAL);
	assert_int_equal(sbx_name_check("we b"), ERR_INVAL);
	assert_int_equal(sbx_label_check("team", "core infra"), 0);
	assert_int_equal(sbx_label_check("team", ""), 0);
	assert_int_equal(sbx_label_check("te am", "x"), ERR_INVAL);
	assert_int_equal(sbx_label_check("team", "a\nb"), ERR_INVAL);
	assert_int_equal(sbx_label_check("team", NULL), ERR_INVAL);
}

static void t_clock_fake(void **state)
{
	struct clock_fake f;

	(void)state;
	clock_fake_init(&f, 1000, 5);
	assert_int_equal(clock_wall_ms(&f.clock), 1000);
	clock_fake_advance(&f, 250);
	assert_int_equal(clock_wall_ms(&f.clock), 1250);
	assert_int_equal(clock_mono_ms(&f.clock), 255);
	assert_true(clock_wall_ms(clock_system()) > 1700000000000LL);
	assert_true(clock_mono_ms(clock_system()) >= 0);
}

static void t_paths(void **state)
{
	char p[256], tiny[4];

	(void)state;
	setenv("HOPXD_SOCKET", "/x/s.sock", 1);
	assert_int_equal(paths_socket(p, sizeof(p)), 0);
	assert_string_equal(p, "/x/s.sock");
	unsetenv("HOPXD_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	assert_int_equal(paths_socket(p, sizeof(p)), 0);
	assert_string_equal(p, "/run/user/7/hopxd/hopxd.sock");
	setenv("XDG_RUNTIME_DIR", "relative", 1); /* ignored: not absolute */
	assert_int_equal(paths_socket(p, sizeof(p)), 0);
	assert_non_null(strstr(p, "/tmp/hopxd-"));
	assert_int_equal(paths_socket(tiny, sizeof(tiny)), ERR_TOOBIG);
	unsetenv("HOPXD_DB");
	setenv("XDG_STATE_HOME", "/st", 1);
	assert_int_equal(paths_db(p, sizeof(p)), 0);
	assert_string_equal(p, "/st/hopxd/hopxd.db");
	unsetenv("XDG_STATE_HOME");
	setenv("HOME", "/home/u", 1);
	assert_int_equal(paths_db(p, sizeof(p)), 0);
	assert_string_equal(p, "/home/u/.local/state/hopxd/hopxd.db");
	unsetenv("XDG_CONFIG_HOME");
	assert_int_equal(paths_key_file(p, sizeof(p)), 0);
	assert_string_equal(p, "/home/u/.config/hopxd/api-key");
	setenv("XDG_CONFIG_HOME", "/cfg", 1);
	assert_int_equal(paths_key_file(p, sizeof(p)), 0);
	assert_string_equal(p, "/cfg/hopxd/api-key");
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("HOME");
	assert_int_equal(paths_db(p, sizeof(p)), ERR_NOTFOUND);
	assert_int_equal(paths_key_file(p, sizeof(p)), ERR_NOTFOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_err_names_round_trip),
	        cmocka_unit_test(t_buf_limit),
	        cmocka_unit_test(t_buf_detach),
	        cmocka_unit_test(t_json_getters),
	        cmocka_unit_test(t_json_parse_rejects),
	        cmocka_unit_test(t_rfc3339_parse),
	        cmocka_unit_test(t_rfc3339_format),
	        cmocka_unit_test(t_sbx_checks),
	        cmocka_unit_test(t_clock_fake),
	        cmocka_unit_test(t_paths),
	};

	return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
