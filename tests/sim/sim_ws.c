/*
 * WebSockets of the sandbox agent (RFC 6455), server side, one blocking
 * thread per connection like the rest of the simulator.
 */
#include "sim_ws.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sim_shell.h"

#define WS_MAX   (1 << 20)
#define WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define OP_TEXT  0x1
#define OP_CLOSE 0x8
#define OP_PING  0x9
#define OP_PONG  0xA

int sim_ws_accept_key(const char *key, char *out, size_t n)
{
	unsigned char d[20];
	char cat[128];
	gnutls_datum_t in = {d, sizeof(d)}, b64 = {0};

	if (key == NULL || strlen(key) != 24)
		return -1;
	snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
	if (gnutls_hash_fast(GNUTLS_DIG_SHA1, cat, strlen(cat), d) < 0 ||
	    gnutls_base64_encode2(&in, &b64) < 0)
		return -1;
	snprintf(out, n, "%.*s", (int)b64.size, (char *)b64.data);
	gnutls_free(b64.data);
	return 0;
}

struct conn {
	struct sim *s;
	int fd;
	char in[8192];
	size_t have, off;
};

/* Reads exactly n bytes; 0, or -1 on close, error or the sim stopping. */
static int get(struct conn *c, void *dst, size_t n)
{
	unsigned char *p = dst;

	while (n > 0) {
		if (c->off < c->have) {
			size_t k = c->have - c->off < n ? c->have - c->off : n;

			memcpy(p, c->in + c->off, k);
			c->off += k;
			p += k;
			n -= k;
			continue;
		}
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		int r = poll(&pf, 1, 200);
		ssize_t got;

		if (c->s->stopping)
			return -1;
		if (r <= 0)
			continue;
		got = read(c->fd, c->in, sizeof(c->in));
		if (got <= 0)
			return -1;
		c->have = (size_t)got;
		c->off = 0;
	}
	return 0;
}

static int put_all(int fd, const void *p, size_t n)
{
	const char *q = p;

	while (n > 0) {
		ssize_t w = send(fd, q, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

static int send_frame(int fd, int fin, int op, const void *p, size_t n)
{
	unsigned char h[10];
	size_t hl = 2;

	h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
	if (n < 126) {
		h[1] = (unsigned char)n;
	} else if (n <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	return put_all(fd, h, hl) == 0 && put_all(fd, p, n) == 0 ? 0 : -1;
}

static void send_close(int fd, int code)
{
	unsigned char b[2] = {(unsigned char)(code >> 8), (unsigned char)code};

	send_frame(fd, 1, OP_CLOSE, b, 2);
}

struct frame {
	int fin, op;
	char *data; /* owned, NUL-terminated */
	size_t len;
};

/* One client frame; 0, or the close code to end with (1000: closed). */
static int read_frame(struct conn *c, struct frame *f)
{
	unsigned char h[2], ext[8], mask[4];
	uint64_t n;

	f->data = NULL;
	if (get(c, h, 2) != 0)
		return 1000;
	f->fin = h[0] >> 7;
	f->op = h[0] & 0x0f;
	n = h[1] & 0x7f;
	if (!(h[1] & 0x80) || (h[0] & 0x70))
		return 1002; /* unmasked client frame, or reserved bits */
	if (n == 126 || n == 127) {
		int k = n == 126 ? 2 : 8;

		if (get(c, ext, (size_t)k) != 0)
			return 1000;
		n = 0;
		for (int i = 0; i < k; i++)
			n = n << 8 | ext[i];
	}
	if (n > WS_MAX)
		return 1009;
	if (get(c, mask, 4) != 0 || (f->data = malloc(n + 1)) == NULL ||
	    get(c, f->data, n) != 0) {
		free(f->data);
		f->data = NULL;
		return 1000;
	}
	for (uint64_t i = 0; i < n; i++)
		f->data[i] ^= (char)mask[i % 4];
	f->data[n] = '\0';
	f->len = n;
	return 0;
}

/* Messages of a run go out apart, as a process's output does: the JS
 * SDK's receive() listens for one message at a time (ws.once), and drops
 * a second one that arrives in the same read as the first. */
#define MSG_GAP_NS (20 * 1000 * 1000)

static int send_json(int fd, cJSON *o)
{
	struct timespec gap = {0, MSG_GAP_NS};
	char *t = cJSON_PrintUnformatted(o);
	int r = t ? send_frame(fd, 1, OP_TEXT, t, strlen(t)) : -1;

	nanosleep(&gap, NULL);
	free(t);
	cJSON_Delete(o);
	return r;
}

/* Runs one execute message: a stdout message per line, then complete. */
static int execute(struct conn *c, const char *id, const struct frame *f)
{
	cJSON *j = cJSON_ParseWithLength(f->data, f->len), *o;
	const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(j, "code"));
	const char *lang =
	        cJSON_GetStringValue(cJSON_GetObjectItem(j, "language"));
	struct sim_run *r = malloc(sizeof(*r));
	char *line, *save = NULL;
	int rc = 0;

	if (code == NULL || r == NULL) {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "type", "error");
		cJSON_AddStringToObject(o, "error",
		                        "want {type:execute, code}");
		rc = send_json(c->fd, o);
		goto out;
	}
	sim_shell_run(c->s, id, code, lang == NULL || !strcmp(lang, "python"),
	              r);
	for (line = strtok_r(r->out, "\n", &save); line && rc == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "type", "stdout");
		cJSON_AddStringToObject(o, "data", line);
		rc = send_json(c->fd, o);
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "complete");
	cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
	rc = rc ? rc : send_json(c->fd, o);
out:
	free(r);
	cJSON_Delete(j);
	return rc;
}

void sim_ws_serve(struct sim *s, const char *id, const char *endpoint, int fd,
                  const char *extra, size_t extra_len)
{
	struct conn c = {.s = s, .fd = fd};
	int echo = strcmp(endpoint, "/terminal") == 0, code = 0;
	struct frame f;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (extra_len > sizeof(c.in))
		extra_len = sizeof(c.in);
	memcpy(c.in, extra, extra_len);
	c.have = extra_len;
	while ((code = read_frame(&c, &f)) == 0) {
		int r = 0;

		if (f.op == OP_CLOSE) {
			free(f.data);
			code = 1000;
			break;
		}
		if (f.op == OP_PING)
			r = send_frame(fd, 1, OP_PONG, f.data, f.len);
		else if (echo && f.op != OP_PONG)
			r = send_frame(fd, f.fin, f.op, f.data, f.len);
		else if (f.op == OP_TEXT && f.fin)
			r = execute(&c, id, &f);
		free(f.data);
		if (r != 0)
			return;
	}
	send_close(fd, code);
}
