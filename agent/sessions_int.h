#ifndef HOPXD_SESSIONS_INT_H
#define HOPXD_SESSIONS_INT_H

/*
 * What the files of the sessions module share: the records in memory, the
 * operation state machine's state and the helpers each part calls. Only
 * sessions*.c include it.
 */

#include <stdint.h>
#include <uv.h>

#include "hopx.h"
#include "sessions.h"
#include "timerq.h"

#include <uthash.h>

/* A token younger than this is not refreshed again: it would not last. */
#define REFRESH_MIN_AGE_MS 1000
/* A handed-out token lasts at least this long, whatever was asked. */
#define TOKEN_MIN_TTL_MS 1000
/* SESS_PAUSE's arg when the agent pauses a sandbox nobody uses, and
 * when it pauses one before HopX's deadline (on_expiry pause). */
#define PAUSE_IDLE           1
#define PAUSE_EXPIRY         2
#define EXPIRY_MARGIN_MIN_MS 2000
#define EXPIRY_MARGIN_MAX_MS 60000
#define RETRY_BASE_MS        1000
#define RETRY_CAP_MS         60000
/* A renewal retries within a third of what is left of its token. */
#define RETRY_MIN_MS  500
#define AUTH_RETRY_MS 60000
/* Records loaded per loop iteration at start (~1 ms of work: a user's
 * request during the load waits that long at each of its loop turns). */
#define LOAD_CHUNK 250
/* The page cache while loading: a scan reads each page once. */
#define LOAD_CACHE_KIB 2048

struct waiter {
	sess_done_fn fn;
	void *ud;
	struct waiter *next;
};

struct op {
	enum sess_act act;
	int64_t arg;
	enum hopx_prio prio;
	enum store_cause cause;
	int step;      /* RESUME, START: 1 once the token is being refreshed */
	int probe;     /* a GET is out to learn why the call was refused */
	int probe_err; /* ... and the error that refused it */
	int probed;
	enum sbx_status before;
	struct waiter *waiters;
	struct op *prev, *next;
};

struct swait {
	struct sess *s;
	enum sbx_status want;
	uv_timer_t timer;
	sess_done_fn fn;
	void *ud;
	struct swait *prev, *next;
};

struct sess {
	UT_hash_handle hh;
	struct sessions *ss;
	enum sbx_status status;
	int64_t tok_issued, tok_exp; /* wall ms; 0: no token */
	int64_t expires_at;          /* HopX's kill deadline; 0: none */
	int64_t keepalive_s;
	int64_t idle_pause_s; /* policy: pause when unused this long; 0 off */
	int64_t timeout_s;    /* HopX's kill period, re-armed while leased */
	int64_t used_at;      /* last use (a token asked, a lease let go) */
	int leases;           /* clients holding it in use */
	int on_expiry;        /* STORE_EXPIRY_*: what HopX's deadline does */
	int64_t pause_after;  /* the agent's own pauses wait (one refused) */
	int auto_resume, pause_on_shutdown, paused_by_agent;
	uint32_t jitter; /* where in the renewal window this one renews */
	int64_t booked;  /* its renewal's second in the load; 0: none */
	int fails;       /* consecutive failed operations */
	int64_t wait_ms; /* Retry-After of the last failed answer, or -1 */
	int polls;       /* polls while creating */
	int64_t retry_at;
	int64_t poll_at;
	struct timerq_entry due; /* the next background action */
	struct op *cur;          /* in flight */
	struct op *queue;        /* waiting their turn */
	struct swait *waits;
	int refs; /* the map, a call in flight, a running finish */
	int dropped;
	/* The stored token and host, once a client asked (NULL: ask the
	 * store): the token broker's answer without SQL. Emptied by every
	 * change, so it is never newer or older than the store. */
	char *tok_text, *host;
	char id[]; /* sized to fit: 100k records are 100k of these */
};

/* The records not yet in memory: a keyset cursor over the store. */
struct loader {
	uv_idle_t idle;
	struct sessions *ss;
	char after[SBX_ID_MAX + 1];
	size_t got; /* rows in the current chunk */
	int64_t t0;
	void (*fn)(void *ud);
	void *ud;
};

struct sessions {
	struct agent *a;
	struct loader *loader; /* NULL once every record is loaded */
	int64_t next_renewal, next_renewal_mono; /* and when it was found */
	struct hopx *hx;
	/* HopX's time (hopx_clock): token and deadline times are HopX's, so
	 * every decision about them is made on its clock. */
	const struct clock *clk;
	int skew_told; /* the skew was past SKEW_WARN_MS when last told */
	struct sess *map;
	struct timerq *tq; /* every record's next background action */
	struct renew_slot *renew_load; /* renewals booked per second */
	uint32_t rng;
	enum sess_api api;
	char api_msg[256];
	int stopping;
	int held; /* background work waits for the first reconcile */
	int pauses_left;
	void (*shut_fn)(void *ud);
	void *shut_ud;
	/* HopX's answers of one loop turn (sessions_batch): one transaction,
	 * open once the first came; the records answered, each with the
	 * reference its call held. */
	int batching, batch_open;
	/* records some client holds (leases > 0) */
	size_t nleased;
	struct sess **batch;
	size_t nbatch, batch_cap;
};

/* HopX's time (hopx_clock): what token and deadline times are in. */
int64_t sess_now(const struct sessions *ss);

/* The record with this id, or NULL; lookup also loads it from the store
 * while the records are still loading. */
struct sess *sess_find(const struct sessions *ss, const char *id);
struct sess *sess_lookup(struct sessions *ss, const char *id);

/* Forgets the cached token text (any change of the record). */
void sess_cache_clear(struct sess *s);

/* Drops a reference; the last frees the record. */
void sess_unref(struct sess *s);

/* Ends a status wait with err (0: the status came). */
void sess_swait_end(struct swait *w, int err, const char *msg);

/* ---- scheduling (sessions_sched.c) ---- */

/* Queues the record's next background action. */
void sess_schedule(struct sess *s);

/* The queue's callback: a record's background action came due. */
void sess_due(void *ud, struct timerq_entry *e);

/*
 * For a token this agent just got: its place in the renewal window, the
 * second with the fewest renewals booked among a few spread over the
 * window (a wave of tokens issued together is renewed at an even rate,
 * not in a random heap twice as high in the middle), then booked.
 */
void sess_renew_book(struct sess *s);

/* Takes the record's renewal out of the load (nothing if none). */
void sess_renew_unbook(struct sess *s);

/* Frees the load (every record unbooked). */
void sess_renew_load_free(struct sessions *ss);

/* When its token is due for renewal (0: no token), and when it is
 * paused for idleness (0: never). */
int64_t sess_renew_at(const struct sess *s);
int64_t sess_idle_at(const struct sess *s);

/* Backoff before retrying a failed operation. */
int64_t sess_retry_delay(struct sess *s, int64_t now);

/* ---- operations (sessions_ops.c) ---- */

/* Calls fn with a failed outcome (err, msg); returns err. */
int sess_refuse(sess_done_fn fn, void *ud, int err, const char *msg);

/* Starts the next queued operation. */
void sess_op_start(struct sess *s);

/* Ends the status waits the record's status now satisfies. */
void sess_check_waits(struct sess *s);

/* Records a status (and metadata) HopX told, with an event. */
void sess_set_status(struct sess *s, enum sbx_status st,
                     const struct store_meta *meta, enum store_cause cause,
                     const char *why);
void sess_observe_full(struct sess *s, const struct hopx_sandbox *h,
                       enum store_cause cause);

#endif
