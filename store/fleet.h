#ifndef HOPXD_FLEET_H
#define HOPXD_FLEET_H

/*
 * The fleet: agents on many hosts sharing one registry on PostgreSQL.
 * Each agent keeps working on its own store (the SQLite database, here a
 * copy of the registry) and this module keeps the two the same: every
 * write to the store is pushed to PostgreSQL (the parts of the sandbox it
 * changed, with its events, one transaction per sandbox), and every
 * change another agent made comes back (NOTIFY carries the event's
 * sequence number; what a missed notification would have said is read
 * by sequence, and a whole copy is read again after every reconnect).
 * Events get the fleet's sequence numbers and the host that caused them,
 * and reach the local log through store_event_mirror.
 *
 * A caller that must not acknowledge a change before PostgreSQL holds it
 * waits with fleet_barrier. Everything runs on the loop: libpq's
 * asynchronous API (pgconn.c), never a blocking call.
 */

#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "store.h"

struct fleet;

enum fleet_state {
	FLEET_CONNECTING, /* not yet reached since start */
	FLEET_SYNCING,    /* connected, reading the registry */
	FLEET_UP,
	FLEET_UNAVAILABLE, /* lost or unreachable: retrying */
	FLEET_REFUSED      /* a newer schema: this hopxd must be upgraded */
};

/* "connecting", "syncing", "up", "unavailable", "refused". */
const char *fleet_state_str(enum fleet_state s);

struct fleet_opts {
	const char *conninfo; /* libpq string or URI: never logged */
	int64_t timeout_ms;   /* per query; default 10 s */
	int64_t heartbeat_ms; /* hosts.last_seen; default 2 s */
	int64_t lease_ms;     /* a sandbox's background work stays with an
	                       * agent this long unrenewed; default 15 s */
	/* A sandbox another agent changed is now as the registry says in
	 * the store (gone: forgotten); the caller reloads its memory. */
	void (*applied)(void *ud, const char *sandbox_id, int gone);
	/* New events are in the store's log (to publish). */
	void (*events)(void *ud);
	/* This agent took (mine 1) or lost a sandbox's background work;
	 * sandbox_id NULL: every sandbox's may have changed. */
	void (*owner)(void *ud, const char *sandbox_id, int mine);
	/* A sandbox this agent holds the lease of was last used by another
	 * agent ago_ms ago (its idle clock is the fleet's). */
	void (*used)(void *ud, const char *sandbox_id, int64_t ago_ms);
	/* Each heartbeat: fleet_note_use for every sandbox held in use here
	 * (a client's lease) that another agent may pause. */
	void (*in_use)(void *ud);
	/* The number of agents alive changed (they share HopX's budget). */
	void (*members_changed)(void *ud, size_t alive);
	/* The state changed (why: for people, no secrets). */
	void (*state)(void *ud, enum fleet_state st, const char *why);
	void *ud;
};

/*
 * Starts connecting, migrating and copying the registry, and installs
 * the store's journal. st and clk must outlive the fleet. Returns 0,
 * ERR_INVAL or ERR_NOMEM.
 */
int fleet_create(uv_loop_t *loop, struct store *st, const struct clock *clk,
                 const struct fleet_opts *o, struct fleet **out);

/* Removes the journal, fails waiting barriers, closes. NULL ok. */
void fleet_destroy(struct fleet *f);

enum fleet_state fleet_state(const struct fleet *f, const char **why);

/* This agent's name in the fleet: hostname/pid/start. */
const char *fleet_host_id(const struct fleet *f);

/*
 * fn(ud, 0) once every change to sandbox_id written so far is committed
 * in PostgreSQL (at once when there is none); else err: ERR_UNAVAIL (the
 * database could not be reached or the outcome is unknown), ERR_EXISTS
 * (the registry holds the name for another sandbox), ERR_INVAL. On an
 * error the store is put back as the registry has it. fn may run before
 * this returns.
 */
typedef void (*fleet_done_fn)(void *ud, int err, const char *msg);
void fleet_barrier(struct fleet *f, const char *sandbox_id, fleet_done_fn fn,
                   void *ud);

