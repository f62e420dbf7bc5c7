#ifndef HOPX_SIM_H
#define HOPX_SIM_H

/*
 * hopx-sim: a local HopX control plane and sandbox (VM) agent for tests,
 * benchmarks and offline demos. The HTTP layer (sim_http.c) turns each
 * request into a struct sim_req and hands it to plain functions
 * (sim_api.c, sim_admin.c, sim_vm.c) that fill a struct sim_resp; faults
 * (sim_fault.c) decide what to do to the answer. All shared state lives in
 * struct sim behind one mutex.
 */

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uthash.h>

struct sim_vmhost;

#define SIM_ID_MAX    40
#define SIM_KEY_MAX   256
#define SIM_ROUTE_MAX 64
#define SIM_BODY_MAX  (1 << 20)

enum sim_status {
	SIM_CREATING,
	SIM_RUNNING,
	SIM_PAUSED,
	SIM_STOPPED,
};

const char *sim_status_str(enum sim_status s);
int sim_status_parse(const char *s, enum sim_status *out);

struct sim_sandbox {
	char id[SIM_ID_MAX];
	enum sim_status status;
	char template_id[16];
	char template_name[32];
	char region[32];
	int internet_access;
	int64_t timeout_seconds; /* -1: none */
	int64_t expires_at;      /* ms; 0: none */
	int64_t paused_left;     /* ms left on the clock while paused */
	int64_t created_at;      /* ms */
	int64_t ready_at;        /* ms: creating -> running */
	int64_t min_jti;         /* tokens with a lower jti are revoked */
	int64_t next_jti;
	int64_t seq; /* creation order: list cursors count in it */
	int host_n;  /* its own agent host (sim_vmhost.c); 0: none */
	int host_fd; /* that host's listener, -1 when closed */
	UT_hash_handle hh;
	UT_hash_handle hh_host;
};

/* What faults do to one request (sim_fault.c). */
enum sim_action {
	SIM_ACT_NONE,
	SIM_ACT_STATUS,    /* answer with an error status */
	SIM_ACT_RESET,     /* close with a TCP reset, no answer */
	SIM_ACT_STALL,     /* never answer */
	SIM_ACT_MALFORMED, /* 200 with a body that is not JSON */
	SIM_ACT_TRUNCATED, /* close half way through the body */
	SIM_ACT_SLOW,      /* send the body a few bytes at a time */
};

struct sim_fault_decision {
	enum sim_action action;
	int status;
	int retry_after; /* seconds, for 429/503 */
	int64_t delay_ms;
};

/* One scripted fault: the next count requests matching route/sandbox. */
struct sim_script {
	char route[SIM_ROUTE_MAX];   /* "" = any route */
	char sandbox_id[SIM_ID_MAX]; /* "" = any sandbox */
	int count;
	enum sim_action action;
	int status;
	int retry_after;
	struct sim_script *next;
};

struct sim_faults {
	int64_t latency_ms;
	int64_t jitter_ms;
	double rate_5xx;
	double rate_429;
	int retry_after; /* seconds sent with injected 429/503 */
	double rate_reset;
	double rate_stall;
	double rate_malformed;
	double rate_truncated;
	double rate_slow;
	int rate_limit_rpm; /* per API key; 0 = off */
	/* Per-route latency overrides (exact route name). */
	struct sim_route_latency {
		char route[SIM_ROUTE_MAX];
		int64_t latency_ms;
		int64_t jitter_ms;
	} route_latency[16];
	int nroute_latency;
	struct sim_script *scripts;
};

struct sim_config {
	char listen[64];
	char agent_listen[64];
	char api_key[SIM_KEY_MAX];
	char ready_file[1024];
	char state_file[1024];
	int64_t token_lifetime_ms;
	int list_default_limit;
	int list_max_limit;
	int conflict_status;        /* status for a refused transition */
	int start_stop;             /* 0: start/stop answer 404 (removed) */
	int create_status_creating; /* create answers "creating" */
	int64_t creating_ms;        /* time in "creating" before running */
	int clock_runs_paused;      /* the kill clock runs while paused */
	int tokens_in_get;          /* GET includes auth_token */
	char tls_cert[1024];        /* sandbox hosts serve TLS with these PEM */
	char tls_key[1024];         /* files, and public_host says https:// */
	int tokens_in_list;         /* list items include auth_token */
	int unknown_template_500;   /* unknown template -> 500 (changelog) */
	int vm_hosts;               /* sandboxes with their own agent host */
	char files_dir[1024];       /* sandboxes' files; "" = a temp dir */
	int quiet;
};

struct sim_log_entry {
	int64_t seq;
	int64_t at; /* ms */
	char method[8];
	char path[96];
	const char *route; /* a static route name */
	char sandbox_id[SIM_ID_MAX];
	int status;        /* 0 when no answer was sent (reset, stall) */
	const char *fault; /* NULL or the injected fault's name */
};

struct sim_counter {
	char route[SIM_ROUTE_MAX];
	int64_t count;
	int64_t by_class[6]; /* 1xx..5xx by status/100, [0] no answer */
	UT_hash_handle hh;
};

