#ifndef HOPXD_STORE_H
#define HOPXD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "sbx.h"

/*
 * The durable log of everything hopxd tracks: an SQLite database in WAL
 * mode with synchronous=FULL. This is the only code that touches SQLite;
 * it never touches the event loop. One struct store per process; not
 * thread-safe. Every function returns 0 or a negative ERR_* code:
 * ERR_FULL (disk full), ERR_READONLY, ERR_CORRUPT, ERR_BUSY (locked),
 * ERR_IO and ERR_NOMEM can come from any call that touches the file, and
 * a failed call leaves the database as it was before the call.
 */
struct store;

/* Value of an integer field that is unknown (SQL NULL). */
#define STORE_NULL INT64_MIN

/* Who caused a change, as recorded in the event log. */
enum store_cause {
	STORE_CAUSE_USER,
	STORE_CAUSE_AGENT,
	STORE_CAUSE_REMOTE,
	STORE_CAUSE_TRAFFIC /* requests through the local proxy */
};

const char *store_cause_str(enum store_cause c);

/* The cause a name stands for ("user", "remote", "traffic"; anything else
 * agent). */
enum store_cause store_cause_parse(const char *c);

/* Open flags. */
#define STORE_OPEN_READONLY 0x1 /* never write; refuse if migration needed */
#define STORE_OPEN_CHECK    0x2 /* run PRAGMA quick_check after opening */

/*
 * Routes SQLite's own error log (the cause of each I/O failure) to the
 * agent's log. Must come before any other SQLite call to take effect;
 * store_open calls it, so only code that touches SQLite first needs to.
 */
void store_global_init(void);

/*
 * Opens (creating it 0600, and missing parent directories 0700) and
 * migrates the database at path. clk may be NULL for the system clock; it
 * must outlive the store. On failure *cause, if cause is not NULL, gets a
 * message for people (free() it) and the code says why: ERR_TOONEW (the
 * message names both schema versions), ERR_READONLY, ERR_CORRUPT (also for
 * a file that is not a hopxd database), ERR_PERM, ERR_FULL, ERR_IO.
 */
int store_open(const char *path, unsigned flags, const struct clock *clk,
               struct store **out, char **cause);

/*
 * Finalises every statement and closes the database. Accepts NULL.
 * Returns 0, or ERR_BUSY if SQLite refused to close (a leaked statement).
 */
int store_close(struct store *s);

/* Schema version of the open database (PRAGMA user_version). */
int store_schema_version(const struct store *s);

/* The page cache's size, KiB: STORE_CACHE_KIB unless changed. */
#define STORE_CACHE_KIB 16384
/* ... and a check's (STORE_OPEN_CHECK), which reads each page once. */
#define STORE_CHECK_CACHE_KIB 512

/*
 * Sets the page cache's size. A full scan gains nothing from a large
 * cache, and its pages would sit between the records built meanwhile,
 * where the heap cannot give them back (13 MB of RSS at 100k records).
 */
int store_cache_kib(struct store *s, int kib);

/*
 * Gives back the page cache's memory (a full read at start fills it; the
 * agent serves from memory afterwards).
 */
void store_release_memory(struct store *s);

/* Newest schema version this build knows. */
int store_schema_latest(void);

/*
 * Groups the writes that follow into one transaction (one fsync), e.g. all
 * answers HopX gave in one loop turn. Each write inside keeps its own
 * all-or-nothing guarantee: a failed write is undone alone. A group begun
 * inside another is a savepoint of it: its commit is all or nothing, but
 * durable only with the outermost commit. store_commit returns the error
 * of a commit that failed (the group is then rolled back); store_rollback
 * undoes the (innermost) group.
 */
int store_begin(struct store *s);
int store_commit(struct store *s);
int store_rollback(struct store *s);

/* 1 while a group is open. */
int store_grouped(const struct store *s);

