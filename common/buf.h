#ifndef HOPXD_BUF_H
#define HOPXD_BUF_H

#include <stddef.h>

#include "log.h" /* LOG_PRINTF */

/*
 * A growable byte buffer with a hard size limit set at init (curl's
 * dynbuf). The contents are always NUL-terminated so they can be used as
 * a string. Members are private: use the functions.
 */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};

/* Prepares an empty buffer that refuses to grow past max bytes. */
void buf_init(struct buf *b, size_t max);

/* Frees the contents; accepts a zeroed or finished buffer. */
void buf_finish(struct buf *b);

/* Appends n bytes. Returns 0, ERR_TOOBIG (nothing appended) or ERR_NOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string; as buf_append. */
int buf_puts(struct buf *b, const char *s);

/* Appends formatted text; as buf_append. */
int buf_printf(struct buf *b, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Drops the first n bytes (all when n >= length). */
void buf_consume(struct buf *b, size_t n);

/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);

/* The contents as a string ("" when empty); valid until the next change. */
const char *buf_str(const struct buf *b);

size_t buf_len(const struct buf *b);

/*
 * Hands the contents to the caller (free() them) and leaves the buffer
 * empty. Never NULL unless out of memory.
 */
char *buf_detach(struct buf *b, size_t *len);

#endif
