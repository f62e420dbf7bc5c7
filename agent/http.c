/*
 * libcurl multi_socket driven by libuv. Callbacks stay thin: the socket
 * and timer callbacks only (un)register poll handles and the timer; the
 * uv callbacks call curl_multi_socket_action and then drain completions
 * (after every action, whatever "running" says: a transfer that ends by
 * timeout would otherwise never be reported). HTTP_BATCH transfers that
 * end in one loop turn wait on the ready list for the turn's check phase,
 * where they are reported together.
 */
#include "http.h"

#include "err.h"
#include "log.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utlist.h>

struct http_req {
	struct http *h;
	CURL *easy;
	struct curl_slist *headers;
	char *body; /* received bytes */
	size_t len;
	size_t cap;
	int too_big;
	int64_t date_ms; /* the answer's Date header, 0: none */
	char request_id[48];
	CURLcode code; /* while ready */
	http_done_fn fn;
	void *ud;
	int batch; /* HTTP_BATCH: reported with the turn's others */
	struct http_req *prev, *next; /* active or queue */
	/* done, on the ready list until the turn ends: rprev set (utlist
	 * keeps a member's prev non-NULL) */
	struct http_req *rprev, *rnext;
};

struct http {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	uv_check_t check; /* the end of a loop turn: HTTP_BATCH answers */
	uv_idle_t idle;   /* keeps the poll before that check from blocking */
	struct http_opts o;
	struct http_req *active;
	struct http_req *queue;
	struct http_req *ready; /* HTTP_BATCH transfers done this turn */
	int inflight;
	int nqueued;
	int closing;
	int open_handles; /* freed when timer, check and idle have closed */
	http_batch_fn batch_fn;
	void *batch_ud;
};

/* One per socket curl asks us to watch; freed in its close callback. */
struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct http *h;
};

static void drain(struct http *h);
static void start_queued(struct http *h);
static void on_check(uv_check_t *c);
static void on_idle(uv_idle_t *i);

/* ---- libcurl -> libuv ---- */

static void ctx_free(uv_handle_t *hd)
{
	free(hd->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock_ctx *c = p->data;
	int flags = 0, running = 0;

	/* libuv reports POLLERR as a status and has stopped the handle. */
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->h->multi, c->fd, flags, &running);
	drain(c->h);
}

static int watch(struct http *h, curl_socket_t s, int action,
                 struct sock_ctx *c)
{
	int events = 0, r;

	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL)
			return -1;
		c->fd = s;
		c->h = h;
		if ((r = uv_poll_init_socket(h->loop, &c->poll, s)) != 0) {
			log_error("cannot poll socket %d: %s", (int)s,
			          uv_strerror(r));
			free(c);
			return -1;
		}
		c->poll.data = c;
		curl_multi_assign(h->multi, s, c);
	}
	if (action & CURL_POLL_IN)
		events |= UV_READABLE;
	if (action & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	return uv_poll_start(&c->poll, events, on_poll) == 0 ? 0 : -1;
}

static int cb_socket(CURL *easy, curl_socket_t s, int action, void *userp,
                     void *socketp)
{
	struct http *h = userp;
	struct sock_ctx *c = socketp;

	(void)easy;
	if (action == CURL_POLL_REMOVE) {
		if (c) {
			uv_poll_stop(&c->poll);
			uv_close((uv_handle_t *)&c->poll, ctx_free);
			/* A reused fd must get a fresh context. */
			curl_multi_assign(h->multi, s, NULL);
		}
		return 0;
	}
	/* Returning -1 would abort every transfer: log and carry on; the
	 * transfer's own timeout ends it. */
	if (watch(h, s, action, c) != 0)
		log_error("cannot watch socket %d", (int)s);
	return 0;
}

static void on_timer(uv_timer_t *t)
{
	struct http *h = t->data;
	int running = 0;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain(h);
}