/*
 * Runs PRAGMA quick_check (full=0) or integrity_check (full=1). Returns 0
 * or ERR_CORRUPT with the first problem in *cause.
 */
int store_check(struct store *s, int full, char **cause);

struct store_label {
	char *key;
	char *value;
};

/*
 * A tracked sandbox. Strings are heap copies owned by the record (free
 * with store_sandbox_finish); NULL means unknown. Integers use STORE_NULL
 * for unknown. Times are Unix milliseconds.
 */
struct store_sandbox {
	char *id;
	char *name; /* local name, unique; NULL when none */
	enum sbx_status status;
	char *template_id;
	char *template_name;
	char *region;
	char *public_host;
	int64_t vcpu;
	int64_t memory_mb;
	int64_t disk_mb;
	int64_t internet_access; /* 0, 1 or STORE_NULL */
	int64_t timeout_seconds; /* STORE_NULL: no auto-kill */
	int64_t expires_at;
	int64_t created_at;
	int64_t tracked_at;   /* set by the store on first put */
	int64_t updated_at;   /* set by the store on every write */
	int64_t confirmed_at; /* last time HopX confirmed the status */
	int stale;            /* the last sync failed: see last_error */
	char *last_error;
	int auto_resume;       /* policy, default 1 */
	int64_t keepalive_s;   /* policy, 0 = off */
	int pause_on_shutdown; /* policy, default 0 */
	int64_t idle_pause_s;  /* policy: pause after this long unused; 0 off */
	int on_expiry;         /* policy: STORE_EXPIRY_*, default KILL */
	/* Filled by get and list, ignored by put: */
	int paused_by_agent;  /* paused at shutdown, to resume at start */
	int64_t status_since; /* when the status last changed (a trigger) */
	char *token;
	int64_t token_expires_at;
	int64_t token_issued_at;
	struct store_label *labels; /* sorted by key */
	size_t nlabels;
};

/* Sets every field to unknown and the policies to their defaults. */
void store_sandbox_init(struct store_sandbox *r);

/* Frees the strings and labels; accepts an initialised or zeroed record. */
void store_sandbox_finish(struct store_sandbox *r);

/*
 * Inserts or replaces a sandbox's row (all columns but tracked_at, the
 * labels and the token). A new row appends a "tracked" event. *created (if
 * not NULL) says which. ERR_EXISTS: the name belongs to another sandbox;
 * ERR_INVAL: a field breaks the schema (bad id, name or policy).
 */
int store_sandbox_put(struct store *s, const struct store_sandbox *r,
                      enum store_cause cause, int *created);

/*
 * Fills out (which the caller then finishes) with the sandbox whose id is
 * ref or, failing that, whose local name is ref. ERR_NOTFOUND otherwise.
 */
int store_sandbox_get(struct store *s, const char *ref,
                      struct store_sandbox *out);

/* What store_sandbox_list returns; unset members (0/NULL) do not filter. */
struct store_filter {
	int has_status;
	enum sbx_status status;
	const char *name;
	const char *label_key;   /* records carrying this label key ... */
	const char *label_value; /* ... with this value (NULL: any value) */
	const char *after_id;    /* keyset paging: ids greater than this */
	size_t limit;            /* 0: no limit */
};

/*
 * Calls cb for each matching record in id order. The record is valid only
 * during the call. A non-zero return from cb stops the walk and is
 * returned. f may be NULL (everything).
 */
typedef int (*store_sandbox_cb)(void *ud, const struct store_sandbox *r);
int store_sandbox_list(struct store *s, const struct store_filter *f,
                       store_sandbox_cb cb, void *ud);

/*
 * The same walk, each record as its JSON text (the shape of the agent's
 * sandbox objects, never the token unless with_token: then a "token"
 * member too); text is valid during the call.
 */
typedef int (*store_json_cb)(void *ud, const char *id, const char *text,
                             size_t len);
int store_sandbox_list_json(struct store *s, const struct store_filter *f,
                            int with_token, store_json_cb cb, void *ud);

