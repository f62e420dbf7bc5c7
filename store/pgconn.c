/*
 * libpq under libuv. States: down (waiting to reconnect), connecting
 * (PQconnectPoll driven by the socket's readiness), up (one query on the
 * wire at a time, the socket always watched for notifications). One
 * timer serves as the connect deadline, the query deadline and the pause
 * before reconnecting. The poll handle is per socket: libpq may change
 * its socket while connecting, and always does on a reconnect.
 */
#include "pgconn.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

enum pc_state { PC_DOWN, PC_CONNECTING, PC_UP };

struct query {
	char *sql;
	int n;
	char **params;
	pgconn_fn fn;
	void *ud;
	int internal; /* LISTEN after a (re)connect */
	struct query *prev, *next;
};

struct pgconn {
	uv_loop_t *loop;
	PGconn *conn;
	uv_poll_t *poll; /* NULL when no socket is watched */
	int fd;
	uv_timer_t timer;
	enum pc_state state;
	struct query *queue, *cur;
	struct query *urgent; /* go before queue, between transactions */
	int urgent_last;      /* the query before was an urgent one */
	PGresult *last;       /* of cur: the last result so far */
	char *conninfo;
	char **listen;
	int64_t timeout_ms, reconnect_ms;
	void (*on_state)(void *ud, int up, const char *why);
	void (*on_notify)(void *ud, const char *channel, const char *payload);
	void *ud;
	int closing;
	int npending;
};

static void start_connect(struct pgconn *pc);
static void on_poll(uv_poll_t *p, int status, int events);
static void pump(struct pgconn *pc);

/* ---- queries ---- */

static void query_free(struct query *q)
{
	int i;

	for (i = 0; i < q->n; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	free(q);
}

static void finish(struct pgconn *pc, struct query *q, int err,
                   const PGresult *res, const char *msg)
{
	pc->npending--;
	if (q->fn)
		q->fn(q->ud, err, res, msg);
	query_free(q);
}

/* Fails the query in flight and every queued one. */
static void fail_all(struct pgconn *pc, const char *why)
{
	struct query *q, *tmp;

	if ((q = pc->cur) != NULL) {
		pc->cur = NULL;
		PQclear(pc->last);
		pc->last = NULL;
		finish(pc, q, ERR_UNAVAIL, NULL, why);
	}
	DL_FOREACH_SAFE(pc->urgent, q, tmp)
	{
		DL_DELETE(pc->urgent, q);
		finish(pc, q, ERR_UNAVAIL, NULL, why);
	}
	DL_FOREACH_SAFE(pc->queue, q, tmp)
	{
		DL_DELETE(pc->queue, q);
		finish(pc, q, ERR_UNAVAIL, NULL, why);
	}
}

static int sqlstate_err(const PGresult *res)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (st && strcmp(st, "23505") == 0)
		return ERR_EXISTS;
	if (st && (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0))
		return ERR_CONFLICT;
	return ERR_INVAL;
}

/* ---- the socket ---- */

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void unwatch(struct pgconn *pc)
{
	if (pc->poll) {
		uv_poll_stop(pc->poll);
		uv_close((uv_handle_t *)pc->poll, poll_closed);
		pc->poll = NULL;
	}
	pc->fd = -1;
}

/* Watches libpq's socket for events (it may be a new one). */
static int watch(struct pgconn *pc, int events)
{
	int fd = PQsocket(pc->conn);

	if (fd < 0)
		return ERR_NET;
	if (pc->poll && fd != pc->fd)
		unwatch(pc);
	if (pc->poll == NULL) {
		if ((pc->poll = malloc(sizeof(*pc->poll))) == NULL)
			return ERR_NOMEM;
		if (uv_poll_init(pc->loop, pc->poll, fd) != 0) {
			free(pc->poll);
			pc->poll = NULL;
			return ERR_SYS;
		}
		pc->poll->data = pc;
		pc->fd = fd;
	}
	return uv_poll_start(pc->poll, events, on_poll) == 0 ? 0 : ERR_SYS;
}

static void on_timer(uv_timer_t *t);

