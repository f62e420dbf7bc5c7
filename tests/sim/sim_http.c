/*
 * libmicrohttpd glue: collects a request, runs the handler under the
 * simulator lock, then carries out the fault decision (latency, error
 * status, reset, stall, malformed, truncated or slow body). One thread per
 * connection, so a delayed or stalled answer holds only its connection.
 */
#include "sim_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct upload {
	char *data;
	size_t len;
	int too_big;
};

struct listener {
	struct sim *sim;
};

static void sleep_ms(struct sim *s, int64_t ms)
{
	struct timespec ts;

	while (ms > 0 && !s->stopping) {
		int64_t step = ms > 100 ? 100 : ms;

		ts.tv_sec = 0;
		ts.tv_nsec = (long)(step * 1000000);
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
	char *q = cls;
	size_t len = strlen(q);

	(void)kind;
	snprintf(q + len, 512 - len, "%s%s=%s", len ? "&" : "", key,
	         value ? value : "");
	return MHD_YES;
}

/* Fills rq from the connection; query points into qbuf (512 bytes). */
static void read_request(struct MHD_Connection *c, const char *method,
                         const char *url, struct upload *up, char *qbuf,
                         struct sim_req *rq)
{
	const char *auth, *key;

	memset(rq, 0, sizeof(*rq));
	qbuf[0] = '\0';
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, qbuf);
	rq->method = method;
	rq->path = url;
	rq->query = qbuf;
	rq->body = up->data;
	rq->body_len = up->len;
	key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (auth && strncmp(auth, "Bearer ", 7) == 0)
		rq->bearer = auth + 7;
	/* Both header forms carry the API key (hopx-api.md §1). */
	rq->api_key = key ? key : rq->bearer;
}

static const char *status_code_name(int status)
{
	switch (status) {
	case 429:
		return "RATE_LIMIT_EXCEEDED";
	case 502:
		return "BAD_GATEWAY";
	case 503:
		return "SERVICE_UNAVAILABLE";
	default:
		return status >= 500 ? "INTERNAL_ERROR" : "INVALID_REQUEST";
	}
}

static void inject_status(struct sim_resp *rs,
                          const struct sim_fault_decision *d)
{
	char msg[96];

	if (d->status == 429)
		snprintf(msg, sizeof(msg), "Rate limit exceeded");
	else
		snprintf(msg, sizeof(msg), "Injected failure (HTTP %d)",
		         d->status);
	sim_error(rs, d->status, status_code_name(d->status), msg);
	rs->retry_after = d->retry_after;
	if (d->status == 429)
		cJSON_AddNumberToObject(rs->json, "retry_after",
		                        d->retry_after);
}

/* Runs the request under the lock; returns the fault to carry out. */
static void dispatch(struct listener *l, const struct sim_req *rq,
                     struct sim_resp *rs, struct sim_fault_decision *d)
{
	struct sim *s = l->sim;
	int admin = strncmp(rq->path, "/_sim/", 6) == 0;

	memset(d, 0, sizeof(*d));
	pthread_mutex_lock(&s->lock);
	snprintf(rs->request_id, sizeof(rs->request_id), "req_%08llx",
	         (unsigned long long)++s->next_request_id);
	if (admin) {
		sim_admin_handle(s, rq, rs);
	} else {
		sim_api_classify(s, rq, rs);
		sim_fault_decide(s, rq, rs, d);
		/* An injected error means the server never did the work. */
		if (d->action == SIM_ACT_STATUS)
			inject_status(rs, d);
		else if (d->action != SIM_ACT_RESET &&
		         d->action != SIM_ACT_STALL)
			sim_api_handle(s, rq, rs);
	}
	if (!admin)
		sim_log_add(s, rq, rs,
		            d->action ? sim_action_str(d->action) : NULL);
	pthread_mutex_unlock(&s->lock);
}

/* A body sent in pieces: slowly, or cut off half way. */
struct piecewise {
	struct sim *sim;
	char *text;
	size_t len;
	size_t stop_at; /* truncated: stop here with an error */
	int slow;
};

static ssize_t piece_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct piecewise *p = cls;
	size_t n = p->len - (size_t)pos;

	if ((size_t)pos >= p->stop_at)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (p->slow) {
		sleep_ms(p->sim, 50);
		n = n > 8 ? 8 : n;
	}
	if ((size_t)pos + n > p->stop_at)
		n = p->stop_at - (size_t)pos;
	if (n > max)
		n = max;
	memcpy(buf, p->text + pos, n);
	return (ssize_t)n;
}

static void piece_free(void *cls)
{
	struct piecewise *p = cls;

	free(p->text);
	free(p);
}

static struct MHD_Response *make_body(struct sim *s, char *text,
                                      enum sim_action act)
{
	struct piecewise *p;
	size_t len = strlen(text);

	if (act != SIM_ACT_TRUNCATED && act != SIM_ACT_SLOW)
		return MHD_create_response_from_buffer(len, text,
		                                       MHD_RESPMEM_MUST_FREE);
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		free(text);
		return NULL;
	}
	p->sim = s;
	p->text = text;
	p->len = len;
	p->stop_at = act == SIM_ACT_TRUNCATED ? len / 2 : len;
	p->slow = act == SIM_ACT_SLOW;
	return MHD_create_response_from_callback(len, 1024, piece_cb, p,
	                                         piece_free);
}

/* The Date header on the simulator's clock (moved by POST /_sim/time), as
 * HopX's own Date tells a client HopX's time. */
