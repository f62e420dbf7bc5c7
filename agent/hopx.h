#ifndef HOPXD_HOPX_H
#define HOPXD_HOPX_H

/*
 * The HopX control-plane API (shared/hopx-api.md) as typed asynchronous
 * calls over http.c. Every answer is validated: a missing or mistyped
 * field is ERR_BADRESP, never a crash. Errors map to ERR_AUTH (401/403),
 * ERR_NOTFOUND (404), ERR_CONFLICT (409, or 403 on a transition),
 * ERR_INVAL (400), ERR_RATE (429), ERR_UNAVAIL (5xx), ERR_NET,
 * ERR_TIMEOUT. Transient failures are retried with capped exponential
 * backoff and full jitter, never sooner than Retry-After / retry_after.
 * Every attempt spends one unit of a per-minute budget, handed out by
 * priority: user commands, then renewals, resumes, periodic sync.
 */

#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "http.h"
#include "sbx.h"

struct hopx;

enum hopx_prio {
	HOPX_PRIO_USER,
	HOPX_PRIO_RENEW,
	HOPX_PRIO_RESUME,
	HOPX_PRIO_SYNC,
	HOPX_NPRIO
};

enum hopx_op {
	HOPX_GET,
	HOPX_LIST,
	HOPX_CREATE,
	HOPX_DELETE,
	HOPX_PAUSE,
	HOPX_RESUME,
	HOPX_START,
	HOPX_STOP,
	HOPX_TIMEOUT,
	HOPX_REFRESH,
	HOPX_HEALTH,
	HOPX_FORWARD, /* any other request, answered as HopX sent it */
	HOPX_NOPS
};

/* "get", "list", ..., "forward": an operation's name, for metrics. */
const char *hopx_op_str(enum hopx_op op);

struct hopx_opts {
	const char *base_url; /* "https://api.hopx.dev" */
	const char *api_key;
	const char *ca_file;     /* or NULL */
	int budget_per_min;      /* default 100 */
	int burst;               /* budget usable at once; default budget/10 */
	int64_t backoff_base_ms; /* default 1000 */
	int64_t backoff_cap_ms;  /* default 60000 */
	int max_inflight;        /* transfers at once; default 8 */
	long timeout_ms; /* one attempt, whole; default 30 s (stall: half) */
	const struct clock *clk; /* NULL: system clock */
};

/* A Sandbox object as HopX describes it (only what hopxd keeps). */
struct hopx_sandbox {
	char id[SBX_ID_MAX + 1];
	enum sbx_status status;
	char public_host[256];
	char template_id[32];
	char template_name[64];
	char region[32];
	int64_t timeout_seconds;          /* -1: none */
	int64_t expires_at;               /* ms; 0: none */
	int64_t created_at;               /* ms; 0: unknown */
	int64_t vcpu, memory_mb, disk_mb; /* resources; -1: unknown */
	int internet_access;              /* 0, 1; -1: unknown */
	char token[2048];                 /* "" when the answer carried none */
	int64_t token_expires_at;
};

struct hopx_result {
	int err;     /* 0 or ERR_* */
	long status; /* last HTTP status (0: none) */
	int attempts;
	int64_t retry_after_ms; /* what the last answer asked (-1: nothing) */
	char code[48];          /* HopX error code, e.g. RESOURCE_NOT_FOUND */
	char message[160];
	struct hopx_sandbox sbx;    /* GET, CREATE, REFRESH (token), TIMEOUT */
	struct hopx_sandbox *items; /* LIST: valid during the callback */
	int nitems;
	int has_more;
	char next_cursor[128];
	/* The answer as it came (any op), valid during the callback. */
	const char *raw;
	size_t raw_len;
	char request_id[48]; /* X-Request-ID, or "" */
};

typedef void (*hopx_done_fn)(void *ud, const struct hopx_result *r);

