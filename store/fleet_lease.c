/*
 * Who does each sandbox's background work: per-sandbox leases in the
 * registry (owner, owner_until). Every heartbeat an agent renews the
 * leases it holds and takes lapsed or free ones up to its fair share
 * (sandboxes / agents alive, rounded up), in one statement; SKIP LOCKED
 * keeps two agents from waiting on each other for the same rows, and a
 * row another agent took meanwhile is re-checked and left to it.
 *
 * The holder's idle clock is the fleet's: other agents stamp the
 * sandboxes used on them (used_at) each heartbeat, and the lease
 * statement brings the holder how long ago that was.
 */
#include "fleet_int.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * $1 this agent, $2 the lease (ms), $3 how recently an agent must have
 * been seen to count as alive. A lease is renewed once a third of it is
 * gone, not every beat: at 10k sandboxes that is a third of the writes
 * (kept runs although nothing reads it, as every data-modifying WITH).
 */
static const char sql_leases[] =
        "WITH me AS (SELECT $1::text AS h, " FLEET_PG_NOW " AS now), "
        "live AS (SELECT greatest(count(*), 1) AS n FROM hosts, me WHERE "
        "last_seen > me.now - $3::bigint), "
        "held AS (SELECT s.id FROM sandboxes s, me WHERE s.owner = me.h), "
        "kept AS (UPDATE sandboxes s SET owner_until = me.now + $2::bigint "
        "FROM me WHERE s.owner = me.h AND s.owner_until < me.now + "
        "$2::bigint * 2 / 3 RETURNING s.id), "
        "want AS (SELECT greatest(0, ceil((SELECT count(*) FROM sandboxes)"
        "::numeric / (SELECT n FROM live))::bigint - (SELECT count(*) FROM "
        "held)) AS n), "
        "free AS (SELECT s.id FROM sandboxes s, me WHERE s.owner IS NULL OR "
        "(s.owner <> me.h AND s.owner_until < me.now) ORDER BY s.id LIMIT "
        "(SELECT n FROM want) FOR UPDATE OF s SKIP LOCKED), "
        "took AS (UPDATE sandboxes s SET owner = me.h, owner_until = me.now "
        "+ $2::bigint FROM free, me WHERE s.id = free.id RETURNING s.id) "
        "SELECT h.id, me.now - s.used_at FROM (SELECT id FROM held UNION "
        "ALL SELECT id FROM took) h JOIN sandboxes s USING (id), me";

/* ---- use seen here, for the holders' idle clocks ---- */

void fleet_note_use(struct fleet *f, const char *sandbox_id)
{
	struct fleet_id *u = NULL;

	if (fleet_owns(f, sandbox_id))
		return;
	HASH_FIND_STR(f->uses, sandbox_id, u);
	if (u || (u = calloc(1, sizeof(*u))) == NULL)
		return;
	if ((u->id = strdup(sandbox_id)) == NULL) {
		free(u);
		return;
	}
	HASH_ADD_KEYPTR(hh, f->uses, u->id, strlen(u->id), u);
}

void fleet_ids_free(struct fleet_id **set)
{
	struct fleet_id *u, *tmp;

	HASH_ITER(hh, *set, u, tmp)
	{
		HASH_DEL(*set, u);
		free(u->id);
		free(u);
	}
}

/* The ids noted as a JSON array (ids need no escaping); NULL: no memory. */
static char *uses_json(const struct fleet *f)
{
	size_t cap = 3, at = 0;
	const struct fleet_id *u;
	char *out;

	for (u = f->uses; u; u = u->hh.next)
		cap += strlen(u->id) + 3;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	out[at++] = '[';
	for (u = f->uses; u; u = u->hh.next)
		at += (size_t)snprintf(out + at, cap - at, "%s\"%s\"",
		                       u == f->uses ? "" : ",", u->id);
	snprintf(out + at, cap - at, "]");
	return out;
}

/* Stamps the uses noted since the last heartbeat with PostgreSQL's time.
 * A use lost with a failed query only shortens an idle period by one
 * heartbeat's worth of news. */
static void push_uses(struct fleet *f)
{
	char *ids;
	const char *v[1];

	if (f->uses == NULL || (ids = uses_json(f)) == NULL)
		return;
	v[0] = ids;
	pgconn_query(
	        f->pc,
	        "UPDATE sandboxes SET used_at = " FLEET_PG_NOW
	        " WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))",
	        1, v, NULL, NULL);
	free(ids);
	fleet_ids_free(&f->uses);
}

/* ---- leases ---- */

static void tell(struct fleet *f, const char *id, int mine)
{
	if (f->o.owner && f->leases_known)
		f->o.owner(f->o.ud, id, mine);
}

static void own(struct fleet *f, const char *id)
{
	struct fleet_id *o = NULL;

	HASH_FIND_STR(f->owned, id, o);
	if (o) {
		o->seen = 1;
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL ||
	    (o->id = strdup(id)) == NULL) {
		free(o);
		return;
	}
	o->seen = 1;
	HASH_ADD_KEYPTR(hh, f->owned, o->id, strlen(o->id), o);
	tell(f, id, 1);
}

static void leases_read(void *ud, int err, const PGresult *res, const char *msg)
{
	struct fleet *f = ud;
	struct fleet_id *o, *tmp;
	int i;

	f->leasing = 0;
	if (err) {
		/* the leases held stay held: nobody can take them meanwhile */
		log_debug("fleet: renewing leases failed: %s", msg);
		return;
	}
	HASH_ITER(hh, f->owned, o, tmp)
	o->seen = 0;
	for (i = 0; i < PQntuples(res); i++) {
		own(f, PQgetvalue(res, i, 0));
		if (!PQgetisnull(res, i, 1) && f->o.used)
			f->o.used(f->o.ud, PQgetvalue(res, i, 0),
			          strtoll(PQgetvalue(res, i, 1), NULL, 10));
	}
	HASH_ITER(hh, f->owned, o, tmp)
	{
		if (o->seen)
			continue;
		HASH_DEL(f->owned, o);
		tell(f, o->id, 0);
		free(o->id);
		free(o);
	}
	if (!f->leases_known) {
		f->leases_known = 1;
		tell(f, NULL, 0); /* from "all mine" to the leases */
	}
}

void fleet_lease_beat(struct fleet *f)
{
	char lease[24], alive[24];
	const char *v[3] = {f->host_id, lease, alive};

	if (f->leasing || f->state != FLEET_UP)
		return;
	if (f->o.in_use)
		f->o.in_use(f->o.ud);
	push_uses(f);
	snprintf(lease, sizeof(lease), "%lld", (long long)f->o.lease_ms);
	snprintf(alive, sizeof(alive), "%lld",
	         (long long)(3 * f->o.heartbeat_ms));
	f->leasing = 1;
	pgconn_query_urgent(f->pc, sql_leases, 3, v, leases_read, f);
}

int fleet_owns(const struct fleet *f, const char *sandbox_id)
{
	struct fleet_id *o = NULL;

	if (!f->leases_known)
		return 1;
	HASH_FIND_STR(f->owned, sandbox_id, o);
	return o != NULL;
}

size_t fleet_owned(const struct fleet *f)
{
	return HASH_COUNT(f->owned);
}

int fleet_leader(const struct fleet *f)
{
	return f->leader;
}
