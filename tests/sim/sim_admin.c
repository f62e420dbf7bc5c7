/*
 * Admin API under /_sim/ (same API key): change sandboxes behind the
 * client's back, read the request log and counters, set faults, move the
 * clock, reset. Admin requests never enter the request log, so a test can
 * assert exactly what the client sent. Documented in tests/sim/README.md.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void admin_fn(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs, char **seg, cJSON *body);

static void reply(struct sim_resp *rs, cJSON *o)
{
	rs->status = 200;
	rs->json = o ? o : cJSON_CreateObject();
}

static void bad(struct sim_resp *rs, const char *msg)
{
	sim_error(rs, 400, "INVALID_REQUEST", msg);
}

/* Picks a status for the i-th of a bulk create from the mix weights. */
static enum sim_status pick_status(struct sim *s, const double w[4])
{
	double total = w[0] + w[1] + w[2] + w[3], r;
	int i;

	if (total <= 0)
		return SIM_RUNNING;
	r = sim_rand01(s) * total;
	for (i = 0; i < 3; i++) {
		if (r < w[i])
			return (enum sim_status)i;
		r -= w[i];
	}
	return (enum sim_status)3;
}

static void a_bulk(struct sim *s, const struct sim_req *rq, struct sim_resp *rs,
                   char **seg, cJSON *body)
{
	const cJSON *mix = cJSON_GetObjectItemCaseSensitive(body, "mix");
	const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(body, "count");
	double w[4] = {0, 1, 0, 0};
	cJSON *o, *ids;
	int i, n;

	if (!cJSON_IsNumber(cnt) || cnt->valueint < 1 ||
	    cnt->valueint > 1000000) {
		bad(rs, "count must be 1..1000000");
		return;
	}
	if (cJSON_IsObject(mix))
		for (i = 0; i < 4; i++)
			w[i] = cJSON_GetNumberValue(cJSON_GetObjectItem(
			        mix, sim_status_str((enum sim_status)i)));
	for (i = 0; i < 4; i++)
		if (w[i] != w[i] || w[i] < 0) /* NaN: key absent */
			w[i] = 0;
	n = cnt->valueint;
	o = cJSON_CreateObject();
	ids = cJSON_AddArrayToObject(o, "ids");
	for (i = 0; i < n; i++) {
		struct sim_sandbox *sb =
		        sim_create(s, "73", "code-interpreter", NULL, 0, 1);

		if (sb == NULL)
			break;
		sb->status = pick_status(s, w);
		sb->ready_at = sim_now(s) + s->cfg.creating_ms;
		cJSON_AddItemToArray(ids, cJSON_CreateString(sb->id));
	}
	cJSON_AddNumberToObject(o, "count", i);
	reply(rs, o);
}

static void a_sandbox(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs, char **seg, cJSON *body)
{
	struct sim_sandbox *sb = sim_find(s, seg[2]);
	const char *act = seg[3];
	enum sim_status st;

	if (sb == NULL) {
		sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Sandbox not found");
		return;
	}
	if (strcmp(act, "delete") == 0 || strcmp(act, "expire") == 0)
		sim_delete(s, sb);
	else if (strcmp(act, "expire-tokens") == 0)
		sb->min_jti = sb->next_jti;
	else if (strcmp(act, "pause") == 0 || strcmp(act, "stop") == 0 ||
	         strcmp(act, "resume") == 0 || strcmp(act, "start") == 0) {
		st = act[0] == 'p'   ? SIM_PAUSED
		     : act[2] == 'o' ? SIM_STOPPED
		                     : SIM_RUNNING;
		sim_set_status(s, sb, st);
	} else {
		sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Unknown action");
		return;
	}
	s->dirty = 1;
	reply(rs, NULL);
}

/* Every token issued that the ring still holds, oldest first. */
static void a_tokens(struct sim *s, const struct sim_req *rq,
                     struct sim_resp *rs, char **seg, cJSON *body)
{
	cJSON *o = cJSON_CreateObject(), *arr;
	uint64_t i =
	        s->nissued > SIM_ISSUED_MAX ? s->nissued - SIM_ISSUED_MAX : 0;

	(void)rq;
	(void)seg;
	(void)body;
	arr = cJSON_AddArrayToObject(o, "tokens");
	for (; i < s->nissued; i++)
		cJSON_AddItemToArray(
		        arr, cJSON_CreateString(s->issued[i % SIM_ISSUED_MAX]));
	cJSON_AddNumberToObject(o, "issued", (double)s->nissued);
	reply(rs, o);
}

