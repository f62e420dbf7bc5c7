#ifndef HOPXD_FLEET_INT_H
#define HOPXD_FLEET_INT_H

/*
 * Private to fleet*.c: fleet.c (connection, schema, heartbeat, members),
 * fleet_push.c (the store's writes into PostgreSQL), fleet_pull.c (the
 * registry's changes into the store).
 */

#include <uthash.h>

#include "fleet.h"
#include "pgconn.h"

/* An event waiting to be pushed with its sandbox's changes. */
struct fleet_ev {
	int64_t at;
	enum store_cause cause;
	char *type;
	char *detail;
	struct fleet_ev *next;
};

struct fleet_waiter {
	fleet_done_fn fn;
	void *ud;
	struct fleet_waiter *next;
};

/*
 * A sandbox with changes not yet in PostgreSQL ("" for agent-wide
 * events). parts/evs/waiters accumulate until a push takes them; one
 * push per sandbox at a time, so a sandbox's changes land in order.
 */
struct fleet_dirty {
	char *id;
	unsigned parts;
	struct fleet_ev *evs, **evtail;
	struct fleet_waiter *waiters;
	int inflight; /* a push of it is running */
	int refetch;  /* another agent changed it meanwhile: read it after */
	UT_hash_handle hh;
};

struct fleet_member_rec {
	char host_id[160];
	char hostname[128];
	int64_t pid, started_at, last_seen;
	int alive; /* seen within three heartbeats */
};

/* A sandbox whose lease this agent holds. */
/* A set of sandbox ids (leases held, uses seen here). */
struct fleet_id {
	char *id;
	int seen; /* leases: in the last answer */
	UT_hash_handle hh;
};

/* Empties a set. */
void fleet_ids_free(struct fleet_id **set);

#define FLEET_MEMBERS_MAX 64

/* PostgreSQL's clock, ms: every agent judges liveness by the same one. */
#define FLEET_PG_NOW "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

struct fleet {
	uv_loop_t *loop;
	struct store *st;
	const struct clock *clk;
	struct pgconn *pc;
	struct fleet_opts o;
	char *conninfo;
	char host_id[160];
	char hostname[128];
	int64_t started_at;
	enum fleet_state state;
	char why[512];
	int migrated;
	uv_timer_t beat;  /* heartbeat, and a catch-up in case NOTIFY is lost */
	uv_check_t flush; /* pushes what the loop turn wrote */
	struct fleet_dirty *dirty;
	size_t ndirty;  /* entries with something to push */
	int64_t seq;    /* newest event copied into the store */
	int pulling;    /* a catch-up query is running */
	int fetching;   /* reads of changed sandboxes running */
	int fetch_lost; /* one failed: the copy waits for the next whole read */
	int pull_again;
	int closing;
	struct fleet_member_rec members[FLEET_MEMBERS_MAX];
	size_t nmembers;
	size_t nalive;
	int leader;
	struct fleet_id *owned;
	int leases_known;        /* an answer about leases came */
	int leasing;             /* a lease query is running */
	struct fleet_held *held; /* claims granted, not released */
	struct fleet_id *uses;   /* sandboxes used here since the last beat */
};

/* Closes this agent's open claims that it does not hold (fleet_claim.c);
 * frees the set. */
void fleet_claims_sweep(struct fleet *f);
void fleet_claims_free(struct fleet *f);

/* Renews and takes leases (fleet_lease.c). */
void fleet_lease_beat(struct fleet *f);

int64_t fleet_now(const struct fleet *f);
void fleet_set_state(struct fleet *f, enum fleet_state st, const char *why);

/* The entry of id (created when absent); NULL when out of memory. */
struct fleet_dirty *fleet_dirty_get(struct fleet *f, const char *id);

/* Store journal hooks (fleet_push.c). */
void fleet_journal_changed(void *ud, const char *sandbox_id, unsigned parts);
int fleet_journal_event(void *ud, const struct store_event *e);

/* Starts a push of every entry that has work and is not in flight. */
void fleet_push_all(struct fleet *f);

/* The check handle's callback: fleet_push_all once per loop turn. */
void fleet_on_flush(uv_check_t *h);

/* Takes up what the outbox holds from before this start. */
void fleet_outbox_load(struct fleet *f);

/* Fails every waiter (ERR_UNAVAIL) and frees the entries. */
void fleet_dirty_free(struct fleet *f);

/* Reads the whole registry into the store, then catches up (pull). */
void fleet_resync(struct fleet *f);

/* Reads events after f->seq and applies what they changed. */
void fleet_catch_up(struct fleet *f);

/* Reads these sandboxes (a JSON array of ids) and applies them. */
void fleet_fetch(struct fleet *f, const char *ids_json);

/* Integer as text for a parameter; NULL for STORE_NULL. */
char *fleet_i64(int64_t v);

#endif
