/*
 * TLS to a sandbox's agent at an https address (HopX's own public_host):
 * a GnuTLS client session per upstream connection, fed from the
 * connection's reads and writing through its uv_write queue, so that
 * backpressure, deadlines and ends work as on a plain connection. The
 * certificate is checked against the system's CAs (and --ca-file) and the
 * address's host name; only HTTP/1.1 is offered.
 */
#include "proxy_int.h"

#include "agent.h"
#include "err.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The least the ciphertext buffer grows to (one send's or handshake
 * step's ciphertext is gathered there and written at once). */
#define OUT_MIN 4096

struct ptls_ctx {
	gnutls_certificate_credentials_t cred;
	int loaded; /* < 0: the error that loading gave */
};

struct ptls {
	gnutls_session_t s;
	int done; /* the handshake is over */
	char host[256];
	const char *in; /* ciphertext read, not yet given to GnuTLS */
	size_t in_len;
	char *out; /* ciphertext to write */
	size_t out_len, out_cap;
};

/* ---- trust ---- */

/* The credentials, loaded at the first https address; NULL with why. */
static struct ptls_ctx *ctx_of(struct proxy *px, char *why, size_t n)
{
	struct ptls_ctx *t = px->tls;
	const char *ca = px->a->cfg.ca_file;
	int r;

	if (t == NULL) {
		if ((t = calloc(1, sizeof(*t))) == NULL ||
		    gnutls_certificate_allocate_credentials(&t->cred) < 0) {
			free(t);
			snprintf(why, n, "out of memory");
			return NULL;
		}
		px->tls = t;
		r = gnutls_certificate_set_x509_system_trust(t->cred);
		if (r < 0)
			log_warn("proxy: the system's CAs are not loaded (%s)",
			         gnutls_strerror(r));
		if (ca[0] && (r = gnutls_certificate_set_x509_trust_file(
		                      t->cred, ca, GNUTLS_X509_FMT_PEM)) < 0)
			t->loaded = r;
	}
	if (t->loaded < 0) {
		snprintf(why, n,
		         "cannot read the CA bundle %s (%s): fix --ca-file "
		         "and restart hopxd",
		         ca, gnutls_strerror(t->loaded));
		return NULL;
	}
	return t;
}

void px_tls_ctx_free(struct ptls_ctx *t)
{
	if (t == NULL)
		return;
	gnutls_certificate_free_credentials(t->cred);
	free(t);
}

/* ---- the session's transport: the connection's buffers ---- */

/* Room for n more bytes of ciphertext; 0 or -1. */
static int reserve(struct ptls *t, size_t n)
{
	size_t cap = t->out_cap;
	char *grown;

	while (t->out_len + n > cap)
		cap = cap ? cap * 2 : (n > OUT_MIN ? n : OUT_MIN);
	if (cap == t->out_cap)
		return 0;
	if ((grown = realloc(t->out, cap)) == NULL)
		return -1;
	t->out = grown;
	t->out_cap = cap;
	return 0;
}

static ssize_t on_push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
	struct ptls *t = p;

	if (reserve(t, n) != 0) {
		gnutls_transport_set_errno(t->s, ENOMEM);
		return -1;
	}
	memcpy(t->out + t->out_len, data, n);
	t->out_len += n;
	return (ssize_t)n;
}

static ssize_t on_pull(gnutls_transport_ptr_t p, void *data, size_t n)
{
	struct ptls *t = p;

	if (t->in_len == 0) {
		gnutls_transport_set_errno(t->s, EAGAIN);
		return -1;
	}
	if (n > t->in_len)
		n = t->in_len;
	memcpy(data, t->in, n);
	t->in += n;
	t->in_len -= n;
	return (ssize_t)n;
}

/* Writes what the session produced. */
static void flush(struct pconn *c, struct pup *u)
{
	struct ptls *t = u->tls;
	char *out = t->out;
	size_t n = t->out_len;

	if (n == 0)
		return;
	t->out = NULL;
	t->out_len = t->out_cap = 0;
	px_write(c, u, out, n);
}

/* ---- the session ---- */

static int is_ip(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1 ||
	       inet_pton(AF_INET6, host, a) == 1;
}

static int session_init(struct ptls *t, struct ptls_ctx *ctx)
{
	gnutls_datum_t alpn = {(unsigned char *)"http/1.1", 8};
	int r;

	if ((r = gnutls_init(&t->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0)
		return r;
	if ((r = gnutls_set_default_priority(t->s)) < 0 ||
	    (r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE,
	                                ctx->cred)) < 0 ||
	    (r = gnutls_alpn_set_protocols(t->s, &alpn, 1, 0)) < 0)
		return r;
	/* Names go in SNI; an address is checked against the certificate's
	 * IP entries and never sent as a name (RFC 6066). */
	if (!is_ip(t->host) &&
	    (r = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, t->host,
	                                strlen(t->host))) < 0)
		return r;
	gnutls_session_set_verify_cert(t->s, t->host, 0);
	gnutls_transport_set_ptr(t->s, t);
	gnutls_transport_set_push_function(t->s, on_push);
	gnutls_transport_set_pull_function(t->s, on_pull);
	return 0;
}

