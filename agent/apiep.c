/*
 * The HopX-compatible endpoint: a table of routes over httpd.c. What the
 * agent tracks is answered from its records (GET, list) and its token
 * cache (refresh), or carried through the agent's own methods (create,
 * lifecycle, timeout: the same single-flight, budget and records as
 * hopxctl's); anything else, and any sandbox the agent does not track,
 * is forwarded to HopX as it came and answered as HopX answered.
 */
#include "apiep.h"

#include "agent.h"
#include "err.h"
#include "hopx.h"
#include "httpd.h"
#include "json.h"
#include "log.h"
#include "methods.h"
#include "paths.h"
#include "proxy.h"
#include "secret.h"
#include "sessions.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utlist.h>

#define PREFIX       "/v1/sandboxes"
#define PAGE_MAX     100
#define QUEUE_MAX_MS 5000 /* longer for budget: 429 instead */
#define LABELS_MAX   32

struct apiep {
	struct agent *a;
	struct httpd *httpd;
	char local_key[256];
	char key_file[4096];
	char url[600];
	uint64_t seq; /* request ids */
	struct apiep_stats stats;
	struct xreq *open; /* not answered yet */
};

/* One request being answered. */
struct xreq {
	struct apiep *ep;
	struct httpd_req *rq;
	const struct route *route;
	char id[SBX_ID_MAX + 1];
	char rid[48]; /* request id */
	struct xreq *prev, *next;
};

typedef void route_fn(struct xreq *x);

struct route {
	const char *method;
	const char *suffix; /* NULL: the collection; "": the sandbox */
	route_fn *fn;
	const char *verb; /* the agent's method, for lifecycle routes */
	/* In this status already, HopX is asked as it is: it has its own
	 * answer to a transition that does not apply. */
	int already;
};

/* ---- answers ---- */

static void answer(struct xreq *x, int status, const char *body,
                   const char *const *extra)
{
	char rid[64];
	const char *headers[4] = {rid, NULL, NULL, NULL};
	int i;

	snprintf(rid, sizeof(rid), "X-Request-ID: %s", x->rid);
	for (i = 0; extra && extra[i] && i < 2; i++)
		headers[i + 1] = extra[i];
	httpd_respond(x->rq, status, "application/json", body, strlen(body),
	              headers);
	DL_DELETE(x->ep->open, x);
	free(x);
}

/* Answers with o (consumed) plus the request id. */
static void answer_with(struct xreq *x, int status, cJSON *o,
                        const char *const *extra)
{
	char *text;

	json_add_str(o, "request_id", x->rid);
	if ((text = json_print(o)) == NULL) {
		cJSON_Delete(o);
		answer(x, 500, "{\"error\":\"out of memory\"}", NULL);
		return;
	}
	cJSON_Delete(o);
	answer(x, status, text, extra);
	free(text);
}

static void answer_json(struct xreq *x, int status, cJSON *o)
{
	answer_with(x, status, o, NULL);
}

/*
 * HopX's error envelope (shared/hopx-api.md 7); retry_s >= 0 adds its
 * retry_after and the Retry-After header.
 */
static void fail_retry(struct xreq *x, int status, const char *code,
                       const char *msg, int64_t retry_s)
{
	cJSON *o = cJSON_CreateObject();
	char ra[48];
	const char *extra[2] = {ra, NULL};

	json_add_str(o, "error", msg);
	json_add_str(o, "code", code);
	if (retry_s >= 0) {
		json_add_i64(o, "retry_after", retry_s);
		snprintf(ra, sizeof(ra), "Retry-After: %lld",
		         (long long)retry_s);
	}
	if (status >= 400 && status < 500 && status != 404)
		x->ep->stats.refused++;
	answer_with(x, status, o, retry_s >= 0 ? extra : NULL);
}

static void fail(struct xreq *x, int status, const char *code, const char *msg)
{
	fail_retry(x, status, code, msg, -1);
}

