#ifndef HOPXD_FLEETLINK_H
#define HOPXD_FLEETLINK_H

/*
 * The agent's side of the fleet (store/fleet.h): started when --store
 * names a PostgreSQL database; keeps the sessions in memory in step with
 * what other agents changed, publishes the fleet's events, and says
 * whether a change can be stored now.
 */

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

struct agent;

/* 1 when s is a PostgreSQL connection string or URI (not "sqlite"). */
int fleetlink_is_pg(const char *s);

/*
 * Refuses a connection string that would put a password on the command
 * line or in a log; 0 or ERR_INVAL with why.
 */
int fleetlink_check(const char *conninfo, char *why, size_t n);

/* Starts the fleet when a->cfg.store asks for one. 0 or ERR_*. */
int fleetlink_start(struct agent *a);

/* Closes it (NULL fleet ok). */
void fleetlink_stop(struct agent *a);

/*
 * 0 when a change can be stored now (always without a fleet), else
 * ERR_UNAVAIL with msg saying why and what to do.
 */
int fleetlink_writable(const struct agent *a, char *msg, size_t n);

/*
 * Calls fn(ud, id) once a sandbox named name is in the store (at once if
 * it is), or fn(ud, NULL) after wait_ms. Returns 0 or ERR_NOMEM.
 */
typedef void (*fleetlink_name_fn)(void *ud, const char *id);
int fleetlink_wait_name(struct agent *a, const char *name, int64_t wait_ms,
                        fleetlink_name_fn fn, void *ud);

/* Adds "store": {kind, state, ...members} to a status object. */
void fleetlink_status(const struct agent *a, cJSON *o);

#endif
