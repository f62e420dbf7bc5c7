/*
 * A request through the proxy: its head read and checked for proof, a
 * token got (waking the sandbox when paused), the head rewritten and sent
 * to the sandbox's agent over a connection made for this client, its
 * body streamed after it.
 */
#include "proxy_int.h"

#include "agent.h"
#include "connect.h"
#include "err.h"
#include "secret.h"
#include "sessions.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A token handed to a request lasts at least this long. */
#define MIN_TTL_MS 2000

/* ---- proof of access ---- */

/* The token or key a request carries (Bearer, or X-API-Key). */
static int given_key(const struct phead *h, char *out, size_t n)
{
	const struct phead_str *a = phead_get(h, "authorization");
	const struct phead_str *k = phead_get(h, "x-api-key");
	struct phead_str v;

	if (a && a->n > 7 && strncasecmp(a->p, "Bearer ", 7) == 0)
		v = (struct phead_str){a->p + 7, a->n - 7};
	else if (k)
		v = *k;
	else
		return ERR_NOTFOUND;
	if (v.n == 0 || v.n >= n)
		return ERR_NOTFOUND;
	memcpy(out, v.p, v.n);
	out[v.n] = '\0';
	return 0;
}

/* Whether key proves access to the sandbox: a key of the agent, its
 * current token, or any token it held for it. */
static int proves(struct pconn *c, const char *key)
{
	struct agent *a = c->px->a;
	unsigned char fp[STORE_PROOF_LEN];
	struct store_sandbox r;
	struct sess_token tk;
	int ok;

	if (secret_eq(key, c->px->key) || secret_eq(key, a->cfg.api_key))
		return 1;
	if (sessions_token_cached(a->sess, c->id, 0, &tk) == 0 &&
	    secret_eq(key, tk.token))
		return 1;
	store_proof_of(key, fp);
	if (store_proof_check(a->store, c->id, fp) == 0)
		return 1;
	/* A token stored before proofs were kept is only the current one. */
	if (store_sandbox_get(a->store, c->id, &r) != 0)
		return 0;
	ok = r.token && secret_eq(key, r.token);
	store_sandbox_finish(&r);
	return ok;
}

static int proven(struct pconn *c, const struct phead *h)
{
	char key[4096];

	if (c->trusted)
		return 1;
	if (given_key(h, key, sizeof(key)) != 0)
		return 0;
	if (c->proven && strcmp(c->proven, key) == 0)
		return 1;
	if (!proves(c, key))
		return 0;
	free(c->proven);
	c->proven = strdup(key);
	return 1;
}

/* ---- the request ---- */

/* Fields the proxy sets itself or that must not reach the sandbox. */
static int dropped(const struct phead_field *f, int upgrade)
{
	static const char *const always[] = {"authorization", "host",
	                                     "x-api-key", "proxy-authorization",
	                                     "proxy-connection"};
	size_t i;

	for (i = 0; i < sizeof(always) / sizeof(*always); i++)
		if (phead_eq(&f->name, always[i]))
			return 1;
	/* An upgrade to anything but a WebSocket (h2c) is not carried:
	 * the request goes as plain HTTP/1.1. */
	return !upgrade && (phead_eq(&f->name, "upgrade") ||
	                    phead_eq(&f->name, "http2-settings") ||
	                    phead_eq(&f->name, "connection"));
}

/* The head to send, but for Host and Authorization (added per send). */
static int rewrite(struct pconn *c, const struct phead *h)
{
	char *out = malloc(PHEAD_MAX), *p;
	size_t i, left = PHEAD_MAX;
	int n;

	if (out == NULL)
		return ERR_NOMEM;
	p = out;
	n = snprintf(p, left, "%.*s %.*s HTTP/1.%d\r\n", (int)h->method.n,
	             h->method.p, (int)h->target.n, h->target.p, h->minor);
	for (i = 0; i < h->nfields && n >= 0 && (size_t)n < left; i++) {
		const struct phead_field *f = &h->fields[i];

		p += n;
		left -= (size_t)n;
		n = dropped(f, c->upgrade)
		            ? 0
		            : snprintf(p, left, "%.*s: %.*s\r\n",
		                       (int)f->name.n, f->name.p,
		                       (int)f->value.n, f->value.p);
	}
	if (n < 0 || (size_t)n >= left) {
		free(out);
		return ERR_TOOBIG;
	}
	free(c->head);
	c->head = out;
	c->head_n = (size_t)(p + n - out);
	return 0;
}

