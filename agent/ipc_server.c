/* SO_PEERCRED and struct ucred are Linux extensions. */
#define _GNU_SOURCE
#include "ipc_server.h"

#include "agent.h"
#include "buf.h"
#include "err.h"
#include "heap.h"
#include "leases.h"
#include "log.h"
#include "methods.h"
#include "paths.h"
#include "proto.h"
#include "proxy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <utlist.h>

struct ipc_conn {
	uv_pipe_t pipe;
	uv_timer_t idle;
	struct ipc_server *srv;
	struct buf in;
	int open_handles; /* freed when both handles have closed ... */
	int holds;        /* ... and no deferred reply still refers to it */
	int closing;
	int draining; /* a fatal error is being flushed; ignore input */
	int reading;
	cJSON *sub_id; /* non-NULL: a subscriber */
	long pid;      /* the peer's, from SO_PEERCRED */
	int kept;      /* holds a lease: never closed for being quiet */
	int64_t sub_seq;
	struct ipc_conn *prev, *next;
};

struct ipc_server {
	struct agent *a;
	uv_pipe_t listener;
	int listening;
	int bound; /* we created the socket file and remove it */
	char path[108];
	struct ipc_conn *conns;
	size_t nconns;
	size_t nsubs;
	size_t live; /* connections not yet freed (closing ones too) */
	size_t peak; /* most live since the heap was last trimmed */
	int corked;  /* replies wait on held until uncorked */
	struct write_req *held, *held_tail;
};

struct write_req {
	uv_write_t req;
	char *text;
	size_t len;
	struct ipc_conn *c;     /* while held */
	struct write_req *next; /* held */
};

/* Reading pauses above this much queued output and resumes below half. */
#define OUT_HIGH (1024 * 1024)

/*
 * Once this many connections have come and three quarters of them have
 * gone, the heap is trimmed: their buffers and queues (up to 64 MiB of
 * subscriber queues) would otherwise stay with the process for good.
 */
#define TRIM_PEAK 256

static void set_cause(char **cause, const char *fmt, ...) LOG_PRINTF(2, 3);

static void set_cause(char **cause, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*cause = strdup(msg);
}

/* ---- connections ---- */

static void conn_maybe_free(struct ipc_conn *c)
{
	struct ipc_server *s = c->srv;

	if (c->open_handles > 0 || c->holds > 0)
		return;
	buf_finish(&c->in);
	cJSON_Delete(c->sub_id);
	free(c);
	s->live--;
	if (s->peak >= TRIM_PEAK && s->live <= s->peak / 4) {
		heap_trim();
		s->peak = s->live;
	}
}

static void conn_free(uv_handle_t *h)
{
	struct ipc_conn *c = h->data;

	c->open_handles--;
	conn_maybe_free(c);
}

static void conn_close(struct ipc_conn *c)
{
	struct ipc_server *s = c->srv;

	if (c->closing)
		return;
	c->closing = 1;
	DL_DELETE(s->conns, c);
	s->nconns--;
	if (c->sub_id)
		s->nsubs--;
	leases_conn_closed(s->a, c);
	if (s->a->proxy)
		proxy_owner_gone(s->a->proxy, c);
	uv_close((uv_handle_t *)&c->idle, conn_free);
	uv_close((uv_handle_t *)&c->pipe, conn_free);
}

static size_t queued(const struct ipc_conn *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
}

/*
 * All subscribers together may hold this much unsent: each gets an even
 * share (never above --max-queue, never below the floor), so memory stays
 * bounded however many subscribe and stop reading.
 */
#define SUBS_QUEUE_TOTAL (64u << 20)
#define SUB_QUEUE_FLOOR  (16u << 10)

