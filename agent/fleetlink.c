#include "fleetlink.h"

#include "agent.h"
#include "err.h"
#include "events.h"
#include "fleet.h"
#include "hopx.h"
#include "json.h"
#include "log.h"
#include "sbx.h"
#include "sessions.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <utlist.h>
#include <stdio.h>
#include <string.h>

int fleetlink_is_pg(const char *s)
{
	return s && *s && strcmp(s, "sqlite") != 0;
}

int fleetlink_check(const char *conninfo, char *why, size_t n)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err), *o;
	int r = 0;

	if (opts == NULL) {
		/* libpq's messages end with a newline */
		if (err && *err && err[strlen(err) - 1] == '\n')
			err[strlen(err) - 1] = '\0';
		snprintf(why, n,
		         "--store: not a PostgreSQL connection string or URI "
		         "(%s); e.g. postgresql://hopxd@db.example/hopxd",
		         err ? err : "out of memory");
		PQfreemem(err);
		return ERR_INVAL;
	}
	for (o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
			r = ERR_INVAL;
	if (r)
		snprintf(why, n,
		         "--store: a password in the connection string would "
		         "show in the process list and logs; put it in "
		         "~/.pgpass (mode 0600) or the file PGPASSFILE names");
	PQconninfoFree(opts);
	return r;
}

/* A create waiting for another agent's create of the same name. */
struct name_wait {
	struct agent *a;
	char name[SBX_NAME_MAX + 1];
	fleetlink_name_fn fn;
	void *ud;
	uv_timer_t timer;
	struct name_wait *prev, *next;
};

static struct name_wait *waits;

static void wait_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Ends a wait with the sandbox's id (NULL: time is up). */
static void wait_end(struct name_wait *w, const char *id)
{
	DL_DELETE(waits, w);
	uv_timer_stop(&w->timer);
	w->fn(w->ud, id);
	uv_close((uv_handle_t *)&w->timer, wait_closed);
}

static void wait_timeout(uv_timer_t *t)
{
	wait_end(t->data, NULL);
}

/* The id of the record named name, if any (into id). */
static int named(struct agent *a, const char *name, char *id, size_t n)
{
	struct store_sandbox r;
	int found = store_sandbox_get(a->store, name, &r) == 0 && r.name &&
	            strcmp(r.name, name) == 0;

	if (found)
		snprintf(id, n, "%s", r.id);
	store_sandbox_finish(&r);
	return found;
}

