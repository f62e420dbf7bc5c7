/*
 * libFuzzer target for the proxy's HTTP reading: any bytes, as a request
 * and as a response head and then as the body that follows, in pieces
 * whose sizes the input also chooses. Parsing must never read past the
 * input, and a body never claims more bytes than it was given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "phead.h"

static void body(const struct pframe *start, const uint8_t *p, size_t n)
{
	struct pframe f = *start;
	size_t off = 0, step = n ? (size_t)(p[0] % 7) + 1 : 1;
	ssize_t r;
	int done = 0;

	while (off < n && !done) {
		size_t k = n - off < step ? n - off : step;

		if ((r = pframe_feed(&f, (const char *)p + off, k, &done)) < 0)
			return;
		if ((size_t)r > k)
			abort();
		off += (size_t)r;
		if ((size_t)r < k && !done)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct phead h;
	struct pframe f;
	ssize_t n;
	int resp;

	for (resp = 0; resp <= 1; resp++) {
		n = phead_parse((const char *)data, size, resp, &h);
		if (n < 0 || n == 0)
			continue;
		if ((size_t)n > size)
			abort();
		if (resp)
			pframe_response(&f, &h, 0);
		else
			pframe_request(&f, &h);
		body(&f, data + n, size - (size_t)n);
	}
	memset(&f, 0, sizeof(f));
	f.kind = PFRAME_CHUNKED;
	body(&f, data, size);
	return 0;
}