static void a_counters(struct sim *s, const struct sim_req *rq,
                       struct sim_resp *rs, char **seg, cJSON *body)
{
	cJSON *o = cJSON_CreateObject(), *routes;
	struct sim_counter *c, *tmp;
	int64_t total = 0;

	routes = cJSON_AddObjectToObject(o, "routes");
	HASH_ITER(hh, s->counters, c, tmp)
	{
		cJSON *r = cJSON_AddObjectToObject(routes, c->route);
		char k[8];
		int i;

		cJSON_AddNumberToObject(r, "count", (double)c->count);
		for (i = 0; i < 6; i++) {
			if (c->by_class[i] == 0)
				continue;
			snprintf(k, sizeof(k), i ? "%dxx" : "none", i);
			cJSON_AddNumberToObject(r, k, (double)c->by_class[i]);
		}
		total += c->count;
	}
	cJSON_AddNumberToObject(o, "total", (double)total);
	reply(rs, o);
}

static cJSON *log_entry_json(const struct sim_log_entry *e)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "seq", (double)e->seq);
	cJSON_AddNumberToObject(o, "at_ms", (double)e->at);
	cJSON_AddStringToObject(o, "method", e->method);
	cJSON_AddStringToObject(o, "path", e->path);
	cJSON_AddStringToObject(o, "route", e->route);
	cJSON_AddStringToObject(o, "sandbox_id", e->sandbox_id);
	cJSON_AddNumberToObject(o, "status", e->status);
	if (e->fault)
		cJSON_AddStringToObject(o, "fault", e->fault);
	else
		cJSON_AddNullToObject(o, "fault");
	return o;
}

static void a_log(struct sim *s, const struct sim_req *rq, struct sim_resp *rs,
                  char **seg, cJSON *body)
{
	char buf[24];
	int64_t since = 0, limit = 10000, seq, first;
	cJSON *o = cJSON_CreateObject(), *arr;

	if (sim_query_get(rq->query, "since", buf, sizeof(buf)) == 0)
		since = strtoll(buf, NULL, 10);
	if (sim_query_get(rq->query, "limit", buf, sizeof(buf)) == 0)
		limit = strtoll(buf, NULL, 10);
	first = s->log_seq - (int64_t)s->log_cap + 1;
	if (since + 1 < first)
		since = first - 1; /* older entries were overwritten */
	arr = cJSON_AddArrayToObject(o, "entries");
	for (seq = since + 1; seq <= s->log_seq && limit-- > 0; seq++)
		cJSON_AddItemToArray(
		        arr, log_entry_json(
		                     &s->log[(seq - 1) % (int64_t)s->log_cap]));
	cJSON_AddNumberToObject(o, "last_seq", (double)s->log_seq);
	reply(rs, o);
}

static void a_faults(struct sim *s, const struct sim_req *rq,
                     struct sim_resp *rs, char **seg, cJSON *body)
{
	char err[160];

	if (strcmp(rq->method, "PUT") == 0 &&
	    sim_faults_from_json(&s->faults, body, err, sizeof(err)) != 0) {
		bad(rs, err);
		return;
	}
	if (strcmp(rq->method, "DELETE") == 0)
		sim_faults_clear(&s->faults);
	reply(rs, sim_faults_to_json(&s->faults));
}

static void a_script(struct sim *s, const struct sim_req *rq,
                     struct sim_resp *rs, char **seg, cJSON *body)
{
	char err[200];

	if (sim_script_add(&s->faults, body, err, sizeof(err)) != 0)
		bad(rs, err);
	else
		reply(rs, sim_faults_to_json(&s->faults));
}

static void a_reset(struct sim *s, const struct sim_req *rq,
                    struct sim_resp *rs, char **seg, cJSON *body)
{
	struct sim_sandbox *sb, *tmp;
	struct sim_counter *c, *ctmp;

	HASH_ITER(hh, s->sandboxes, sb, tmp)
	sim_delete(s, sb);
	HASH_ITER(hh, s->counters, c, ctmp)
	{
		HASH_DEL(s->counters, c);
		free(c);
	}
	sim_faults_clear(&s->faults);
	s->log_seq = 0;
	s->clock_offset_ms = 0;
	s->rl_count = 0;
	reply(rs, NULL);
}

