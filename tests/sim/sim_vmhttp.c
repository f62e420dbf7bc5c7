/*
 * libmicrohttpd glue of the sandbox agent: finds the sandbox (its own host,
 * or /sandbox/{id}/... on the shared listener), admits the call (running,
 * token of that sandbox), then answers JSON calls from sim_vm.c, streams
 * uploads into a file and downloads out of one without holding either in
 * memory, or hands an upgraded connection to sim_ws.c. One thread per
 * connection: a slow client holds only its own.
 */
#include "sim_vmhttp.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim_files.h"
#include "sim_http.h"
#include "sim_vm.h"
#include "sim_vmhost.h"
#include "sim_ws.h"

/* A JSON call's body (base64 file contents included). */
#define JSON_MAX (32 << 20)

struct sim_vmhttp {
	struct sim *sim;
	struct MHD_Daemon *d;
	struct MHD_Daemon *tls; /* the sandbox hosts, with --tls-cert */
	char *cert, *key;       /* PEM, kept while tls runs */
};

struct vmreq {
	const struct sim_vm_route *route;
	char id[SIM_ID_MAX];
	char path[1100];
	struct sim_resp rs; /* the refusal, when refused */
	int refused;
	char *body; /* JSON calls */
	size_t len;
	int upfd; /* uploads: the temp file */
	char tmp[2048];
	uint64_t bytes;
	struct MHD_PostProcessor *pp;
	int failed;
};

/* The sandbox and the agent path of a request. */
static int locate(struct sim *s, struct MHD_Connection *c, const char *url,
                  struct vmreq *v, const char **rest)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	int n = ci ? sim_vmhost_of(ci->connect_fd) : 0;
	const char *slash;

	if (n > 0) {
		struct sim_sandbox *sb;

		pthread_mutex_lock(&s->lock);
		sb = sim_vmhost_sandbox(s, n);
		snprintf(v->id, sizeof(v->id), "%s", sb ? sb->id : "gone");
		pthread_mutex_unlock(&s->lock);
		*rest = url;
		return 0;
	}
	if (strncmp(url, "/sandbox/", 9) != 0 ||
	    (slash = strchr(url + 9, '/')) == NULL ||
	    (size_t)(slash - url - 9) >= sizeof(v->id))
		return -1;
	snprintf(v->id, sizeof(v->id), "%.*s", (int)(slash - url - 9), url + 9);
	*rest = slash;
	return 0;
}

static void fill_req(struct MHD_Connection *c, const char *method,
                     const char *url, const struct vmreq *v, struct sim_req *rq)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                               "Authorization");

	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->path = url;
	rq->bearer = auth && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
	rq->body = v ? v->body : NULL;
	rq->body_len = v ? v->len : 0;
	rq->file_path =
	        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "path");
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *filename,
                               const char *type, const char *enc,
                               const char *data, uint64_t off, size_t size)
{
	struct vmreq *v = cls;

	(void)kind;
	(void)filename;
	(void)type;
	(void)enc;
	if (strcmp(key, "path") == 0) {
		size_t len = strlen(v->path);

		if (off != len || len + size >= sizeof(v->path))
			return MHD_NO;
		memcpy(v->path + len, data, size);
		v->path[len + size] = '\0';
	} else if (strcmp(key, "file") == 0 && size > 0) {
		if (write(v->upfd, data, size) != (ssize_t)size)
			return MHD_NO;
		v->bytes += size;
	}
	return MHD_YES;
}

static int upload_begin(struct sim *s, struct MHD_Connection *c,
                        struct vmreq *v)
{
	const char *ct =
	        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	const char *p =
	        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "path");

	if ((v->upfd = sim_files_temp(s, v->tmp, sizeof(v->tmp))) < 0)
		return -1;
	if (p)
		snprintf(v->path, sizeof(v->path), "%s", p);
	if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0 &&
	    (v->pp = MHD_create_post_processor(c, 65536, on_part, v)) == NULL)
		return -1;
	return 0;
}