/* Number of records in each status, indexed by enum sbx_status. */
int store_sandbox_count(struct store *s, size_t counts[SBX_STATUS_COUNT]);

/*
 * Sets (name non-NULL) or clears a local name, with a "renamed" event.
 * ERR_NOTFOUND: no such id; ERR_EXISTS: the name is taken.
 */
int store_sandbox_rename(struct store *s, const char *id, const char *name,
                         enum store_cause cause);

/*
 * Records a status confirmed by HopX: sets status, confirmed_at = now,
 * clears stale and last_error. When the status changed, appends a
 * "status" event in the same transaction and sets *seq (if not NULL) to
 * its number, else to 0. ERR_NOTFOUND: no such id.
 */
int store_sandbox_set_status(struct store *s, const char *id,
                             enum sbx_status status, enum store_cause cause,
                             int64_t *seq);

/*
 * What HopX said about a sandbox besides its status. NULL strings and
 * STORE_NULL integers keep the stored value, except timeout_seconds and
 * expires_at, where STORE_NULL means "no auto-kill".
 */
struct store_meta {
	const char *template_id;
	const char *template_name;
	const char *region;
	const char *public_host;
	int64_t timeout_seconds;
	int64_t expires_at;
	int64_t created_at;
	int64_t vcpu;
	int64_t memory_mb;
	int64_t disk_mb;
};

/*
 * As store_sandbox_set_status, also writing meta (if not NULL) and giving
 * the status event a "why" (e.g. "resumed", NULL for none), all in one
 * transaction. A status change clears paused_by_agent.
 */
int store_sandbox_observe(struct store *s, const char *id,
                          enum sbx_status status, const struct store_meta *meta,
                          enum store_cause cause, const char *why,
                          int64_t *seq);

/* Marks a sandbox as paused by the agent at shutdown (on) or not. */
int store_sandbox_set_paused_by_agent(struct store *s, const char *id, int on);

/*
 * Records that syncing this sandbox failed: stale = 1 and last_error, the
 * status untouched (an outage is never "gone"). Appends a "stale" event
 * only when the record was not stale before. ERR_NOTFOUND: no such id.
 */
int store_sandbox_mark_stale(struct store *s, const char *id,
                             const char *error);

/* What happens at HopX's kill deadline (policy on_expiry). */
enum {
	STORE_EXPIRY_KILL,  /* HopX kills it: its own behaviour */
	STORE_EXPIRY_PAUSE, /* paused before, the deadline kept off */
	STORE_EXPIRY_EXTEND /* re-armed to its own timeout */
};

/* "kill", "pause", "extend"; NULL for anything else. */
const char *store_expiry_str(int on_expiry);

/* The STORE_EXPIRY_* a name stands for, or -1. */
int store_expiry_parse(const char *s);

/* The policies a sandbox has; in a change, a negative value keeps one. */
struct store_policy {
	int64_t auto_resume;       /* 0 or 1 */
	int64_t keepalive_s;       /* 0: off */
	int64_t pause_on_shutdown; /* 0 or 1 */
	int64_t idle_pause_s;      /* 0: off */
	int64_t on_expiry;         /* STORE_EXPIRY_* */
};

/* Sets every field of p to "keep". */
void store_policy_keep(struct store_policy *p);

/*
 * Changes the policies p names. Appends a "policy" event. ERR_NOTFOUND:
 * no such id; ERR_INVAL: bad value.
 */
int store_sandbox_set_policy(struct store *s, const char *id,
                             const struct store_policy *p,
                             enum store_cause cause);

/*
 * Forgets a sandbox locally (row, labels and token; the events stay) with
 * a "forgotten" event. ERR_NOTFOUND: no such id.
 */
int store_sandbox_forget(struct store *s, const char *id,
                         enum store_cause cause);

/*
 * Sets or replaces a label, with a "label" event. ERR_NOTFOUND: no such
 * sandbox; ERR_INVAL: key or value breaks sbx_label_check.
 */
