#ifndef HOPXD_PHEAD_H
#define HOPXD_PHEAD_H

/*
 * HTTP/1.1 message heads and body framing for the proxy: plain functions
 * over bytes, no I/O. Strict where leniency lets a request be read two
 * ways (request smuggling): lines end in CRLF, one Content-Length, no
 * Content-Length beside Transfer-Encoding, chunked the only coding, no
 * folded headers, no whitespace before a header's colon.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PHEAD_MAX         16384 /* bytes of a head, its last CRLF included */
#define PHEAD_MAX_HEADERS 100

/* A slice of the buffer that was parsed (not NUL-terminated). */
struct phead_str {
	const char *p;
	size_t n;
};

struct phead_field {
	struct phead_str name, value;
};

struct phead {
	/* A request's line, or a response's status (method.n == 0). */
	struct phead_str method, target;
	int status;
	int minor; /* HTTP/1.minor */
	size_t nfields;
	struct phead_field fields[PHEAD_MAX_HEADERS];
	/* From the fields, for the proxy's own use. */
	int64_t content_length; /* -1: none */
	int chunked;
	int conn_close; /* Connection: close, or HTTP/1.0 without keep-alive */
	int conn_upgrade; /* Connection names upgrade */
	int upgrade_ws;   /* Upgrade: websocket */
};

/*
 * Parses a request (response 0) or a response head at the start of buf.
 * Returns the head's length (through its empty line), 0 when more bytes
 * are needed, ERR_TOOBIG past PHEAD_MAX or PHEAD_MAX_HEADERS, ERR_PARSE
 * when malformed, ERR_RANGE for an HTTP version other than 1.0 and 1.1,
 * ERR_UNSUPPORTED for a transfer coding other than chunked. h's slices
 * point into buf.
 */
ssize_t phead_parse(const char *buf, size_t len, int response, struct phead *h);

/* The value of header name (case-insensitive), or NULL. */
const struct phead_str *phead_get(const struct phead *h, const char *name);

/* 1 when s equals lit (case-insensitive). */
int phead_eq(const struct phead_str *s, const char *lit);

/* How a message's body ends. */
enum pframe_kind {
	PFRAME_NONE,    /* no body */
	PFRAME_LENGTH,  /* Content-Length bytes */
	PFRAME_CHUNKED, /* chunked coding, trailers included */
	PFRAME_CLOSE    /* until the connection closes (responses only) */
};

struct pframe {
	enum pframe_kind kind;
	uint64_t left; /* LENGTH: bytes to come; CHUNKED: of this chunk */
	int state;     /* CHUNKED: where in the coding */
	unsigned line; /* CHUNKED: bytes of the size or trailer line so far */
	unsigned trailer;
	int digits;
};

/* The body of request h. */
void pframe_request(struct pframe *f, const struct phead *h);

/* The body of response h to a request with method head_req (HEAD has no
 * body) . */
void pframe_response(struct pframe *f, const struct phead *h, int head_req);

/*
 * Reads up to n bytes of a body: returns how many belong to it (the rest
 * is the next message) and sets *done when it ended; ERR_PARSE when the
 * chunked coding is broken or a size or trailer is too long.
 */
ssize_t pframe_feed(struct pframe *f, const char *p, size_t n, int *done);

#endif
