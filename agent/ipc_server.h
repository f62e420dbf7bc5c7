#ifndef HOPXD_IPC_SERVER_H
#define HOPXD_IPC_SERVER_H

/*
 * The agent's Unix-socket server: accepts clients (checking their uid),
 * frames lines (at most PROTO_MAX), hands each request to methods.c and
 * writes replies, bounding connections, queued output and idle time.
 */

#include <cjson/cJSON.h>
#include <stdint.h>

struct agent;
struct ipc_server;
struct ipc_conn;

/*
 * Listens on fd (socket activation) when fd >= 0, else binds path: the
 * directory is created 0700 or must already be ours and private, a stale
 * socket of a dead agent is replaced, a live agent's never. On failure
 * *cause (caller frees) says why: ERR_EXISTS (an agent is listening),
 * ERR_PERM (unsafe directory), ERR_TOOBIG (path too long), ERR_SYS.
 */
int ipc_server_start(struct agent *a, int fd, struct ipc_server **out,
                     char **cause);

/* Closes the listener and every connection; the loop frees them. */
void ipc_server_close(struct ipc_server *s);

/* Frees what is left after the loop ran the close callbacks. */
void ipc_server_destroy(struct ipc_server *s);

size_t ipc_server_connections(const struct ipc_server *s);
size_t ipc_server_subscribers(const struct ipc_server *s);

/* The peer's pid (SO_PEERCRED at accept), 0 when unknown. */
long ipc_conn_pid(const struct ipc_conn *c);

/*
 * The connection stays however long it is quiet (it holds a lease), as
 * a subscriber's does.
 */
void ipc_conn_keep(struct ipc_conn *c);

/* Queues a line (text of len bytes, taken over) to a connection. */
int ipc_conn_send(struct ipc_conn *c, char *text, size_t len);

/*
 * While corked, what is sent waits (in order) and goes when uncorked:
 * replies that say something was stored go only after its transaction
 * committed. Corked for one loop turn's answers at most, so what waits
 * is bounded by the transfers in flight (--max-inflight) and what they
 * lead to. NULL ok.
 */
void ipc_server_cork(struct ipc_server *s, int on);

/*
 * A reply that comes later (after an API call) holds the connection: it
 * stays allocated, and is not closed as idle, until released. Sending to
 * a connection the peer closed meanwhile fails harmlessly (ERR_STATE).
 */
void ipc_conn_hold(struct ipc_conn *c);
void ipc_conn_release(struct ipc_conn *c);

/*
 * Makes c a subscriber that has seen every event up to seq; id (copied)
 * is echoed in each event line.
 */
void ipc_conn_subscribe(struct ipc_conn *c, const cJSON *id, int64_t seq);

/*
 * Calls fn for each subscriber (dropping those too far behind first); fn
 * returns the last seq it sent.
 */
typedef int64_t (*ipc_sub_fn)(void *ud, struct agent *a, struct ipc_conn *c,
                              const cJSON *sub_id, int64_t seq);
void ipc_server_each_subscriber(struct ipc_server *s, ipc_sub_fn fn, void *ud);

#endif