static void add_date(struct sim *s, struct MHD_Response *r)
{
	time_t t = (time_t)(sim_now(s) / 1000);
	struct tm tm;
	char buf[64];

	if (gmtime_r(&t, &tm) &&
	    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0)
		MHD_add_response_header(r, "Date", buf);
}

static void add_headers(struct sim *s, struct MHD_Response *r,
                        const struct sim_resp *rs, int v1)
{
	char buf[32];

	add_date(s, r);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "X-Request-ID", rs->request_id);
	if (rs->retry_after > 0) {
		snprintf(buf, sizeof(buf), "%d", rs->retry_after);
		MHD_add_response_header(r, "Retry-After", buf);
	}
	if (!v1)
		return;
	snprintf(buf, sizeof(buf), "%d",
	         s->faults.rate_limit_rpm ? s->faults.rate_limit_rpm : 100);
	MHD_add_response_header(r, "X-RateLimit-Limit", buf);
	snprintf(buf, sizeof(buf), "%lld",
	         (long long)((sim_now(s) / 60000 + 1) * 60));
	MHD_add_response_header(r, "X-RateLimit-Reset", buf);
}

/* Closes the connection with a TCP reset instead of an answer. */
static enum MHD_Result reset(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct linger lg = {1, 0};

	if (ci)
		setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg,
		           sizeof(lg));
	return MHD_NO;
}

static enum MHD_Result respond(struct sim *s, struct MHD_Connection *c,
                               const struct sim_req *rq, struct sim_resp *rs,
                               const struct sim_fault_decision *d)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char *text;

	if (d->action == SIM_ACT_RESET)
		return reset(c);
	if (d->action == SIM_ACT_STALL) {
		sleep_ms(s, 3600 * 1000);
		return MHD_NO;
	}
	if (d->action == SIM_ACT_MALFORMED)
		text = strdup("{\"id\":\"sbx\",\"status\":\"runn");
	else
		text = cJSON_PrintUnformatted(rs->json ? rs->json
		                                       : cJSON_CreateObject());
	if (text == NULL || (r = make_body(s, text, d->action)) == NULL)
		return MHD_NO;
	add_headers(s, r, rs, strncmp(rq->path, "/v1/", 4) == 0);
	ret = MHD_queue_response(c, (unsigned)rs->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *size, void **ctx)
{
	struct listener *l = cls;
	struct upload *up = *ctx;
	struct sim_fault_decision d;
	struct sim_resp rs;
	struct sim_req rq;
	char qbuf[512];
	enum MHD_Result ret;

	(void)version;
	if (up == NULL) {
		*ctx = up = calloc(1, sizeof(*up));
		return up ? MHD_YES : MHD_NO;
	}
	if (*size > 0) {
		char *p = NULL;

		if (up->len + *size > SIM_BODY_MAX ||
		    (p = realloc(up->data, up->len + *size + 1)) == NULL)
			up->too_big = 1;
		else {
			memcpy(p + up->len, data, *size);
			up->data = p;
			up->len += *size;
		}
		*size = 0;
		return MHD_YES;
	}
	read_request(c, method, url, up, qbuf, &rq);
	memset(&rs, 0, sizeof(rs));
	if (up->too_big) {
		sim_error(&rs, 413, "INVALID_REQUEST",
		          "Request body too large");
		memset(&d, 0, sizeof(d));
	} else {
		dispatch(l, &rq, &rs, &d);
	}
	sleep_ms(l->sim, d.delay_ms);
	ret = respond(l->sim, c, &rq, &rs, &d);
	cJSON_Delete(rs.json);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx,
                    enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *ctx;

	(void)cls;
	(void)c;
	(void)toe;
	if (up) {
		free(up->data);
		free(up);
		*ctx = NULL;
	}
}

struct sim_http {
	struct MHD_Daemon *d;
	struct listener l;
};

int sim_http_parse_listen(const char *listen, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(listen, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

struct MHD_Daemon *sim_http_daemon(struct sim *s, const struct sockaddr_in *sa,
                                   unsigned flags, MHD_AccessHandlerCallback fn,
                                   void *cls, MHD_RequestCompletedCallback done)
{
	return MHD_start_daemon(
	        flags | MHD_USE_THREAD_PER_CONNECTION |
	                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	                (s->cfg.quiet ? 0 : MHD_USE_ERROR_LOG),
	        0, NULL, NULL, fn, cls, MHD_OPTION_SOCK_ADDR, sa,
	        MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
	        MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
	        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
	        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
}

int sim_http_start(struct sim *s, const char *listen, struct sim_http **out,
                   int *port)
{
	struct sim_http *h = calloc(1, sizeof(*h));
	const union MHD_DaemonInfo *di;
	struct sockaddr_in sa;

	if (h == NULL || sim_http_parse_listen(listen, &sa) != 0) {
		fprintf(stderr,
		        "hopx-sim: bad listen address '%s' (want "
		        "HOST:PORT, IPv4)\n",
		        listen);
		free(h);
		return -1;
	}
	h->l.sim = s;
	h->d = sim_http_daemon(s, &sa, 0, on_request, &h->l, on_done);
	if (h->d == NULL) {
		fprintf(stderr, "hopx-sim: cannot listen on %s\n", listen);
		free(h);
		return -1;
	}
	di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	*port = di ? di->port : 0;
	*out = h;
	return 0;
}

void sim_http_stop(struct sim_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
