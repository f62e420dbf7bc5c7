#ifndef HOPXD_PGSCHEMA_H
#define HOPXD_PGSCHEMA_H

/*
 * The fleet registry's schema on PostgreSQL (migrations/pg/): brought up
 * to date on the loop, one migration per transaction, under an advisory
 * lock so that agents starting together migrate once. A database whose
 * schema is newer than this hopxd is refused, never touched.
 */

struct pgconn;

/*
 * err: 0 (version: the schema now), ERR_TOONEW (msg says which hopxd it
 * needs), ERR_UNAVAIL (the database could not be reached), ERR_INVAL (a
 * migration failed; nothing of it was applied). msg is valid during the
 * call.
 */
typedef void (*pgschema_fn)(void *ud, int err, int version, const char *msg);

/* Starts migrating over pc (connected or not yet). fn runs exactly once. */
void pgschema_migrate(struct pgconn *pc, pgschema_fn fn, void *ud);

/* The version this hopxd brings the schema to. */
int pgschema_latest(void);

#endif
