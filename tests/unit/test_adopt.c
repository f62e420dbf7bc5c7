/* Adoption rules: which lost create made which untracked sandbox. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "adopt.h"
#include "err.h"
#include "testutil.h"

static struct hopx_sandbox cand(const char *id, const char *tpl,
                                int64_t created)
{
	struct hopx_sandbox h;

	memset(&h, 0, sizeof(h));
	snprintf(h.id, sizeof(h.id), "%s", id);
	snprintf(h.template_name, sizeof(h.template_name), "%s", tpl);
	snprintf(h.template_id, sizeof(h.template_id), "%s",
	         strcmp(tpl, "base") == 0 ? "1" : "73");
	h.created_at = created;
	return h;
}

static void t_parse(void **state)
{
	struct adopt_intent in;

	(void)state;
	assert_int_equal(adopt_intent_parse("{\"body\":{\"template_name\":"
	                                    "\"base\"},\"labels\":{}}",
	                                    &in),
	                 0);
	assert_string_equal(in.template_name, "base");
	assert_string_equal(in.template_id, "");
	/* Intents written before labels were kept: the body itself. */
	assert_int_equal(adopt_intent_parse("{\"template_id\":\"73\"}", &in),
	                 0);
	assert_string_equal(in.template_id, "73");
	assert_int_equal(adopt_intent_parse("{}", &in), ERR_INVAL);
	assert_int_equal(adopt_intent_parse("not json", &in), ERR_INVAL);
}

static void t_match(void **state)
{
	const int64_t t0 = 1000000000;
	struct adopt_intent in[3] = {
	        {.id = 1, .created_at = t0, .template_name = "base"},
	        {.id = 2, .created_at = t0 + 1000, .template_name = "base"},
	        {.id = 3, .created_at = t0 + 2000, .template_id = "73"},
	};
	struct hopx_sandbox c[4];
	long pick[3];

	(void)state;
	c[0] = cand("late", "base", t0 + 3000);
	c[1] = cand("early", "base", t0 + 1000); /* HopX rounds to seconds */
	c[2] = cand("ci", "code-interpreter", t0 + 2000);
	c[3] = cand("old", "base", t0 - 3600 * 1000); /* before any intent */
	assert_int_equal(adopt_match(in, 3, c, 4, t0 + 5000, pick), 3);
	assert_int_equal(pick[0], 1); /* oldest intent, earliest sandbox */
	assert_int_equal(pick[1], 0);
	assert_int_equal(pick[2], 2); /* by template id */
	/* Each sandbox serves one intent; the rest made nothing. */
	assert_int_equal(adopt_match(in, 3, c + 1, 1, t0 + 5000, pick), 1);
	assert_int_equal(pick[0], 0);
	assert_int_equal(pick[1], -1);
	assert_int_equal(pick[2], -1);
	/* Created after the run began (plus skew): another client's. */
	c[0] = cand("new", "base", t0 + 60000);
	assert_int_equal(adopt_match(in, 1, c, 1, t0 + 5000, pick), 0);
	assert_int_equal(adopt_match(in, 1, c, 0, t0, pick), 0);
}

static int count_open(void *ud, const struct store_intent *in)
{
	(void)in;
	++*(int *)ud;
	return 0;
}

/* The record and the end of its intent are one transaction: a crash
 * between them once left a tracked sandbox with its intent open, which
 * adoption then gave another create's sandbox. */
static void t_put_closes_intent(void **state)
{
	char dir[256], path[300];
	struct hopx_sandbox a = cand("sbx-a", "base", 1000), b;
	struct store *st;
	int64_t in1, in2;
	int open = 0;

	(void)state;
	assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
	tu_path(path, sizeof(path), dir, "a.db");
	assert_int_equal(store_open(path, 0, NULL, &st, NULL), 0);
	assert_int_equal(store_intent_add(st, "create", "{}", "web", &in1), 0);
	assert_int_equal(store_intent_add(st, "create", "{}", "db", &in2), 0);
	assert_int_equal(
	        adopt_put(st, &a, "web", NULL, 1, 1000, STORE_CAUSE_USER, in1),
	        0);
	/* A taken name writes nothing and leaves the intent open. */
	b = cand("sbx-b", "base", 1000);
	assert_int_equal(
	        adopt_put(st, &b, "web", NULL, 1, 1000, STORE_CAUSE_USER, in2),
	        ERR_EXISTS);
	assert_int_equal(store_intent_list_open(st, count_open, &open), 0);
	assert_int_equal(open, 1);
	store_close(st);
	tu_rmrf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_parse),
	        cmocka_unit_test(t_match),
	        cmocka_unit_test(t_put_closes_intent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
