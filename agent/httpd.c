/*
 * libmicrohttpd under libuv. MHD runs in external-loop epoll mode: its
 * one epoll fd tells when any of its sockets (or its resume channel) is
 * ready, and MHD_get_timeout when its idle timeouts are due. A request
 * goes to the handler once its body is in; the connection is suspended
 * until httpd_respond, which resumes it (waking MHD's epoll fd).
 */
#include "httpd.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <utlist.h>

#define QUERY_MAX 2048

struct httpd {
	uv_loop_t *loop;
	struct MHD_Daemon *d;
	uv_poll_t poll;
	uv_timer_t timer;
	httpd_handler fn;
	void *ud;
	size_t max_body;
	int port;
	int closes; /* handles still closing */
	char unix_path[108];
	struct httpd_req *waiting; /* suspended, awaiting an answer */
};

struct httpd_req {
	struct httpd *h; /* NULL once orphaned */
	struct MHD_Connection *conn;
	char method[16];
	char *path;
	char *body;
	size_t len;
	int too_big;
	int dispatched;
	int suspended;
	int mhd_done; /* MHD finished with the connection */
	struct MHD_Response *resp;
	int status;
	char query[QUERY_MAX];
	struct httpd_req *prev, *next;
};

static void run(struct httpd *h);

static void req_free(struct httpd_req *rq)
{
	if (rq->resp)
		MHD_destroy_response(rq->resp);
	free(rq->path);
	free(rq->body);
	free(rq);
}

/* ---- the loop ---- */

static void on_timer(uv_timer_t *t)
{
	run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	run(p->data);
}

static unsigned connections(const struct httpd *h)
{
	const union MHD_DaemonInfo *di =
	        MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

	return di ? di->num_connections : 0;
}

static void run(struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;
	unsigned before = connections(h);

	MHD_run(h->d);
	/* At the connection cap MHD stops watching its listening socket and
	 * takes it back only at the start of a run: once connections closed,
	 * one more run does it, as no event would come to cause one. */
	if (connections(h) < before)
		MHD_run(h->d);
	if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		uv_timer_start(&h->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

/* Runs MHD on the next loop turn (after a resume). */
static void kick(struct httpd *h)
{
	uv_timer_start(&h->timer, on_timer, 0, 0);
}

/* ---- requests ---- */

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	struct httpd_req *rq = cls;
	size_t n = strlen(rq->query);
	const char *s[2] = {key, value};
	int i;

	(void)kind;
	if (n && n < QUERY_MAX - 1)
		rq->query[n++] = '&';
	for (i = 0; i < 2 && s[i]; i++) {
		if (i == 1 && n < QUERY_MAX - 1)
			rq->query[n++] = '=';
		for (const char *c = s[i]; *c && n + 4 < QUERY_MAX; c++) {
			unsigned char u = (unsigned char)*c;

			if ((u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') ||
			    (u >= 'a' && u <= 'z') || strchr("-._~", u)) {
				rq->query[n++] = (char)u;
				continue;
			}
			rq->query[n++] = '%';
			rq->query[n++] = hex[u >> 4];
			rq->query[n++] = hex[u & 15];
		}
	}
	rq->query[n] = '\0';
	return MHD_YES;
}

static struct httpd_req *req_new(struct httpd *h, struct MHD_Connection *c,
                                 const char *method, const char *url)
{
	struct httpd_req *rq = calloc(1, sizeof(*rq));
	const char *cl;

	if (rq == NULL || (rq->path = strdup(url)) == NULL) {
		free(rq);
		return NULL;
	}
	rq->h = h;
	rq->conn = c;
	snprintf(rq->method, sizeof(rq->method), "%s", method);
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && strtoull(cl, NULL, 10) > h->max_body)
		rq->too_big = 1;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, rq);
	return rq;
}

static void take_body(struct httpd_req *rq, const char *data, size_t n)
{
	char *b;

	if (rq->too_big || rq->len + n > rq->h->max_body) {
		rq->too_big = 1;
		return;
	}
	if ((b = realloc(rq->body, rq->len + n + 1)) == NULL) {
		rq->too_big = 1;
		return;
	}
	memcpy(b + rq->len, data, n);
	rq->len += n;
	b[rq->len] = '\0';
	rq->body = b;
}

static enum MHD_Result queue(struct httpd_req *rq)
{
	enum MHD_Result r =
	        MHD_queue_response(rq->conn, (unsigned)rq->status, rq->resp);

	MHD_destroy_response(rq->resp);
	rq->resp = NULL;
	return r;
}

