/*
 * The HopX control plane (shared/hopx-api.md §3): one table of routes,
 * each a small handler that reads a struct sim_req and fills a struct
 * sim_resp. Called with the simulator lock held.
 */
#include "sim.h"
#include "sim_vmhost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct template
{
	const char *id;
	const char *name;
	const char *display;
};

/* Only these two are public (hopx-api.md §3.9, CHANGELOG 0.3.1). */
static const struct template templates[] = {
        {"73", "code-interpreter", "Code Interpreter"},
        {"1", "base", "Base"},
};

void sim_fmt_time(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void add_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[32];

	if (ms <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	sim_fmt_time(ms, buf, sizeof(buf));
	cJSON_AddStringToObject(o, key, buf);
}

void sim_error(struct sim_resp *rs, int status, const char *code,
               const char *msg)
{
	cJSON_Delete(rs->json);
	rs->status = status;
	rs->json = cJSON_CreateObject();
	cJSON_AddStringToObject(rs->json, "error", msg);
	cJSON_AddStringToObject(rs->json, "code", code);
	cJSON_AddStringToObject(rs->json, "request_id", rs->request_id);
}

static void ok(struct sim_resp *rs, int status, cJSON *body)
{
	rs->status = status;
	rs->json = body;
	cJSON_AddStringToObject(body, "request_id", rs->request_id);
}

static void add_token(struct sim *s, struct sim_sandbox *sb, cJSON *o)
{
	int64_t exp = 0;
	char *tok = sim_jwt_issue(s, sb, &exp);

	cJSON_AddStringToObject(o, "auth_token", tok ? tok : "");
	add_time(o, "token_expires_at", exp);
	free(tok);
}

cJSON *sim_sandbox_json(struct sim *s, struct sim_sandbox *sb, int token)
{
	cJSON *o = cJSON_CreateObject(), *res = cJSON_CreateObject();
	char host[200];

	sim_vmhost_url(s, sb, host, sizeof(host));
	cJSON_AddStringToObject(o, "id", sb->id);
	cJSON_AddStringToObject(o, "object", "sandbox");
	cJSON_AddStringToObject(o, "status", sim_status_str(sb->status));
	cJSON_AddStringToObject(o, "public_host", host);
	cJSON_AddStringToObject(o, "direct_url", host);
	cJSON_AddStringToObject(o, "preview_url", host);
	cJSON_AddStringToObject(o, "template_id", sb->template_id);
	cJSON_AddStringToObject(o, "template_name", sb->template_name);
	cJSON_AddNumberToObject(o, "organization_id", 123);
	cJSON_AddStringToObject(o, "node_id", "node_sim");
	cJSON_AddStringToObject(o, "region", sb->region);
	cJSON_AddNumberToObject(res, "vcpu", 2);
	cJSON_AddNumberToObject(res, "memory_mb", 4096);
	cJSON_AddNumberToObject(res, "disk_mb", 10240);
	cJSON_AddItemToObject(o, "resources", res);
	cJSON_AddBoolToObject(o, "internet_access", sb->internet_access);
	cJSON_AddBoolToObject(o, "live_mode", 0);
	if (sb->timeout_seconds > 0)
		cJSON_AddNumberToObject(o, "timeout_seconds",
		                        (double)sb->timeout_seconds);
	else
		cJSON_AddNullToObject(o, "timeout_seconds");
	add_time(o, "expires_at",
	         sb->status == SIM_PAUSED && !s->cfg.clock_runs_paused
	                 ? 0
	                 : sb->expires_at);
	add_time(o, "created_at", sb->created_at);
	if (token)
		add_token(s, sb, o);
	return o;
}

/* ---- small request helpers ---- */

int sim_query_get(const char *query, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	const char *p = query;

	while (p && *p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
			snprintf(out, n, "%.*s", (int)(len - kl - 1),
			         p + kl + 1);
			return 0;
		}
		p = end ? end + 1 : NULL;
	}
	return -1;
}

int sim_split_path(const char *path, char *buf, size_t bufn, char **parts,
                   int max)
{
	int n = 0;
	char *p, *save = NULL;

	snprintf(buf, bufn, "%s", path);
	for (p = strtok_r(buf, "/", &save); p && n < max;
	     p = strtok_r(NULL, "/", &save))
		parts[n++] = p;
	return p ? -1 : n; /* -1: more segments than max */
}

