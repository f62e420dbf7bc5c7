/*
 * JWT-shaped tokens: base64url(header).base64url(payload).base64url(sig).
 * The signature is a keyed hash, not HMAC: only this simulator checks it,
 * and it needs no crypto library. Every token stays valid until its own
 * expiry (refresh revokes nothing) unless an admin call revokes all tokens
 * of a sandbox (min_jti).
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 |
		             in[i + 2];

		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		out[o++] = b64url[in[i] >> 2];
		out[o++] = b64url[(in[i] & 3) << 4];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 8 | in[i + 1];

		out[o++] = b64url[v >> 10 & 63];
		out[o++] = b64url[v >> 4 & 63];
		out[o++] = b64url[(v & 15) << 2];
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;

	return p ? (int)(p - b64url) : -1;
}

/* Decodes n chars of base64url; returns the length or -1. */
static int b64_decode(const char *in, size_t n, unsigned char *out, size_t outn)
{
	unsigned acc = 0;
	size_t i, o = 0;
	int bits = 0;

	for (i = 0; i < n; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outn)
				return -1;
			out[o++] = (unsigned char)(acc >> bits & 0xff);
		}
	}
	return (int)o;
}

/* 32 bytes of keyed FNV-1a over secret and text, four lanes. */
static void sign(const struct sim *s, const char *text, size_t n,
                 unsigned char sig[32])
{
	int lane, b;
	size_t i;

	for (lane = 0; lane < 4; lane++) {
		uint64_t h = 1469598103934665603ULL ^ (uint64_t)(lane + 1);

		for (i = 0; s->secret[i]; i++)
			h = (h ^ (unsigned char)s->secret[i]) *
			    1099511628211ULL;
		for (i = 0; i < n; i++)
			h = (h ^ (unsigned char)text[i]) * 1099511628211ULL;
		for (b = 0; b < 8; b++)
			sig[lane * 8 + b] = (unsigned char)(h >> (8 * b));
	}
}

char *sim_jwt_issue(struct sim *s, struct sim_sandbox *sb, int64_t *exp_ms)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char payload[256], hb[64], pb[360], sb64[48], *tok;
	unsigned char sig[32];
	int64_t now = sim_now(s);
	size_t n;

	/* Whole seconds, like token_expires_at and the JWT exp claim. */
	*exp_ms = (now + s->cfg.token_lifetime_ms) / 1000 * 1000;
	snprintf(payload, sizeof(payload),
	         "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"jti\":%lld}",
	         sb->id, (long long)(now / 1000), (long long)(*exp_ms / 1000),
	         (long long)sb->next_jti++);
	b64_encode((const unsigned char *)header, strlen(header), hb);
	b64_encode((const unsigned char *)payload, strlen(payload), pb);
	n = strlen(hb) + 1 + strlen(pb);
	tok = malloc(n + 1 + sizeof(sb64));
	if (tok == NULL)
		return NULL;
	snprintf(tok, n + 1, "%s.%s", hb, pb);
	sign(s, tok, n, sig);
	b64_encode(sig, sizeof(sig), sb64);
	snprintf(tok + n, 1 + sizeof(sb64), ".%s", sb64);
	free(s->issued[s->nissued % SIM_ISSUED_MAX]);
	s->issued[s->nissued++ % SIM_ISSUED_MAX] = strdup(tok);
	s->dirty = 1;
	return tok;
}

int sim_jwt_check(struct sim *s, const char *token, const char *id)
{
	const char *dot1, *dot2;
	unsigned char payload[512], sig[32];
	char want[48], sub[SIM_ID_MAX];
	long long exp = 0, jti = 0;
	struct sim_sandbox *sb;
	int n;

	if (token == NULL || (dot1 = strchr(token, '.')) == NULL ||
	    (dot2 = strchr(dot1 + 1, '.')) == NULL)
		return -1;
	sign(s, token, (size_t)(dot2 - token), sig);
	b64_encode(sig, sizeof(sig), want);
	if (strcmp(want, dot2 + 1) != 0)
		return -1;
	n = b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload,
	               sizeof(payload) - 1);
	if (n < 0)
		return -1;
	payload[n] = '\0';
	if (sscanf((const char *)payload,
	           "{\"sub\":\"%39[^\"]\",\"iat\":%*d,\"exp\":%lld,\"jti\":%"
	           "lld}",
	           sub, &exp, &jti) != 3)
		return -1;
	if (strcmp(sub, id) != 0 || sim_now(s) >= exp * 1000)
		return -1;
	sb = sim_find(s, id);
	return sb && jti >= sb->min_jti ? 0 : -1;
}
