#include "phead.h"

#include "err.h"

#include <string.h>
#include <strings.h>

/* Bytes of a chunk's size line (size and extensions). */
#define CHUNK_LINE_MAX 4096
/* Hex digits of a chunk's size: 15 keep it under 2^60. */
#define CHUNK_DIGITS_MAX 15
#define CL_MAX           ((int64_t)1 << 60)

/* ---- heads ---- */

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int phead_eq(const struct phead_str *s, const char *lit)
{
	return s->n == strlen(lit) && strncasecmp(s->p, lit, s->n) == 0;
}

const struct phead_str *phead_get(const struct phead *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->nfields; i++)
		if (phead_eq(&h->fields[i].name, name))
			return &h->fields[i].value;
	return NULL;
}

/* The end of the head (after its empty line) in buf, or NULL. */
static const char *head_end(const char *buf, size_t len)
{
	size_t i;

	for (i = 3; i < len; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' &&
		    buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return buf + i + 1;
	return NULL;
}

/* "HTTP/1.x" at p: the minor version, or an error. */
static int version(const char *p, const char *end)
{
	if (end - p < 8 || memcmp(p, "HTTP/", 5) != 0)
		return ERR_PARSE;
	if (p[5] != '1' || p[6] != '.')
		return p[5] >= '0' && p[5] <= '9' ? ERR_RANGE : ERR_PARSE;
	return p[7] == '0' || p[7] == '1' ? p[7] - '0' : ERR_RANGE;
}

/* "METHOD SP target SP HTTP/1.x" up to eol. */
static int request_line(const char *p, const char *eol, struct phead *h)
{
	const char *q = p;

	while (q < eol && is_tchar((unsigned char)*q))
		q++;
	if (q == p || q >= eol || *q != ' ')
		return ERR_PARSE;
	h->method = (struct phead_str){p, (size_t)(q - p)};
	p = ++q;
	while (q < eol && (unsigned char)*q > ' ' && *q != 0x7f)
		q++;
	if (q == p || q >= eol || *q != ' ')
		return ERR_PARSE;
	h->target = (struct phead_str){p, (size_t)(q - p)};
	if (eol - (q + 1) != 8)
		return ERR_PARSE;
	h->minor = version(q + 1, eol);
	return h->minor < 0 ? h->minor : 0;
}

/* "HTTP/1.x SP 3DIGIT [SP reason]" up to eol. */
static int status_line(const char *p, const char *eol, struct phead *h)
{
	int i;

	if ((h->minor = version(p, eol)) < 0)
		return h->minor;
	p += 8;
	if (eol - p < 4 || *p++ != ' ')
		return ERR_PARSE;
	for (h->status = 0, i = 0; i < 3; i++, p++) {
		if (*p < '0' || *p > '9')
			return ERR_PARSE;
		h->status = h->status * 10 + (*p - '0');
	}
	if (h->status < 100 || (p < eol && *p != ' '))
		return ERR_PARSE;
	for (; p < eol; p++)
		if (*p == '\0' || *p == '\r' || *p == '\n')
			return ERR_PARSE;
	return 0;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* "name: value" up to eol, into the next field. */
static int field_line(const char *p, const char *eol, struct phead *h)
{
	const char *q = p, *v, *e;
	struct phead_field *f;

	while (q < eol && is_tchar((unsigned char)*q))
		q++;
	if (q == p || q >= eol || *q != ':')
		return ERR_PARSE;
	if (h->nfields == PHEAD_MAX_HEADERS)
		return ERR_TOOBIG;
	for (v = q + 1; v < eol && is_ows(*v); v++)
		;
	for (e = eol; e > v && is_ows(e[-1]); e--)
		;
	for (const char *c = v; c < e; c++)
		if (*c == '\0' || *c == '\r' || *c == '\n')
			return ERR_PARSE;
	f = &h->fields[h->nfields++];
	f->name = (struct phead_str){p, (size_t)(q - p)};
	f->value = (struct phead_str){v, (size_t)(e - v)};
	return 0;
}

/* Content-Length: digits only, one of them. */
static int content_length(const struct phead_str *v, struct phead *h)
{
	int64_t n = 0;
	size_t i;

	if (h->content_length >= 0 || v->n == 0)
		return ERR_PARSE;
	for (i = 0; i < v->n; i++) {
		if (v->p[i] < '0' || v->p[i] > '9' || n > CL_MAX / 10)
			return ERR_PARSE;
		n = n * 10 + (v->p[i] - '0');
	}
	h->content_length = n;
	return 0;
}

/* Connection's comma-separated options. */
static void connection(const struct phead_str *v, struct phead *h)
{
	const char *p = v->p, *end = v->p + v->n, *q;
	struct phead_str t;

	while (p < end) {
		while (p < end && (is_ows(*p) || *p == ','))
			p++;
		for (q = p; q < end && *q != ',' && !is_ows(*q); q++)
			;
		t = (struct phead_str){p, (size_t)(q - p)};
		if (phead_eq(&t, "close"))
			h->conn_close = 1;
		else if (phead_eq(&t, "keep-alive") && h->minor == 0)
			h->conn_close = 0;
		else if (phead_eq(&t, "upgrade"))
			h->conn_upgrade = 1;
		p = q;
	}
}

/* What the fields say about framing and the connection. */
static int semantics(struct phead *h)
{
	size_t i;
	int e, te = 0;

	h->content_length = -1;
	h->conn_close = h->minor == 0;
	for (i = 0; i < h->nfields; i++) {
		const struct phead_field *f = &h->fields[i];

		if (phead_eq(&f->name, "content-length")) {
			if ((e = content_length(&f->value, h)) != 0)
				return e;
		} else if (phead_eq(&f->name, "transfer-encoding")) {
			if (te++ || !phead_eq(&f->value, "chunked"))
				return ERR_UNSUPPORTED;
			h->chunked = 1;
		} else if (phead_eq(&f->name, "connection")) {
			connection(&f->value, h);
		} else if (phead_eq(&f->name, "upgrade")) {
			h->upgrade_ws = phead_eq(&f->value, "websocket");
		}
	}
	return h->chunked && h->content_length >= 0 ? ERR_PARSE : 0;
}

ssize_t phead_parse(const char *buf, size_t len, int response, struct phead *h)
{
	const char *end = head_end(buf, len < PHEAD_MAX ? len : PHEAD_MAX);
	const char *p = buf, *eol;
	int e;

	if (end == NULL)
		return len >= PHEAD_MAX ? ERR_TOOBIG : 0;
	memset(h, 0, sizeof(*h));
	eol = memchr(p, '\r', (size_t)(end - p));
	if (eol[1] != '\n')
		return ERR_PARSE;
	e = response ? status_line(p, eol, h) : request_line(p, eol, h);
	for (p = eol + 2; e == 0 && p < end - 2; p = eol + 2) {
		eol = memchr(p, '\r', (size_t)(end - p));
		if (eol[1] != '\n' || memchr(p, '\n', (size_t)(eol - p)))
			return ERR_PARSE;
		e = field_line(p, eol, h);
	}
	if (e == 0)
		e = semantics(h);
	return e != 0 ? e : end - buf;
}

/* ---- bodies ---- */

enum {
	C_SIZE,
	C_EXT,
	C_SIZE_LF,
	C_DATA,
	C_DATA_CR,
	C_DATA_LF,
	C_TRAILER_START,
	C_TRAILER,
	C_TRAILER_LF,
	C_END_LF,
	C_DONE
};

void pframe_request(struct pframe *f, const struct phead *h)
{
	memset(f, 0, sizeof(*f));
	if (h->chunked)
		f->kind = PFRAME_CHUNKED;
	else if (h->content_length > 0)
		f->kind = PFRAME_LENGTH;
	f->left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
}

void pframe_response(struct pframe *f, const struct phead *h, int head_req)
{
	memset(f, 0, sizeof(*f));
	if (head_req || h->status < 200 || h->status == 204 || h->status == 304)
		return;
	if (h->chunked)
		f->kind = PFRAME_CHUNKED;
	else if (h->content_length > 0)
		f->kind = PFRAME_LENGTH;
	else if (h->content_length < 0)
		f->kind = PFRAME_CLOSE;
	f->left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One byte of a size line (digits, then extensions up to CR). */
static int size_byte(struct pframe *f, char c)
{
	int d = hex(c);

	if (++f->line > CHUNK_LINE_MAX)
		return ERR_PARSE;
	if (f->state == C_SIZE && d >= 0) {
		if (++f->digits > CHUNK_DIGITS_MAX)
			return ERR_PARSE;
		f->left = f->left * 16 + (uint64_t)d;
		return 0;
	}
	if (f->digits == 0)
		return ERR_PARSE;
	if (c == '\r') {
		f->state = C_SIZE_LF;
		return 0;
	}
	if (c == '\n' || c == '\0')
		return ERR_PARSE;
	f->state = C_EXT;
	return 0;
}

/* One byte of the coding outside a chunk's data. */
static int chunk_byte(struct pframe *f, char c)
{
	switch (f->state) {
	case C_SIZE:
	case C_EXT:
		return size_byte(f, c);
	case C_SIZE_LF:
		if (c != '\n')
			return ERR_PARSE;
		f->state = f->left ? C_DATA : C_TRAILER_START;
		return 0;
	case C_DATA_CR:
		f->state = C_DATA_LF;
		return c == '\r' ? 0 : ERR_PARSE;
	case C_DATA_LF:
		f->state = C_SIZE;
		f->line = 0;
		f->digits = 0;
		return c == '\n' ? 0 : ERR_PARSE;
	case C_TRAILER_START:
		f->state = c == '\r' ? C_END_LF : C_TRAILER;
		return c == '\n' ? ERR_PARSE : 0;
	case C_TRAILER:
		if (++f->trailer > PHEAD_MAX || c == '\n')
			return ERR_PARSE;
		if (c == '\r')
			f->state = C_TRAILER_LF;
		return 0;
	case C_TRAILER_LF:
		f->state = C_TRAILER_START;
		return c == '\n' ? 0 : ERR_PARSE;
	case C_END_LF:
		f->state = C_DONE;
		return c == '\n' ? 0 : ERR_PARSE;
	default:
		return ERR_PARSE;
	}
}

static ssize_t chunked(struct pframe *f, const char *p, size_t n, int *done)
{
	size_t i = 0, take;
	int e;

	while (i < n && f->state != C_DONE) {
		if (f->state == C_DATA) {
			take = n - i < f->left ? n - i : (size_t)f->left;
			f->left -= take;
			i += take;
			if (f->left == 0)
				f->state = C_DATA_CR;
			continue;
		}
		if ((e = chunk_byte(f, p[i++])) != 0)
			return e;
	}
	*done = f->state == C_DONE;
	return (ssize_t)i;
}

ssize_t pframe_feed(struct pframe *f, const char *p, size_t n, int *done)
{
	size_t take;

	*done = 0;
	switch (f->kind) {
	case PFRAME_NONE:
		*done = 1;
		return 0;
	case PFRAME_LENGTH:
		take = n < f->left ? n : (size_t)f->left;
		f->left -= take;
		*done = f->left == 0;
		return (ssize_t)take;
	case PFRAME_CHUNKED:
		return chunked(f, p, n, done);
	default:
		return (ssize_t)n;
	}
}