static void arm(struct pgconn *pc, int64_t ms)
{
	uv_timer_start(&pc->timer, on_timer, (uint64_t)ms, 0);
}

/* The connection is gone (or never came): tell, fail, try again later. */
static void lost(struct pgconn *pc, const char *why)
{
	char msg[256];
	int was_up = pc->state == PC_UP;

	snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection lost");
	msg[strcspn(msg, "\n")] = '\0';
	unwatch(pc);
	PQfinish(pc->conn);
	pc->conn = NULL;
	pc->state = PC_DOWN;
	fail_all(pc, msg);
	if (pc->closing)
		return;
	arm(pc, pc->reconnect_ms);
	log_debug("database %s: %s", was_up ? "lost" : "not connected", msg);
	if (pc->on_state)
		pc->on_state(pc->ud, 0, msg);
}

/* ---- connecting ---- */

static void listen_done(void *ud, int err, const PGresult *res, const char *msg)
{
	struct pgconn *pc = ud;

	(void)res;
	if (err != 0 || pc->closing)
		return; /* lost() has told already, or will */
	if (pc->on_state)
		pc->on_state(pc->ud, 1, "connected");
}

/* The LISTENs go first, so that nothing sent after on_state is missed. */
static void connected(struct pgconn *pc)
{
	struct query *q;
	char sql[1024];
	size_t n = 0;
	int i;

	pc->state = PC_UP;
	uv_timer_stop(&pc->timer);
	PQsetnonblocking(pc->conn, 1);
	for (i = 0; pc->listen && pc->listen[i]; i++) {
		char *id = PQescapeIdentifier(pc->conn, pc->listen[i],
		                              strlen(pc->listen[i]));

		if (id && n < sizeof(sql))
			n += (size_t)snprintf(sql + n, sizeof(sql) - n,
			                      "LISTEN %s;", id);
		PQfreemem(id);
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL || (q->sql = strdup(n ? sql : "SELECT 1")) == NULL) {
		free(q);
		lost(pc, "out of memory");
		return;
	}
	q->fn = listen_done;
	q->ud = pc;
	q->internal = 1;
	pc->npending++;
	DL_PREPEND(pc->urgent, q);
	if (watch(pc, UV_READABLE) != 0) {
		lost(pc, "cannot watch the database's socket");
		return;
	}
	pump(pc);
}

static void connect_step(struct pgconn *pc)
{
	switch (PQconnectPoll(pc->conn)) {
	case PGRES_POLLING_READING:
		if (watch(pc, UV_READABLE) != 0)
			lost(pc, "cannot watch the database's socket");
		break;
	case PGRES_POLLING_WRITING:
		if (watch(pc, UV_WRITABLE) != 0)
			lost(pc, "cannot watch the database's socket");
		break;
	case PGRES_POLLING_OK:
		connected(pc);
		break;
	default:
		lost(pc, PQerrorMessage(pc->conn));
	}
}

/* Notices (and a server's last words) go to the log, not to stderr. */
static void notice(void *arg, const char *message)
{
	char buf[256];

	(void)arg;
	snprintf(buf, sizeof(buf), "%s", message);
	buf[strcspn(buf, "\n")] = '\0';
	log_debug("database says: %s", buf);
}

static void start_connect(struct pgconn *pc)
{
	pc->conn = PQconnectStart(pc->conninfo);
	if (pc->conn)
		PQsetNoticeProcessor(pc->conn, notice, NULL);
	if (pc->conn == NULL || PQstatus(pc->conn) == CONNECTION_BAD) {
		lost(pc, pc->conn ? PQerrorMessage(pc->conn) : "out of memory");
		return;
	}
	pc->state = PC_CONNECTING;
	arm(pc, pc->timeout_ms);
	if (watch(pc, UV_WRITABLE) != 0)
		lost(pc, "cannot watch the database's socket");
}

/* ---- queries on the wire ---- */

/*
 * The next query: an urgent one goes ahead of the queue, never into the
 * middle of a transaction whose next statement is queued (it would run
 * inside it), and urgent and queued ones take turns while both wait: a
 * steady stream of urgent work (catching up on a busy fleet's changes)
 * must not starve what is queued (this agent's own changes).
 */
