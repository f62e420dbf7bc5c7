/*
 * The fleet's connection: connect, bring the schema up to date (once per
 * run), say who we are (hosts, a heartbeat on PostgreSQL's clock, so that
 * hosts with wrong clocks still agree on who is alive), read the registry
 * whole, then follow it. Pushing and pulling are in fleet_push.c and
 * fleet_pull.c.
 */
#include "fleet_int.h"

#include "err.h"
#include "log.h"
#include "pgschema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const channels[] = {"hopxd_events", NULL};

const char *fleet_state_str(enum fleet_state s)
{
	static const char *const names[] = {"connecting", "syncing", "up",
	                                    "unavailable", "refused"};

	return (unsigned)s < sizeof(names) / sizeof(*names) ? names[s] : "?";
}

int64_t fleet_now(const struct fleet *f)
{
	return clock_wall_ms(f->clk);
}

void fleet_set_state(struct fleet *f, enum fleet_state st, const char *why)
{
	if (f->state == st && strcmp(f->why, why) == 0)
		return;
	if (st == FLEET_UP || st == FLEET_UNAVAILABLE || st == FLEET_REFUSED)
		log_info("fleet: the registry is %s%s%s", fleet_state_str(st),
		         *why ? ": " : "", why);
	f->state = st;
	snprintf(f->why, sizeof(f->why), "%s", why);
	if (st == FLEET_UP)
		uv_check_start(&f->flush, fleet_on_flush);
	if (f->o.state && !f->closing)
		f->o.state(f->o.ud, st, why);
}

/* ---- who is in the fleet ---- */

static void members_read(void *ud, int err, const PGresult *res,
                         const char *msg)
{
	struct fleet *f = ud;
	struct fleet_member_rec *m;
	const char *leader;
	size_t nalive;
	int i, n;

	if (err) {
		log_debug("fleet: heartbeat failed: %s", msg);
		return;
	}
	n = PQntuples(res);
	f->nmembers = 0;
	nalive = 0;
	leader = NULL;
	for (i = 0; i < n && i < FLEET_MEMBERS_MAX; i++) {
		m = &f->members[f->nmembers++];
		snprintf(m->host_id, sizeof(m->host_id), "%s",
		         PQgetvalue(res, i, 0));
		snprintf(m->hostname, sizeof(m->hostname), "%s",
		         PQgetvalue(res, i, 1));
		m->pid = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		m->started_at = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		m->last_seen = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		m->alive = *PQgetvalue(res, i, 5) == 't';
		nalive += m->alive;
		if (m->alive &&
		    (leader == NULL || strcmp(m->host_id, leader) < 0))
			leader = m->host_id;
	}
	f->leader = leader && strcmp(leader, f->host_id) == 0;
	if (nalive != f->nalive && nalive > 0) {
		f->nalive = nalive;
		if (f->o.members_changed)
			f->o.members_changed(f->o.ud, nalive);
	}
}

#define PG_NOW_MS FLEET_PG_NOW

static void heartbeat(struct fleet *f)
{
	char pid[24], started[24], alive[24];
	const char *v[4] = {f->host_id, f->hostname, pid, started};
	const char *va[1] = {alive};

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	snprintf(started, sizeof(started), "%lld", (long long)f->started_at);
	snprintf(alive, sizeof(alive), "%lld",
	         (long long)(3 * f->o.heartbeat_ms));
	pgconn_query_urgent(
	        f->pc,
	        "INSERT INTO hosts (host_id, hostname, pid, started_at, "
	        "last_seen) VALUES ($1, $2, $3, $4, " PG_NOW_MS
	        ") ON CONFLICT (host_id) DO UPDATE SET last_seen = "
	        "EXCLUDED.last_seen",
	        4, v, NULL, NULL);
	pgconn_query_urgent(
	        f->pc,
	        "SELECT host_id, hostname, pid, started_at, last_seen, "
	        "last_seen > " PG_NOW_MS " - $1::bigint FROM hosts WHERE "
	        "last_seen > " PG_NOW_MS " - 60000 ORDER BY hostname, "
	        "host_id LIMIT 64",
	        1, va, members_read, f);
	/* a claim whose sandbox is stored is done, whoever made it */
	pgconn_query(
	        f->pc,
	        "UPDATE intents i SET state = 'done', resolved_at = " PG_NOW_MS
	        " FROM sandboxes s WHERE i.state = 'open' AND s.name = "
	        "i.name",
	        0, NULL, NULL, NULL);
	fleet_lease_beat(f);
}

static void on_beat(uv_timer_t *t)
{
	struct fleet *f = t->data;

	if (f->state != FLEET_UP)
		return;
	heartbeat(f);
	/* a notification lost on the way costs at most one beat */
	fleet_catch_up(f);
}

/* ---- connection ---- */

static void migrated(void *ud, int err, int version, const char *msg)
{
	struct fleet *f = ud;

	if (err == ERR_TOONEW) {
		fleet_set_state(f, FLEET_REFUSED, msg);
		return;
	}
	if (err) {
		/* the connection's next state change tries again */
		log_warn("fleet: preparing the registry failed: %s", msg);
		return;
	}
	log_debug("fleet: registry schema version %d", version);
	f->migrated = 1;
	heartbeat(f);
	fleet_resync(f);
}

/* What to do about a connection PostgreSQL or libpq refused, by what
 * libpq said. */