/* The agent's error codes as HopX would have said them. */
static void fail_err(struct xreq *x, int e, const char *msg)
{
	static const struct {
		int err, status;
		const char *code;
	} map[] = {
	        {ERR_NOTFOUND, 404, "RESOURCE_NOT_FOUND"},
	        {ERR_INVAL, 400, "INVALID_REQUEST"},
	        {ERR_AUTH, 401, "AUTHENTICATION_REQUIRED"},
	        {ERR_CONFLICT, 409, "CONFLICT"},
	        {ERR_STATE, 409, "CONFLICT"},
	        {ERR_BUSY, 409, "CONFLICT"},
	        {ERR_EXISTS, 409, "CONFLICT"},
	        {ERR_RATE, 429, "RATE_LIMIT_EXCEEDED"},
	        {ERR_UNAVAIL, 503, "SERVICE_UNAVAILABLE"},
	        {ERR_NET, 503, "SERVICE_UNAVAILABLE"},
	        {ERR_TIMEOUT, 504, "GATEWAY_TIMEOUT"},
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(*map); i++)
		if (map[i].err == e) {
			/* The SDKs recognise a gone sandbox by these words. */
			fail(x, map[i].status, map[i].code,
			     e == ERR_NOTFOUND ? "Sandbox not found" : msg);
			return;
		}
	fail(x, 500, "INTERNAL_ERROR", msg ? msg : err_str(e));
}

/* ---- a record as HopX describes a sandbox ---- */

static void add_known(cJSON *o, const char *key, int64_t v)
{
	if (v != STORE_NULL)
		json_add_i64(o, key, v);
}

/*
 * Where the SDKs reach the sandbox's own agent: through the agent's proxy
 * when it runs (the token put in for them, traffic waking the sandbox),
 * else HopX's address.
 */
static void add_host(struct apiep *ep, cJSON *o, const struct store_sandbox *r)
{
	char url[64];
	const char *host = r->public_host;

	if (ep->a->proxy && r->public_host &&
	    proxy_url(ep->a->proxy, r->id, url, sizeof(url)) == 0)
		host = url;
	json_add_str(o, "public_host", host);
	json_add_str(o, "direct_url", host);
}

static cJSON *sandbox_json(struct apiep *ep, const struct store_sandbox *r,
                           int with_token)
{
	cJSON *o = cJSON_CreateObject(), *res, *own, *labels;
	size_t i;

	json_add_str(o, "id", r->id);
	json_add_str(o, "object", "sandbox");
	json_add_str(o, "status", sbx_status_str(r->status));
	add_host(ep, o, r);
	json_add_str(o, "template_id", r->template_id);
	json_add_str(o, "template_name", r->template_name);
	json_add_str(o, "region", r->region);
	if (r->vcpu != STORE_NULL || r->memory_mb != STORE_NULL) {
		res = cJSON_AddObjectToObject(o, "resources");
		add_known(res, "vcpu", r->vcpu);
		add_known(res, "memory_mb", r->memory_mb);
		add_known(res, "disk_mb", r->disk_mb);
	}
	if (r->internet_access != STORE_NULL)
		json_add_bool(o, "internet_access", (int)r->internet_access);
	if (r->timeout_seconds == STORE_NULL)
		cJSON_AddNullToObject(o, "timeout_seconds");
	else
		json_add_i64(o, "timeout_seconds", r->timeout_seconds);
	json_add_time(o, "expires_at", r->expires_at);
	json_add_time(o, "created_at", r->created_at);
	if (with_token && r->token) {
		json_add_str(o, "auth_token", r->token);
		json_add_time(o, "token_expires_at", r->token_expires_at);
	}
	/* What only the agent knows, where the SDKs do not look. */
	own = cJSON_AddObjectToObject(o, "hopxd");
	json_add_str(own, "name", r->name);
	labels = cJSON_AddObjectToObject(own, "labels");
	for (i = 0; i < r->nlabels; i++)
		json_add_str(labels, r->labels[i].key, r->labels[i].value);
	return o;
}

/* Answers with the tracked record id (with its token when asked). */
static void answer_record(struct xreq *x, int status, int with_token)
{
	struct store_sandbox r;

	if (store_sandbox_get(x->ep->a->store, x->id, &r) != 0) {
		fail_err(x, ERR_NOTFOUND, NULL);
		return;
	}
	answer_json(x, status, sandbox_json(x->ep, &r, with_token));
	store_sandbox_finish(&r);
}

/* ---- forwarding ---- */