int fleetlink_wait_name(struct agent *a, const char *name, int64_t wait_ms,
                        fleetlink_name_fn fn, void *ud)
{
	struct name_wait *w;
	char id[SBX_ID_MAX + 1];

	if (named(a, name, id, sizeof(id))) {
		fn(ud, id);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return ERR_NOMEM;
	w->a = a;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->fn = fn;
	w->ud = ud;
	uv_timer_init(a->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, wait_timeout, (uint64_t)wait_ms, 0);
	DL_APPEND(waits, w);
	return 0;
}

static void names_arrived(struct agent *a)
{
	struct name_wait *w, *tmp;
	char id[SBX_ID_MAX + 1];

	DL_FOREACH_SAFE(waits, w, tmp)
	{
		if (w->a == a && named(a, w->name, id, sizeof(id)))
			wait_end(w, id);
	}
}

static void applied(void *ud, const char *id, int gone)
{
	struct agent *a = ud;

	if (a->sess == NULL)
		return;
	if (gone)
		sessions_forget(a->sess, id);
	else
		sessions_track(a->sess, id);
	if (!gone && waits)
		names_arrived(a);
}

static void owner_changed(void *ud, const char *id, int mine)
{
	struct agent *a = ud;

	(void)mine;
	if (a->sess == NULL)
		return;
	if (id)
		sessions_track(a->sess, id);
	else
		sessions_replan(a->sess);
}

/* The fleet's use of a sandbox this agent may pause for idleness. */
static void used_elsewhere(void *ud, const char *id, int64_t ago_ms)
{
	struct agent *a = ud;

	if (a->sess)
		sessions_used_elsewhere(a->sess, id, ago_ms);
}

static void in_use(void *ud)
{
	struct agent *a = ud;

	if (a->sess)
		sessions_note_held(a->sess);
}

/* HopX's budget is per key: the agents alive share it. */
static void members_changed(void *ud, size_t alive)
{
	struct agent *a = ud;
	int share = a->cfg.budget / (int)alive;

	share = share < 1 ? 1 : share;
	if (a->hopx == NULL || share == hopx_budget(a->hopx))
		return;
	hopx_set_budget(a->hopx, share);
	log_info("fleet: %zu agents share HopX's %d requests/min: %d for this "
	         "one",
	         alive, a->cfg.budget, share);
}

static void new_events(void *ud)
{
	events_publish(ud);
}

static int add_name(void *ud, const struct store_intent *in)
{
	if (in->name && strcmp(in->kind, "create") == 0)
		cJSON_AddItemToArray(ud, cJSON_CreateString(in->name));
	return 0;
}

/* The creates a previous run was cut off in keep their claims. */
static void take_claims(struct agent *a)
{
	cJSON *names = cJSON_CreateArray();
	char *text;

	store_intent_list_open(a->store, add_name, names);
	if (cJSON_GetArraySize(names) > 0 &&
	    (text = json_print(names)) != NULL) {
		fleet_take_claims(a->fleet, text);
		free(text);
	}
	cJSON_Delete(names);
}

static void state_changed(void *ud, enum fleet_state st, const char *why)
{
	struct agent *a = ud;

	if (st == FLEET_REFUSED)
		log_error("fleet: %s", why);
	if (st == FLEET_UP && a->fleet)
		take_claims(a);
}

int fleetlink_start(struct agent *a)
{
	struct fleet_opts o = {.conninfo = a->cfg.store,
	                       .applied = applied,
	                       .events = new_events,
	                       .owner = owner_changed,
	                       .members_changed = members_changed,
	                       .used = used_elsewhere,
	                       .in_use = in_use,
	                       .lease_ms = (int64_t)a->cfg.lease_s * 1000,
	                       .state = state_changed,
	                       .ud = a};
	int r;

	if (!fleetlink_is_pg(a->cfg.store))
		return 0;
	if ((r = fleet_create(a->loop, a->store, a->clk, &o, &a->fleet)) != 0) {
		log_error("cannot start the fleet's store: %s", err_str(r));
		return r;
	}
	log_info("fleet: this agent is %s; the registry is on PostgreSQL, "
	         "%s is its local copy",
	         fleet_host_id(a->fleet), a->cfg.db);
	return 0;
}

void fleetlink_stop(struct agent *a)
{
	struct name_wait *w, *tmp;

	DL_FOREACH_SAFE(waits, w, tmp)
	{
		if (w->a == a)
			wait_end(w, NULL);
	}
	fleet_destroy(a->fleet);
	a->fleet = NULL;
}

int fleetlink_writable(const struct agent *a, char *msg, size_t n)
{
	const char *why = "";
	enum fleet_state st;

	if (a->fleet == NULL || (st = fleet_state(a->fleet, &why)) == FLEET_UP)
		return 0;
	if (st == FLEET_REFUSED)
		snprintf(msg, n,
		         "the fleet's registry refuses this hopxd (%s): "
		         "nothing was changed",
		         why);
	else
		snprintf(msg, n,
		         "the fleet's registry (PostgreSQL) is %s%s%.120s: "
		         "nothing was changed; tokens still work; 'hopxctl "
		         "status' shows the store",
		         fleet_state_str(st), *why ? ": " : "", why);
	return ERR_UNAVAIL;
}

static void add_member(void *ud, const struct fleet_member *m)
{
	cJSON *o = cJSON_CreateObject();

	json_add_str(o, "host_id", m->host_id);
	json_add_str(o, "hostname", m->hostname);
	json_add_i64(o, "pid", m->pid);
	json_add_time(o, "started_at", m->started_at);
	json_add_time(o, "last_seen", m->last_seen);
	cJSON_AddItemToArray(ud, o);
}

void fleetlink_status(const struct agent *a, cJSON *o)
{
	cJSON *s = cJSON_AddObjectToObject(o, "store");
	const char *why = "";

	if (a->fleet == NULL) {
		json_add_str(s, "kind", "sqlite");
		json_add_str(s, "state", "up");
		return;
	}
	json_add_str(s, "kind", "postgresql");
	json_add_str(s, "state", fleet_state_str(fleet_state(a->fleet, &why)));
	if (*why)
		json_add_str(s, "error", why);
	json_add_str(s, "host_id", fleet_host_id(a->fleet));
	json_add_i64(s, "pending", (int64_t)fleet_pending(a->fleet));
	json_add_i64(s, "seq", fleet_seq(a->fleet));
	json_add_i64(s, "leases", (int64_t)fleet_owned(a->fleet));
	cJSON_AddBoolToObject(s, "leader", fleet_leader(a->fleet));
	fleet_members(a->fleet, add_member,
	              cJSON_AddArrayToObject(s, "members"));
}
