#ifndef HOPXD_LEASES_H
#define HOPXD_LEASES_H

/*
 * Leases: a client holds a sandbox in use for as long as its connection
 * lives (hopxctl run holds one for its child's whole life). While one is
 * held, the sandbox is never paused for idleness and HopX's deadline is
 * re-armed before it runs out (sessions_lease). Kept in memory: a lease
 * dies with its connection, so a restart of the agent ends them all.
 */

#include <cjson/cJSON.h>
#include <stdint.h>

struct agent;
struct ipc_conn;

/*
 * The client on c holds sandbox id from now (wall ms). A connection may
 * hold one lease per sandbox (taking it again is a no-op). ERR_NOTFOUND:
 * not tracked; ERR_NOMEM.
 */
int leases_take(struct agent *a, struct ipc_conn *c, const char *id,
                int64_t now);

/* Lets go of c's lease on id. ERR_NOTFOUND: c holds none on it. */
int leases_release(struct agent *a, struct ipc_conn *c, const char *id);

/* The connection is closing: every lease it held ends. */
void leases_conn_closed(struct agent *a, struct ipc_conn *c);

/*
 * The holders of id's leases, [{"pid", "command", "since"}], for show
 * (caller owns the array). NULL on ERR_NOMEM.
 */
cJSON *leases_json(const struct agent *a, const char *id);

/* Leases held now, by every client. */
size_t leases_count(const struct agent *a);

#endif