/* Sends the request (head with the token, and the body kept) upstream. */
void px_send_request(struct pconn *c)
{
	size_t pre = strlen(c->uppath), at = strcspn(c->head, " ") + 1;
	size_t cap = c->head_n + pre + strlen(c->upauth) + strlen(c->tok) + 64;
	char *out = malloc(cap);
	int n;

	if (out == NULL) {
		pconn_close(c);
		return;
	}
	/* public_host's path (a sandbox behind a shared host) goes before
	 * the request's own. */
	if (c->head[at] != '/')
		pre = 0;
	memcpy(out, c->head, at);
	memcpy(out + at, c->uppath, pre);
	memcpy(out + at + pre, c->head + at, c->head_n - at);
	n = snprintf(out + c->head_n + pre, cap - c->head_n - pre,
	             "Host: %s\r\nAuthorization: Bearer %s\r\n\r\n", c->upauth,
	             c->tok);
	px_send(c, c->up, out, c->head_n + pre + (size_t)n);
	if (c->sent_len > c->head_len)
		px_send_copy(c, c->up, c->in + c->head_len,
		             c->sent_len - c->head_len);
	c->rs = RS_HEAD;
	c->rq = c->replayable ? RQ_DONE : RQ_BODY;
	if (!c->replayable)
		px_drop_in(c, c->sent_len);
	px_reads(c);
	pconn_arm(c);
}

static void go_upstream(struct pconn *c, const char *token)
{
	free(c->tok);
	if ((c->tok = strdup(token)) == NULL) {
		pflow_fail(c, 503, "SERVICE_UNAVAILABLE", "out of memory");
		return;
	}
	if (c->up && px_up_ready(c->up)) {
		c->up->used = 1;
		px_send_request(c);
		return;
	}
	px_drop_up(c);
	px_up_connect(c);
}

/* What a failed connect() answers, in HopX's words. */
static void connect_failed(struct pconn *c, const struct connect_result *r)
{
	static const struct {
		int err, status;
		const char *code;
	} map[] = {
	        {ERR_STATE, 409, "SANDBOX_NOT_RUNNING"},
	        {ERR_NOTFOUND, 404, "SANDBOX_NOT_FOUND"},
	        {ERR_RATE, 429, "RATE_LIMIT_EXCEEDED"},
	        {ERR_TIMEOUT, 504, "GATEWAY_TIMEOUT"},
	        {ERR_AUTH, 502, "HOPX_REFUSED_API_KEY"},
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(*map); i++)
		if (map[i].err == r->err) {
			pflow_fail(c, map[i].status, map[i].code, r->msg);
			return;
		}
	pflow_fail(c, 503, "SERVICE_UNAVAILABLE", r->msg);
}

static void on_token(void *ud, const struct connect_result *r)
{
	struct pconn *c = ud;

	if (c->closing) {
		pconn_unhold(c);
		return;
	}
	c->holds--;
	if (r->err != 0) {
		connect_failed(c, r);
		return;
	}
	if (r->resumed)
		c->px->st.wakes++;
	go_upstream(c, r->token);
}

/* A token for the request: from memory when it has one, else connect()
 * (a paused sandbox is woken; rejected: the one the sandbox refused). */
void px_get_token(struct pconn *c, const char *rejected)
{
	struct sess_token tk;

	if (rejected == NULL && sessions_token_cached(c->px->a->sess, c->id,
	                                              MIN_TTL_MS, &tk) == 0) {
		go_upstream(c, tk.token);
		return;
	}
	c->holds++;
	connect_sandbox(c->px->a->sess, c->id, c->id, MIN_TTL_MS,
	                CONNECT_TRAFFIC, rejected, on_token, c);
}

static void bad_head(struct pconn *c, ssize_t e)
{
	if (e == ERR_TOOBIG)
		pflow_fail(c, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
		           "the request head is over 16 KiB or 100 fields");
	else if (e == ERR_RANGE)
		pflow_fail(c, 505, "HTTP_VERSION_NOT_SUPPORTED",
		           "only HTTP/1.0 and 1.1 go through the proxy");
	else if (e == ERR_UNSUPPORTED)
		pflow_fail(c, 501, "NOT_IMPLEMENTED",
		           "no transfer coding but chunked goes through the "
		           "proxy");
	else
		pflow_fail(c, 400, "INVALID_REQUEST",
		           "the request is not well-formed HTTP/1.1");
}

static void begin(struct pconn *c, const struct phead *h, size_t len)
{
	ssize_t used;
	int done = 0;

	c->rq = RQ_WAIT;
	px_reads(c);
	c->t0 = uv_hrtime();
	c->px->st.requests++;
	if (!proven(c, h)) {
		pflow_fail(c, 401, "INVALID_TOKEN", "Invalid or expired token");
		return;
	}
	c->head_len = len;
	pframe_request(&c->reqf, h);
	used = pframe_feed(&c->reqf, c->in + len, c->in_len - len, &done);
	c->head_req = phead_eq(&h->method, "HEAD");
	c->upgrade = h->conn_upgrade && h->upgrade_ws;
	c->cli_close = h->conn_close;
	c->retried = 0;
	if (used < 0 || rewrite(c, h) != 0) {
		bad_head(c, used < 0 ? ERR_PARSE : ERR_TOOBIG);
		return;
	}
	c->sent_len = len + (size_t)used;
	c->replayable = done;
	px_lease(c);
	px_get_token(c, NULL);
}

