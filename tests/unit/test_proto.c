/* Unit tests for common/proto.c: framing, parsing, replies, params. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "proto.h"

/* Feeds text one byte at a time; returns the lines found, in order. */
static int feed_bytewise(const char *text, char lines[][64], int max)
{
	struct buf b;
	const char *line;
	size_t len, used, i;
	int n = 0;

	buf_init(&b, PROTO_MAX);
	for (i = 0; text[i]; i++) {
		assert_int_equal(buf_append(&b, &text[i], 1), 0);
		while (proto_next_line(&b, &line, &len, &used) == 0) {
			if (n < max)
				snprintf(lines[n], 64, "%.*s", (int)len, line);
			n++;
			buf_consume(&b, used);
		}
	}
	buf_finish(&b);
	return n;
}

static void t_framing_partial_reads(void **state)
{
	char lines[8][64];
	int n;

	(void)state;
	n = feed_bytewise("{\"id\":1}\n{\"id\":2}\r\n\n{\"id\":3}", lines, 8);
	/* The third line has no newline yet: not a line. */
	assert_int_equal(n, 3);
	assert_string_equal(lines[0], "{\"id\":1}");
	assert_string_equal(lines[1], "{\"id\":2}"); /* \r dropped */
	assert_string_equal(lines[2], "");
}

static void t_framing_limits(void **state)
{
	struct buf b;
	const char *line;
	size_t len, used;
	char *big = malloc(PROTO_MAX + 1);

	(void)state;
	assert_non_null(big);
	/* Exactly PROTO_MAX bytes with the newline: accepted. */
	memset(big, 'x', PROTO_MAX - 1);
	big[PROTO_MAX - 1] = '\n';
	buf_init(&b, PROTO_MAX);
	assert_int_equal(buf_append(&b, big, PROTO_MAX), 0);
	assert_int_equal(proto_next_line(&b, &line, &len, &used), 0);
	assert_int_equal(len, PROTO_MAX - 1);
	assert_int_equal(used, PROTO_MAX);
	buf_reset(&b);
	/* PROTO_MAX bytes and still no newline: too big. */
	memset(big, 'x', PROTO_MAX);
	assert_int_equal(buf_append(&b, big, PROTO_MAX), 0);
	assert_int_equal(proto_next_line(&b, &line, &len, &used), ERR_TOOBIG);
	/* One byte more cannot even be buffered. */
	assert_int_equal(buf_append(&b, "y", 1), ERR_TOOBIG);
	buf_reset(&b);
	assert_int_equal(buf_append(&b, big, 10), 0);
	assert_int_equal(proto_next_line(&b, &line, &len, &used), ERR_NOTFOUND);
	buf_finish(&b);
	free(big);
}

static int parse(const char *line, struct proto_req *r, char *msg)
{
	return proto_req_parse(line, strlen(line), r, msg, 128);
}

static void t_parse_requests(void **state)
{
	struct proto_req r;
	char msg[128];

	(void)state;
	assert_int_equal(parse("{\"id\":7,\"method\":\"list\",\"params\":{\"a\""
	                       ":1}}",
	                       &r, msg),
	                 0);
	assert_string_equal(r.method, "list");
	assert_int_equal((int)r.id->valuedouble, 7);
	assert_non_null(cJSON_GetObjectItem(r.params, "a"));
	proto_req_finish(&r);
	/* params may be absent or null: an empty object. */
	assert_int_equal(parse("{\"id\":\"x\",\"method\":\"hello\"}", &r, msg),
	                 0);
	assert_true(cJSON_IsObject(r.params));
	proto_req_finish(&r);
	assert_int_equal(
	        parse("{\"id\":1,\"method\":\"m\",\"params\":null}", &r, msg),
	        0);
	proto_req_finish(&r);
}