static void forwarded(void *ud, const struct hopx_result *r)
{
	struct xreq *x = ud;
	char ra[48];
	const char *extra[2] = {NULL, NULL};

	if (r->status == 0) {
		fail(x, 503, "SERVICE_UNAVAILABLE",
		     "HopX did not answer the agent; it retries on its own");
		return;
	}
	if (r->request_id[0])
		snprintf(x->rid, sizeof(x->rid), "%s", r->request_id);
	if (r->retry_after_ms >= 0) {
		snprintf(ra, sizeof(ra), "Retry-After: %lld",
		         (long long)((r->retry_after_ms + 999) / 1000));
		extra[0] = ra;
	}
	answer(x, (int)r->status, r->raw ? r->raw : "", extra);
}

/* Refuses (429) a call the budget could not carry soon. */
static int over_budget(struct xreq *x)
{
	struct hopx *hx = x->ep->a->hopx;
	int64_t wait;
	char msg[160];

	if (hx == NULL) {
		fail(x, 503, "SERVICE_UNAVAILABLE",
		     "hopxd has no HopX API key: restart it with HOPX_API_KEY "
		     "set (or --api-key-file)");
		return 1;
	}
	if ((wait = hopx_wait_ms(hx, HOPX_PRIO_USER)) <= QUEUE_MAX_MS)
		return 0;
	snprintf(msg, sizeof(msg),
	         "Rate limit exceeded: hopxd's budget of %d requests per "
	         "minute is spent",
	         hopx_budget(hx));
	fail_retry(x, 429, "RATE_LIMIT_EXCEEDED", msg, (wait + 999) / 1000);
	return 1;
}

static void r_forward(struct xreq *x)
{
	const char *path = httpd_path(x->rq), *q = httpd_query(x->rq);
	size_t len = 0, i;
	const char *body = httpd_body(x->rq, &len);
	char full[4096];
	struct hopx_call hc = {.op = HOPX_FORWARD,
	                       .method = httpd_method(x->rq),
	                       .path = full,
	                       .body = len ? body : NULL,
	                       .prio = HOPX_PRIO_USER};

	for (i = 0; path[i]; i++)
		if ((unsigned char)path[i] <= ' ' || path[i] == 0x7f) {
			fail(x, 400, "INVALID_REQUEST",
			     "the path has spaces or control characters");
			return;
		}
	if ((size_t)snprintf(full, sizeof(full), "%s%s%s", path, *q ? "?" : "",
	                     q) >= sizeof(full)) {
		fail(x, 414, "URI_TOO_LONG", "the path is too long");
		return;
	}
	if (over_budget(x))
		return;
	x->ep->stats.forwarded++;
	if (hopx_call(x->ep->a->hopx, &hc, forwarded, x) != 0)
		fail_err(x, ERR_NOMEM, NULL);
}

/* ---- answered from the records ---- */

static void r_get(struct xreq *x)
{
	x->ep->stats.local++;
	sessions_use(x->ep->a->sess, x->id);
	answer_record(x, 200, 0);
}

struct page {
	struct apiep *ep;
	cJSON *data;
	const char *region;
	const char *last;
	char last_id[SBX_ID_MAX + 1];
	size_t seen;
};

static int add_item(void *ud, const struct store_sandbox *r)
{
	struct page *p = ud;

	p->seen++;
	snprintf(p->last_id, sizeof(p->last_id), "%s", r->id);
	if (r->status == SBX_GONE ||
	    (p->region && (!r->region || strcmp(r->region, p->region) != 0)))
		return 0;
	cJSON_AddItemToArray(p->data, sandbox_json(p->ep, r, 0));
	return 0;
}