static struct query *take_next(struct pgconn *pc)
{
	int urgent =
	        pc->urgent && (pc->queue == NULL ||
	                       (!pc->urgent_last &&
	                        PQtransactionStatus(pc->conn) == PQTRANS_IDLE));
	struct query **from = urgent ? &pc->urgent : &pc->queue;

	if (*from == NULL)
		return NULL;
	pc->urgent_last = urgent;
	pc->cur = *from;
	DL_DELETE(*from, pc->cur);
	return pc->cur;
}

static void send_next(struct pgconn *pc)
{
	struct query *q = take_next(pc);
	int ok, f;

	ok = q->n == 0 ? PQsendQuery(pc->conn, q->sql)
	               : PQsendQueryParams(pc->conn, q->sql, q->n, NULL,
	                                   (const char *const *)q->params, NULL,
	                                   NULL, 0);
	if (!ok) {
		lost(pc, PQerrorMessage(pc->conn));
		return;
	}
	arm(pc, pc->timeout_ms);
	f = PQflush(pc->conn);
	if (f < 0)
		lost(pc, PQerrorMessage(pc->conn));
	else if (watch(pc, UV_READABLE | (f ? UV_WRITABLE : 0)) != 0)
		lost(pc, "cannot watch the database's socket");
}

static void pump(struct pgconn *pc)
{
	if (pc->state == PC_UP && pc->cur == NULL &&
	    (pc->queue || pc->urgent) && !pc->closing)
		send_next(pc);
}

static void notifies(struct pgconn *pc)
{
	PGnotify *n;

	while (!pc->closing && (n = PQnotifies(pc->conn)) != NULL) {
		if (pc->on_notify)
			pc->on_notify(pc->ud, n->relname, n->extra);
		PQfreemem(n);
	}
}

/* Collects results while libpq has them; the query ends at NULL. */
static void results(struct pgconn *pc)
{
	PGresult *r;
	struct query *q;
	int st;

	while (pc->cur && !PQisBusy(pc->conn)) {
		if ((r = PQgetResult(pc->conn)) != NULL) {
			PQclear(pc->last);
			pc->last = r;
			continue;
		}
		q = pc->cur;
		r = pc->last;
		pc->cur = NULL;
		pc->last = NULL;
		uv_timer_stop(&pc->timer);
		st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			finish(pc, q, 0, r, NULL);
		else
			finish(pc, q, r ? sqlstate_err(r) : ERR_INVAL, r,
			       r ? PQresultErrorMessage(r) : "no result");
		PQclear(r);
		if (pc->closing || pc->state != PC_UP)
			return;
		pump(pc);
	}
}

static void on_up_event(struct pgconn *pc, int events)
{
	int f;

	if (events & UV_WRITABLE) {
		if ((f = PQflush(pc->conn)) < 0) {
			lost(pc, PQerrorMessage(pc->conn));
			return;
		}
		if (f == 0 && watch(pc, UV_READABLE) != 0) {
			lost(pc, "cannot watch the database's socket");
			return;
		}
	}
	if (events & UV_READABLE) {
		if (!PQconsumeInput(pc->conn)) {
			lost(pc, PQerrorMessage(pc->conn));
			return;
		}
		results(pc);
		if (pc->state == PC_UP)
			notifies(pc);
	}
	if (pc->state == PC_UP && PQstatus(pc->conn) == CONNECTION_BAD)
		lost(pc, PQerrorMessage(pc->conn));
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct pgconn *pc = p->data;

	if (pc->closing || p != pc->poll)
		return;
	if (status < 0)
		events = UV_READABLE | UV_WRITABLE; /* libpq will tell */
	if (pc->state == PC_CONNECTING)
		connect_step(pc);
	else if (pc->state == PC_UP)
		on_up_event(pc, events);
}

static void on_timer(uv_timer_t *t)
{
	struct pgconn *pc = t->data;

	if (pc->state == PC_DOWN)
		start_connect(pc);
	else if (pc->state == PC_CONNECTING)
		lost(pc, "connecting to the database timed out");
	else if (pc->cur)
		lost(pc, "a database query timed out");
}

