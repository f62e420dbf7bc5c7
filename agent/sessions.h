#ifndef HOPXD_SESSIONS_H
#define HOPXD_SESSIONS_H

/*
 * Every tracked sandbox in memory (a hash map by id), with the store as
 * the durable log: each change is written there first, then mirrored
 * here. Per sandbox, a state machine runs one HopX operation at a time
 * (single-flight: asking for what is already running joins it; anything
 * else waits its turn) and one timer drives background work: token
 * renewal at ~80% of the token's life, keep-alive before the deadline,
 * polling while "creating", retries after failures.
 */

#include <stdint.h>

#include "hopx.h"
#include "sbx.h"
#include "store.h"

struct agent;
struct sessions;

enum sess_act {
	SESS_SYNC,    /* GET: learn status and metadata */
	SESS_REFRESH, /* a new token (arg 1: even if the current one is brand
	               * new: the sandbox refused it) */
	SESS_RESUME,  /* resume, then a new token */
	SESS_PAUSE,
	SESS_START, /* start, then a new token */
	SESS_STOP,
	SESS_KILL,
	SESS_TIMEOUT, /* PUT timeout: arg seconds from now */
	SESS_NACTS
};

/* "resume", ...: the verb of an action. */
const char *sess_act_str(enum sess_act act);

/* The state of the HopX API as the agent last saw it. */
enum sess_api {
	SESS_API_OFF,     /* no API key configured: local records only */
	SESS_API_UNKNOWN, /* nothing answered yet */
	SESS_API_OK,
	SESS_API_AUTH,       /* the key was refused: nothing is changed */
	SESS_API_UNREACHABLE /* network errors, 5xx, timeouts */
};

const char *sess_api_str(enum sess_api s);

/* What an operation did, for the caller that asked for it. */
struct sess_outcome {
	int err;       /* 0 or ERR_* */
	char msg[256]; /* for people, when err != 0 */
	enum sbx_status before;
	enum sbx_status after;
};

typedef void (*sess_done_fn)(void *ud, const struct sess_outcome *o);

/*
 * Starts loading the store's records and arming their timers, a chunk per
 * loop iteration so that the socket answers at once whatever the number
 * of records; a record asked for before its chunk is loaded on the spot.
 * loaded(ud) (may be NULL) runs once all are in memory. With hx NULL (no
 * API key) nothing is ever scheduled and every action fails ERR_AUTH.
 * Returns 0 or ERR_NOMEM.
 */
int sessions_create(struct agent *a, struct hopx *hx, void (*loaded)(void *ud),
                    void *ud, struct sessions **out);

/*
 * Loads what is left now (loaded() runs): what needs every record, the
 * reconcile and the shutdown's pauses, calls it first.
 */
void sessions_load_all(struct sessions *ss);

/* 1 while records are still being loaded. */
int sessions_loading(const struct sessions *ss);

/*
 * Fails every waiting caller (ERR_STATE: shutting down) and closes the
 * timers; frees once the loop ran their close callbacks. NULL ok.
 */
void sessions_destroy(struct sessions *ss);

/* (Re)reads one record from the store, e.g. after attach or create. */
int sessions_track(struct sessions *ss, const char *id);

/* Drops a record the store forgot; its in-flight call finishes unseen. */
void sessions_forget(struct sessions *ss, const char *id);

/*
 * Runs act on the sandbox with this id (arg: TIMEOUT seconds), spending
 * budget at prio; the store's events name cause. fn (may be NULL) runs
 * exactly once, possibly before this returns (e.g. not tracked). Returns
 * 0, or an ERR_* after which fn has already run.
 */
int sessions_do(struct sessions *ss, const char *id, enum sess_act act,
                int64_t arg, enum hopx_prio prio, enum store_cause cause,
                sess_done_fn fn, void *ud);

/* A token the agent holds in memory, valid until the next loop turn. */
struct sess_token {
	const char *id;
	const char *token;
	int64_t expires_at;
	const char *public_host; /* NULL: unknown */
};

/*
 * The token broker's fast path: the token a running sandbox's session
 * holds in memory (kept after a first sessions_token served it from the
 * store) if it lasts min_ttl_ms, by the rules of sessions_token. id must
 * be an id, not a name. ERR_NOTFOUND: take the full path.
 */
int sessions_token_cached(const struct sessions *ss, const char *id,
                          int64_t min_ttl_ms, struct sess_token *out);

/*
 * Hands out a token that lasts at least min_ttl_ms, refreshing first
 * when the stored one would not (a token issued less than a second ago
 * is handed out as it is: a refresh would not last longer). fn gets
 * the token (NULL on error) and its expiry.
 */