static const struct {
	const char *said, *todo;
} hints[] = {
        {"password", "put it in ~/.pgpass or the file PGPASSFILE names "
                     "(mode 0600), never in --store"},
        {"certificate", "sslrootcert= must name the CA that signed the "
                        "server's certificate, issued for the host name "
                        "in --store"},
        {"does not exist", "create it (README: Fleet), or fix --store"},
        {"no pg_hba.conf entry", "allow this host in the server's "
                                 "pg_hba.conf"},
        {"Connection refused", "is PostgreSQL running there? 'hopxctl "
                               "doctor' checks the store"},
};

static void why_down(const char *said, char *out, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(hints) / sizeof(*hints); i++)
		if (strstr(said, hints[i].said)) {
			snprintf(out, n, "%s: %s", said, hints[i].todo);
			return;
		}
	snprintf(out, n, "%s", said);
}

static void on_state(void *ud, int up, const char *why)
{
	struct fleet *f = ud;
	char text[sizeof(f->why)];

	if (f->closing || f->state == FLEET_REFUSED)
		return;
	if (!up) {
		why_down(why, text, sizeof(text));
		fleet_set_state(f, FLEET_UNAVAILABLE, text);
		return;
	}
	if (!f->migrated) {
		pgschema_migrate(f->pc, migrated, f);
		return;
	}
	heartbeat(f);
	fleet_claims_sweep(f);
	fleet_resync(f);
}

static void on_notify(void *ud, const char *channel, const char *payload)
{
	struct fleet *f = ud;

	(void)channel;
	if (strtoll(payload, NULL, 10) > f->seq)
		fleet_catch_up(f);
}

static int fleet_init(struct fleet *f, uv_loop_t *loop, struct store *st,
                      const struct clock *clk, const struct fleet_opts *o)
{
	f->loop = loop;
	f->st = st;
	f->clk = clk;
	f->o = *o;
	f->o.conninfo = NULL;
	if (f->o.timeout_ms <= 0)
		f->o.timeout_ms = 10000;
	if (f->o.lease_ms <= 0)
		f->o.lease_ms = 15000;
	if (f->o.heartbeat_ms <= 0)
		f->o.heartbeat_ms =
		        f->o.lease_ms / 3 < 2000 ? f->o.lease_ms / 3 : 2000;
	f->started_at = fleet_now(f);
	if (gethostname(f->hostname, sizeof(f->hostname) - 1) != 0)
		snprintf(f->hostname, sizeof(f->hostname), "unknown");
	snprintf(f->host_id, sizeof(f->host_id), "%s/%ld/%lld", f->hostname,
	         (long)getpid(), (long long)f->started_at);
	uv_timer_init(loop, &f->beat);
	f->beat.data = f;
	uv_check_init(loop, &f->flush);
	f->flush.data = f;
	return 0;
}

int fleet_create(uv_loop_t *loop, struct store *st, const struct clock *clk,
                 const struct fleet_opts *o, struct fleet **out)
{
	struct fleet *f;
	struct pgconn_opts po = {0};
	struct store_journal j;
	int e;

	if (o->conninfo == NULL || *o->conninfo == '\0')
		return ERR_INVAL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return ERR_NOMEM;
	fleet_init(f, loop, st, clk, o);
	po.conninfo = o->conninfo;
	po.timeout_ms = f->o.timeout_ms;
	po.listen = channels;
	po.on_state = on_state;
	po.on_notify = on_notify;
	po.ud = f;
	if ((e = pgconn_create(loop, &po, &f->pc)) != 0) {
		free(f);
		return e;
	}
	j = (struct store_journal){fleet_journal_changed, fleet_journal_event,
	                           f};
	store_set_journal(st, &j);
	fleet_outbox_load(f);
	uv_timer_start(&f->beat, on_beat, (uint64_t)f->o.heartbeat_ms,
	               (uint64_t)f->o.heartbeat_ms);
	*out = f;
	return 0;
}

static void closed(uv_handle_t *h)
{
	struct fleet *f = h->data;

	if (--f->closing == 0)
		free(f);
}

void fleet_destroy(struct fleet *f)
{
	if (f == NULL)
		return;
	store_set_journal(f->st, NULL);
	f->state = FLEET_UNAVAILABLE; /* nothing new is queued from here */
	f->closing = 3;
	pgconn_destroy(f->pc);
	fleet_dirty_free(f);
	fleet_ids_free(&f->owned);
	fleet_claims_free(f);
	fleet_ids_free(&f->uses);
	uv_close((uv_handle_t *)&f->beat, closed);
	uv_close((uv_handle_t *)&f->flush, closed);
	closed((uv_handle_t *)&f->beat);
}

enum fleet_state fleet_state(const struct fleet *f, const char **why)
{
	if (why)
		*why = f->why;
	return f->state;
}

const char *fleet_host_id(const struct fleet *f)
{
	return f->host_id;
}

void fleet_members(const struct fleet *f, fleet_member_fn fn, void *ud)
{
	struct fleet_member m;
	size_t i;

	for (i = 0; i < f->nmembers; i++) {
		m.host_id = f->members[i].host_id;
		m.hostname = f->members[i].hostname;
		m.pid = f->members[i].pid;
		m.started_at = f->members[i].started_at;
		m.last_seen = f->members[i].last_seen;
		fn(ud, &m);
	}
}

int64_t fleet_seq(const struct fleet *f)
{
	return f->seq;
}

int fleet_caught_up(const struct fleet *f, int64_t seq)
{
	return f->state == FLEET_UP && f->seq >= seq && f->fetching == 0 &&
	       !f->fetch_lost;
}