struct hopx_call {
	enum hopx_op op;
	const char *id;     /* sandbox id, for per-sandbox operations */
	const char *body;   /* CREATE: the JSON request */
	const char *query;  /* LIST: "limit=100&cursor=..." or NULL */
	const char *method; /* FORWARD: "GET", ... */
	const char *path;   /* FORWARD: "/v1/templates?x=1" (starts with /) */
	int64_t timeout_s;  /* TIMEOUT: the new timeout */
	enum hopx_prio prio;
	int max_attempts; /* 0: 3 */
	/* 1: the answer is handed over at the end of its loop turn, with the
	 * turn's others, inside the batch observer's calls (hopx_on_batch) */
	int batch;
	/* Called (with the call's ud) just before each attempt leaves. */
	void (*on_send)(void *ud);
};

/*
 * Creates a client on loop (needs curl_global_init). The API key is
 * registered with the log filter. Returns 0 or ERR_INVAL/ERR_NOMEM.
 */
int hopx_create(uv_loop_t *loop, const struct hopx_opts *o, struct hopx **out);

/* Cancels everything (no callbacks); freed once the loop ran. NULL ok. */
void hopx_destroy(struct hopx *hx);

/*
 * Queues a call; fn runs exactly once unless the client is destroyed
 * first. CREATE is never retried (it is not idempotent). Returns 0 or
 * ERR_INVAL/ERR_NOMEM.
 */
int hopx_call(struct hopx *hx, const struct hopx_call *c, hopx_done_fn fn,
              void *ud);

/* Calls waiting for budget or a retry, and attempts made this minute. */
int hopx_pending(const struct hopx *hx);
int hopx_spent_last_minute(const struct hopx *hx);

/*
 * HopX's time: this machine's wall clock plus the skew learned from the
 * Date of every answer (skew.h), and its monotonic clock as it is. Tokens
 * expire by it. Valid as long as the client.
 */
const struct clock *hopx_clock(const struct hopx *hx);

/* The skew (HopX minus this machine, ms); *known: an answer had a Date. */
int64_t hopx_skew_ms(const struct hopx *hx, int *known);

/* After this machine's clock jumped: the samples so far are of the old
 * clock (the estimate stays until the next answer). */
void hopx_skew_restart(struct hopx *hx);

/*
 * fn(ud, before, after) runs when the skew estimate moves by a second or
 * more, before the answer that moved it is handled. One observer.
 */
typedef void (*hopx_skew_fn)(void *ud, int64_t before, int64_t after);
void hopx_on_skew(struct hopx *hx, hopx_skew_fn fn, void *ud);

/*
 * fn(ud, 0) before the batch calls' answers of one loop turn are handed
 * over, fn(ud, 1) after the last (so that what they change can be one
 * transaction). One observer.
 */
void hopx_on_batch(struct hopx *hx, http_batch_fn fn, void *ud);

/*
 * How long a call queued now at prio would wait for budget (ms, 0: it
 * leaves at once): what a caller that would rather refuse than wait
 * (the local endpoint's 429) looks at.
 */
int64_t hopx_wait_ms(const struct hopx *hx, enum hopx_prio prio);

/* What was asked of HopX since creation, for metrics. */
enum hopx_class { HOPX_2XX, HOPX_4XX, HOPX_5XX, HOPX_NOANSWER, HOPX_NCLASS };
#define HOPX_NBUCKETS 10
/* Upper bounds of the latency histogram's buckets, seconds. */
extern const double hopx_buckets[HOPX_NBUCKETS];
struct hopx_stats {
	uint64_t answers[HOPX_NOPS][HOPX_NCLASS]; /* one per attempt */
	uint64_t latency[HOPX_NBUCKETS + 1];      /* per bucket (last: +Inf) */
	double latency_sum_s;
	uint64_t latency_count;
};
const struct hopx_stats *hopx_stats(const struct hopx *hx);

/* The budget (attempts per minute), and attempts made since creation. */
int hopx_budget(const struct hopx *hx);

/*
 * Changes the budget (a fleet's agents share one key's: each spends its
 * share); its burst follows. What was saved up beyond the new burst goes.
 */
void hopx_set_budget(struct hopx *hx, int per_min);
unsigned hopx_attempts(const struct hopx *hx);

#endif