static size_t sub_cap(const struct ipc_server *s)
{
	size_t share = SUBS_QUEUE_TOTAL / (s->nsubs ? s->nsubs : 1);
	size_t cap = (size_t)s->a->cfg.max_queue;

	cap = share < cap ? share : cap;
	return cap > SUB_QUEUE_FLOOR ? cap : SUB_QUEUE_FLOOR;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

static void reading(struct ipc_conn *c, int on)
{
	if (c->closing || c->reading == on)
		return;
	c->reading = on;
	if (on)
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	else
		uv_read_stop((uv_stream_t *)&c->pipe);
}

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct ipc_conn *c = req->handle->data;

	free(w->text);
	free(w);
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (!c->sub_id && !c->draining && queued(c) < OUT_HIGH / 2)
		reading(c, 1);
}

static int write_now(struct ipc_conn *c, struct write_req *w)
{
	uv_buf_t b = uv_buf_init(w->text, (unsigned)w->len);

	if (c->closing || uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1,
	                           on_written) != 0) {
		free(w->text);
		free(w);
		if (c->closing)
			return ERR_STATE;
		conn_close(c);
		return ERR_NET;
	}
	return 0;
}

int ipc_conn_send(struct ipc_conn *c, char *text, size_t len)
{
	struct ipc_server *s = c->srv;
	struct write_req *w;

	if (text == NULL)
		return ERR_NOMEM;
	if (c->closing || (w = calloc(1, sizeof(*w))) == NULL) {
		free(text);
		return c->closing ? ERR_STATE : ERR_NOMEM;
	}
	w->text = text;
	w->len = len;
	if (!s->corked)
		return write_now(c, w);
	w->c = c;
	c->holds++;
	if (s->held_tail)
		s->held_tail->next = w;
	else
		s->held = w;
	s->held_tail = w;
	return 0;
}

void ipc_server_cork(struct ipc_server *s, int on)
{
	struct write_req *w;
	struct ipc_conn *c;

	if (s == NULL)
		return;
	s->corked = on;
	while (!on && (w = s->held) != NULL) {
		s->held = w->next;
		c = w->c;
		w->next = NULL;
		write_now(c, w);
		c->holds--;
		conn_maybe_free(c);
	}
	if (!on)
		s->held_tail = NULL;
}

void ipc_conn_hold(struct ipc_conn *c)
{
	c->holds++;
}

void ipc_conn_release(struct ipc_conn *c)
{
	c->holds--;
	conn_maybe_free(c);
}

static void on_linger_end(uv_timer_t *t)
{
	conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct ipc_conn *c = req->handle->data;

	free(req);
	if (status < 0 && !c->closing)
		conn_close(c);
}

/*
 * Sends an error reply, then closes. uv_close would cancel the queued
 * write, so the write side is shut down instead (flushing the reply), and
 * input is read and discarded until the peer closes or 2 s pass: closing
 * with unread input would make the kernel reset the connection before the
 * peer reads the reply.
 */
static void send_fatal(struct ipc_conn *c, int code, const char *msg)
{
	uv_shutdown_t *req = calloc(1, sizeof(*req));
	size_t len = 0;
	char *text = proto_error(NULL, code, msg, &len);

	ipc_conn_send(c, text, len);
	if (c->closing) {
		free(req);
		return;
	}
	c->draining = 1;
	reading(c, 1);
	uv_timer_start(&c->idle, on_linger_end, 2000, 0);
	if (req == NULL ||
	    uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
		free(req);
		conn_close(c);
	}
}