/*
 * Claims name for a create across the fleet (an open intent in the
 * registry; one per name, and none for a name a sandbox has). fn gets
 * err 0 and intent > 0: go on, then fleet_release; err 0 and intent 0:
 * another agent made it or is making it (wait for it, or claim again
 * later: a claim of an agent that left lapses); or err (ERR_UNAVAIL).
 */
typedef void (*fleet_claim_fn)(void *ud, int err, int64_t intent,
                               const char *msg);
void fleet_claim_name(struct fleet *f, const char *name, fleet_claim_fn fn,
                      void *ud);

/*
 * fn gets the number of open claims of other agents alive (creates whose
 * sandbox another agent may still be about to store) and the newest
 * event's sequence. Adopting a sandbox made before now for a create of
 * this agent whose answer was lost is safe only with none, once this
 * copy holds what the registry did at seq (fleet_caught_up: a stored
 * sandbox it would not know otherwise). ERR_UNAVAIL: cannot tell.
 */
typedef void (*fleet_count_fn)(void *ud, int err, int64_t n, int64_t seq);
void fleet_foreign_claims(struct fleet *f, fleet_count_fn fn, void *ud);

/*
 * Takes over the open claims of these names (a JSON array): the creates
 * a previous run of this agent was cut off in, which it settles itself,
 * so that their claims do not lapse and let another agent make the
 * sandbox a second time meanwhile. They are held like this agent's own
 * (fleet_drop_claim closes one; a closing lost with the connection is
 * done again at the reconnect). Such claims do not count in
 * fleet_foreign_claims: agents each settling their own at once would
 * otherwise wait for each other for ever.
 */
void fleet_take_claims(struct fleet *f, const char *names_json);

/*
 * Keeps a claim whose create's outcome is unknown (no answer, or a lost
 * one): HopX may have made the sandbox, so the name stays claimed, now
 * settled by this agent like one taken over from a run before it (its
 * reconcile adopts the sandbox, or drops the claim: fleet_drop_claim).
 */
void fleet_keep_claim(struct fleet *f, int64_t intent);

/* Closes this agent's claim of name: its create made nothing. */
void fleet_drop_claim(struct fleet *f, const char *name);

/* Closes a claim: done with sandbox_id, or failed (NULL). */
void fleet_release(struct fleet *f, int64_t intent, const char *sandbox_id);

/* One agent of the fleet as of the last heartbeat. */
struct fleet_member {
	const char *host_id;
	const char *hostname;
	int64_t pid;
	int64_t started_at;
	int64_t last_seen;
};

/* Calls fn for every member seen in the last minute. */
typedef void (*fleet_member_fn)(void *ud, const struct fleet_member *m);
void fleet_members(const struct fleet *f, fleet_member_fn fn, void *ud);

/*
 * 1 when this agent does the sandbox's background work (renewals,
 * keep-alive, pauses): it holds the sandbox's lease, renewed every
 * heartbeat; leases of an agent that stops renewing lapse after
 * lease_ms and are taken by the others, a fair share each. Before the
 * first answer about leases (or with the database never reached since
 * start) every sandbox counts as this agent's: work done twice rather
 * than not at all.
 */
int fleet_owns(const struct fleet *f, const char *sandbox_id);

/* Sandboxes this agent holds the lease of. */
size_t fleet_owned(const struct fleet *f);

/*
 * Notes a use of sandbox_id on this agent for the agent holding its
 * lease, whose idle clock it resets (told at the next heartbeat: an idle
 * period shorter than two heartbeats may pass unseen). Nothing for a
 * sandbox this agent holds.
 */
void fleet_note_use(struct fleet *f, const char *sandbox_id);

/* 1 when this agent runs the fleet's reconciles (the oldest alive). */
int fleet_leader(const struct fleet *f);

/* Changes waiting to be pushed (for status). */
size_t fleet_pending(const struct fleet *f);

/* Newest fleet sequence number copied into the store. */
int64_t fleet_seq(const struct fleet *f);

/*
 * 1 when the copy holds everything the registry did at event seq: the
 * events read, the sandboxes they changed read too (none being read, no
 * read lost since the last whole read), the registry up.
 */
int fleet_caught_up(const struct fleet *f, int64_t seq);

#endif
