/*
 * Creates by name across the fleet: a name is claimed in the registry (one
 * open create per name) before HopX is asked, released once the sandbox
 * is stored, and taken over by a restarted agent for the creates it was
 * cut off in. The claims this agent holds are kept, so that one whose
 * answer was lost with the connection is closed at the reconnect.
 */
#include "fleet_int.h"

#include "err.h"
#include "sbx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_NOW_MS FLEET_PG_NOW

struct claim {
	struct fleet *f;
	fleet_claim_fn fn;
	void *ud;
	int nq, err;
	int64_t intent;
	char name[SBX_NAME_MAX + 1];
	char msg[256];
};

/*
 * The claims this agent holds: granted and not yet released (a create on
 * its way, or one left open because its sandbox is not stored yet).
 */
struct fleet_held {
	int64_t intent;
	char name[SBX_NAME_MAX + 1];
	UT_hash_handle hh;
};

static void held_add(struct fleet *f, int64_t intent, const char *name)
{
	struct fleet_held *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return; /* swept as an orphan at the next reconnect: its
		           create goes on, a second create waits for it */
	h->intent = intent;
	snprintf(h->name, sizeof(h->name), "%s", name);
	HASH_ADD(hh, f->held, intent, sizeof(h->intent), h);
}

static void held_del(struct fleet *f, struct fleet_held *h)
{
	HASH_DEL(f->held, h);
	free(h);
}

void fleet_claims_free(struct fleet *f)
{
	struct fleet_held *h, *tmp;

	HASH_ITER(hh, f->held, h, tmp)
	{
		held_del(f, h);
	}
}

static void claim_step(void *ud, int err, const PGresult *res, const char *msg)
{
	struct claim *c = ud;

	if (err && c->err == 0) {
		c->err = err;
		snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
	}
	if (!err && res && PQresultStatus(res) == PGRES_TUPLES_OK &&
	    PQntuples(res) == 1 && PQnfields(res) == 1)
		c->intent = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (--c->nq > 0)
		return;
	/* another agent's claim of the name: not an error */
	if (c->err == ERR_EXISTS)
		c->err = 0, c->intent = 0;
	if (c->err == 0 && c->intent > 0)
		held_add(c->f, c->intent, c->name);
	c->fn(c->ud, c->err, c->err ? 0 : c->intent, c->msg);
	free(c);
}

void fleet_claim_name(struct fleet *f, const char *name, fleet_claim_fn fn,
                      void *ud)
{
	struct claim *c = calloc(1, sizeof(*c));
	const char *v[2] = {name, f->host_id};

	if (c == NULL) {
		fn(ud, ERR_NOMEM, 0, "out of memory");
		return;
	}
	c->f = f;
	c->fn = fn;
	c->ud = ud;
	c->nq = 4;
	snprintf(c->name, sizeof(c->name), "%s", name);
	pgconn_query(f->pc, "BEGIN", 0, NULL, claim_step, c);
	/* the claim of an agent no longer in the fleet lapses, and one whose
	 * sandbox is stored is done (its closing may have been lost) */
	pgconn_query(f->pc,
	             "UPDATE intents SET state = CASE WHEN EXISTS (SELECT 1 "
	             "FROM sandboxes WHERE name = $1) THEN 'done' ELSE "
	             "'failed' END, resolved_at = " PG_NOW_MS
	             " WHERE state = 'open' AND name = $1 AND (EXISTS (SELECT "
	             "1 FROM sandboxes WHERE name = $1) OR NOT EXISTS (SELECT "
	             "1 FROM hosts WHERE host_id = intents.host AND "
	             "last_seen > " PG_NOW_MS " - 10000))",
	             1, v, claim_step, c);
	pgconn_query(f->pc,
	             "INSERT INTO intents (kind, request, name, host, "
	             "created_at) SELECT 'create', '{}', $1, $2, " PG_NOW_MS
	             " WHERE NOT EXISTS (SELECT 1 FROM sandboxes WHERE name "
	             "= $1) RETURNING id",
	             2, v, claim_step, c);
	pgconn_query(f->pc, "COMMIT", 0, NULL, claim_step, c);
}

struct count {
	struct fleet *f;
	fleet_count_fn fn;
	void *ud;
};

static void counted(void *ud, int err, const PGresult *res, const char *msg)
{
	struct count *c = ud;

	int64_t n = err ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	int64_t seq = err ? 0 : strtoll(PQgetvalue(res, 0, 1), NULL, 10);

	(void)msg;
	c->fn(c->ud, err, n, seq);
	free(c);
}

void fleet_foreign_claims(struct fleet *f, fleet_count_fn fn, void *ud)
{
	struct count *c = calloc(1, sizeof(*c));
	const char *v[1] = {f->host_id};

	if (c == NULL || f->state != FLEET_UP) {
		free(c);
		fn(ud, ERR_UNAVAIL, 0, 0);
		return;
	}
	c->f = f;
	c->fn = fn;
	c->ud = ud;
	pgconn_query(f->pc,
	             "SELECT count(*), (SELECT coalesce(max(seq), 0) FROM "
	             "events) FROM intents i WHERE state = 'open' AND kind = "
	             "'create' AND "
	             "host <> $1 AND NOT EXISTS (SELECT 1 FROM sandboxes s "
	             "WHERE s.name = i.name) AND EXISTS (SELECT 1 FROM hosts h "
	             "WHERE "
	             "h.host_id = i.host AND h.last_seen > " PG_NOW_MS
	             " - 10000)",
	             1, v, counted, c);
}