int px_tls_new(struct pup *u, const char *host, char *why, size_t n)
{
	struct ptls_ctx *ctx = ctx_of(u->c->px, why, n);
	struct ptls *t;
	int r;

	if (ctx == NULL)
		return ERR_INVAL;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(why, n, "out of memory");
		return ERR_NOMEM;
	}
	snprintf(t->host, sizeof(t->host), "%s", host);
	u->tls = t;
	if ((r = session_init(t, ctx)) < 0) {
		snprintf(why, n,
		         "cannot begin TLS with the sandbox's agent: %s",
		         gnutls_strerror(r));
		return ERR_SYS;
	}
	return 0;
}

void px_tls_free(struct pup *u)
{
	struct ptls *t = u->tls;

	if (t == NULL)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	free(t->out);
	free(t);
	u->tls = NULL;
}

int px_up_ready(const struct pup *u)
{
	return u->open && (u->tls == NULL || u->tls->done);
}

/* Why the handshake failed, saying what to do. */
static void hs_fail(struct pconn *c, struct ptls *t, int r)
{
	gnutls_datum_t out = {NULL, 0};
	char msg[768];
	int len;

	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
	    gnutls_certificate_verification_status_print(
	            gnutls_session_get_verify_cert_status(t->s),
	            GNUTLS_CRT_X509, &out, 0) == 0) {
		for (len = (int)out.size; len > 0 && out.data[len - 1] <= ' ';)
			len--;
		snprintf(msg, sizeof(msg),
		         "the sandbox's agent at %s did not prove who it is "
		         "(%.*s); if a private CA signed its certificate, give "
		         "hopxd that CA with --ca-file PATH",
		         t->host, len, (const char *)out.data);
	} else
		snprintf(msg, sizeof(msg),
		         "TLS with the sandbox's agent at %s failed: %s; "
		         "'hopxctl show %s' says its state",
		         t->host, gnutls_strerror(r), c->id);
	gnutls_free(out.data);
	pflow_fail(c, 502, "BAD_GATEWAY", msg);
}

/* One step of the handshake; 0 once it is over. */
static int hs_step(struct pconn *c, struct pup *u)
{
	struct ptls *t = u->tls;
	int r;

	do
		r = gnutls_handshake(t->s);
	while (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r));
	flush(c, u);
	if (r == GNUTLS_E_AGAIN)
		return 1;
	if (r < 0) {
		hs_fail(c, t, r);
		return -1;
	}
	t->done = 1;
	return 0;
}

void px_tls_handshake(struct pconn *c, struct pup *u)
{
	if (hs_step(c, u) == 0 && !c->closing)
		px_send_request(c);
}

void px_tls_send(struct pconn *c, struct pup *u, char *base, size_t len)
{
	struct ptls *t = u->tls;
	size_t off = 0;
	ssize_t r;

	/* One allocation for the records' overhead too (a few dozen bytes
	 * each); push grows it if that was short. */
	(void)reserve(t, len + (len / 16384 + 1) * 64);
	while (off < len) {
		r = gnutls_record_send(t->s, base + off, len - off);
		if (r < 0 && !gnutls_error_is_fatal((int)r))
			continue;
		if (r < 0) {
			px_blk_free(c->px, base);
			pconn_close(c);
			return;
		}
		off += (size_t)r;
	}
	px_blk_free(c->px, base);
	flush(c, u);
}

/* Fills a block with as many records as it holds: one write onward for
 * several 16 KiB records, not one each. Returns the last result. */
static ssize_t fill(struct ptls *t, char *blk, size_t *len)
{
	ssize_t r;

	do
		r = gnutls_record_recv(t->s, blk + *len, PX_READ_CHUNK - *len);
	while (r > 0 && (*len += (size_t)r) < PX_READ_CHUNK);
	return r;
}

/* Every record the bytes complete, in order, to the answer's handling;
 * stops when the connection is let go meanwhile. */
static void decrypt(struct pconn *c, struct pup *u)
{
	ssize_t r = 1;
	size_t len;
	char *blk;

	while (u->c == c && !c->closing) {
		if ((blk = px_blk_get(c->px)) == NULL) {
			pconn_close(c);
			return;
		}
		len = 0;
		r = fill(u->tls, blk, &len);
		if (len > 0)
			px_up_data(c, u, blk, len);
		else
			px_blk_free(c->px, blk);
		if (r > 0 || (r < 0 && r != GNUTLS_E_AGAIN &&
		              !gnutls_error_is_fatal((int)r)))
			continue;
		if (r != GNUTLS_E_AGAIN && u->c == c && !c->closing)
			px_up_eof(c);
		return;
	}
}

void px_tls_read(struct pconn *c, struct pup *u, char *base, size_t n)
{
	struct ptls *t = u->tls;

	t->in = base;
	t->in_len = n;
	if (!t->done && hs_step(c, u) == 0 && !c->closing)
		px_send_request(c);
	if (t->done && u->c == c && !c->closing)
		decrypt(c, u);
	t->in = NULL;
	t->in_len = 0;
	px_blk_free(c->px, base);
}