/* First call: where it goes and whether it may. */
static struct vmreq *begin(struct sim *s, struct MHD_Connection *c,
                           const char *url, const char *method)
{
	struct vmreq *v = calloc(1, sizeof(*v));
	const char *rest = NULL;
	struct sim_req rq;

	if (v == NULL)
		return NULL;
	v->upfd = -1;
	fill_req(c, method, url, NULL, &rq);
	if (locate(s, c, url, v, &rest) != 0 ||
	    (v->route = sim_vm_route(method, rest)) == NULL) {
		v->refused = 1;
		v->rs.route = "VM unknown";
		sim_error(&v->rs, 404, "RESOURCE_NOT_FOUND", "Not found");
		return v;
	}
	v->rs.route = v->route->name;
	pthread_mutex_lock(&s->lock);
	snprintf(v->rs.request_id, sizeof(v->rs.request_id), "req_%08llx",
	         (unsigned long long)++s->next_request_id);
	v->refused = sim_vm_admit(s, v->id, rq.bearer, &v->rs) != 0;
	pthread_mutex_unlock(&s->lock);
	if (!v->refused && v->route->kind == SIM_VM_UPLOAD &&
	    upload_begin(s, c, v) != 0)
		v->failed = 500;
	return v;
}

/* A piece of the body. */
static void take(struct vmreq *v, const char *data, size_t n)
{
	if (v->refused || v->failed)
		return; /* read and dropped */
	if (v->route->kind == SIM_VM_JSON) {
		char *p = v->len + n <= JSON_MAX
		                  ? realloc(v->body, v->len + n + 1)
		                  : NULL;

		if (p == NULL) {
			v->failed = 413;
			return;
		}
		memcpy(p + v->len, data, n);
		v->body = p;
		v->len += n;
		v->body[v->len] = '\0';
		return;
	}
	if (v->route->kind != SIM_VM_UPLOAD)
		v->failed = 400;
	else if (v->pp ? MHD_post_process(v->pp, data, n) != MHD_YES
	               : write(v->upfd, data, n) != (ssize_t)n)
		v->failed = 400;
	else if (v->pp == NULL)
		v->bytes += n;
}

static enum MHD_Result send_json(struct MHD_Connection *c, struct sim_resp *rs)
{
	char *text = cJSON_PrintUnformatted(rs->json ? rs->json
	                                             : cJSON_CreateObject());
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (text == NULL ||
	    (r = MHD_create_response_from_buffer(
	             strlen(text), text, MHD_RESPMEM_MUST_FREE)) == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "X-Request-ID", rs->request_id);
	ret = MHD_queue_response(c, (unsigned)rs->status, r);
	MHD_destroy_response(r);
	return ret;
}

static void upload_end(struct sim *s, struct vmreq *v, struct sim_resp *rs)
{
	char name[2048];
	cJSON *o;

	if (v->pp && MHD_destroy_post_processor(v->pp) != MHD_YES)
		v->failed = 400;
	v->pp = NULL;
	if (v->failed == 0 &&
	    sim_files_path(s, v->id, v->path, name, sizeof(name)) != 0)
		v->failed = 400;
	if (v->failed == 0 && (close(v->upfd) != 0 || rename(v->tmp, name)))
		v->failed = 500;
	v->upfd = -1;
	if (v->failed) {
		sim_error(rs, v->failed, "INVALID_REQUEST",
		          v->failed == 400 ? "want a file and an absolute path"
		                           : "cannot store the file");
		return;
	}
	v->tmp[0] = '\0';
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", v->path);
	cJSON_AddNumberToObject(o, "size", (double)v->bytes);
	cJSON_AddBoolToObject(o, "success", 1);
	rs->status = 200;
	rs->json = o;
}