int store_label_set(struct store *s, const char *id, const char *key,
                    const char *value, enum store_cause cause);

/* Removes a label, with a "label" event. ERR_NOTFOUND: no such label. */
int store_label_unset(struct store *s, const char *id, const char *key,
                      enum store_cause cause);

/*
 * Stores token as the sandbox's current token only if it expires later
 * than the stored one (so a late answer never rolls a token back), or
 * as late but is another token issued later (a refresh within the same
 * second as the last, e.g. after the sandbox refused that one).
 * *replaced (if not NULL) says whether it was stored. ERR_NOTFOUND: no
 * such sandbox.
 */
int store_token_put(struct store *s, const char *id, const char *token,
                    int64_t expires_at, int64_t issued_at, int *replaced);

/* One entry of the event log; valid only during the callback. */
struct store_event {
	int64_t seq;
	int64_t at;
	const char *sandbox_id; /* NULL for agent-wide events */
	const char *type;
	enum store_cause cause;
	const char *detail; /* JSON text or NULL */
	const char *host;   /* the fleet's host that caused it; NULL alone */
};

/*
 * Appends an event (detail: JSON text or NULL) and sets *seq (if not
 * NULL) to its sequence number. Sequence numbers only grow, also across
 * pruning.
 */
int store_event_append(struct store *s, const char *sandbox_id,
                       const char *type, enum store_cause cause,
                       const char *detail, int64_t *seq);

/*
 * Calls cb for up to limit events (0: all) with seq > after, oldest
 * first. A non-zero return from cb stops the walk and is returned.
 */
typedef int (*store_event_cb)(void *ud, const struct store_event *e);
int store_event_since(struct store *s, int64_t after, size_t limit,
                      store_event_cb cb, void *ud);

/*
 * Adds an event numbered elsewhere (e->seq, e->host kept as given): the
 * fleet's log copied into this one. An event already there is kept.
 */
int store_event_mirror(struct store *s, const struct store_event *e);

/* Highest sequence number ever given (0 when none). */
int store_event_last_seq(struct store *s, int64_t *seq);

/*
 * Deletes events older than max_age_ms (0: no age limit), then all but
 * the newest keep events (0: no count limit). *removed may be NULL.
 */
int store_event_prune(struct store *s, size_t keep, int64_t max_age_ms,
                      size_t *removed);

/* An open intent: a create sent (or about to be) whose outcome is unknown. */
struct store_intent {
	int64_t id;
	const char *kind;
	const char *request; /* JSON text of the request */
	const char *name;    /* local name asked for, or NULL */
	int64_t created_at;
	int64_t sent_at; /* 0: its request never left the agent */
};

/*
 * Records an intent before the API call it describes; *id gets its id.
 * ERR_EXISTS: another open intent already asks for this name.
 */
int store_intent_add(struct store *s, const char *kind, const char *request,
                     const char *name, int64_t *id);

/* Notes that the intent's request is being handed to the network now. */
int store_intent_sent(struct store *s, int64_t id);

/*
 * Closes an intent: done with the sandbox it produced, or failed
 * (sandbox_id NULL). ERR_NOTFOUND: no such open intent.
 */
int store_intent_resolve(struct store *s, int64_t id, const char *sandbox_id);

/* Calls cb for every open intent, oldest first. */
typedef int (*store_intent_cb)(void *ud, const struct store_intent *in);
int store_intent_list_open(struct store *s, store_intent_cb cb, void *ud);

/*
 * Stores a reconcile report (JSON text; trigger "start", "periodic" or
 * "user"), keeping only the newest few. *id (if not NULL) gets its id.
 */
int store_report_add(struct store *s, const char *trigger, int64_t started_at,
                     int64_t finished_at, const char *report, int64_t *id);

/* The newest report (*report: malloc'd JSON text). ERR_NOTFOUND: none. */
int store_report_last(struct store *s, int64_t *id, char **report);