static void on_idle(uv_timer_t *t)
{
	struct ipc_conn *c = t->data;

	/* A client waiting for a deferred reply is not idle. */
	if (c->sub_id == NULL && c->holds == 0 && !c->kept) {
		log_debug("closing a connection idle for %d s",
		          c->srv->a->cfg.idle_timeout_s);
		conn_close(c);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char chunk[65536]; /* the loop is single-threaded */

	(void)h;
	(void)hint;
	*b = uv_buf_init(chunk, sizeof(chunk));
}

/* Answers every complete line in the input buffer. */
static void drain_lines(struct ipc_conn *c)
{
	const char *line;
	size_t len, used;
	int r;

	while (!c->closing && !c->draining &&
	       (r = proto_next_line(&c->in, &line, &len, &used)) == 0) {
		if (len > 0)
			methods_dispatch(c->srv->a, c, line, len);
		buf_consume(&c->in, used);
	}
	if (!c->closing && !c->draining && r == ERR_TOOBIG)
		send_fatal(c, ERR_TOOBIG, "message larger than 1 MiB");
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct ipc_conn *c = st->data;

	if (n < 0) {
		conn_close(c);
		return;
	}
	if (n == 0 || c->draining) /* draining: discard until the peer closes */
		return;
	uv_timer_again(&c->idle);
	if (buf_append(&c->in, b->base, (size_t)n) != 0) {
		send_fatal(c, ERR_TOOBIG, "message larger than 1 MiB");
		return;
	}
	drain_lines(c);
	if (!c->closing && !c->sub_id && queued(c) > OUT_HIGH)
		reading(c, 0); /* backpressure: answer what is queued first */
}

/* ---- accepting ---- */

/* The peer's uid must be ours (or root's), as ssh-agent checks. */
static int peer_allowed(struct ipc_conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return 0;
	c->pid = (long)cred.pid;
	if (cred.uid == geteuid() || cred.uid == 0)
		return 1;
	log_warn("refused a connection from uid %lu (pid %ld)",
	         (unsigned long)cred.uid, (long)cred.pid);
	return 0;
}

static struct ipc_conn *conn_new(struct ipc_server *s)
{
	struct ipc_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->srv = s;
	buf_init(&c->in, PROTO_MAX);
	uv_pipe_init(s->a->loop, &c->pipe, 0);
	uv_timer_init(s->a->loop, &c->idle);
	c->pipe.data = c;
	c->idle.data = c;
	c->open_handles = 2;
	DL_APPEND(s->conns, c);
	s->nconns++;
	if (++s->live > s->peak)
		s->peak = s->live;
	return c;
}

static void on_connection(uv_stream_t *l, int status)
{
	struct ipc_server *s = l->data;
	struct ipc_conn *c;
	uint64_t idle_ms = (uint64_t)s->a->cfg.idle_timeout_s * 1000;

	if (status < 0 || (c = conn_new(s)) == NULL) {
		log_warn("accept failed: %s", uv_strerror(status));
		return;
	}
	if (uv_accept(l, (uv_stream_t *)&c->pipe) != 0) {
		conn_close(c);
		return;
	}
	if (!peer_allowed(c)) {
		send_fatal(c, ERR_PERM, "permission denied: not your agent");
		return;
	}
	if (s->nconns > (size_t)s->a->cfg.max_connections) {
		send_fatal(c, ERR_BUSY, "too many connections");
		return;
	}
	uv_timer_start(&c->idle, on_idle, idle_ms, idle_ms);
	reading(c, 1);
}

/* ---- the socket file ---- */

/* The socket's directory: made 0700, or ours and private already. */
static int check_dir(const char *path, char **cause)
{
	char dir[108], failed[108];
	struct stat sb;
	char *slash;
	int r;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if ((r = paths_make_parents(path, failed, sizeof(failed))) != 0) {
		set_cause(cause, "cannot create %s: %s", failed, err_str(r));
		return r;
	}
	if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
	    sb.st_uid != geteuid() || (sb.st_mode & 077) != 0) {
		set_cause(cause,
		          "unsafe socket directory %s: it must be a directory "
		          "owned by you with mode 0700",
		          dir);
		return ERR_PERM;
	}
	return 0;
}

/*
 * An existing socket file: a live agent answers a connect and is never
 * touched; a dead agent's socket (connection refused) is removed.
 */
static int clear_stale(const char *path, char **cause)
{
	struct sockaddr_un sa;
	struct stat sb;
	int fd, r;

	if (lstat(path, &sb) != 0)
		return errno == ENOENT ? 0 : ERR_SYS;
	if (!S_ISSOCK(sb.st_mode) || sb.st_uid != geteuid()) {
		set_cause(cause, "%s exists and is not a socket of yours",
		          path);
		return ERR_EXISTS;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return ERR_SYS;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0) {
		set_cause(cause, "another hopxd is already listening on %s",
		          path);
		return ERR_EXISTS;
	}
	log_info("removing stale socket %s", path);
	return unlink(path) == 0 ? 0 : ERR_SYS;
}