static int cb_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;

	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&h->timer);
	else /* 0 means "now": 1 ms, since libuv < 1.48 spins on 0 */
		uv_timer_start(&h->timer, on_timer,
		               timeout_ms == 0 ? 1 : (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- one request ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct http_req *r = ud;
	size_t len = size * n, cap;
	char *nb;

	if (r->len + len > r->h->o.max_body) {
		r->too_big = 1;
		return 0; /* curl fails the transfer with a write error */
	}
	if (r->len + len + 1 > r->cap) {
		cap = r->cap ? r->cap * 2 : 4096;
		while (cap < r->len + len + 1)
			cap *= 2;
		if ((nb = realloc(r->body, cap)) == NULL)
			return 0;
		r->body = nb;
		r->cap = cap;
	}
	memcpy(r->body + r->len, p, len);
	r->len += len;
	r->body[r->len] = '\0';
	return len;
}

/* Copies the value of header line p (len bytes) into out if its name is
 * name ("Date: "); returns 1 then, else 0. */
static int header_value(const char *p, size_t len, const char *name, char *out,
                        size_t n)
{
	size_t k = strlen(name), v;

	if (len <= k || strncasecmp(p, name, k) != 0)
		return 0;
	v = strcspn(p + k, "\r\n");
	if (v >= n)
		v = n - 1;
	memcpy(out, p + k, v);
	out[v] = '\0';
	return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct http_req *r = ud;
	size_t len = size * n;
	char date[64];
	time_t t;

	header_value(p, len, "X-Request-ID: ", r->request_id,
	             sizeof(r->request_id));
	if (header_value(p, len, "Date: ", date, sizeof(date))) {
		t = curl_getdate(date, NULL);
		r->date_ms = t > 0 ? (int64_t)t * 1000 : 0;
	}
	return len;
}

static void req_free(struct http_req *r)
{
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->body);
	free(r);
}

static int transport_err(CURLcode c, const struct http_req *r)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return ERR_TIMEOUT;
	case CURLE_OUT_OF_MEMORY:
		return ERR_NOMEM;
	case CURLE_WRITE_ERROR:
		return r->too_big ? ERR_TOOBIG : ERR_NOMEM;
	default:
		return ERR_NET;
	}
}

/* Reports a finished transfer, already removed from the multi handle. */
static void finish(struct http *h, struct http_req *r, CURLcode code)
{
	struct http_result res;
	curl_off_t ra = -1;
	long conns = 0;

	memset(&res, 0, sizeof(res));
	res.err = transport_err(code, r);
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
	curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &conns);
	curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &ra);
	res.new_connections = conns;
	res.retry_after_s = ra > 0 ? (long)ra : -1;
	res.date_ms = r->date_ms;
	res.body = r->body ? r->body : "";
	res.body_len = r->len;
	memcpy(res.request_id, r->request_id, sizeof(res.request_id));
	if (code != CURLE_OK)
		snprintf(res.error, sizeof(res.error), "%s",
		         curl_easy_strerror(code));
	DL_DELETE(h->active, r);
	h->inflight--;
	r->fn(r->ud, &res);
	req_free(r);
}

static void drain(struct http *h)
{
	struct http_req *r = NULL;
	CURLMsg *msg;
	CURLcode code;
	CURL *easy;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* Copy what we need: msg dies with the remove below. */
		easy = msg->easy_handle;
		code = msg->data.result;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		curl_multi_remove_handle(h->multi, easy);
		if (r == NULL)
			continue;
		if (r->batch) {
			r->code = code;
			DL_APPEND2(h->ready, r, rprev, rnext);
			/* Found by a timer, the check would wait for the
			 * next I/O: an idle handle makes that poll return. */
			uv_check_start(&h->check, on_check);
			uv_idle_start(&h->idle, on_idle);
		} else {
			finish(h, r, code);
		}
	}
	start_queued(h);
}

static void unready(struct http *h, struct http_req *r)
{
	DL_DELETE2(h->ready, r, rprev, rnext);
	r->rprev = NULL;
}

static void on_idle(uv_idle_t *i)
{
	(void)i;
}

/* The turn's HTTP_BATCH answers, between the two calls of batch_fn. */
static void on_check(uv_check_t *c)
{
	struct http *h = c->data;
	struct http_req *r;

	uv_check_stop(c);
	uv_idle_stop(&h->idle);
	if (h->ready == NULL)
		return;
	if (h->batch_fn)
		h->batch_fn(h->batch_ud, 0);
	while ((r = h->ready) != NULL) {
		unready(h, r);
		finish(h, r, r->code);
	}
	if (h->batch_fn)
		h->batch_fn(h->batch_ud, 1);
	start_queued(h);
}

static int setup_easy(struct http *h, struct http_req *r, const char *method,
                      const char *url, const char *body)
{
	CURL *e = r->easy;

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->o.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->o.timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, h->o.stall_s);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->o.ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->o.ca_file);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "");
	return curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK
	               ? 0
	               : ERR_INVAL;
}