static enum MHD_Result download(struct sim *s, struct MHD_Connection *c,
                                struct vmreq *v, const char *path,
                                struct sim_resp *rs)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char name[2048];
	struct stat st;
	int fd = -1;

	if (sim_files_path(s, v->id, path, name, sizeof(name)) != 0 ||
	    (fd = open(name, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		if (fd >= 0)
			close(fd);
		sim_error(rs, 404, "FILE_NOT_FOUND", "File not found");
		return send_json(c, rs);
	}
	if ((r = MHD_create_response_from_fd((uint64_t)st.st_size, fd)) ==
	    NULL) {
		close(fd);
		return MHD_NO;
	}
	rs->status = 200;
	MHD_add_response_header(r, "Content-Type", "application/octet-stream");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

struct ws_start {
	struct sim *sim;
	char id[SIM_ID_MAX];
	const char *endpoint;
	MHD_socket sock;
	struct MHD_UpgradeResponseHandle *urh;
	char *extra;
	size_t extra_len;
};

static void *ws_thread(void *arg)
{
	struct ws_start *w = arg;

	sim_ws_serve(w->sim, w->id, w->endpoint, w->sock, w->extra,
	             w->extra_len);
	MHD_upgrade_action(w->urh, MHD_UPGRADE_ACTION_CLOSE);
	free(w->extra);
	free(w);
	return NULL;
}

/* The connection's socket sends each message as it is written:
 * libmicrohttpd may have left it corked after the 101 (over TLS, the ws
 * thread writes to a socket pair and this is the socket behind it). */
static void uncork(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	int off = 0, on = 1;

	if (ci == NULL)
		return;
	setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
	setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* Plain, the WebSocket runs on the connection's own thread; over TLS, on
 * a thread of its own, for the connection's thread carries the bytes
 * between the TLS session and sock once this returns. */
static void on_upgraded(void *cls, struct MHD_Connection *c, void *con_cls,
                        const char *extra, size_t extra_len, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
	struct ws_start *w = cls;
	pthread_attr_t at;
	pthread_t th;

	(void)con_cls;
	uncork(c);
	if (MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION) ==
	    NULL) {
		sim_ws_serve(w->sim, w->id, w->endpoint, sock, extra,
		             extra_len);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		free(w);
		return;
	}
	w->sock = sock;
	w->urh = urh;
	w->extra_len = extra_len;
	if ((w->extra = malloc(extra_len ? extra_len : 1)) == NULL ||
	    pthread_attr_init(&at) != 0) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		free(w->extra);
		free(w);
		return;
	}
	memcpy(w->extra, extra, extra_len);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, ws_thread, w) != 0) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		free(w->extra);
		free(w);
	}
	pthread_attr_destroy(&at);
}

static int has_token(const char *list, const char *tok)
{
	size_t n = strlen(tok);

	for (const char *p = list; p && *p; p++)
		if (strncasecmp(p, tok, n) == 0)
			return 1;
	return 0;
}

