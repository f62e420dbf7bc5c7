/* Unit tests for phead: heads as the proxy reads them, bodies' ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "phead.h"

struct head_case {
	const char *text;
	int response;
	ssize_t want; /* > 0: the whole text; else the error */
};

/* Every head either parses whole or is refused with the error it earns. */
static void t_heads(void **state)
{
	static const struct head_case cases[] = {
	        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1},
	        {"GET /x?y=1 HTTP/1.0\r\n\r\n", 0, 1},
	        {"GET / HTTP/1.1\r\nHost: a\r\n", 0, 0},
	        {"GET / HTTP/1.1\nHost: a\n\n", 0, 0},
	        {"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 0, ERR_PARSE},
	        {"GET / HTTP/2.0\r\n\r\n", 0, ERR_RANGE},
	        {"GET / HTTP/1.2\r\n\r\n", 0, ERR_RANGE},
	        {"GET  / HTTP/1.1\r\n\r\n", 0, ERR_PARSE},
	        {"G(T / HTTP/1.1\r\n\r\n", 0, ERR_PARSE},
	        {"GET / HTTP/1.1\r\n folded\r\n\r\n", 0, ERR_PARSE},
	        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, ERR_PARSE},
	        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, ERR_PARSE},
	        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n"
	         "\r\n",
	         0, ERR_PARSE},
	        {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 0, ERR_PARSE},
	        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: "
	         "chunked\r\n\r\n",
	         0, ERR_PARSE},
	        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	         0, ERR_UNSUPPORTED},
	        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 1, 1},
	        {"HTTP/1.1 204\r\n\r\n", 1, 1},
	        {"HTTP/1.1 20 OK\r\n\r\n", 1, ERR_PARSE},
	        {"HTTP/1.1 099 Low\r\n\r\n", 1, ERR_PARSE},
	        {"HTTX/1.1 200 OK\r\n\r\n", 1, ERR_PARSE},
	};
	struct phead h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		const struct head_case *c = &cases[i];
		ssize_t r =
		        phead_parse(c->text, strlen(c->text), c->response, &h);

		if (c->want == 1)
			assert_int_equal(r, (ssize_t)strlen(c->text));
		else
			assert_int_equal(r, c->want);
	}
}

/* The fields the proxy acts on. */
static void t_semantics(void **state)
{
	const char *req =
	        "GET /terminal HTTP/1.1\r\nHost: x\r\n"
	        "Connection: keep-alive, Upgrade\r\n"
	        "Upgrade: WebSocket\r\nAuthorization: Bearer t\r\n\r\n"
	        "extra";
	struct phead h;
	const struct phead_str *v;

	(void)state;
	assert_int_equal(phead_parse(req, strlen(req), 0, &h), strlen(req) - 5);
	assert_true(phead_eq(&h.method, "get"));
	assert_int_equal(h.target.n, 9);
	assert_true(h.conn_upgrade && h.upgrade_ws && !h.conn_close);
	assert_int_equal(h.content_length, -1);
	assert_non_null(v = phead_get(&h, "authorization"));
	assert_true(phead_eq(v, "bearer t"));
	assert_null(phead_get(&h, "x-none"));
	req = "GET / HTTP/1.0\r\n\r\n";
	assert_true(phead_parse(req, strlen(req), 0, &h) > 0);
	assert_true(h.conn_close);
	req = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	assert_true(phead_parse(req, strlen(req), 0, &h) > 0);
	assert_false(h.conn_close);
}

/* Limits: a head past PHEAD_MAX, more fields than PHEAD_MAX_HEADERS. */
static void t_limits(void **state)
{
	static char big[PHEAD_MAX + 64];
	struct phead h;
	size_t n = 0;
	int i;

	(void)state;
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(phead_parse(big, sizeof(big), 0, &h), ERR_TOOBIG);
	assert_int_equal(phead_parse(big, 100, 0, &h), 0);
	n = (size_t)sprintf(big, "GET / HTTP/1.1\r\n");
	for (i = 0; i <= PHEAD_MAX_HEADERS; i++)
		n += (size_t)sprintf(big + n, "X%d: y\r\n", i);
	n += (size_t)sprintf(big + n, "\r\n");
	assert_int_equal(phead_parse(big, n, 0, &h), ERR_TOOBIG);
}

/* Feeds text in pieces of step bytes: how many belonged to the body. */
static ssize_t feed(struct pframe *f, const char *text, size_t step, int *done)
{
	size_t off = 0, len = strlen(text), k;
	ssize_t r, total = 0;

	*done = 0;
	while (off < len && !*done) {
		k = len - off < step ? len - off : step;
		if ((r = pframe_feed(f, text + off, k, done)) < 0)
			return r;
		total += r;
		off += (size_t)r;
		if ((size_t)r < k && !*done)
			return -100;
	}
	return total;
}

/* Chunked bodies end exactly where they end, whatever the pieces. */
static void t_chunked(void **state)
{
	const char *body = "5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n"
	                   "0\r\nTrailer: x\r\n\r\nNEXT";
	static const char *broken[] = {
	        "5\r\nhelloX\r\n0\r\n\r\n",
	        "x\r\n",
	        "5\nhello\r\n",
	        "1234567890123456\r\n",
	        "0\r\nTrailer\nx\r\n\r\n",
	};
	struct pframe f = {.kind = PFRAME_CHUNKED};
	size_t step, i;
	int done;

	(void)state;
	for (step = 1; step <= strlen(body); step++) {
		memset(&f, 0, sizeof(f));
		f.kind = PFRAME_CHUNKED;
		assert_int_equal(feed(&f, body, step, &done), strlen(body) - 4);
		assert_true(done);
	}
	for (i = 0; i < sizeof(broken) / sizeof(*broken); i++) {
		memset(&f, 0, sizeof(f));
		f.kind = PFRAME_CHUNKED;
		assert_int_equal(feed(&f, broken[i], 3, &done), ERR_PARSE);
	}
}

/* Which responses have a body, and how it ends. */
static void t_response_framing(void **state)
{
	struct {
		const char *text;
		int head_req;
		enum pframe_kind kind;
	} cases[] = {
	        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 0,
	         PFRAME_LENGTH},
	        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 1,
	         PFRAME_NONE},
	        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0,
	         PFRAME_NONE},
	        {"HTTP/1.1 304 Not Modified\r\n\r\n", 0, PFRAME_NONE},
	        {"HTTP/1.1 101 Switching\r\n\r\n", 0, PFRAME_NONE},
	        {"HTTP/1.1 200 OK\r\n\r\n", 0, PFRAME_CLOSE},
	        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	         PFRAME_CHUNKED},
	};
	struct phead h;
	struct pframe f;
	size_t i;
	int done;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		assert_true(phead_parse(cases[i].text, strlen(cases[i].text), 1,
		                        &h) > 0);
		pframe_response(&f, &h, cases[i].head_req);
		assert_int_equal(f.kind, cases[i].kind);
	}
	assert_true(phead_parse(cases[0].text, strlen(cases[0].text), 1, &h) >
	            0);
	pframe_response(&f, &h, 0);
	assert_int_equal(pframe_feed(&f, "abcdef", 6, &done), 3);
	assert_true(done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(t_heads),
	        cmocka_unit_test(t_semantics),
	        cmocka_unit_test(t_limits),
	        cmocka_unit_test(t_chunked),
	        cmocka_unit_test(t_response_framing),
	};

	return cmocka_run_group_tests_name("phead", tests, NULL, NULL);
}
