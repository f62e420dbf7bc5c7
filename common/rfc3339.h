#ifndef HOPXD_RFC3339_H
#define HOPXD_RFC3339_H

#include <stddef.h>
#include <stdint.h>

/* Enough for "YYYY-MM-DDTHH:MM:SS.mmmZ" and the NUL. */
#define RFC3339_MAX 32

/*
 * Parses an RFC 3339 date-time ("2025-01-28T00:00:00Z", with optional
 * fraction and a Z or +hh:mm / -hh:mm offset) into Unix milliseconds.
 * Returns 0 or ERR_PARSE (also for out-of-range fields and trailing text).
 */
int rfc3339_parse(const char *s, int64_t *out_ms);

/*
 * Writes ms as UTC "YYYY-MM-DDTHH:MM:SSZ" (whole seconds, the shape HopX
 * emits), or with ".mmm" when with_ms. Returns 0 or ERR_TOOBIG when n is
 * too small.
 */
int rfc3339_format(int64_t ms, int with_ms, char *out, size_t n);

#endif