typedef void (*sess_token_fn)(void *ud, const struct sess_outcome *o,
                              const char *token, int64_t expires_at);
int sessions_token(struct sessions *ss, const char *id, int64_t min_ttl_ms,
                   sess_token_fn fn, void *ud);

/*
 * Calls fn once the sandbox has status want (at once if it has), with
 * ERR_TIMEOUT after timeout_ms, or ERR_NOTFOUND if it is forgotten.
 */
int sessions_wait(struct sessions *ss, const char *id, enum sbx_status want,
                  int64_t timeout_ms, sess_done_fn fn, void *ud);

/*
 * Applies what a list page said about a tracked sandbox (status and
 * metadata; cause remote). Returns 0, ERR_NOTFOUND (not tracked) or
 * ERR_BUSY (an operation is in flight: its own answer will tell).
 */
int sessions_observe(struct sessions *ss, const struct hopx_sandbox *h);

/* Status, token expiry and policies of a tracked sandbox. */
struct sess_view {
	enum sbx_status status;
	int64_t token_expires_at; /* 0: none */
	int64_t token_issued_at;
	int64_t renew_at; /* when the token is due for renewal; 0: none */
	int auto_resume;
	int paused_by_agent;
	int pause_on_shutdown;
	int busy;        /* an operation is in flight */
	int leases;      /* clients holding it in use */
	int64_t idle_at; /* when it is paused for idleness; 0: never */
};

/* Records in memory only: call once loaded (reconcile waits for it). */
int sessions_view(const struct sessions *ss, const char *id,
                  struct sess_view *out);

/* Calls fn for every tracked sandbox (not in a defined order). */
typedef void (*sess_each_fn)(void *ud, const char *id,
                             const struct sess_view *v);
void sessions_each(const struct sessions *ss, sess_each_fn fn, void *ud);

/*
 * A client used the sandbox (asked for its token, took a lease): the idle
 * period starts again. Cheap enough for the token broker's path.
 */
void sessions_use(struct sessions *ss, const char *id);

/*
 * In a fleet: id was last used by another agent ago_ms ago; the idle
 * clock counts from then if that is the later use.
 */
void sessions_used_elsewhere(struct sessions *ss, const char *id,
                             int64_t ago_ms);

/* In a fleet: notes every sandbox held in use here (a client's lease)
 * with an idle policy, for the agent that may pause it. */
void sessions_note_held(struct sessions *ss);

/*
 * delta +1: a client holds the sandbox in use (a lease): it is never
 * paused for idleness and its HopX deadline is re-armed before it runs
 * out; -1: let go, the idle period starts then. ERR_NOTFOUND.
 */
int sessions_lease(struct sessions *ss, const char *id, int delta);

/* Re-reads policies from the store and re-arms the timer (after policy). */
int sessions_policy_changed(struct sessions *ss, const char *id);

/*
 * Notes the outcome of any HopX call for the agent-wide API state,
 * appending an "api" event when it changes.
 */
void sessions_note_api(struct sessions *ss, int err, const char *msg);

/*
 * HopX's answers of one loop turn come between sessions_batch(ss, 0) and
 * sessions_batch(ss, 1) (hopx_on_batch): what they change is stored in
 * one transaction, committed (one fsync for the whole turn: a wave of
 * 10k renewals is bound by HTTP, not by the disk) and its events
 * published at the second call; the socket's replies wait for that
 * commit (a reply never says more than what is stored).
 */
void sessions_batch(struct sessions *ss, int end);

enum sess_api sessions_api(const struct sessions *ss, const char **msg);

/* Tracked count. */
size_t sessions_count(const struct sessions *ss);

/*
 * The earliest renewal (0: none). A walk of every record (~5 ms at 100k):
 * the answer is reused for a second.
 */
int64_t sessions_next_renewal(struct sessions *ss);

/*
 * Plans every record's background work anew from the clocks as they read
 * now: after HopX's clock moved against ours, or ours jumped (a suspend,
 * an NTP step), when timers armed before no longer fire when they should.
 */
void sessions_replan(struct sessions *ss);

/*
 * Background work (renewals, keep-alive, polls) starts held, so that the
 * first reconcile decides what each record needs; on releases it.
 */
void sessions_background(struct sessions *ss, int on);

/*
 * Shutdown: stops background work, pauses every running sandbox whose
 * policy says so (marking it paused_by_agent) and calls fn once those
 * pauses have answered. fn runs at once when there is nothing to pause.
 */
void sessions_shutdown(struct sessions *ss, void (*fn)(void *ud), void *ud);

#endif