static enum MHD_Result dispatch(struct httpd *h, struct httpd_req *rq)
{
	static const char too_big[] = "{\"error\":\"Request body too large\","
	                              "\"code\":\"PAYLOAD_TOO_LARGE\"}";

	rq->dispatched = 1;
	if (rq->too_big)
		httpd_respond(rq, 413, "application/json", too_big,
		              sizeof(too_big) - 1, NULL);
	else
		h->fn(h->ud, rq);
	if (rq->resp)
		return queue(rq);
	if (rq->status < 0) /* out of memory while answering */
		return MHD_NO;
	MHD_suspend_connection(rq->conn);
	rq->suspended = 1;
	DL_APPEND(h->waiting, rq);
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *size, void **req_cls)
{
	struct httpd *h = cls;
	struct httpd_req *rq = *req_cls;

	(void)version;
	if (rq == NULL) {
		if ((*req_cls = req_new(h, c, method, url)) == NULL)
			return MHD_NO;
		return MHD_YES;
	}
	if (*size > 0) {
		take_body(rq, data, *size);
		*size = 0;
		return MHD_YES;
	}
	if (!rq->dispatched)
		return dispatch(h, rq);
	if (rq->resp) /* answered while suspended */
		return queue(rq);
	return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode why)
{
	struct httpd_req *rq = *req_cls;

	(void)cls;
	(void)c;
	(void)why;
	if (rq == NULL)
		return;
	*req_cls = NULL;
	rq->mhd_done = 1;
	rq->conn = NULL;
	/* Not answered yet: the handler's httpd_respond frees it. */
	if (!rq->dispatched || rq->status != 0)
		req_free(rq);
}

const char *httpd_method(const struct httpd_req *rq)
{
	return rq->method;
}

const char *httpd_path(const struct httpd_req *rq)
{
	return rq->path;
}

const char *httpd_header(const struct httpd_req *rq, const char *name)
{
	return rq->conn ? MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
	                                              name)
	                : NULL;
}

const char *httpd_arg(const struct httpd_req *rq, const char *name)
{
	return rq->conn ? MHD_lookup_connection_value(
	                          rq->conn, MHD_GET_ARGUMENT_KIND, name)
	                : NULL;
}

const char *httpd_query(const struct httpd_req *rq)
{
	return rq->query;
}

const char *httpd_body(const struct httpd_req *rq, size_t *len)
{
	if (len)
		*len = rq->len;
	return rq->body ? rq->body : "";
}

static struct MHD_Response *make_response(const char *ctype, const char *body,
                                          size_t len,
                                          const char *const *headers)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	        len, (void *)body, MHD_RESPMEM_MUST_COPY);
	char name[64];

	if (r == NULL)
		return NULL;
	if (ctype)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (; headers && *headers; headers++) {
		const char *colon = strchr(*headers, ':');
		size_t n = colon ? (size_t)(colon - *headers) : 0;

		if (n == 0 || n >= sizeof(name))
			continue;
		memcpy(name, *headers, n);
		name[n] = '\0';
		MHD_add_response_header(r, name,
		                        colon + 1 + strspn(colon + 1, " "));
	}
	return r;
}

int httpd_respond(struct httpd_req *rq, int status, const char *ctype,
                  const char *body, size_t len, const char *const *headers)
{
	struct MHD_Response *r = make_response(ctype, body, len, headers);

	rq->status = r ? status : -1;
	if (rq->mhd_done) { /* orphaned: nobody to tell */
		if (r)
			MHD_destroy_response(r);
		req_free(rq);
		return 0;
	}
	rq->resp = r;
	if (rq->suspended) {
		/* Without a response the resumed connection is closed. */
		rq->suspended = 0;
		DL_DELETE(rq->h->waiting, rq);
		MHD_resume_connection(rq->conn);
		kick(rq->h);
	}
	return r ? 0 : ERR_NOMEM;
}

/* ---- listening ---- */

__attribute__((format(printf, 2, 0))) static void
log_mhd(void *cls, const char *fmt, va_list ap)
{
	char buf[256];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_debug("http server: %s", buf);
}

/* Binds a Unix socket, 0600, over a stale one (never a live one). */
static int unix_listen(struct httpd *h, const char *path, const char **why)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;
	mode_t old;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		*why = "the socket path is too long (at most 107 bytes)";
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		*why = "another process is listening on that socket";
		close(fd);
		return -1;
	}
	unlink(path);
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, SOMAXCONN) != 0) {
		umask(old);
		*why = strerror(errno);
		close(fd);
		return -1;
	}
	umask(old);
	snprintf(h->unix_path, sizeof(h->unix_path), "%s", path);
	return fd;
}