static int bind_path(struct ipc_server *s, const char *path, char **cause)
{
	mode_t old;
	int r;

	if (strlen(path) >= sizeof(s->path)) {
		/* libuv 1.44 would truncate silently: check it here. */
		set_cause(cause, "socket path %s is longer than 107 bytes",
		          path);
		return ERR_TOOBIG;
	}
	if ((r = check_dir(path, cause)) != 0 ||
	    (r = clear_stale(path, cause)) != 0)
		return r;
	old = umask(0177); /* born 0600: no window for a chmod race */
	r = uv_pipe_bind(&s->listener, path);
	umask(old);
	if (r != 0) {
		set_cause(cause, "cannot bind %s: %s", path, uv_strerror(r));
		return ERR_SYS;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->bound = 1;
	return 0;
}

int ipc_server_start(struct agent *a, int fd, struct ipc_server **out,
                     char **cause)
{
	struct ipc_server *s = calloc(1, sizeof(*s));
	int r;

	*out = NULL;
	if (s == NULL)
		return ERR_NOMEM;
	s->a = a;
	uv_pipe_init(a->loop, &s->listener, 0);
	s->listener.data = s;
	s->listening = 1;
	if (fd >= 0)
		r = uv_pipe_open(&s->listener, fd) == 0 ? 0 : ERR_SYS;
	else
		r = bind_path(s, a->cfg.socket, cause);
	if (r == 0 && uv_listen((uv_stream_t *)&s->listener, SOMAXCONN,
	                        on_connection) != 0) {
		set_cause(cause, "cannot listen on %s", a->cfg.socket);
		r = ERR_SYS;
	}
	if (r != 0) {
		ipc_server_close(s);
		uv_run(a->loop, UV_RUN_NOWAIT);
		ipc_server_destroy(s);
		return r;
	}
	*out = s;
	return 0;
}

void ipc_server_close(struct ipc_server *s)
{
	struct ipc_conn *c, *tmp;

	if (s == NULL)
		return;
	DL_FOREACH_SAFE(s->conns, c, tmp)
	conn_close(c);
	if (s->listening) {
		s->listening = 0;
		uv_close((uv_handle_t *)&s->listener, NULL);
	}
	if (s->bound) {
		unlink(s->path);
		s->bound = 0;
	}
}

void ipc_server_destroy(struct ipc_server *s)
{
	free(s);
}

size_t ipc_server_connections(const struct ipc_server *s)
{
	return s->nconns;
}

long ipc_conn_pid(const struct ipc_conn *c)
{
	return c->pid;
}

void ipc_conn_keep(struct ipc_conn *c)
{
	uv_timer_stop(&c->idle);
	c->kept = 1;
}

size_t ipc_server_subscribers(const struct ipc_server *s)
{
	return s->nsubs;
}

void ipc_conn_subscribe(struct ipc_conn *c, const cJSON *id, int64_t seq)
{
	if (c->sub_id == NULL)
		c->srv->nsubs++;
	cJSON_Delete(c->sub_id);
	c->sub_id = cJSON_Duplicate(id, 1);
	c->sub_seq = seq;
	uv_timer_stop(&c->idle); /* subscribers may stay quiet */
}

void ipc_server_each_subscriber(struct ipc_server *s, ipc_sub_fn fn, void *ud)
{
	struct ipc_conn *c, *tmp;
	size_t cap = sub_cap(s);

	DL_FOREACH_SAFE(s->conns, c, tmp)
	{
		if (c->sub_id == NULL || c->closing || c->draining)
			continue;
		if (queued(c) > cap) {
			log_warn("dropping a subscriber %zu bytes behind",
			         queued(c));
			store_event_append(s->a->store, NULL,
			                   "subscriber_dropped",
			                   STORE_CAUSE_AGENT, NULL, NULL);
			/* Close at once: a peer that does not read would never
			 * let a shutdown finish, and the queue is the cost. */
			conn_close(c);
			continue;
		}
		c->sub_seq = fn(ud, s->a, c, c->sub_id, c->sub_seq);
	}
}