#define SIM_ISSUED_MAX 20000

struct sim {
	pthread_mutex_t lock;
	struct sim_config cfg;
	struct sim_sandbox *sandboxes; /* uthash by id */
	size_t nsandboxes;
	struct sim_faults faults;
	int64_t clock_offset_ms; /* admin time travel */
	/* Request log: a ring of the last SIM_LOG_MAX entries. */
	struct sim_log_entry *log;
	size_t log_cap;
	int64_t log_seq;
	struct sim_counter *counters;
	/* Rate limiting: one fixed one-minute window per key. */
	int64_t rl_window;
	int rl_count;
	int64_t next_request_id;
	int64_t next_seq;
	char secret[33]; /* signs tokens; kept in the state file */
	/* Every token issued (a ring): leak tests grep logs for them. */
	char *issued[SIM_ISSUED_MAX];
	uint64_t nissued;
	struct sim_vmhost *vmhost;   /* per-sandbox hosts, once serving */
	struct sim_sandbox *by_host; /* uthash (hh_host) by host_n */
	int nhosts, next_host;
	char agent_url[128];
	char api_url[128];
	int dirty; /* state changed since the last save */
	unsigned rng;
	volatile int stopping;
};

/* A request as the handlers see it. */
struct sim_req {
	const char *method;
	const char *path;    /* without the query string */
	const char *query;   /* raw query string or NULL */
	const char *api_key; /* from X-API-Key or Authorization: Bearer */
	const char *bearer;  /* raw Bearer value (VM agent tokens) */
	const char *body;
	size_t body_len;
	const char *file_path; /* ?path= of the sandbox agent's file calls */
};

struct sim_resp {
	int status;
	cJSON *json;       /* body, owned; serialised by the HTTP layer */
	const char *route; /* static route name, for the log and faults */
	char sandbox_id[SIM_ID_MAX];
	int retry_after; /* > 0: Retry-After header */
	char request_id[32];
};

/* ---- sim_state.c ---- */
int sim_init(struct sim *s, const struct sim_config *cfg);
void sim_finish(struct sim *s);
int64_t sim_now(struct sim *s);
unsigned sim_rand(struct sim *s);
double sim_rand01(struct sim *s);
/* Finds a live sandbox (killing it first if its time ran out). */
struct sim_sandbox *sim_find(struct sim *s, const char *id);
struct sim_sandbox *sim_create(struct sim *s, const char *template_id,
                               const char *template_name, const char *region,
                               int64_t timeout_s, int internet);
void sim_delete(struct sim *s, struct sim_sandbox *sb);
void sim_settle(struct sim *s, struct sim_sandbox *sb);
void sim_set_status(struct sim *s, struct sim_sandbox *sb, enum sim_status st);
void sim_set_timeout(struct sim *s, struct sim_sandbox *sb, int64_t secs);
void sim_sweep(struct sim *s);
int sim_save(struct sim *s);
int sim_load(struct sim *s);
void sim_log_add(struct sim *s, const struct sim_req *rq,
                 const struct sim_resp *rs, const char *fault);

/* ---- sim_jwt.c ---- */
/* Issues a token for sb; *exp_ms gets its expiry. Caller frees. */
char *sim_jwt_issue(struct sim *s, struct sim_sandbox *sb, int64_t *exp_ms);
/* 0 when token is a valid, unexpired, unrevoked token of sandbox id. */
int sim_jwt_check(struct sim *s, const char *token, const char *id);

/* ---- sim_api.c ---- */
void sim_api_handle(struct sim *s, const struct sim_req *rq,
                    struct sim_resp *rs);
void sim_api_classify(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs);
void sim_error(struct sim_resp *rs, int status, const char *code,
               const char *msg);
cJSON *sim_sandbox_json(struct sim *s, struct sim_sandbox *sb, int token);

/* ---- sim_admin.c ---- */
void sim_admin_handle(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs);

/* ---- sim_fault.c ---- */
void sim_fault_decide(struct sim *s, const struct sim_req *rq,
                      const struct sim_resp *rs, struct sim_fault_decision *d);
int sim_fault_rate_limit(struct sim *s, int *retry_after);
int sim_faults_from_json(struct sim_faults *f, const cJSON *j, char *err,
                         size_t errn);
cJSON *sim_faults_to_json(const struct sim_faults *f);
void sim_faults_clear(struct sim_faults *f);
int sim_script_add(struct sim_faults *f, const cJSON *j, char *err,
                   size_t errn);
const char *sim_action_str(enum sim_action a);

/* ---- helpers shared by the handlers (sim_api.c) ---- */
/* Value of key in a query string into out; 0 when found. */
int sim_query_get(const char *query, const char *key, char *out, size_t n);
/* Splits "/a/b/c" into up to max segments in parts (copies into buf). */
int sim_split_path(const char *path, char *buf, size_t bufn, char **parts,
                   int max);
void sim_fmt_time(int64_t ms, char *out, size_t n);

#endif