/* ---- a replica's hooks (the fleet, store/fleet.c) ---- */

/* The parts of a sandbox one write changes. */
enum {
	STORE_PART_NAME = 0x1,
	STORE_PART_STATUS = 0x2, /* status, confirmed, stale, paused_by_agent */
	STORE_PART_META = 0x4,   /* what HopX says: template, deadline, ... */
	STORE_PART_POLICY = 0x8,
	STORE_PART_LABELS = 0x10,
	STORE_PART_TOKEN = 0x20,
	STORE_PART_GONE = 0x40, /* forgotten */
	STORE_PART_NEW = 0x80,  /* the record was made (tracked) */
	STORE_PART_ROW = 0xf,
	/* What HopX said, as opposed to what a user asked for: kept and
	 * stored later when the replica cannot be reached. */
	STORE_PART_FACTS = STORE_PART_STATUS | STORE_PART_META |
	                   STORE_PART_TOKEN | STORE_PART_NEW
};

/*
 * Set, every write reports what it changed (changed, after the write;
 * inside a group that is rolled back later too, so a replica reads the
 * store's state again rather than trusting the report), and events go
 * to event instead of this database's log: the replica numbers them and
 * brings them back with store_event_mirror. Both run during the write.
 */
struct store_journal {
	void (*changed)(void *ud, const char *sandbox_id, unsigned parts);
	int (*event)(void *ud, const struct store_event *e);
	void *ud;
};

/*
 * With a journal, every write also notes its sandbox and parts in the
 * outbox, in its own transaction: what the replica has not confirmed
 * survives a crash. Only facts are noted (a user's change that was not
 * confirmed was not acknowledged either, and the replica may hold a
 * newer one), except for a new record, whose every part is. cb gets each noted
 * sandbox. store_outbox_done says what of a sandbox is still not confirmed
 * (left: parts; 0: nothing), so that a restart pushes no part the replica
 * already holds (it may hold a newer value from elsewhere by then).
 */
typedef int (*store_outbox_cb)(void *ud, const char *sandbox_id,
                               unsigned parts);
int store_outbox_list(struct store *s, store_outbox_cb cb, void *ud);
int store_outbox_done(struct store *s, const char *sandbox_id, unsigned left);

/* Installs j (copied; NULL removes it). */
void store_set_journal(struct store *s, const struct store_journal *j);

/*
 * on: writes are neither reported nor logged as events (a replica
 * applying what it read from the shared registry, whose own events come
 * through store_event_mirror).
 */
void store_journal_mute(struct store *s, int on);

/* ---- the local proxy (store_proxy.c) ---- */

/* Bytes of a token's fingerprint (the start of its SHA-256). */
#define STORE_PROOF_LEN 16

/* The fingerprint of token, as token_proofs keeps it. */
void store_proof_of(const char *token, unsigned char fp[STORE_PROOF_LEN]);

/*
 * The number of id's local proxy address: given the first time it is
 * asked for, kept for as long as id is tracked and never given to
 * another sandbox. ERR_NOTFOUND: no such sandbox.
 */
int store_proxy_host(struct store *s, const char *id, int64_t *n);

/* The sandbox (id, n bytes) whose proxy number is num. ERR_NOTFOUND. */
int store_proxy_host_id(struct store *s, int64_t num, char *id, size_t n);

/*
 * Whether fp is the fingerprint of a token this store held for id (every
 * token store_token_put stored is one, expired or not): 0 if so, noting
 * its use at now (written at most hourly); ERR_NOTFOUND if not.
 */
int store_proof_check(struct store *s, const char *id,
                      const unsigned char fp[STORE_PROOF_LEN]);

/*
 * Drops the proofs never presented and issued before unused_before, and
 * those last presented before used_before; *removed (may be NULL).
 */
int store_proof_prune(struct store *s, int64_t unused_before,
                      int64_t used_before, size_t *removed);

#endif