/*
 * A small body is read whole before the request goes on, so that it can
 * be sent again after a 401 (it may come in reads after its head); one
 * whose client waits for 100 Continue first, or a larger or chunked one,
 * streams.
 */
static int body_first(const struct pconn *c, const struct phead *h, size_t len)
{
	return h->content_length > 0 && h->content_length <= PX_REPLAY_MAX &&
	       phead_get(h, "expect") == NULL &&
	       c->in_len - len < (size_t)h->content_length;
}

void px_try_head(struct pconn *c)
{
	struct phead *h = malloc(sizeof(*h));
	ssize_t n;

	if (h == NULL) {
		pconn_close(c);
		return;
	}
	n = phead_parse(c->in, c->in_len, 0, h);
	if (n < 0)
		bad_head(c, n);
	else if (n > 0 && !body_first(c, h, (size_t)n))
		begin(c, h, (size_t)n);
	free(h);
}

/* Body bytes of the request: those of this request go upstream; any
 * after it (a pipelined request) wait. */
static void body_in(struct pconn *c, char *base, size_t n)
{
	ssize_t used;
	int done = 0;

	if ((used = pframe_feed(&c->reqf, base, n, &done)) < 0 ||
	    px_keep_in(c, base + used, n - (size_t)used) != 0) {
		px_blk_free(c->px, base);
		pflow_fail(c, 400, "INVALID_REQUEST",
		           "the request's chunked body is malformed");
		return;
	}
	if (used > 0)
		px_send(c, c->up, base, (size_t)used);
	else
		px_blk_free(c->px, base);
	if (done)
		c->rq = RQ_DONE;
	px_reads(c);
}

void px_cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct pconn *c = s->data;
	int was_empty = c->in_len == 0;

	if (n <= 0 || c->draining) {
		px_blk_free(c->px, b->base);
		if (n < 0)
			pconn_close(c);
		return;
	}
	c->progress = uv_hrtime();
	if (c->tunnel && c->up) {
		px_send(c, c->up, b->base, (size_t)n);
	} else if (c->rq == RQ_BODY) {
		body_in(c, b->base, (size_t)n);
	} else {
		n = px_keep_in(c, b->base, (size_t)n);
		px_blk_free(c->px, b->base);
		if (n != 0) {
			bad_head(c, ERR_TOOBIG);
			return;
		}
		if (was_empty)
			pconn_arm(c);
		if (c->rq == RQ_HEAD)
			px_try_head(c);
	}
}

void pflow_start(struct pconn *c)
{
	c->rq = RQ_HEAD;
	c->progress = uv_hrtime();
	pconn_arm(c);
	px_reads(c);
}

/* ---- the connection upstream ---- */

static void on_connected(uv_connect_t *req, int status)
{
	struct pup *u = req->data;
	struct pconn *c = u->c;
	char msg[768];

	if (c == NULL || status == UV_ECANCELED)
		return;
	if (status < 0) {
		snprintf(msg, sizeof(msg),
		         "cannot reach the sandbox's agent at %s: %s; "
		         "'hopxctl show %s' says its state",
		         c->upauth, uv_strerror(status), c->id);
		pflow_fail(c, 502, "BAD_GATEWAY", msg);
		return;
	}
	u->open = 1;
	uv_tcp_nodelay(&u->tcp, 1);
	uv_tcp_keepalive(&u->tcp, 1, 60);
	if (u->tls)
		px_tls_handshake(c, u);
	else
		px_send_request(c);
}

static void connect_to(struct pconn *c, const struct sockaddr *sa)
{
	struct pup *u = c->up;

	u->creq.data = u;
	if (uv_tcp_connect(&u->creq, &u->tcp, sa, on_connected) != 0)
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "cannot open a connection to the sandbox's agent");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct pup *u = req->data;
	struct pconn *c = u->c;

	u->resolving = 0;
	if (c == NULL) {
		uv_freeaddrinfo(res);
		if (u->closed)
			free(u);
		return;
	}
	if (status < 0 || res == NULL)
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "cannot resolve the sandbox's agent's address");
	else
		connect_to(c, res->ai_addr);
	uv_freeaddrinfo(res);
}

