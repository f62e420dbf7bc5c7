#ifndef HOPXD_LOG_H
#define HOPXD_LOG_H

#include <stddef.h>

/*
 * Logging to stderr, one line per message. Under systemd (JOURNAL_STREAM is
 * set) each line starts with a "<N>" syslog priority so journald keeps the
 * level; otherwise it carries a UTC timestamp and the level name. Every
 * formatted line passes through log_redact() before it is written, so a
 * token or API key that slips into a message is masked, not logged.
 */

/* Values are syslog priorities. */
enum log_level {
	LOG_LVL_ERROR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7
};

#if defined(__GNUC__)
#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOG_PRINTF(a, b)
#endif

/* Names the program in plain-text lines and sets the threshold. */
void log_init(const char *ident, enum log_level level);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 or ERR_INVAL. */
int log_level_parse(const char *s, enum log_level *out);

/*
 * Sends finished lines (already redacted, no trailing newline) to fn
 * instead of stderr; fn NULL restores stderr. For tests.
 */
void log_set_sink(void (*fn)(void *ud, enum log_level lvl, const char *line),
                  void *ud);

/*
 * Registers a literal secret (the API key) that must never appear in a
 * log line. The string is copied. Returns 0, ERR_TOOBIG when the table is
 * full, ERR_INVAL for secrets shorter than 8 bytes (they would mask
 * ordinary words).
 */
int log_add_secret(const char *secret);

/* Forgets every registered secret. */
void log_clear_secrets(void);

/*
 * Copies src to dst (at most n bytes with the NUL), replacing JWT-shaped
 * strings, HopX API keys and registered secrets with "[redacted]".
 * Returns the number of replacements made.
 */
size_t log_redact(const char *src, char *dst, size_t n);

/*
 * Writes a short, stable fingerprint of a secret ("tok:1a2b3c4d") into
 * out (at least 16 bytes): enough to tell two tokens apart in a log,
 * useless to an attacker.
 */
void log_fingerprint(const char *secret, char *out, size_t n);

/* Formats and writes one line if lvl passes the threshold. */
void log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
        LOG_PRINTF(3, 4);

#define log_error(...) log_msg(LOG_LVL_ERROR, __func__, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __func__, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __func__, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __func__, __VA_ARGS__)

#endif