/* Moves queued requests into the multi handle while slots are free. */
static void start_queued(struct http *h)
{
	struct http_req *r;

	while (!h->closing && h->queue && h->inflight < h->o.max_inflight) {
		r = h->queue;
		DL_DELETE(h->queue, r);
		h->nqueued--;
		DL_APPEND(h->active, r);
		h->inflight++;
		if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
			struct http_result res;

			memset(&res, 0, sizeof(res));
			res.err = ERR_NOMEM;
			res.body = "";
			res.retry_after_s = -1;
			DL_DELETE(h->active, r);
			h->inflight--;
			r->fn(r->ud, &res);
			req_free(r);
		}
	}
}

int http_request(struct http *h, const struct http_send *snd, http_done_fn fn,
                 void *ud, struct http_req **out)
{
	const char *const *headers = snd->headers;
	struct http_req *r;

	if (h->closing)
		return ERR_STATE;
	if (snd->method == NULL || snd->url == NULL || fn == NULL)
		return ERR_INVAL;
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->easy = curl_easy_init()) == NULL) {
		free(r);
		return ERR_NOMEM;
	}
	r->h = h;
	r->fn = fn;
	r->ud = ud;
	r->batch = (snd->flags & HTTP_BATCH) != 0;
	/* No "Expect: 100-continue" round trip for small bodies. */
	r->headers = curl_slist_append(NULL, "Expect:");
	for (; headers && *headers; headers++)
		r->headers = curl_slist_append(r->headers, *headers);
	if (r->headers == NULL ||
	    setup_easy(h, r, snd->method, snd->url, snd->body) != 0) {
		req_free(r);
		return ERR_NOMEM;
	}
	DL_APPEND(h->queue, r);
	h->nqueued++;
	if (out)
		*out = r;
	start_queued(h);
	return 0;
}

void http_cancel(struct http_req *r)
{
	struct http *h = r->h;
	struct http_req *q;

	DL_FOREACH(h->queue, q)
	{
		if (q == r) {
			DL_DELETE(h->queue, r);
			h->nqueued--;
			req_free(r);
			return;
		}
	}
	if (r->rprev)
		unready(h, r);
	else
		curl_multi_remove_handle(h->multi, r->easy);
	DL_DELETE(h->active, r);
	h->inflight--;
	req_free(r);
	start_queued(h);
}

void http_on_batch(struct http *h, http_batch_fn fn, void *ud)
{
	h->batch_fn = fn;
	h->batch_ud = ud;
}

int http_inflight(const struct http *h)
{
	return h->inflight;
}

int http_queued(const struct http *h)
{
	return h->nqueued;
}

/* ---- lifecycle ---- */

int http_create(uv_loop_t *loop, const struct http_opts *o, struct http **out)
{
	struct http *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return ERR_NOMEM;
	h->loop = loop;
	h->o.connect_timeout_ms =
	        o && o->connect_timeout_ms ? o->connect_timeout_ms : 10000;
	h->o.timeout_ms = o && o->timeout_ms ? o->timeout_ms : 60000;
	h->o.stall_s = o && o->stall_s ? o->stall_s : 15;
	h->o.max_body = o && o->max_body ? o->max_body : 4 * 1024 * 1024;
	h->o.max_inflight = o && o->max_inflight > 0 ? o->max_inflight : 8;
	h->o.ca_file = o ? o->ca_file : NULL;
	if ((h->multi = curl_multi_init()) == NULL) {
		free(h);
		return ERR_NOMEM;
	}
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	uv_check_init(loop, &h->check);
	h->check.data = h;
	uv_idle_init(loop, &h->idle);
	h->idle.data = h;
	h->open_handles = 3;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, cb_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, cb_timer);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	                  (long)h->o.max_inflight);
	*out = h;
	return 0;
}

static void http_free(uv_handle_t *t)
{
	struct http *h = t->data;

	if (--h->open_handles == 0)
		free(h);
}

void http_destroy(struct http *h)
{
	struct http_req *r, *tmp;

	if (h == NULL)
		return;
	h->closing = 1;
	DL_FOREACH_SAFE(h->queue, r, tmp)
	{
		DL_DELETE(h->queue, r);
		req_free(r);
	}
	h->ready = NULL; /* each is on the active list too */
	DL_FOREACH_SAFE(h->active, r, tmp)
	{
		if (r->rprev == NULL)
			curl_multi_remove_handle(h->multi, r->easy);
		DL_DELETE(h->active, r);
		req_free(r);
	}
	/* The socket callback may still run during cleanup: the contexts
	 * and the loop are alive until the close callbacks have run. */
	curl_multi_cleanup(h->multi);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, http_free);
	uv_close((uv_handle_t *)&h->check, http_free);
	uv_close((uv_handle_t *)&h->idle, http_free);
}