/* public_host's parts: "http[s]://host[:port][/...]". */
struct upaddr {
	char host[256];
	int port;
	int tls;
	const char *auth; /* host[:port], as written */
	size_t auth_len;
	const char *path; /* up to a query or fragment, no trailing '/' */
	size_t path_len;
};

/* "host[:port]" or "[v6][:port]" of p..end into a. */
static int host_port(const char *p, const char *end, struct upaddr *a)
{
	const char *hend;
	size_t len;

	if (*p == '[') {
		if ((hend = memchr(p, ']', (size_t)(end - p))) == NULL)
			return ERR_INVAL;
		p++;
		if (hend + 1 < end && hend[1] == ':')
			a->port = atoi(hend + 2);
	} else if ((hend = memchr(p, ':', (size_t)(end - p))) != NULL) {
		a->port = atoi(hend + 1);
	} else {
		hend = end;
	}
	len = (size_t)(hend - p);
	if (len == 0 || len >= sizeof(a->host) || a->port <= 0 ||
	    a->port > 65535)
		return ERR_INVAL;
	memcpy(a->host, p, len);
	a->host[len] = '\0';
	return 0;
}

static int parse_host(const char *url, struct upaddr *a)
{
	const char *p, *end;

	a->tls = url && strncmp(url, "https://", 8) == 0;
	if (url == NULL || (!a->tls && strncmp(url, "http://", 7) != 0))
		return ERR_INVAL;
	p = a->auth = url + (a->tls ? 8 : 7);
	end = p + strcspn(p, "/?#");
	a->auth_len = (size_t)(end - p);
	a->path = end;
	a->path_len = *end == '/' ? strcspn(end, "?#") : 0;
	while (a->path_len > 0 && end[a->path_len - 1] == '/')
		a->path_len--;
	a->port = a->tls ? 443 : 80;
	return host_port(p, end, a);
}

/* Where the sandbox's agent is, from its record. */
static int upstream_of(struct pconn *c, struct upaddr *a)
{
	struct store_sandbox r;
	int e;

	if ((e = store_sandbox_get(c->px->a->store, c->id, &r)) != 0)
		return e;
	if ((e = parse_host(r.public_host, a)) == 0 &&
	    a->path_len >= sizeof(c->uppath))
		e = ERR_TOOBIG;
	if (e == 0) {
		snprintf(c->upauth, sizeof(c->upauth), "%.*s", (int)a->auth_len,
		         a->auth);
		snprintf(c->uppath, sizeof(c->uppath), "%.*s", (int)a->path_len,
		         a->path);
	}
	a->auth = a->path = NULL; /* they pointed into r */
	store_sandbox_finish(&r);
	return e;
}

/* A connection to the sandbox's agent, TLS begun for an https one. */
static struct pup *up_new(struct pconn *c, const struct upaddr *a)
{
	struct pup *u = calloc(1, sizeof(*u));
	char why[512];

	if (u == NULL) {
		pconn_close(c);
		return NULL;
	}
	u->c = c;
	u->px = c->px;
	c->up = u;
	c->px->st.up_new++;
	uv_tcp_init(c->px->a->loop, &u->tcp);
	u->tcp.data = u;
	if (a->tls && px_tls_new(u, a->host, why, sizeof(why)) != 0) {
		pflow_fail(c, 502, "BAD_GATEWAY", why);
		return NULL;
	}
	return u;
}

void px_up_connect(struct pconn *c)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct sockaddr_storage sa;
	struct upaddr a;
	struct pup *u;
	char port_s[8];

	if (upstream_of(c, &a) != 0) {
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "HopX has not said where the sandbox's agent is: "
		           "run 'hopxctl reconcile'");
		return;
	}
	/* A kept connection the sandbox may close as it is reused: only a
	 * request that can be sent again goes on one (and after it failed,
	 * on a new one). */
	if (c->replayable && !c->retried && px_pool_take(c)) {
		px_send_request(c);
		return;
	}
	if ((u = up_new(c, &a)) == NULL)
		return;
	if (uv_ip4_addr(a.host, a.port, (struct sockaddr_in *)&sa) == 0 ||
	    uv_ip6_addr(a.host, a.port, (struct sockaddr_in6 *)&sa) == 0) {
		connect_to(c, (struct sockaddr *)&sa);
		return;
	}
	snprintf(port_s, sizeof(port_s), "%d", a.port);
	u->gai.data = u;
	u->resolving = 1;
	if (uv_getaddrinfo(c->px->a->loop, &u->gai, on_resolved, a.host, port_s,
	                   &hints) != 0) {
		u->resolving = 0;
		pflow_fail(c, 502, "BAD_GATEWAY",
		           "cannot resolve the sandbox's agent's address");
	}
}
