#ifndef HOPXD_PGCONN_H
#define HOPXD_PGCONN_H

/*
 * One PostgreSQL connection on a libuv loop, never blocking it: libpq's
 * asynchronous API (PQconnectStart/PQconnectPoll, PQsendQueryParams,
 * PQconsumeInput) with its socket under a uv_poll_t. Queries run one at
 * a time in the order given, each with a deadline; a query that misses
 * it, or a connection that breaks, fails every query in flight or queued
 * with ERR_UNAVAIL and the connection is made again after a pause. The
 * channels given are LISTENed to again after every reconnect, so that a
 * caller sees each (re)connection (on_state) and can catch up on what
 * it missed meanwhile.
 */

#include <libpq-fe.h>
#include <stdint.h>
#include <uv.h>

struct pgconn;

struct pgconn_opts {
	const char *conninfo;      /* any libpq connection string or URI */
	int64_t timeout_ms;        /* per query and per connect; default 10 s */
	int64_t reconnect_ms;      /* pause before connecting again; 1 s */
	const char *const *listen; /* NULL-terminated channel names or NULL */
	/* up: 1 once connected (and listening), 0 when the connection is
	 * lost or cannot be made; why says what happened (no secrets). */
	void (*on_state)(void *ud, int up, const char *why);
	void (*on_notify)(void *ud, const char *channel, const char *payload);
	void *ud;
};

/*
 * Starts connecting on loop. The connection string is copied (and any
 * password in it never logged). Returns 0, ERR_INVAL or ERR_NOMEM.
 */
int pgconn_create(uv_loop_t *loop, const struct pgconn_opts *o,
                  struct pgconn **out);

/*
 * Fails what is queued (ERR_UNAVAIL, the callbacks run now), closes the
 * connection; the memory goes once the loop ran the close callbacks.
 * NULL ok.
 */
void pgconn_destroy(struct pgconn *pc);

/* 1 while connected. */
int pgconn_up(const struct pgconn *pc);

/*
 * The answer to one query: err 0 with res (valid during the call: the
 * last result, a PGRES_TUPLES_OK or PGRES_COMMAND_OK), or err ERR_UNAVAIL
 * (no connection, lost, timed out), ERR_EXISTS (unique violation),
 * ERR_CONFLICT (serialization failure, deadlock), ERR_INVAL (any other
 * error PostgreSQL reported), with msg saying what (valid during the
 * call).
 */
typedef void (*pgconn_fn)(void *ud, int err, const PGresult *res,
                          const char *msg);

/*
 * Queues sql (may be several statements when nparams is 0) with text
 * parameters $1..$nparams (NULL: SQL NULL); copied. fn runs exactly once,
 * possibly before this returns when the connection is down. Returns 0 or
 * ERR_NOMEM (fn has run then too).
 */
int pgconn_query(struct pgconn *pc, const char *sql, int nparams,
                 const char *const *params, pgconn_fn fn, void *ud);

/*
 * As pgconn_query, ahead of the queries queued (after other urgent ones,
 * and between transactions): what must not wait behind a backlog, such
 * as the heartbeat that keeps this agent alive in the others' eyes. While
 * both wait, urgent and queued queries take turns: an urgent one waits
 * for at most one queued query (or the rest of its transaction).
 */
int pgconn_query_urgent(struct pgconn *pc, const char *sql, int nparams,
                        const char *const *params, pgconn_fn fn, void *ud);

/* Queries waiting or running. */
int pgconn_pending(const struct pgconn *pc);

#endif