/* ---- the interface ---- */

static void free_list(char **l, int n);

/* n strings (NULL ones stay NULL), NULL-terminated; NULL if no memory. */
static char **copy_list(const char *const *src, int n)
{
	char **dst = calloc((size_t)n + 1, sizeof(*dst));
	int i;

	for (i = 0; dst && i < n; i++)
		if (src[i] && (dst[i] = strdup(src[i])) == NULL) {
			free_list(dst, n);
			return NULL;
		}
	return dst;
}

static void free_list(char **l, int n)
{
	int i;

	for (i = 0; l && (n < 0 ? l[i] != NULL : i < n); i++)
		free(l[i]);
	free(l);
}

int pgconn_create(uv_loop_t *loop, const struct pgconn_opts *o,
                  struct pgconn **out)
{
	struct pgconn *pc;
	int n = 0;

	*out = NULL;
	if (o == NULL || o->conninfo == NULL)
		return ERR_INVAL;
	if ((pc = calloc(1, sizeof(*pc))) == NULL)
		return ERR_NOMEM;
	while (o->listen && o->listen[n])
		n++;
	pc->conninfo = strdup(o->conninfo);
	pc->listen =
	        copy_list(o->listen ? o->listen : (const char *[]){NULL}, n);
	if (pc->conninfo == NULL || pc->listen == NULL) {
		free_list(pc->listen, n);
		free(pc->conninfo);
		free(pc);
		return ERR_NOMEM;
	}
	pc->loop = loop;
	pc->fd = -1;
	pc->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
	pc->reconnect_ms = o->reconnect_ms > 0 ? o->reconnect_ms : 1000;
	pc->on_state = o->on_state;
	pc->on_notify = o->on_notify;
	pc->ud = o->ud;
	uv_timer_init(loop, &pc->timer);
	pc->timer.data = pc;
	start_connect(pc);
	*out = pc;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	struct pgconn *pc = h->data;

	free_list(pc->listen, -1);
	free(pc->conninfo);
	free(pc);
}

void pgconn_destroy(struct pgconn *pc)
{
	if (pc == NULL || pc->closing)
		return;
	pc->closing = 1;
	uv_timer_stop(&pc->timer);
	unwatch(pc);
	PQfinish(pc->conn);
	pc->conn = NULL;
	pc->state = PC_DOWN;
	fail_all(pc, "the database connection was closed");
	uv_close((uv_handle_t *)&pc->timer, timer_closed);
}

int pgconn_up(const struct pgconn *pc)
{
	return pc->state == PC_UP;
}

int pgconn_pending(const struct pgconn *pc)
{
	return pc->npending;
}

static int enqueue(struct pgconn *pc, const char *sql, int nparams,
                   const char *const *params, pgconn_fn fn, void *ud,
                   int urgent)
{
	struct query *q = calloc(1, sizeof(*q));

	if (q == NULL || (q->sql = strdup(sql)) == NULL ||
	    (nparams > 0 && (q->params = copy_list(params, nparams)) == NULL)) {
		if (q)
			free(q->sql);
		free(q);
		if (fn)
			fn(ud, ERR_NOMEM, NULL, "out of memory");
		return ERR_NOMEM;
	}
	q->n = nparams;
	q->fn = fn;
	q->ud = ud;
	pc->npending++;
	if (pc->state == PC_DOWN || pc->closing) {
		finish(pc, q, ERR_UNAVAIL, NULL,
		       "the database is unreachable (it is being retried)");
		return 0;
	}
	if (urgent)
		DL_APPEND(pc->urgent, q);
	else
		DL_APPEND(pc->queue, q);
	pump(pc);
	return 0;
}

int pgconn_query(struct pgconn *pc, const char *sql, int nparams,
                 const char *const *params, pgconn_fn fn, void *ud)
{
	return enqueue(pc, sql, nparams, params, fn, ud, 0);
}

int pgconn_query_urgent(struct pgconn *pc, const char *sql, int nparams,
                        const char *const *params, pgconn_fn fn, void *ud)
{
	return enqueue(pc, sql, nparams, params, fn, ud, 1);
}
