#include "log.h"

#include "err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX    2048
#define LOG_SECRETS_MAX 8
#define LOG_SECRET_MIN  8
#define REDACTED        "[redacted]"

static struct {
	char ident[32];
	enum log_level level;
	int journald;
	void (*sink)(void *ud, enum log_level lvl, const char *line);
	void *sink_ud;
	char *secrets[LOG_SECRETS_MAX];
} logger = {"hopxd", LOG_LVL_INFO, 0, NULL, NULL, {NULL}};

void log_init(const char *ident, enum log_level level)
{
	snprintf(logger.ident, sizeof(logger.ident), "%s", ident);
	logger.level = level;
	/* systemd sets JOURNAL_STREAM when stderr is connected to journald. */
	logger.journald = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(enum log_level level)
{
	logger.level = level;
}

enum log_level log_get_level(void)
{
	return logger.level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	static const struct {
		const char *name;
		enum log_level level;
	} names[] = {{"error", LOG_LVL_ERROR},
	             {"warn", LOG_LVL_WARN},
	             {"warning", LOG_LVL_WARN},
	             {"info", LOG_LVL_INFO},
	             {"debug", LOG_LVL_DEBUG}};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return ERR_INVAL;
}

void log_set_sink(void (*fn)(void *ud, enum log_level lvl, const char *line),
                  void *ud)
{
	logger.sink = fn;
	logger.sink_ud = ud;
}

int log_add_secret(const char *secret)
{
	size_t i;

	if (secret == NULL || strlen(secret) < LOG_SECRET_MIN)
		return ERR_INVAL;
	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		if (logger.secrets[i] && strcmp(logger.secrets[i], secret) == 0)
			return 0;
		if (logger.secrets[i] == NULL) {
			logger.secrets[i] = strdup(secret);
			return logger.secrets[i] ? 0 : ERR_NOMEM;
		}
	}
	return ERR_TOOBIG;
}

void log_clear_secrets(void)
{
	size_t i;

	for (i = 0; i < LOG_SECRETS_MAX; i++) {
		free(logger.secrets[i]);
		logger.secrets[i] = NULL;
	}
}

static int is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int is_keychar(char c)
{
	return is_b64url(c) || c == '.' || c == '+' || c == '/' || c == '=';
}

/*
 * Length of a secret starting at s, or 0. A JWT header is base64url of
 * '{"', so every JWT starts with "eyJ"; HopX keys start with hopx_live_,
 * hopx_test_ or (older docs) sk_live_/sk_test_.
 */
static size_t secret_len(const char *s)
{
	static const char *const key_prefixes[] = {"hopx_live_", "hopx_test_",
	                                           "sk_live_", "sk_test_"};
	size_t i, n = 0;

	if (strncmp(s, "eyJ", 3) == 0) {
		while (is_b64url(s[n]) || s[n] == '.')
			n++;
		return n >= 10 ? n : 0;
	}
	for (i = 0; i < sizeof(key_prefixes) / sizeof(key_prefixes[0]); i++) {
		size_t p = strlen(key_prefixes[i]);

		if (strncmp(s, key_prefixes[i], p) == 0) {
			n = p;
			while (is_keychar(s[n]))
				n++;
			return n;
		}
	}
	for (i = 0; i < LOG_SECRETS_MAX && logger.secrets[i]; i++) {
		n = strlen(logger.secrets[i]);
		if (strncmp(s, logger.secrets[i], n) == 0)
			return n;
	}
	return 0;
}

size_t log_redact(const char *src, char *dst, size_t n)
{
	size_t count = 0, o = 0;
	const size_t rl = sizeof(REDACTED) - 1;

	if (n == 0)
		return 0;
	while (*src && o + 1 < n) {
		size_t sl = secret_len(src);

		if (sl > 0) {
			size_t k = rl < n - 1 - o ? rl : n - 1 - o;

			memcpy(dst + o, REDACTED, k);
			o += k;
			src += sl;
			count++;
			continue;
		}
		dst[o++] = *src++;
	}
	dst[o] = '\0';
	return count;
}

void log_fingerprint(const char *secret, char *out, size_t n)
{
	/* FNV-1a, 32 bits: a tag for correlation, not a digest. */
	uint32_t h = 2166136261u;
	const unsigned char *p = (const unsigned char *)secret;

	while (p && *p) {
		h ^= *p++;
		h *= 16777619u;
	}
	snprintf(out, n, "tok:%08x", (unsigned)h);
}

static const char *level_name(enum log_level lvl)
{
	switch (lvl) {
	case LOG_LVL_ERROR:
		return "ERROR";
	case LOG_LVL_WARN:
		return "WARN";
	case LOG_LVL_INFO:
		return "INFO";
	default:
		return "DEBUG";
	}
}

static void log_emit(enum log_level lvl, const char *line)
{
	char ts[32];
	struct tm tm;
	time_t now;

	if (logger.sink) {
		logger.sink(logger.sink_ud, lvl, line);
		return;
	}
	if (logger.journald) {
		fprintf(stderr, "<%d>%s\n", (int)lvl, line);
		return;
	}
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s[%ld] %s %s\n", ts, logger.ident, (long)getpid(),
	        level_name(lvl), line);
}

void log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
{
	char raw[LOG_LINE_MAX], clean[LOG_LINE_MAX];
	int off;
	va_list ap;

	if (lvl > logger.level)
		return;
	off = snprintf(raw, sizeof(raw), "%s: ", func);
	if (off < 0 || (size_t)off >= sizeof(raw))
		off = 0;
	va_start(ap, fmt);
	vsnprintf(raw + off, sizeof(raw) - (size_t)off, fmt, ap);
	va_end(ap);
	log_redact(raw, clean, sizeof(clean));
	log_emit(lvl, clean);
}