static void r_list(struct xreq *x)
{
	const char *status = httpd_arg(x->rq, "status");
	const char *limit = httpd_arg(x->rq, "limit");
	struct store_filter f = {.after_id = httpd_arg(x->rq, "cursor")};
	struct page p = {.ep = x->ep, .region = httpd_arg(x->rq, "region")};
	long n = limit ? strtol(limit, NULL, 10) : PAGE_MAX;
	cJSON *o = cJSON_CreateObject();
	int e;

	if (status && (sbx_status_parse(status, &f.status) != 0)) {
		cJSON_Delete(o);
		fail(x, 400, "INVALID_REQUEST",
		     "status must be one of running, stopped, paused, "
		     "creating");
		return;
	}
	f.has_status = status != NULL;
	f.limit = n >= 1 && n <= PAGE_MAX ? (size_t)n : PAGE_MAX;
	json_add_str(o, "object", "list");
	p.data = cJSON_AddArrayToObject(o, "data");
	/* One transaction for the proxy numbers a page may give. */
	store_begin(x->ep->a->store);
	e = store_sandbox_list(x->ep->a->store, &f, add_item, &p);
	if (store_commit(x->ep->a->store) != 0 && e == 0)
		e = ERR_IO;
	if (e != 0) {
		cJSON_Delete(o);
		fail_err(x, e, err_str(e));
		return;
	}
	/* A full page may have more: the next starts after its last id. */
	json_add_bool(o, "has_more", p.seen == f.limit);
	json_add_str(o, "next_cursor", p.seen == f.limit ? p.last_id : NULL);
	json_add_str(o, "url", PREFIX);
	x->ep->stats.local++;
	answer_json(x, 200, o);
}

static void token_done(void *ud, const struct sess_outcome *o,
                       const char *token, int64_t expires_at)
{
	struct xreq *x = ud;
	cJSON *j;

	if (o->err != 0) {
		fail_err(x, o->err, o->msg);
		return;
	}
	x->ep->a->stats.tokens_endpoint++;
	j = cJSON_CreateObject();
	json_add_str(j, "id", x->id);
	json_add_str(j, "auth_token", token);
	json_add_time(j, "token_expires_at", expires_at);
	answer_json(x, 200, j);
}

/*
 * Every token HopX issued stays valid until its expiry, so one that still
 * has most of its life is as good as a new one: each process asking gets
 * it, and only one refresh in a token's half-life reaches HopX.
 */
static void r_refresh(struct xreq *x)
{
	struct sessions *ss = x->ep->a->sess;
	struct sess_view v;
	int64_t min_ttl = 1;

	if (sessions_view(ss, x->id, &v) == 0 && v.token_expires_at > 0 &&
	    v.token_issued_at > 0 && v.token_expires_at > v.token_issued_at)
		min_ttl = (v.token_expires_at - v.token_issued_at) / 2;
	x->ep->stats.local++;
	sessions_use(ss, x->id);
	sessions_token(ss, x->id, min_ttl, token_done, x);
}

/* ---- carried through the agent's methods ---- */

static void acted(void *ud, int e, const cJSON *result, const char *msg)
{
	struct xreq *x = ud;
	const char *verb = x->route->verb;
	cJSON *o;

	if (e != 0) {
		fail_err(x, e, msg);
		return;
	}
	o = cJSON_CreateObject();
	json_add_str(o, "id", x->id);
	if (strcmp(verb, "kill") == 0) {
		json_add_str(o, "status", "deleted");
	} else if (strcmp(verb, "timeout") == 0) {
		cJSON_AddItemToObject(
		        o, "timeout_seconds",
		        cJSON_Duplicate(
		                cJSON_GetObjectItem(result, "timeout_seconds"),
		                1));
		cJSON_AddItemToObject(
		        o, "expires_at",
		        cJSON_Duplicate(
		                cJSON_GetObjectItem(result, "expires_at"), 1));
	} else {
		json_add_str(o, "status",
		             cJSON_GetStringValue(
		                     cJSON_GetObjectItem(result, "status")));
	}
	answer_json(x, 200, o);
}

static void carry(struct xreq *x, cJSON *params)
{
	if (!over_budget(x)) {
		x->ep->stats.carried++;
		methods_call(x->ep->a, x->route->verb, params, acted, x);
	}
	cJSON_Delete(params);
}

static void r_act(struct xreq *x)
{
	cJSON *p = cJSON_CreateObject();

	json_add_str(p, "ref", x->id);
	carry(x, p);
}

static void r_timeout(struct xreq *x)
{
	const char *body = httpd_body(x->rq, NULL);
	cJSON *b = NULL, *p;
	int64_t s = 0;

	if (json_parse(body, strlen(body), &b) != 0 ||
	    json_get_i64(b, "timeout_seconds", &s) != 0 || s <= 0) {
		cJSON_Delete(b);
		fail(x, 400, "INVALID_REQUEST",
		     "timeout_seconds must be a positive integer");
		return;
	}
	cJSON_Delete(b);
	p = cJSON_CreateObject();
	json_add_str(p, "ref", x->id);
	json_add_i64(p, "seconds", s);
	carry(x, p);
}