/* The body as a JSON object; an empty body is {} (SDKs send none). */
static cJSON *body_object(const struct sim_req *rq, struct sim_resp *rs)
{
	cJSON *j;

	if (rq->body_len == 0)
		return cJSON_CreateObject();
	j = cJSON_ParseWithLength(rq->body, rq->body_len);
	if (j == NULL || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		sim_error(rs, 400, "INVALID_REQUEST", "Invalid JSON body");
		return NULL;
	}
	return j;
}

static struct sim_sandbox *need_sandbox(struct sim *s, const char *id,
                                        struct sim_resp *rs)
{
	struct sim_sandbox *sb = sim_find(s, id);

	snprintf(rs->sandbox_id, sizeof(rs->sandbox_id), "%s", id);
	if (sb == NULL)
		sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Sandbox not found");
	return sb;
}

static void conflict(struct sim *s, struct sim_resp *rs, const char *msg)
{
	sim_error(rs, s->cfg.conflict_status,
	          s->cfg.conflict_status == 403 ? "FORBIDDEN" : "CONFLICT",
	          msg);
}

/* ---- handlers ---- */

typedef void handler_fn(struct sim *s, const struct sim_req *rq,
                        struct sim_resp *rs, char **seg);

static void h_health(struct sim *s, const struct sim_req *rq,
                     struct sim_resp *rs, char **seg)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "status", "ok");
	ok(rs, 200, o);
}

static const struct template *find_template(const cJSON *body)
{
	const cJSON *tid =
	        cJSON_GetObjectItemCaseSensitive(body, "template_id");
	const cJSON *tname =
	        cJSON_GetObjectItemCaseSensitive(body, "template_name");
	char idbuf[32];
	size_t i;

	if (cJSON_IsNumber(tid))
		snprintf(idbuf, sizeof(idbuf), "%d", tid->valueint);
	else if (cJSON_IsString(tid))
		snprintf(idbuf, sizeof(idbuf), "%s", tid->valuestring);
	for (i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
		if (tid && !cJSON_IsNull(tid)) {
			if (strcmp(templates[i].id, idbuf) == 0)
				return &templates[i];
		} else if (cJSON_IsString(tname) &&
		           strcmp(templates[i].name, tname->valuestring) == 0) {
			return &templates[i];
		}
	}
	return NULL;
}

/* Checks create's optional fields; returns an error message or NULL. */
static const char *check_create(const cJSON *b, int64_t *timeout)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "timeout_seconds");
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(b, "region");
	const cJSON *ia =
	        cJSON_GetObjectItemCaseSensitive(b, "internet_access");
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "env_vars");
	const cJSON *e;

	*timeout = 0;
	if (t && !cJSON_IsNull(t)) {
		if (!cJSON_IsNumber(t) || t->valuedouble <= 0 ||
		    t->valuedouble != (double)(int64_t)t->valuedouble)
			return "Invalid timeout value: must be positive";
		*timeout = (int64_t)t->valuedouble;
	}
	if (r && !cJSON_IsNull(r) && !cJSON_IsString(r))
		return "region must be a string";
	if (ia && !cJSON_IsNull(ia) && !cJSON_IsBool(ia))
		return "internet_access must be a boolean";
	if (env && !cJSON_IsNull(env) && !cJSON_IsObject(env))
		return "env_vars must be an object";
	cJSON_ArrayForEach(e, env)
	{
		if (!cJSON_IsString(e))
			return "env_vars values must be strings";
	}
	return NULL;
}

static void h_create(struct sim *s, const struct sim_req *rq,
                     struct sim_resp *rs, char **seg)
{
	cJSON *b = body_object(rq, rs);
	const struct template *tpl;
	struct sim_sandbox *sb;
	const char *bad;
	int64_t timeout;

	if (b == NULL)
		return;
	if (!cJSON_GetObjectItemCaseSensitive(b, "template_id") &&
	    !cJSON_GetObjectItemCaseSensitive(b, "template_name"))
		sim_error(rs, 400, "INVALID_REQUEST",
		          "Either template_id or template_name must be "
		          "provided");
	else if ((bad = check_create(b, &timeout)) != NULL)
		sim_error(rs, 400, "INVALID_REQUEST", bad);
	else if ((tpl = find_template(b)) == NULL)
		sim_error(rs, s->cfg.unknown_template_500 ? 500 : 404,
		          s->cfg.unknown_template_500 ? "INTERNAL_ERROR"
		                                      : "RESOURCE_NOT_FOUND",
		          "Template not found");
	else if ((sb = sim_create(s, tpl->id, tpl->name,
	                          cJSON_GetStringValue(
	                                  cJSON_GetObjectItem(b, "region")),
	                          timeout,
	                          !cJSON_IsFalse(cJSON_GetObjectItem(
	                                  b, "internet_access")))) == NULL)
		sim_error(rs, 503, "SERVICE_UNAVAILABLE", "No nodes available");
	else {
		snprintf(rs->sandbox_id, sizeof(rs->sandbox_id), "%s", sb->id);
		ok(rs, 201, sim_sandbox_json(s, sb, 1));
	}
	cJSON_Delete(b);
}