/* The claims taken over are held: closed when dropped, swept if not. */
static void taken(void *ud, int err, const PGresult *res, const char *msg)
{
	struct fleet *f = ud;
	int i;

	(void)msg;
	for (i = 0; !err && !f->closing && i < PQntuples(res); i++)
		held_add(f, strtoll(PQgetvalue(res, i, 0), NULL, 10),
		         PQgetvalue(res, i, 1));
}

void fleet_take_claims(struct fleet *f, const char *names_json)
{
	const char *v[2] = {f->host_id, names_json};

	pgconn_query(f->pc,
	             "UPDATE intents SET host = $1, kind = 'adopt' WHERE state "
	             "= 'open' AND host <> $1 AND name IN (SELECT "
	             "jsonb_array_elements_text($2::jsonb)) RETURNING id, name",
	             2, v, taken, f);
}

void fleet_keep_claim(struct fleet *f, int64_t intent)
{
	char *id = fleet_i64(intent);
	const char *v[1] = {id};

	pgconn_query(f->pc,
	             "UPDATE intents SET kind = 'adopt' WHERE id = $1 AND "
	             "state = 'open'",
	             1, v, NULL, NULL);
	free(id);
}

void fleet_drop_claim(struct fleet *f, const char *name)
{
	const char *v[2] = {f->host_id, name};
	struct fleet_held *h, *tmp;

	HASH_ITER(hh, f->held, h, tmp)
	{
		if (strcmp(h->name, name) == 0)
			held_del(f, h);
	}
	pgconn_query(
	        f->pc,
	        "UPDATE intents SET state = 'failed', resolved_at = " PG_NOW_MS
	        " WHERE state = 'open' AND host = $1 AND name = $2",
	        2, v, NULL, NULL);
}

void fleet_release(struct fleet *f, int64_t intent, const char *sandbox_id)
{
	char *id = fleet_i64(intent);
	const char *v[3] = {id, sandbox_id ? "done" : "failed", sandbox_id};
	struct fleet_held *h;

	HASH_FIND(hh, f->held, &intent, sizeof(intent), h);
	if (h)
		held_del(f, h);
	pgconn_query(f->pc,
	             "UPDATE intents SET state = $2, sandbox_id = $3, "
	             "resolved_at = " PG_NOW_MS " WHERE id = $1",
	             3, v, NULL, NULL);
	free(id);
}

/* ---- orphans ---- */

/* The ids of the claims held, as a JSON array; NULL when out of memory. */
static char *held_json(const struct fleet *f, int64_t *max)
{
	size_t n = HASH_COUNT(f->held), at = 0, cap = n * 22 + 3;
	const struct fleet_held *h;
	char *out = malloc(cap);

	*max = 0;
	if (out == NULL)
		return NULL;
	out[at++] = '[';
	for (h = f->held; h; h = h->hh.next) {
		at += (size_t)snprintf(out + at, cap - at, "%s%lld",
		                       h == f->held ? "" : ",",
		                       (long long)h->intent);
		*max = h->intent > *max ? h->intent : *max;
	}
	snprintf(out + at, cap - at, "]");
	return out;
}

struct prune {
	struct fleet *f;
	int64_t max; /* claims made after the question are kept */
};

static int in_rows(const PGresult *res, int64_t intent)
{
	int i;

	for (i = 0; i < PQntuples(res); i++)
		if (strtoll(PQgetvalue(res, i, 0), NULL, 10) == intent)
			return 1;
	return 0;
}

/* Forgets the held claims that were closed meanwhile (their sandbox was
 * stored and the heartbeat closed them). */
static void pruned(void *ud, int err, const PGresult *res, const char *msg)
{
	struct prune *p = ud;
	struct fleet_held *h, *tmp;

	(void)msg;
	if (!err && !p->f->closing) {
		HASH_ITER(hh, p->f->held, h, tmp)
		{
			if (h->intent <= p->max && !in_rows(res, h->intent))
				held_del(p->f, h);
		}
	}
	free(p);
}

/*
 * After a reconnect: a claim whose answer was lost with the connection
 * (its COMMIT may have landed) is held by this agent in the registry
 * while no create of it runs; while this agent lives it would never
 * lapse and every create of the name would wait for it; so would one
 * taken over from a previous run whose closing was lost. Closes every
 * open claim of this agent that it does not hold, unless its sandbox is
 * stored (the heartbeat closes those as done).
 */
void fleet_claims_sweep(struct fleet *f)
{
	struct prune *p = calloc(1, sizeof(*p));
	char *ids = p ? held_json(f, &p->max) : NULL;
	const char *v[2] = {f->host_id, ids};

	if (ids == NULL) {
		free(p);
		return; /* the next reconnect sweeps */
	}
	p->f = f;
	pgconn_query(
	        f->pc,
	        "UPDATE intents SET state = 'failed', resolved_at = " PG_NOW_MS
	        " WHERE state = 'open' AND host = $1 AND id NOT IN (SELECT "
	        "jsonb_array_elements_text($2::jsonb)"
	        "::bigint) AND NOT EXISTS (SELECT 1 FROM sandboxes s WHERE "
	        "s.name = intents.name)",
	        2, v, NULL, NULL);
	pgconn_query(
	        f->pc,
	        "SELECT id FROM intents WHERE state = 'open' AND id IN "
	        "(SELECT jsonb_array_elements_text($2::jsonb)::bigint) AND "
	        "host = $1",
	        2, v, pruned, p);
	free(ids);
}