/* ---- create ---- */

static void created(void *ud, int e, const cJSON *result, const char *msg)
{
	struct xreq *x = ud;
	const char *id =
	        cJSON_GetStringValue(cJSON_GetObjectItem(result, "id"));

	if (e != 0 || id == NULL) {
		fail_err(x, e ? e : ERR_BADRESP, msg);
		return;
	}
	snprintf(x->id, sizeof(x->id), "%s", id);
	answer_record(x,
	              cJSON_IsTrue(cJSON_GetObjectItem(result, "existing"))
	                      ? 200
	                      : 201,
	              1);
}

/* "k=v,k2=v2" (a header or query parameter) into labels. */
static int parse_labels(const char *s, cJSON *labels)
{
	char buf[2048], *save = NULL, *kv;
	int n = 0;

	if ((size_t)snprintf(buf, sizeof(buf), "%s", s) >= sizeof(buf))
		return ERR_INVAL;
	for (kv = strtok_r(buf, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');

		if (eq == NULL || eq == kv || ++n > LABELS_MAX)
			return ERR_INVAL;
		*eq = '\0';
		json_add_str(labels, kv, eq + 1);
	}
	return 0;
}

static const char *req_opt(struct xreq *x, const char *header, const char *arg)
{
	const char *v = httpd_header(x->rq, header);

	return v ? v : httpd_arg(x->rq, arg);
}

/* The SDK's create body as the agent's create method takes it. */
static const char *create_params(struct xreq *x, const cJSON *b, cJSON *p)
{
	static const char *const same[][2] = {
	        {"region", "region"},
	        {"timeout_seconds", "timeout_s"},
	        {"env_vars", "env"},
	        {"internet_access", "internet_access"}};
	const char *tpl =
	        cJSON_GetStringValue(cJSON_GetObjectItem(b, "template_id"));
	const char *name = req_opt(x, "X-Hopxd-Name", "hopxd_name");
	const char *labels = req_opt(x, "X-Hopxd-Labels", "hopxd_labels");
	size_t i;

	if (tpl == NULL)
		tpl = cJSON_GetStringValue(
		        cJSON_GetObjectItem(b, "template_name"));
	if (tpl == NULL)
		return "Either template_id or template_name must be provided";
	json_add_str(p, "template", tpl);
	for (i = 0; i < sizeof(same) / sizeof(*same); i++) {
		const cJSON *v = cJSON_GetObjectItem(b, same[i][0]);

		if (v && !cJSON_IsNull(v))
			cJSON_AddItemToObject(p, same[i][1],
			                      cJSON_Duplicate(v, 1));
	}
	if (name)
		json_add_str(p, "name", name);
	if (labels &&
	    parse_labels(labels, cJSON_AddObjectToObject(p, "labels")))
		return "labels are k=v pairs separated by commas (at most 32)";
	return NULL;
}

static void r_create(struct xreq *x)
{
	const char *body = httpd_body(x->rq, NULL), *why;
	cJSON *b = NULL, *p;

	if (json_parse(body, strlen(body), &b) != 0 || !cJSON_IsObject(b)) {
		cJSON_Delete(b);
		fail(x, 400, "INVALID_REQUEST",
		     "the body must be a JSON object");
		return;
	}
	p = cJSON_CreateObject();
	why = create_params(x, b, p);
	cJSON_Delete(b);
	if (why) {
		cJSON_Delete(p);
		fail(x, 400, "INVALID_REQUEST", why);
		return;
	}
	if (!over_budget(x)) {
		x->ep->stats.carried++;
		methods_call(x->ep->a, "create", p, created, x);
	}
	cJSON_Delete(p);
}

/* ---- routing ---- */

static const struct route routes[] = {
        {"GET", NULL, r_list, NULL, -1},
        {"POST", NULL, r_create, NULL, -1},
        {"GET", "", r_get, NULL, -1},
        {"DELETE", "", r_act, "kill", -1},
        {"POST", "pause", r_act, "pause", SBX_PAUSED},
        {"POST", "resume", r_act, "resume", SBX_RUNNING},
        {"POST", "start", r_act, "start", SBX_RUNNING},
        {"POST", "stop", r_act, "stop", SBX_STOPPED},
        {"PUT", "timeout", r_timeout, "timeout", -1},
        {"POST", "token/refresh", r_refresh, NULL, -1},
};

/* The route for path, filling x->id; NULL: forward it. */
static const struct route *route_of(struct xreq *x, const char *method,
                                    const char *path)
{
	const char *rest, *slash;
	size_t i, n;

	if (strncmp(path, PREFIX, strlen(PREFIX)) != 0)
		return NULL;
	rest = path + strlen(PREFIX);
	if (*rest == '/' && rest[1] == '\0')
		rest++;
	if (*rest != '\0' && *rest++ != '/')
		return NULL;
	slash = strchr(rest, '/');
	n = slash ? (size_t)(slash - rest) : strlen(rest);
	if (n > SBX_ID_MAX)
		return NULL;
	memcpy(x->id, rest, n);
	x->id[n] = '\0';
	for (i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
		const struct route *r = &routes[i];

		if (strcmp(r->method, method) != 0 ||
		    (r->suffix == NULL) != (*rest == '\0') ||
		    (r->suffix &&
		     strcmp(r->suffix, slash ? slash + 1 : "") != 0))
			continue;
		return r;
	}
	return NULL;
}

static int authorised(const struct apiep *ep, struct httpd_req *rq)
{
	const char *k = httpd_header(rq, "X-API-Key");
	const char *auth = httpd_header(rq, "Authorization");

	if (k == NULL && auth && strncmp(auth, "Bearer ", 7) == 0)
		k = auth + 7;
	return k && (secret_eq(k, ep->a->cfg.api_key) ||
	             secret_eq(k, ep->local_key));
}

/*
 * Tracked (and not gone), and the route applies to its status? Only then
 * is it the agent's to answer.
 */
static int ours(struct apiep *ep, const struct route *rt, const char *id)
{
	struct store_sandbox r;
	int yes;

	if (sbx_id_check(id) != 0 ||
	    store_sandbox_get(ep->a->store, id, &r) != 0)
		return 0;
	yes = r.status != SBX_GONE && strcmp(r.id, id) == 0 &&
	      (int)r.status != rt->already;
	store_sandbox_finish(&r);
	return yes;
}

static void on_request(void *ud, struct httpd_req *rq)
{
	struct apiep *ep = ud;
	struct xreq *x = calloc(1, sizeof(*x));

	if (x == NULL) {
		httpd_respond(rq, 503, "application/json", "{}", 2, NULL);
		return;
	}
	x->ep = ep;
	x->rq = rq;
	DL_APPEND(ep->open, x);
	snprintf(x->rid, sizeof(x->rid), "req_hopxd_%llx",
	         (unsigned long long)++ep->seq);
	if (!authorised(ep, rq)) {
		fail(x, 401, "AUTHENTICATION_REQUIRED",
		     "Invalid API key: send the HopX API key or "
		     "hopxd's local key (hopxd --local-key-file) in X-API-Key");
		return;
	}
	if (ep->a->stopping) {
		fail(x, 503, "SERVICE_UNAVAILABLE", "hopxd is shutting down");
		return;
	}
	x->route = route_of(x, httpd_method(rq), httpd_path(rq));
	if (x->route && x->route->suffix && !ours(ep, x->route, x->id))
		x->route = NULL; /* not the agent's: HopX answers */
	if (x->route)
		x->route->fn(x);
	else
		r_forward(x);
}

/* ---- lifecycle ---- */

/* Reads the first line of a 0600 file into key. */
static int read_key(const char *path, char *key, size_t keyn, char *why,
                    size_t n)
{
	struct stat sb;
	FILE *f = fopen(path, "re");
	int e = 0;

	if (f == NULL || fstat(fileno(f), &sb) != 0) {
		snprintf(why, n, "cannot read the local key %s: %s", path,
		         strerror(errno));
		e = ERR_SYS;
	} else if (sb.st_mode & 077) {
		snprintf(why, n,
		         "refusing the local key %s: group or others can read "
		         "it (chmod 600 %s)",
		         path, path);
		e = ERR_PERM;
	} else if (fgets(key, (int)keyn, f) == NULL ||
	           (key[strcspn(key, " \t\r\n")] = '\0', key[0] == '\0')) {
		snprintf(why, n, "the local key file %s is empty", path);
		e = ERR_INVAL;
	}
	if (f)
		fclose(f);
	return e;
}

/* A new random key in a new 0600 file (never over an existing one). */
static int make_key(const char *path, char *why, size_t n)
{
	unsigned char raw[24];
	char key[80] = "hopxd_local_", failed[4096];
	int fd, e = paths_make_parents(path, failed, sizeof(failed));
	size_t i, len = strlen(key);

	if (e == 0 && getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		e = ERR_SYS;
	for (i = 0; e == 0 && i < sizeof(raw); i++)
		len += (size_t)snprintf(key + len, sizeof(key) - len, "%02x",
		                        raw[i]);
	if (e == 0 && (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	                         0600)) >= 0) {
		key[len++] = '\n';
		e = write(fd, key, len) == (ssize_t)len && fsync(fd) == 0
		            ? 0
		            : ERR_IO;
		close(fd);
	} else if (e == 0 && errno != EEXIST) {
		e = ERR_SYS;
	}
	if (e != 0)
		snprintf(why, n, "cannot write a local key to %s: %s", path,
		         strerror(errno));
	return e;
}

static int load_key(struct apiep *ep, const char *file, char *why, size_t n)
{
	int e = 0;

	if (file)
		snprintf(ep->key_file, sizeof(ep->key_file), "%s", file);
	else if (paths_local_key_file(ep->key_file, sizeof(ep->key_file)))
		e = ERR_INVAL;
	if (e) {
		snprintf(why, n,
		         "no place for the local key: set HOME or "
		         "give --local-key-file");
		return e;
	}
	if (!file && access(ep->key_file, F_OK) != 0 &&
	    (e = make_key(ep->key_file, why, n)) != 0)
		return e;
	return read_key(ep->key_file, ep->local_key, sizeof(ep->local_key), why,
	                n);
}

int apiep_start(struct agent *a, const struct apiep_opts *o, struct apiep **out,
                char *why, size_t n)
{
	struct apiep *ep = calloc(1, sizeof(*ep));
	struct httpd_opts ho = {.listen = o->listen,
	                        .max_connections = o->max_connections,
	                        .timeout_s = o->timeout_s,
	                        .max_body = 1u << 20};
	const char *cause = NULL;
	int e;

	*out = NULL;
	if (ep == NULL)
		return ERR_NOMEM;
	ep->a = a;
	if ((e = load_key(ep, o->local_key_file, why, n)) == 0 &&
	    (e = httpd_create(a->loop, &ho, on_request, ep, &ep->httpd,
	                      &cause)) != 0)
		snprintf(why, n, "--api-listen %s: %s", o->listen, cause);
	if (e != 0) {
		free(ep);
		return e;
	}
	if (httpd_port(ep->httpd) > 0)
		snprintf(ep->url, sizeof(ep->url), "http://%.*s:%d",
		         (int)(strrchr(o->listen, ':') - o->listen), o->listen,
		         httpd_port(ep->httpd));
	else
		snprintf(ep->url, sizeof(ep->url), "unix:%s",
		         strncmp(o->listen, "unix:", 5) == 0 ? o->listen + 5
		                                             : o->listen);
	*out = ep;
	return 0;
}

const char *apiep_url(const struct apiep *ep)
{
	return ep->url;
}

const char *apiep_local_key(const struct apiep *ep)
{
	return ep->local_key;
}

const char *apiep_key_file(const struct apiep *ep)
{
	return ep->key_file;
}

const struct apiep_stats *apiep_stats(const struct apiep *ep)
{
	return &ep->stats;
}

void apiep_stop(struct apiep *ep)
{
	struct xreq *x, *tmp;

	if (ep == NULL)
		return;
	/* What is left waits for calls that were cancelled: it ends here. */
	DL_FOREACH_SAFE(ep->open, x, tmp)
	fail(x, 503, "SERVICE_UNAVAILABLE", "hopxd is shutting down");
	httpd_destroy(ep->httpd);
	free(ep);
}