/* Parses list's limit: default, or 1..max; -1 when invalid. */
static int list_limit(struct sim *s, const char *query)
{
	char buf[16], *end;
	long v;

	if (sim_query_get(query, "limit", buf, sizeof(buf)) != 0)
		return s->cfg.list_default_limit;
	v = strtol(buf, &end, 10);
	if (*end != '\0' || v < 1)
		return -1;
	return v > s->cfg.list_max_limit ? s->cfg.list_max_limit : (int)v;
}

struct list_query {
	int limit;
	int has_status;
	enum sim_status status;
	char region[32];
	int64_t after; /* cursor: creation sequence number */
};

static const char *parse_list(struct sim *s, const char *q,
                              struct list_query *lq)
{
	char buf[64], *end;

	memset(lq, 0, sizeof(*lq));
	if ((lq->limit = list_limit(s, q)) < 0)
		return "limit must be a positive integer";
	if (sim_query_get(q, "status", buf, sizeof(buf)) == 0) {
		if (sim_status_parse(buf, &lq->status) != 0)
			return "status must be running, stopped, paused or "
			       "creating";
		lq->has_status = 1;
	}
	sim_query_get(q, "region", lq->region, sizeof(lq->region));
	if (sim_query_get(q, "cursor", buf, sizeof(buf)) == 0 && buf[0]) {
		lq->after = strncmp(buf, "c_", 2) == 0
		                    ? strtoll(buf + 2, &end, 10)
		                    : -1;
		if (lq->after < 0 || *end != '\0')
			return "invalid cursor";
	}
	return NULL;
}

static int list_match(const struct list_query *lq, const struct sim_sandbox *sb)
{
	return sb->seq > lq->after &&
	       (!lq->has_status || sb->status == lq->status) &&
	       (!lq->region[0] || strcmp(lq->region, sb->region) == 0);
}

static void h_list(struct sim *s, const struct sim_req *rq, struct sim_resp *rs,
                   char **seg)
{
	struct sim_sandbox *sb, *tmp;
	struct list_query lq;
	cJSON *o, *data;
	const char *bad;
	char cursor[32];
	int n = 0, more = 0;

	if ((bad = parse_list(s, rq->query, &lq)) != NULL) {
		sim_error(rs, 400, "INVALID_REQUEST", bad);
		return;
	}
	sim_sweep(s);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "object", "list");
	data = cJSON_AddArrayToObject(o, "data");
	/* uthash iterates in insertion order, which is creation order. */
	HASH_ITER(hh, s->sandboxes, sb, tmp)
	{
		if (!list_match(&lq, sb))
			continue;
		if (n == lq.limit) {
			more = 1;
			break;
		}
		cJSON_AddItemToArray(
		        data, sim_sandbox_json(s, sb, s->cfg.tokens_in_list));
		snprintf(cursor, sizeof(cursor), "c_%lld", (long long)sb->seq);
		n++;
	}
	cJSON_AddBoolToObject(o, "has_more", more);
	if (more)
		cJSON_AddStringToObject(o, "next_cursor", cursor);
	else
		cJSON_AddNullToObject(o, "next_cursor");
	cJSON_AddStringToObject(o, "url", "/v1/sandboxes");
	ok(rs, 200, o);
}

static void h_get(struct sim *s, const struct sim_req *rq, struct sim_resp *rs,
                  char **seg)
{
	struct sim_sandbox *sb = need_sandbox(s, seg[2], rs);

	if (sb)
		ok(rs, 200, sim_sandbox_json(s, sb, s->cfg.tokens_in_get));
}

static void h_delete(struct sim *s, const struct sim_req *rq,
                     struct sim_resp *rs, char **seg)
{
	struct sim_sandbox *sb = need_sandbox(s, seg[2], rs);
	cJSON *o;