/* "host:port" or "[v6]:port" into an address; 0 or ERR_INVAL. */
static int tcp_addr(const char *spec, struct sockaddr_storage *ss, int *v6)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICSERV},
	                *ai = NULL;
	size_t n;

	if (colon == NULL || colon == spec || !colon[1] ||
	    colon[1 + strspn(colon + 1, "0123456789")] != '\0')
		return ERR_INVAL;
	n = (size_t)(colon - spec);
	if (spec[0] == '[' && n >= 2 && spec[n - 1] == ']')
		spec++, n -= 2;
	if (n >= sizeof(host))
		return ERR_INVAL;
	memcpy(host, spec, n);
	host[n] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL)
		return ERR_INVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*v6 = ai->ai_family == AF_INET6;
	freeaddrinfo(ai);
	return 0;
}

static struct MHD_Daemon *start(struct httpd *h, const struct httpd_opts *o,
                                const char **why)
{
	unsigned flags =
	        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct sockaddr_storage ss;
	struct MHD_OptionItem where[2] = {{MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL}};
	int fd = -1, v6 = 0;
	const char *unix_path = strncmp(o->listen, "unix:", 5) == 0
	                                ? o->listen + 5
	                        : o->listen[0] == '/' ? o->listen
	                                              : NULL;
	struct MHD_Daemon *d;

	if (unix_path && (fd = unix_listen(h, unix_path, why)) < 0)
		return NULL;
	if (!unix_path && tcp_addr(o->listen, &ss, &v6) != 0) {
		*why = "not an address: give HOST:PORT (127.0.0.1:8080) or "
		       "unix:/path";
		return NULL;
	}
	where[0] = unix_path ? (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET,
	                                               fd, NULL}
	                     : (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0,
	                                               &ss};
	d = MHD_start_daemon(
	        flags | (v6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL, on_request, h,
	        /* first, so that every message comes to us */
	        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL, MHD_OPTION_ARRAY,
	        where, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	        MHD_OPTION_CONNECTION_LIMIT,
	        o->max_connections ? o->max_connections : 256u,
	        MHD_OPTION_CONNECTION_TIMEOUT,
	        o->timeout_s ? o->timeout_s : 60u,
	        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
	        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)SOMAXCONN,
	        MHD_OPTION_END);
	if (d == NULL) {
		*why = "cannot listen there (is the port in use?)";
		if (fd >= 0) {
			close(fd);
			unlink(h->unix_path);
			h->unix_path[0] = '\0';
		}
	}
	return d;
}

int httpd_create(uv_loop_t *loop, const struct httpd_opts *o, httpd_handler fn,
                 void *ud, struct httpd **out, const char **why)
{
	struct httpd *h = calloc(1, sizeof(*h));
	const union MHD_DaemonInfo *di;

	*out = NULL;
	*why = "out of memory";
	if (h == NULL)
		return ERR_NOMEM;
	h->loop = loop;
	h->fn = fn;
	h->ud = ud;
	h->max_body = o->max_body ? o->max_body : 1u << 20;
	if ((h->d = start(h, o, why)) == NULL) {
		free(h);
		return ERR_SYS;
	}
	di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = di && !h->unix_path[0] ? di->port : 0;
	di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	uv_poll_init(loop, &h->poll, di->epoll_fd);
	uv_timer_init(loop, &h->timer);
	h->poll.data = h->timer.data = h;
	uv_poll_start(&h->poll, UV_READABLE, on_poll);
	run(h);
	*out = h;
	return 0;
}

int httpd_port(const struct httpd *h)
{
	return h->port;
}

static void on_closed(uv_handle_t *t)
{
	struct httpd *h = t->data;

	if (--h->closes == 0)
		free(h);
}

void httpd_destroy(struct httpd *h)
{
	struct httpd_req *rq, *tmp;

	if (h == NULL)
		return;
	uv_poll_stop(&h->poll);
	/* MHD stops only once no connection is suspended. */
	DL_FOREACH_SAFE(h->waiting, rq, tmp)
	{
		DL_DELETE(h->waiting, rq);
		rq->suspended = 0;
		rq->h = NULL;
		MHD_resume_connection(rq->conn);
	}
	MHD_stop_daemon(h->d);
	if (h->unix_path[0])
		unlink(h->unix_path);
	h->closes = 2;
	uv_close((uv_handle_t *)&h->poll, on_closed);
	uv_close((uv_handle_t *)&h->timer, on_closed);
}