static void t_parse_rejects(void **state)
{
	static const struct {
		const char *line;
		int code;
		const char *words;
		int has_id;
	} cases[] = {
	        {"garbage", ERR_PARSE, "not a JSON object", 0},
	        {"[1,2]", ERR_PARSE, "not a JSON object", 0},
	        {"{\"method\":\"x\"}", ERR_INVAL, "missing \"id\"", 0},
	        {"{\"id\":[1],\"method\":\"x\"}", ERR_INVAL, "number or", 0},
	        {"{\"id\":1}", ERR_INVAL, "method", 1},
	        {"{\"id\":1,\"method\":5}", ERR_INVAL, "method", 1},
	        {"{\"id\":1,\"method\":\"\"}", ERR_INVAL, "method", 1},
	        {"{\"id\":1,\"method\":\"x\",\"params\":[]}", ERR_INVAL,
	         "params", 1},
	        {"{\"id\":1,\"method\":\"x\"} trailing", ERR_PARSE, "JSON", 0},
	};
	struct proto_req r;
	char msg[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].line, &r, msg), cases[i].code);
		assert_non_null(strstr(msg, cases[i].words));
		/* The id survives when present, so the reply can echo it. */
		assert_int_equal(r.id != NULL, cases[i].has_id);
		proto_req_finish(&r);
	}
}

static void t_replies(void **state)
{
	cJSON *id = cJSON_CreateNumber(42), *res = cJSON_CreateObject();
	size_t len = 0;
	char *line;
	int code;

	(void)state;
	cJSON_AddStringToObject(res, "k", "v");
	line = proto_result(id, res, &len);
	assert_string_equal(line, "{\"id\":42,\"result\":{\"k\":\"v\"}}\n");
	assert_int_equal(len, strlen(line));
	free(line);
	line = proto_error(NULL, ERR_NOTFOUND, "no such thing", &len);
	assert_string_equal(line, "{\"id\":null,\"error\":{\"code\":"
	                          "\"not_found\",\"message\":\"no such "
	                          "thing\"}}\n");
	free(line);
	/* Every error code has a stable name that maps back. */
	for (code = -1; code > ERR_LAST_; code--) {
		cJSON *j;

		line = proto_error(id, code, NULL, &len);
		j = cJSON_Parse(line);
		assert_int_equal(
		        err_from_name(cJSON_GetStringValue(cJSON_GetObjectItem(
		                cJSON_GetObjectItem(j, "error"), "code"))),
		        code);
		cJSON_Delete(j);
		free(line);
	}
	line = proto_event(id, cJSON_CreateString("e"), &len);
	assert_string_equal(line, "{\"id\":42,\"event\":\"e\"}\n");
	free(line);
	cJSON_Delete(id);
}

static void t_param_rules(void **state)
{
	static const struct proto_param rules[] = {
	        {"ref", PT_STRING, 1},
	        {"limit", PT_INT, 0},
	        {"name", PT_STRING_OR_NULL, 0},
	        {"set", PT_OBJECT, 0},
	        {NULL, 0, 0}};
	static const struct {
		const char *params;
		int ok;
		const char *words;
	} cases[] = {
	        {"{\"ref\":\"a\"}", 1, ""},
	        {"{\"ref\":\"a\",\"limit\":5,\"name\":null,\"set\":{}}", 1, ""},
	        {"{}", 0, "missing parameter \"ref\""},
	        {"{\"ref\":1}", 0, "\"ref\" must be a string"},
	        {"{\"ref\":\"a\",\"limit\":1.5}", 0, "must be an integer"},
	        {"{\"ref\":\"a\",\"limit\":\"5\"}", 0, "must be an integer"},
	        {"{\"ref\":\"a\",\"name\":3}", 0, "a string or null"},
	        {"{\"ref\":\"a\",\"set\":[]}", 0, "must be an object"},
	        {"{\"ref\":\"a\",\"bogus\":1}", 0, "unknown parameter"},
	};
	char msg[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *p = cJSON_Parse(cases[i].params);
		int r = proto_check_params(p, rules, msg, sizeof(msg));

		assert_int_equal(r, cases[i].ok ? 0 : ERR_INVAL);
		if (!cases[i].ok)
			assert_non_null(strstr(msg, cases[i].words));
		cJSON_Delete(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_framing_partial_reads),
	        cmocka_unit_test(t_framing_limits),
	        cmocka_unit_test(t_parse_requests),
	        cmocka_unit_test(t_parse_rejects),
	        cmocka_unit_test(t_replies),
	        cmocka_unit_test(t_param_rules),
	};

	return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