	if (sb == NULL)
		return;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", "deleted");
	cJSON_AddStringToObject(o, "id", sb->id);
	sim_delete(s, sb);
	ok(rs, 200, o);
}

/* A lifecycle action: allowed source statuses (bitmask) and target. */
struct transition {
	const char *name;
	unsigned from;
	enum sim_status to;
	const char *refused;
};

#define BIT(st) (1u << (st))

static const struct transition transitions[] = {
        {"pause", BIT(SIM_RUNNING), SIM_PAUSED, "Sandbox is not running"},
        {"resume", BIT(SIM_PAUSED), SIM_RUNNING, "Sandbox is not paused"},
        {"start", BIT(SIM_STOPPED), SIM_RUNNING, "Sandbox is not stopped"},
        {"stop", BIT(SIM_RUNNING) | BIT(SIM_PAUSED), SIM_STOPPED,
         "Sandbox is not running or paused"},
};

static void h_transition(struct sim *s, const struct sim_req *rq,
                         struct sim_resp *rs, char **seg)
{
	struct sim_sandbox *sb = need_sandbox(s, seg[2], rs);
	const struct transition *t = NULL;
	cJSON *o;
	size_t i;

	for (i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++)
		if (strcmp(transitions[i].name, seg[3]) == 0)
			t = &transitions[i];
	if (sb == NULL || t == NULL)
		return;
	if (!(t->from & BIT(sb->status))) {
		conflict(s, rs, t->refused);
		return;
	}
	sim_set_status(s, sb, t->to);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", sb->id);
	cJSON_AddStringToObject(o, "status", sim_status_str(sb->status));
	ok(rs, 200, o);
}

static void h_timeout(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs, char **seg)
{
	struct sim_sandbox *sb = need_sandbox(s, seg[2], rs);
	const cJSON *t;
	cJSON *b, *o;

	if (sb == NULL || (b = body_object(rq, rs)) == NULL)
		return;
	t = cJSON_GetObjectItemCaseSensitive(b, "timeout_seconds");
	if (!cJSON_IsNumber(t) || t->valuedouble <= 0 ||
	    t->valuedouble != (double)(int64_t)t->valuedouble) {
		sim_error(rs, 400, "INVALID_REQUEST",
		          "Invalid timeout value: must be positive");
		cJSON_Delete(b);
		return;
	}
	sim_set_timeout(s, sb, (int64_t)t->valuedouble);
	cJSON_Delete(b);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", sb->id);
	cJSON_AddNumberToObject(o, "timeout_seconds",
	                        (double)sb->timeout_seconds);
	add_time(o, "expires_at", sb->expires_at);
	ok(rs, 200, o);
}