static enum MHD_Result upgrade(struct sim *s, struct MHD_Connection *c,
                               struct vmreq *v, struct sim_resp *rs)
{
	const char *up =
	        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
	const char *conn =
	        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Connection");
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                              "Sec-WebSocket-Key");
	struct ws_start *w;
	struct MHD_Response *r;
	enum MHD_Result ret;
	char accept[64];

	if (up == NULL || strcasecmp(up, "websocket") != 0 ||
	    !has_token(conn, "upgrade") ||
	    sim_ws_accept_key(key, accept, sizeof(accept)) != 0) {
		sim_error(rs, 400, "INVALID_REQUEST",
		          "a WebSocket upgrade is expected here");
		return send_json(c, rs);
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return MHD_NO;
	w->sim = s;
	snprintf(w->id, sizeof(w->id), "%s", v->id);
	w->endpoint = v->route->path;
	if ((r = MHD_create_response_for_upgrade(on_upgraded, w)) == NULL) {
		free(w);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
	MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
	rs->status = 101;
	ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
	MHD_destroy_response(r);
	return ret;
}

/* The last call: the answer. */
static enum MHD_Result finish(struct sim *s, struct MHD_Connection *c,
                              const char *method, const char *url,
                              struct vmreq *v)
{
	struct sim_resp rs = v->rs; /* the refusal's body, if any, moves */
	enum MHD_Result ret = MHD_NO;
	struct sim_req rq;

	v->rs.json = NULL;
	fill_req(c, method, url, v, &rq);
	if (v->refused) {
		ret = send_json(c, &rs);
	} else if (v->failed == 413) {
		sim_error(&rs, 413, "INVALID_REQUEST",
		          "Request body too large");
		ret = send_json(c, &rs);
	} else if (v->route->kind == SIM_VM_JSON) {
		v->route->fn(s, v->id, &rq, &rs);
		ret = send_json(c, &rs);
	} else if (v->route->kind == SIM_VM_UPLOAD) {
		upload_end(s, v, &rs);
		ret = send_json(c, &rs);
	} else if (v->route->kind == SIM_VM_DOWNLOAD) {
		ret = download(s, c, v, rq.file_path, &rs);
	} else {
		ret = upgrade(s, c, v, &rs);
	}
	pthread_mutex_lock(&s->lock);
	sim_log_add(s, &rq, &rs, NULL);
	pthread_mutex_unlock(&s->lock);
	cJSON_Delete(rs.json);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *size, void **ctx)
{
	struct sim_vmhttp *h = cls;
	struct vmreq *v = *ctx;

	(void)version;
	if (v == NULL) {
		*ctx = v = begin(h->sim, c, url, method);
		return v ? MHD_YES : MHD_NO;
	}
	if (*size > 0) {
		take(v, data, *size);
		*size = 0;
		return MHD_YES;
	}
	return finish(h->sim, c, method, url, v);
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx,
                    enum MHD_RequestTerminationCode toe)
{
	struct vmreq *v = *ctx;

	(void)cls;
	(void)c;
	(void)toe;
	if (v == NULL)
		return;
	if (v->pp)
		MHD_destroy_post_processor(v->pp);
	if (v->upfd >= 0)
		close(v->upfd);
	if (v->tmp[0])
		unlink(v->tmp);
	cJSON_Delete(v->rs.json);
	free(v->body);
	free(v);
	*ctx = NULL;
}

static void add_conn(void *ud, int fd, struct sockaddr *peer, socklen_t len)
{
	struct sim_vmhttp *h = ud;

	/* It closes fd itself when it cannot take it. */
	MHD_add_connection(h->tls ? h->tls : h->d, fd, peer, len);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = f ? malloc(65536) : NULL;
	size_t n = buf ? fread(buf, 1, 65535, f) : 0;

	if (f)
		fclose(f);
	if (buf == NULL || n == 0 || n == 65535) {
		fprintf(stderr,
		        "hopx-sim: cannot read %s (a PEM file under "
		        "64 KiB)\n",
		        path);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The sandbox hosts' daemon when they speak TLS: no listener of its own,
 * it takes the connections sim_vmhost.c accepts. */
static int start_tls(struct sim_vmhttp *h)
{
	struct sim *s = h->sim;

	if (!s->cfg.tls_cert[0])
		return 0;
	if ((h->cert = slurp(s->cfg.tls_cert)) == NULL ||
	    (h->key = slurp(s->cfg.tls_key)) == NULL)
		return -1;
	h->tls = MHD_start_daemon(
	        MHD_USE_TLS | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC |
	                MHD_ALLOW_UPGRADE | MHD_USE_THREAD_PER_CONNECTION |
	                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	                (s->cfg.quiet ? 0 : MHD_USE_ERROR_LOG),
	        0, NULL, NULL, on_request, h, MHD_OPTION_NOTIFY_COMPLETED,
	        on_done, NULL, MHD_OPTION_HTTPS_MEM_CERT, h->cert,
	        MHD_OPTION_HTTPS_MEM_KEY, h->key, MHD_OPTION_CONNECTION_LIMIT,
	        (unsigned)4096, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
	        MHD_OPTION_END);
	if (h->tls == NULL) {
		fprintf(stderr, "hopx-sim: cannot serve TLS with %s and %s\n",
		        s->cfg.tls_cert, s->cfg.tls_key);
		return -1;
	}
	return 0;
}

static void free_vmhttp(struct sim_vmhttp *h)
{
	if (h->tls)
		MHD_stop_daemon(h->tls);
	if (h->d)
		MHD_stop_daemon(h->d);
	free(h->cert);
	free(h->key);
	free(h);
}

int sim_vmhttp_start(struct sim *s, const char *listen, struct sim_vmhttp **out,
                     int *port)
{
	struct sim_vmhttp *h = calloc(1, sizeof(*h));
	const union MHD_DaemonInfo *di;
	struct sockaddr_in sa;

	if (h == NULL || sim_http_parse_listen(listen, &sa) != 0) {
		fprintf(stderr, "hopx-sim: bad agent listen address '%s'\n",
		        listen);
		free(h);
		return -1;
	}
	h->sim = s;
	h->d = sim_http_daemon(s, &sa, MHD_USE_ITC | MHD_ALLOW_UPGRADE,
	                       on_request, h, on_done);
	if (h->d == NULL) {
		fprintf(stderr, "hopx-sim: cannot listen on %s\n", listen);
		free(h);
		return -1;
	}
	di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	*port = di ? di->port : 0;
	if (start_tls(h) != 0) {
		free_vmhttp(h);
		return -1;
	}
	if (sim_vmhost_start(s, *port, add_conn, h) != 0) {
		fprintf(stderr, "hopx-sim: cannot serve sandbox hosts\n");
		free_vmhttp(h);
		return -1;
	}
	*out = h;
	return 0;
}

void sim_vmhttp_stop(struct sim_vmhttp *h)
{
	if (h == NULL)
		return;
	sim_vmhost_stop(h->sim);
	free_vmhttp(h);
}
