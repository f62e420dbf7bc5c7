/*
 * Steps, each one query: take the lock and read the version (creating
 * the version table the first time), then each missing migration with
 * its version bump in one transaction, then let go of the lock. A failed
 * migration is rolled back before the lock is let go.
 */
#include "pgschema.h"

#include "err.h"
#include "log.h"
#include "migrations.h"
#include "pgconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_lock key: "hopx" in ASCII. */
#define LOCK_KEY "1752133752"

struct run {
	struct pgconn *pc;
	pgschema_fn fn;
	void *ud;
	int version; /* the schema's, as far as applied */
	int err;
	char msg[512];
};

static void step(struct run *r);

static void done(struct run *r)
{
	r->fn(r->ud, r->err, r->version, r->msg);
	free(r);
}

static void unlocked(void *ud, int err, const PGresult *res, const char *msg)
{
	struct run *r = ud;

	(void)res;
	/* Losing the connection lets go of the lock too. */
	if (err != 0 && r->err == 0) {
		r->err = err;
		snprintf(r->msg, sizeof(r->msg), "%s", msg);
	}
	done(r);
}

static void unlock(struct run *r)
{
	pgconn_query(r->pc, "ROLLBACK; SELECT pg_advisory_unlock(" LOCK_KEY ")",
	             0, NULL, unlocked, r);
}

static void applied(void *ud, int err, const PGresult *res, const char *msg)
{
	struct run *r = ud;
	const struct migration *m = &pg_migrations[r->version];

	(void)res;
	if (err != 0) {
		r->err = err == ERR_UNAVAIL ? ERR_UNAVAIL : ERR_INVAL;
		snprintf(r->msg, sizeof(r->msg),
		         "registry migration %04d_%s failed (nothing of it was "
		         "applied): %s",
		         m->version, m->name, msg);
		unlock(r);
		return;
	}
	r->version = m->version;
	log_info("registry migrated to schema %d (%s)", m->version, m->name);
	step(r);
}

static void step(struct run *r)
{
	const struct migration *m;
	size_t n;
	char *sql;

	if (r->version >= pg_migrations_count) {
		snprintf(r->msg, sizeof(r->msg), "schema %d", r->version);
		unlock(r);
		return;
	}
	m = &pg_migrations[r->version];
	n = strlen(m->sql) + 128;
	if ((sql = malloc(n)) == NULL) {
		r->err = ERR_NOMEM;
		unlock(r);
		return;
	}
	snprintf(sql, n,
	         "BEGIN; %s; UPDATE hopxd_schema SET version = %d; "
	         "COMMIT",
	         m->sql, m->version);
	pgconn_query(r->pc, sql, 0, NULL, applied, r);
	free(sql);
}

static void versioned(void *ud, int err, const PGresult *res, const char *msg)
{
	struct run *r = ud;

	if (err != 0) {
		r->err = err;
		snprintf(r->msg, sizeof(r->msg), "%s", msg);
		if (err == ERR_UNAVAIL)
			done(r);
		else
			unlock(r);
		return;
	}
	r->version = atoi(PQgetvalue(res, 0, 0));
	if (r->version > pg_migrations_count) {
		r->err = ERR_TOONEW;
		snprintf(r->msg, sizeof(r->msg),
		         "the registry's schema is version %d, newer than this "
		         "hopxd knows (%d): upgrade hopxd on this host",
		         r->version, pg_migrations_count);
		unlock(r);
		return;
	}
	step(r);
}

void pgschema_migrate(struct pgconn *pc, pgschema_fn fn, void *ud)
{
	static const char sql[] =
	        "SELECT pg_advisory_lock(" LOCK_KEY ");"
	        "CREATE TABLE IF NOT EXISTS hopxd_schema ("
	        " one INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1),"
	        " version INTEGER NOT NULL);"
	        "INSERT INTO hopxd_schema (version) VALUES (0)"
	        " ON CONFLICT DO NOTHING;"
	        "SELECT version FROM hopxd_schema";
	struct run *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		fn(ud, ERR_NOMEM, 0, "out of memory");
		return;
	}
	r->pc = pc;
	r->fn = fn;
	r->ud = ud;
	pgconn_query(pc, sql, 0, NULL, versioned, r);
}

int pgschema_latest(void)
{
	return pg_migrations_count;
}