static void h_refresh(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs, char **seg)
{
	struct sim_sandbox *sb = need_sandbox(s, seg[2], rs);
	cJSON *o;

	if (sb == NULL)
		return;
	/* 4xx, not 5xx: the JS SDK retries 5xx for ~3 s (hopx-api.md §4). */
	if (sb->status != SIM_RUNNING) {
		sim_error(rs, 409, "CONFLICT", "Sandbox is not running");
		return;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", sb->id);
	add_token(s, sb, o);
	ok(rs, 200, o);
}

static cJSON *template_json(const struct template *t)
{
	cJSON *o = cJSON_CreateObject(), *r = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", t->id);
	cJSON_AddStringToObject(o, "name", t->name);
	cJSON_AddStringToObject(o, "display_name", t->display);
	cJSON_AddStringToObject(o, "status", "active");
	cJSON_AddBoolToObject(o, "is_public", 1);
	cJSON_AddNumberToObject(r, "vcpu", 2);
	cJSON_AddNumberToObject(r, "memory_mb", 4096);
	cJSON_AddNumberToObject(r, "disk_gb", 10);
	cJSON_AddItemToObject(o, "default_resources", r);
	return o;
}

static void h_templates(struct sim *s, const struct sim_req *rq,
                        struct sim_resp *rs, char **seg)
{
	cJSON *o = cJSON_CreateObject(), *data;
	size_t i;

	cJSON_AddStringToObject(o, "object", "list");
	data = cJSON_AddArrayToObject(o, "data");
	for (i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
		cJSON_AddItemToArray(data, template_json(&templates[i]));
	cJSON_AddBoolToObject(o, "has_more", 0);
	cJSON_AddStringToObject(o, "url", "/v1/templates");
	ok(rs, 200, o);
}

static void h_template(struct sim *s, const struct sim_req *rq,
                       struct sim_resp *rs, char **seg)
{
	size_t i;

	for (i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
		if (strcmp(templates[i].name, seg[2]) == 0) {
			ok(rs, 200, template_json(&templates[i]));
			return;
		}
	}
	sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Template not found");
}

/* ---- routing ---- */

struct route {
	const char *method;
	const char *pattern; /* segments; "*" matches one segment */
	const char *name;
	handler_fn *fn;
	int auth;
	int start_stop; /* only when the start/stop routes exist */
};

static const struct route routes[] = {
        {"GET", "health", "GET /health", h_health, 0, 0},
        {"POST", "v1/sandboxes", "POST /v1/sandboxes", h_create, 1, 0},
        {"GET", "v1/sandboxes", "GET /v1/sandboxes", h_list, 1, 0},
        {"GET", "v1/sandboxes/*", "GET /v1/sandboxes/{id}", h_get, 1, 0},
        {"DELETE", "v1/sandboxes/*", "DELETE /v1/sandboxes/{id}", h_delete, 1,
         0},
        {"POST", "v1/sandboxes/*/pause", "POST /v1/sandboxes/{id}/pause",
         h_transition, 1, 0},
        {"POST", "v1/sandboxes/*/resume", "POST /v1/sandboxes/{id}/resume",
         h_transition, 1, 0},
        {"POST", "v1/sandboxes/*/start", "POST /v1/sandboxes/{id}/start",
         h_transition, 1, 1},
        {"POST", "v1/sandboxes/*/stop", "POST /v1/sandboxes/{id}/stop",
         h_transition, 1, 1},
        {"PUT", "v1/sandboxes/*/timeout", "PUT /v1/sandboxes/{id}/timeout",
         h_timeout, 1, 0},
        {"POST", "v1/sandboxes/*/token/refresh",
         "POST /v1/sandboxes/{id}/token/refresh", h_refresh, 1, 0},
        {"GET", "v1/templates", "GET /v1/templates", h_templates, 1, 0},
        {"GET", "v1/templates/*", "GET /v1/templates/{name}", h_template, 1, 0},
};

static int match(const char *pattern, char **seg, int nseg)
{
	char buf[128], *pp[8];
	int n = sim_split_path(pattern, buf, sizeof(buf), pp, 8), i;

	if (n != nseg)
		return 0;
	for (i = 0; i < n; i++)
		if (strcmp(pp[i], "*") != 0 && strcmp(pp[i], seg[i]) != 0)
			return 0;
	return 1;
}

static const struct route *find_route(struct sim *s, const char *method,
                                      char **seg, int nseg)
{
	size_t i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (routes[i].start_stop && !s->cfg.start_stop)
			continue;
		if (strcmp(routes[i].method, method) == 0 &&
		    match(routes[i].pattern, seg, nseg))
			return &routes[i];
	}
	return NULL;
}

void sim_api_handle(struct sim *s, const struct sim_req *rq,
                    struct sim_resp *rs)
{
	char buf[512], *seg[8];
	const struct route *r;
	int n = sim_split_path(rq->path, buf, sizeof(buf), seg, 8);

	r = n >= 0 ? find_route(s, rq->method, seg, n) : NULL;
	if (r == NULL) {
		rs->route = "unknown";
		sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Not found");
		return;
	}
	rs->route = r->name;
	if (r->auth && (rq->api_key == NULL || rq->api_key[0] == '\0')) {
		sim_error(rs, 401, "AUTHENTICATION_REQUIRED",
		          "API key required");
		return;
	}
	if (r->auth && strcmp(rq->api_key, s->cfg.api_key) != 0) {
		sim_error(rs, 401, "AUTHENTICATION_REQUIRED",
		          "Invalid API key");
		return;
	}
	r->fn(s, rq, rs, seg);
}

/* Names the route and sandbox of a request without running it. */
void sim_api_classify(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs)
{
	char buf[512], *seg[8];
	const struct route *r;
	int n = sim_split_path(rq->path, buf, sizeof(buf), seg, 8);

	r = n >= 0 ? find_route(s, rq->method, seg, n) : NULL;
	rs->route = r ? r->name : "unknown";
	if (r && n >= 3 && strcmp(seg[1], "sandboxes") == 0)
		snprintf(rs->sandbox_id, sizeof(rs->sandbox_id), "%s", seg[2]);
}