static void a_time(struct sim *s, const struct sim_req *rq, struct sim_resp *rs,
                   char **seg, cJSON *body)
{
	const cJSON *adv = cJSON_GetObjectItemCaseSensitive(body, "advance_ms");
	cJSON *o;

	if (!cJSON_IsNumber(adv) || adv->valuedouble < 0) {
		bad(rs, "advance_ms must be a non-negative number");
		return;
	}
	s->clock_offset_ms += (int64_t)adv->valuedouble;
	sim_sweep(s);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "now_ms", (double)sim_now(s));
	reply(rs, o);
}

static void a_state(struct sim *s, const struct sim_req *rq,
                    struct sim_resp *rs, char **seg, cJSON *body)
{
	struct sim_sandbox *sb, *tmp;
	cJSON *o = cJSON_CreateObject(), *by;
	double counts[4] = {0};
	int i;

	sim_sweep(s);
	HASH_ITER(hh, s->sandboxes, sb, tmp)
	counts[sb->status]++;
	cJSON_AddNumberToObject(o, "sandboxes", (double)s->nsandboxes);
	by = cJSON_AddObjectToObject(o, "by_status");
	for (i = 0; i < 4; i++)
		cJSON_AddNumberToObject(by, sim_status_str((enum sim_status)i),
		                        counts[i]);
	cJSON_AddNumberToObject(o, "now_ms", (double)sim_now(s));
	reply(rs, o);
}

static void a_save(struct sim *s, const struct sim_req *rq, struct sim_resp *rs,
                   char **seg, cJSON *body)
{
	if (sim_save(s) != 0)
		sim_error(rs, 500, "INTERNAL_ERROR", "cannot write state file");
	else
		reply(rs, NULL);
}

struct admin_route {
	const char *method;
	const char *pattern;
	admin_fn *fn;
};

static const struct admin_route admin_routes[] = {
        {"POST", "_sim/sandboxes/bulk", a_bulk},
        {"POST", "_sim/sandboxes/*/*", a_sandbox},
        {"GET", "_sim/counters", a_counters},
        {"GET", "_sim/tokens", a_tokens},
        {"GET", "_sim/log", a_log},
        {"GET", "_sim/faults", a_faults},
        {"PUT", "_sim/faults", a_faults},
        {"DELETE", "_sim/faults", a_faults},
        {"POST", "_sim/faults/script", a_script},
        {"POST", "_sim/reset", a_reset},
        {"POST", "_sim/time", a_time},
        {"GET", "_sim/state", a_state},
        {"POST", "_sim/save", a_save},
};

static int seg_match(const char *pattern, char **seg, int n)
{
	char buf[128], *pp[6];
	int pn = sim_split_path(pattern, buf, sizeof(buf), pp, 6), i;

	if (pn != n)
		return 0;
	for (i = 0; i < n; i++)
		if (strcmp(pp[i], "*") != 0 && strcmp(pp[i], seg[i]) != 0)
			return 0;
	return 1;
}

void sim_admin_handle(struct sim *s, const struct sim_req *rq,
                      struct sim_resp *rs)
{
	char buf[512], *seg[6];
	int n = sim_split_path(rq->path, buf, sizeof(buf), seg, 6);
	cJSON *body = NULL;
	size_t i;

	rs->route = "ADMIN";
	if (rq->api_key == NULL || strcmp(rq->api_key, s->cfg.api_key) != 0) {
		sim_error(rs, 401, "AUTHENTICATION_REQUIRED",
		          "Invalid API key");
		return;
	}
	if (rq->body_len > 0 &&
	    (body = cJSON_ParseWithLength(rq->body, rq->body_len)) == NULL) {
		bad(rs, "Invalid JSON body");
		return;
	}
	for (i = 0; n > 0 && i < sizeof(admin_routes) / sizeof(admin_routes[0]);
	     i++) {
		if (strcmp(admin_routes[i].method, rq->method) == 0 &&
		    seg_match(admin_routes[i].pattern, seg, n)) {
			admin_routes[i].fn(s, rq, rs, seg, body);
			cJSON_Delete(body);
			return;
		}
	}
	cJSON_Delete(body);
	sim_error(rs, 404, "RESOURCE_NOT_FOUND", "Unknown admin route");
}
