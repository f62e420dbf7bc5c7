/*
 * HopX client: a budgeted, prioritised queue of calls in front of http.c.
 * pump() hands out budget to ready calls (highest priority first); each
 * attempt's answer is validated and classified; transient failures go
 * back in the queue with a not-before time (backoff, Retry-After).
 */
#include "hopx.h"

#include "config.h"
#include "err.h"
#include "http.h"
#include "timing.h"
#include "json.h"
#include "log.h"
#include "rfc3339.h"
#include "skew.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#define RETRY_AFTER_MAX_MS (300 * 1000)
#define SPENT_RING         1024

struct pending {
	struct hopx *hx;
	struct hopx_call call;
	char *id;
	char *body;
	char *query;
	char *method;
	char *path;
	hopx_done_fn fn;
	void *ud;
	int attempts;
	int max;
	int64_t not_before; /* monotonic ms */
	int64_t sent_at;    /* monotonic ms, of the attempt in flight */
	struct http_req *req;
	struct pending *prev, *next;
};

/*
 * A Retry-After holds every later call about the same sandbox (or about
 * no sandbox: list, create), not only the retries of the call that drew
 * it: a new call would otherwise come before the server's wish.
 */
struct hold {
	UT_hash_handle hh;
	int64_t until; /* monotonic ms */
	char id[];     /* sandbox id, "" for calls without one */
};

struct hopx {
	uv_loop_t *loop;
	struct hold *holds;
	struct http *http;
	const struct clock *clk;
	char *base;
	char key_header[300];
	int budget;
	int burst;
	int64_t base_ms;
	int64_t cap_ms;
	double tokens;
	int64_t refilled_at;
	struct pending *queue[HOPX_NPRIO];
	struct pending *running;
	int nrunning, max_inflight;
	int npending;
	int64_t spent[SPENT_RING]; /* times of recent attempts */
	unsigned nspent;
	uv_timer_t timer;
	uint32_t rng;
	int closing;
	struct skew skew;    /* HopX's clock against ours, from answers */
	struct clock hclock; /* ours plus the skew: HopX's time */
	hopx_skew_fn on_skew;
	void *skew_ud;
	struct hopx_stats stats;
};

const double hopx_buckets[HOPX_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,  1,     2.5,  10};

const char *hopx_op_str(enum hopx_op op)
{
	static const char *const names[HOPX_NOPS] = {
	        [HOPX_GET] = "get",         [HOPX_LIST] = "list",
	        [HOPX_CREATE] = "create",   [HOPX_DELETE] = "delete",
	        [HOPX_PAUSE] = "pause",     [HOPX_RESUME] = "resume",
	        [HOPX_START] = "start",     [HOPX_STOP] = "stop",
	        [HOPX_TIMEOUT] = "timeout", [HOPX_REFRESH] = "refresh",
	        [HOPX_HEALTH] = "health",   [HOPX_FORWARD] = "forward",
	};

	return (unsigned)op < HOPX_NOPS ? names[op] : "unknown";
}

static void pump(struct hopx *hx);

static int64_t hopx_wall_ms(void *ctx)
{
	const struct hopx *hx = ctx;

	return clock_wall_ms(hx->clk) + skew_offset(&hx->skew);
}

static int64_t hopx_mono_ms(void *ctx)
{
	const struct hopx *hx = ctx;

	return clock_mono_ms(hx->clk);
}

static int64_t now(const struct hopx *hx)
{
	return clock_mono_ms(hx->clk);
}

static void hold_set(struct hopx *hx, const char *id, int64_t until)
{
	struct hold *h;
	size_t n = strlen(id ? id : "") + 1;

	HASH_FIND_STR(hx->holds, id ? id : "", h);
	if (h == NULL && (h = calloc(1, sizeof(*h) + n)) != NULL) {
		memcpy(h->id, id ? id : "", n);
		HASH_ADD_STR(hx->holds, id, h);
	}
	if (h && until > h->until)
		h->until = until;
}

/* When a new call about id may go; drops a hold that has passed. */
static int64_t hold_get(struct hopx *hx, const char *id)
{
	struct hold *h;
	int64_t until;

	HASH_FIND_STR(hx->holds, id ? id : "", h);
	if (h == NULL)
		return 0;
	until = h->until;
	if (until <= now(hx)) {
		HASH_DEL(hx->holds, h);
		free(h);
		return 0;
	}
	return until;
}

static uint32_t rnd(struct hopx *hx)
{
	return timing_rand(&hx->rng);
}

/* ---- answers ---- */

static int copy_str(const cJSON *o, const char *key, char *dst, size_t n)
{
	const char *v = NULL;
	int r = json_get_str_opt(o, key, &v);

	if (r != 0 || (v && strlen(v) >= n))
		return ERR_BADRESP;
	snprintf(dst, n, "%s", v ? v : "");
	return 0;
}

/* template_id is a string in the SDKs and "string or int" in the spec. */
static int template_id(const cJSON *o, char *dst, size_t n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "template_id");
	int64_t num;

	if (cJSON_IsNumber(v) && json_get_i64(o, "template_id", &num) == 0) {
		snprintf(dst, n, "%lld", (long long)num);
		return 0;
	}
	return copy_str(o, "template_id", dst, n);
}

static int parse_status(const cJSON *o, enum sbx_status *st)
{
	const char *s;

	if (json_get_str(o, "status", &s) != 0)
		return ERR_BADRESP;
	/* Unknown names (error, deleted...) are kept as unknown. */
	if (sbx_status_parse(s, st) != 0 || *st == SBX_GONE)
		*st = SBX_UNKNOWN;
	return 0;
}

/* resources{vcpu, memory_mb, disk_mb} and internet_access, if given. */
static void parse_resources(const cJSON *o, struct hopx_sandbox *s)
{
	const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "resources");
	const cJSON *net =
	        cJSON_GetObjectItemCaseSensitive(o, "internet_access");

	s->vcpu = s->memory_mb = s->disk_mb = -1;
	if (json_get_i64(res, "vcpu", &s->vcpu) != 0)
		s->vcpu = -1;
	if (json_get_i64(res, "memory_mb", &s->memory_mb) != 0)
		s->memory_mb = -1;
	if (json_get_i64(res, "disk_mb", &s->disk_mb) != 0)
		s->disk_mb = -1;
	s->internet_access = cJSON_IsBool(net) ? cJSON_IsTrue(net) : -1;
}

static int parse_sandbox(const cJSON *o, struct hopx_sandbox *s)
{
	const char *id = NULL, *tok = NULL;
	int64_t exp = 0;

	memset(s, 0, sizeof(*s));
	s->timeout_seconds = -1;
	if (!cJSON_IsObject(o) || json_get_str(o, "id", &id) != 0 ||
	    sbx_id_check(id) != 0 || parse_status(o, &s->status) != 0)
		return ERR_BADRESP;
	snprintf(s->id, sizeof(s->id), "%s", id);
	if (copy_str(o, "public_host", s->public_host,
	             sizeof(s->public_host)) ||
	    (!s->public_host[0] && copy_str(o, "direct_url", s->public_host,
	                                    sizeof(s->public_host))) ||
	    template_id(o, s->template_id, sizeof(s->template_id)) ||
	    copy_str(o, "template_name", s->template_name,
	             sizeof(s->template_name)) ||
	    copy_str(o, "region", s->region, sizeof(s->region)) ||
	    json_get_i64_opt(o, "timeout_seconds", &s->timeout_seconds) ||
	    json_get_time_opt(o, "expires_at", &s->expires_at) ||
	    json_get_time_opt(o, "created_at", &s->created_at) ||
	    json_get_str_opt(o, "auth_token", &tok) ||
	    json_get_time_opt(o, "token_expires_at", &exp))
		return ERR_BADRESP;
	parse_resources(o, s);
	/* A token counts only with its expiry (what both SDKs require). */
	if (tok && exp > 0 && strlen(tok) < sizeof(s->token)) {
		snprintf(s->token, sizeof(s->token), "%s", tok);
		s->token_expires_at = exp;
	}
	return 0;
}

static int parse_list(const cJSON *o, struct hopx_result *r)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data"), *it;
	int n = 0;

	if (data && !cJSON_IsNull(data) && !cJSON_IsArray(data))
		return ERR_BADRESP;
	if (json_get_bool_opt(o, "has_more", &r->has_more) != 0 ||
	    copy_str(o, "next_cursor", r->next_cursor,
	             sizeof(r->next_cursor)) != 0)
		return ERR_BADRESP;
	r->items =
	        calloc((size_t)cJSON_GetArraySize(data) + 1, sizeof(*r->items));
	if (r->items == NULL)
		return ERR_NOMEM;
	cJSON_ArrayForEach(it, data)
	{
		if (cJSON_IsNull(it))
			continue; /* the JS SDK tolerates null entries */
		if (parse_sandbox(it, &r->items[n]) != 0)
			return ERR_BADRESP;
		n++;
	}
	r->nitems = n;
	return 0;
}

static int parse_ok(enum hopx_op op, const cJSON *o, struct hopx_result *r)
{
	switch (op) {
	case HOPX_GET:
	case HOPX_CREATE:
		return parse_sandbox(o, &r->sbx);
	case HOPX_LIST:
		return cJSON_IsObject(o) ? parse_list(o, r) : ERR_BADRESP;
	case HOPX_REFRESH:
		if (copy_str(o, "auth_token", r->sbx.token,
		             sizeof(r->sbx.token)) != 0 ||
		    !r->sbx.token[0] ||
		    json_get_time(o, "token_expires_at",
		                  &r->sbx.token_expires_at) != 0)
			return ERR_BADRESP;
		return 0;
	case HOPX_TIMEOUT:
		r->sbx.timeout_seconds = -1;
		if (!cJSON_IsObject(o) ||
		    json_get_time_opt(o, "expires_at", &r->sbx.expires_at) !=
		            0 ||
		    json_get_i64_opt(o, "timeout_seconds",
		                     &r->sbx.timeout_seconds) != 0)
			return ERR_BADRESP;
		return 0;
	default:
		/* pause, resume, start, stop, delete, health: the SDKs ignore
		 * the body, and so do we: the status code says it all. */
		return 0;
	}
}

static int is_transition(enum hopx_op op)
{
	return op == HOPX_PAUSE || op == HOPX_RESUME || op == HOPX_START ||
	       op == HOPX_STOP;
}

/* The SDKs ignore these answers' bodies: the status says it all. */
static int body_optional(enum hopx_op op)
{
	return is_transition(op) || op == HOPX_DELETE || op == HOPX_HEALTH ||
	       op == HOPX_FORWARD;
}

static int status_err(enum hopx_op op, long status)
{
	if (status == 400)
		return ERR_INVAL;
	if (status == 401)
		return ERR_AUTH;
	/* The spec lists 403 for refused transitions; elsewhere it is auth. */
	if (status == 403)
		return is_transition(op) ? ERR_CONFLICT : ERR_AUTH;
	if (status == 404)
		return ERR_NOTFOUND;
	if (status == 409)
		return ERR_CONFLICT;
	if (status == 429)
		return ERR_RATE;
	if (status >= 500)
		return ERR_UNAVAIL;
	return ERR_INVAL;
}

/* Fills r from one HTTP answer; *retry_after_ms gets the server's wish. */
static void classify(const struct pending *p, const struct http_result *res,
                     struct hopx_result *r, int64_t *retry_after_ms)
{
	cJSON *j = NULL;
	int64_t ra = -1;

	r->status = res->status;
	*retry_after_ms =
	        res->retry_after_s >= 0 ? res->retry_after_s * 1000 : -1;
	if (res->err != 0) {
		r->err = res->err == ERR_TOOBIG ? ERR_BADRESP : res->err;
		snprintf(r->message, sizeof(r->message), "%s", res->error);
		return;
	}
	json_parse(res->body, res->body_len, &j);
	r->raw = res->body;
	r->raw_len = res->body_len;
	memcpy(r->request_id, res->request_id, sizeof(r->request_id));
	if (res->status >= 200 && res->status < 300) {
		if (j && p->call.op != HOPX_FORWARD)
			r->err = parse_ok(p->call.op, j, r);
		else if (body_optional(p->call.op))
			r->err = 0;
		else {
			r->err = ERR_BADRESP;
			snprintf(r->message, sizeof(r->message),
			         "HTTP %ld with a body that is not JSON",
			         res->status);
		}
	} else {
		r->err = status_err(p->call.op, res->status);
		copy_str(j, "code", r->code, sizeof(r->code));
		copy_str(j, "error", r->message, sizeof(r->message));
		if (json_get_i64(j, "retry_after", &ra) == 0 && ra >= 0 &&
		    ra * 1000 > *retry_after_ms)
			*retry_after_ms = ra * 1000;
	}
	cJSON_Delete(j);
}

/* Full jitter under a capped exponential, never before Retry-After. */
static int64_t retry_delay(struct hopx *hx, int attempts, int64_t ra_ms)
{
	if (ra_ms > RETRY_AFTER_MAX_MS)
		ra_ms = RETRY_AFTER_MAX_MS;
	return timing_backoff(attempts, hx->base_ms, hx->cap_ms, rnd(hx),
	                      ra_ms);
}

static void pending_free(struct pending *p)
{
	free(p->method);
	free(p->path);
	free(p->id);
	free(p->body);
	free(p->query);
	free(p);
}

/*
 * Every answer's Date tells HopX's time. Learned before the answer is
 * handled, so that the token it may carry is judged by the new estimate.
 */
static void learn_skew(struct hopx *hx, int64_t date_ms)
{
	int64_t before = skew_offset(&hx->skew);

	if (skew_sample(&hx->skew, clock_wall_ms(hx->clk), date_ms, 1000) &&
	    hx->on_skew)
		hx->on_skew(hx->skew_ud, before, skew_offset(&hx->skew));
}

static void count(struct hopx *hx, const struct pending *p,
                  const struct http_result *res)
{
	struct hopx_stats *st = &hx->stats;
	double s = (double)(now(hx) - p->sent_at) / 1000.0;
	int b = 0, cl = HOPX_NOANSWER;

	if (res->err == 0 && res->status >= 200 && res->status < 600)
		cl = res->status < 400   ? HOPX_2XX
		     : res->status < 500 ? HOPX_4XX
		                         : HOPX_5XX;
	st->answers[p->call.op][cl]++;
	while (b < HOPX_NBUCKETS && s > hopx_buckets[b])
		b++;
	st->latency[b]++;
	st->latency_sum_s += s;
	st->latency_count++;
}

static void on_http(void *ud, const struct http_result *res)
{
	struct pending *p = ud;
	struct hopx *hx = p->hx;
	struct hopx_result r;
	int64_t ra_ms;

	memset(&r, 0, sizeof(r));
	p->req = NULL;
	p->attempts++;
	DL_DELETE(hx->running, p);
	hx->nrunning--;
	count(hx, p, res);
	if (res->date_ms > 0)
		learn_skew(hx, res->date_ms);
	classify(p, res, &r, &ra_ms);
	r.attempts = p->attempts;
	r.retry_after_ms = ra_ms;
	if (ra_ms > 0)
		hold_set(hx, p->id,
		         now(hx) + (ra_ms < RETRY_AFTER_MAX_MS
		                            ? ra_ms
		                            : RETRY_AFTER_MAX_MS));
	if (r.err && err_transient(r.err) && p->attempts < p->max &&
	    p->call.op != HOPX_CREATE) {
		p->not_before = now(hx) + retry_delay(hx, p->attempts, ra_ms);
		log_debug("%s attempt %d failed (%s); retrying in %lld ms",
		          p->id ? p->id : "call", p->attempts, err_str(r.err),
		          (long long)(p->not_before - now(hx)));
		DL_APPEND(hx->queue[p->call.prio], p);
		free(r.items);
		pump(hx);
		return;
	}
	hx->npending--;
	p->fn(p->ud, &r);
	free(r.items);
	pending_free(p);
	pump(hx);
}

/* ---- sending ---- */

static const char *op_path(enum hopx_op op)
{
	static const char *const paths[] = {
	        [HOPX_PAUSE] = "pause",     [HOPX_RESUME] = "resume",
	        [HOPX_START] = "start",     [HOPX_STOP] = "stop",
	        [HOPX_TIMEOUT] = "timeout", [HOPX_REFRESH] = "token/refresh",
	};

	return paths[op];
}

static const char *op_method(const struct pending *p)
{
	switch (p->call.op) {
	case HOPX_GET:
	case HOPX_LIST:
	case HOPX_HEALTH:
		return "GET";
	case HOPX_FORWARD:
		return p->method;
	case HOPX_DELETE:
		return "DELETE";
	case HOPX_TIMEOUT:
		return "PUT";
	default:
		return "POST";
	}
}

static void build_url(const struct hopx *hx, const struct pending *p, char *url,
                      size_t n)
{
	switch (p->call.op) {
	case HOPX_HEALTH:
		snprintf(url, n, "%s/health", hx->base);
		break;
	case HOPX_FORWARD:
		snprintf(url, n, "%s%s", hx->base, p->path);
		break;
	case HOPX_LIST:
		snprintf(url, n, "%s/v1/sandboxes%s%s", hx->base,
		         p->query ? "?" : "", p->query ? p->query : "");
		break;
	case HOPX_CREATE:
		snprintf(url, n, "%s/v1/sandboxes", hx->base);
		break;
	case HOPX_GET:
	case HOPX_DELETE:
		snprintf(url, n, "%s/v1/sandboxes/%s", hx->base, p->id);
		break;
	default:
		snprintf(url, n, "%s/v1/sandboxes/%s/%s", hx->base, p->id,
		         op_path(p->call.op));
	}
}

static void send_one(struct hopx *hx, struct pending *p)
{
	const char *const headers[] = {
	        hx->key_header, "Content-Type: application/json",
	        "Accept: application/json", "User-Agent: hopxd/" HOPXD_VERSION,
	        NULL};
	char url[1024], body[64];
	struct http_send snd = {.method = op_method(p),
	                        .url = url,
	                        .headers = headers,
	                        .body = p->body,
	                        .flags = p->call.batch ? HTTP_BATCH : 0};
	struct http_result fail;

	build_url(hx, p, url, sizeof(url));
	if (p->call.op == HOPX_TIMEOUT) {
		snprintf(body, sizeof(body), "{\"timeout_seconds\":%lld}",
		         (long long)p->call.timeout_s);
		snd.body = body;
	}
	hx->spent[hx->nspent++ % SPENT_RING] = now(hx);
	p->sent_at = now(hx);
	if (p->call.on_send)
		p->call.on_send(p->ud);
	DL_APPEND(hx->running, p);
	hx->nrunning++;
	if (http_request(hx->http, &snd, on_http, p, &p->req) != 0) {
		memset(&fail, 0, sizeof(fail));
		fail.err = ERR_NOMEM;
		fail.body = "";
		fail.retry_after_s = -1;
		on_http(p, &fail);
	}
}

/* ---- the budget ---- */

static void refill(struct hopx *hx)
{
	int64_t t = now(hx);

	hx->tokens += (double)(t - hx->refilled_at) * hx->budget / 60000.0;
	if (hx->tokens > hx->burst)
		hx->tokens = hx->burst;
	hx->refilled_at = t;
}

/* Milliseconds until the next unit of budget. */
static int64_t next_token_ms(const struct hopx *hx)
{
	double missing = 1.0 - hx->tokens;

	return missing <= 0 ? 0 : (int64_t)(missing * 60000.0 / hx->budget) + 1;
}

static void on_timer(uv_timer_t *t)
{
	pump(t->data);
}

/* Transfer slots a priority may fill. A user's call keeps one of its own:
 * with every slot held by background work (a restart resuming thousands)
 * it would otherwise wait a whole round trip for one to free. */
static int slots(const struct hopx *hx, int prio)
{
	if (prio == HOPX_PRIO_USER || hx->max_inflight < 2)
		return hx->max_inflight;
	return hx->max_inflight - 1;
}

/* Starts every call that is due, by priority, while budget lasts. */
static void pump(struct hopx *hx)
{
	int64_t t, wake = -1;
	struct pending *p, *tmp;
	int prio;

	if (hx->closing)
		return;
	refill(hx);
	t = now(hx);
	for (prio = 0; prio < HOPX_NPRIO; prio++) {
		DL_FOREACH_SAFE(hx->queue[prio], p, tmp)
		{
			int64_t w;

			if (p->not_before <= t && hx->tokens >= 1.0) {
				/* Every transfer slot taken: the next answer
				 * pumps again. Handing calls to http.c only as
				 * slots free keeps the priorities: its queue is
				 * first come, first served. */
				if (hx->nrunning >= slots(hx, prio))
					goto full;
				hx->tokens -= 1.0;
				DL_DELETE(hx->queue[prio], p);
				send_one(hx, p);
				continue;
			}
			w = p->not_before > t ? p->not_before - t
			                      : next_token_ms(hx);
			if (wake < 0 || w < wake)
				wake = w;
		}
	}
full:
	if (wake >= 0)
		uv_timer_start(&hx->timer, on_timer, (uint64_t)wake + 1, 0);
}

/* ---- lifecycle ---- */

int hopx_create(uv_loop_t *loop, const struct hopx_opts *o, struct hopx **out)
{
	struct http_opts ho = {0};
	struct hopx *hx;
	size_t n;

	*out = NULL;
	if (o == NULL || o->base_url == NULL || o->api_key == NULL ||
	    strlen(o->api_key) + 12 >= sizeof(hx->key_header))
		return ERR_INVAL;
	if ((hx = calloc(1, sizeof(*hx))) == NULL ||
	    (hx->base = strdup(o->base_url)) == NULL) {
		free(hx);
		return ERR_NOMEM;
	}
	n = strlen(hx->base);
	while (n > 0 && hx->base[n - 1] == '/')
		hx->base[--n] = '\0';
	snprintf(hx->key_header, sizeof(hx->key_header), "X-API-Key: %s",
	         o->api_key);
	log_add_secret(o->api_key);
	hx->loop = loop;
	hx->clk = o->clk ? o->clk : clock_system();
	hx->budget = o->budget_per_min > 0 ? o->budget_per_min : 100;
	hx->burst = o->burst > 0 ? o->burst : (hx->budget + 9) / 10;
	hx->base_ms = o->backoff_base_ms > 0 ? o->backoff_base_ms : 1000;
	hx->cap_ms = o->backoff_cap_ms > 0 ? o->backoff_cap_ms : 60000;
	hx->tokens = hx->burst;
	hx->refilled_at = now(hx);
	hx->rng = (unsigned)clock_wall_ms(clock_system()) | 1u;
	skew_init(&hx->skew);
	hx->hclock = (struct clock){hopx_wall_ms, hopx_mono_ms, hx};
	ho.ca_file = o->ca_file;
	ho.max_inflight = o->max_inflight > 0 ? o->max_inflight : 8;
	hx->max_inflight = ho.max_inflight;
	ho.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
	ho.connect_timeout_ms = ho.timeout_ms < 10000 ? ho.timeout_ms : 10000;
	/* A stalled answer fails well before the whole-transfer limit. */
	ho.stall_s = ho.timeout_ms / 2000 > 0 ? ho.timeout_ms / 2000 : 1;
	if (http_create(loop, &ho, &hx->http) != 0) {
		free(hx->base);
		free(hx);
		return ERR_NOMEM;
	}
	uv_timer_init(loop, &hx->timer);
	hx->timer.data = hx;
	*out = hx;
	return 0;
}

static void hopx_free(uv_handle_t *t)
{
	struct hopx *hx = t->data;
	struct hold *h, *tmp;

	HASH_ITER(hh, hx->holds, h, tmp)
	{
		HASH_DEL(hx->holds, h);
		free(h);
	}
	free(hx->base);
	free(hx);
}

void hopx_destroy(struct hopx *hx)
{
	struct pending *p, *tmp;
	int prio;

	if (hx == NULL)
		return;
	hx->closing = 1;
	for (prio = 0; prio < HOPX_NPRIO; prio++)
		DL_FOREACH_SAFE(hx->queue[prio], p, tmp)
		{
			DL_DELETE(hx->queue[prio], p);
			pending_free(p);
		}
	/* http_destroy cancels the running transfers without callbacks. */
	http_destroy(hx->http);
	DL_FOREACH_SAFE(hx->running, p, tmp)
	{
		DL_DELETE(hx->running, p);
		pending_free(p);
	}
	uv_timer_stop(&hx->timer);
	uv_close((uv_handle_t *)&hx->timer, hopx_free);
}

static int dup_opt(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return src && *dst == NULL ? ERR_NOMEM : 0;
}

int hopx_call(struct hopx *hx, const struct hopx_call *c, hopx_done_fn fn,
              void *ud)
{
	struct pending *p;
	int needs_id = c->op != HOPX_LIST && c->op != HOPX_CREATE &&
	               c->op != HOPX_HEALTH && c->op != HOPX_FORWARD;
	int fwd = c->op == HOPX_FORWARD;

	if (hx->closing || fn == NULL || c->prio >= HOPX_NPRIO ||
	    (needs_id && sbx_id_check(c->id) != 0) ||
	    (c->op == HOPX_CREATE && c->body == NULL) ||
	    (c->op == HOPX_TIMEOUT && c->timeout_s <= 0) ||
	    (unsigned)c->op >= HOPX_NOPS ||
	    (fwd &&
	     (c->method == NULL || c->path == NULL || c->path[0] != '/')))
		return ERR_INVAL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return ERR_NOMEM;
	p->hx = hx;
	p->call = *c;
	p->fn = fn;
	p->ud = ud;
	/*
	 * Three tries at most (RELIABILITY.md 2.4): a user waits, a sync runs
	 * again anyway, and background work is retried by its session, which
	 * paces retries by what is left of the token (long backoffs here once
	 * let tokens expire while a call was still retrying).
	 */
	p->max = c->max_attempts > 0 ? c->max_attempts : 3;
	/* What is forwarded is retried only when asking twice is harmless. */
	if (fwd && strcmp(c->method, "GET") != 0 &&
	    strcmp(c->method, "HEAD") != 0)
		p->max = 1;
	if (dup_opt(&p->id, c->id) || dup_opt(&p->body, c->body) ||
	    dup_opt(&p->query, c->query) || dup_opt(&p->method, c->method) ||
	    dup_opt(&p->path, c->path)) {
		pending_free(p);
		return ERR_NOMEM;
	}
	p->not_before = hold_get(hx, p->id);
	DL_APPEND(hx->queue[c->prio], p);
	hx->npending++;
	pump(hx);
	return 0;
}

int64_t hopx_wait_ms(const struct hopx *hx, enum hopx_prio prio)
{
	double tokens = hx->tokens + (double)(now(hx) - hx->refilled_at) *
	                                     hx->budget / 60000.0;
	const struct pending *p;
	int ahead = 0, i;

	if (tokens > hx->burst)
		tokens = hx->burst;
	for (i = 0; i <= (int)prio && i < HOPX_NPRIO; i++)
		DL_FOREACH(hx->queue[i], p)
	ahead++;
	tokens -= ahead;
	return tokens >= 1.0
	               ? 0
	               : (int64_t)((1.0 - tokens) * 60000.0 / hx->budget) + 1;
}

const struct hopx_stats *hopx_stats(const struct hopx *hx)
{
	return &hx->stats;
}

int hopx_pending(const struct hopx *hx)
{
	return hx->npending;
}

int hopx_spent_last_minute(const struct hopx *hx)
{
	int64_t since = now(hx) - 60000;
	unsigned i, n = hx->nspent < SPENT_RING ? hx->nspent : SPENT_RING;
	int count = 0;

	for (i = 0; i < n; i++)
		if (hx->spent[i] > since)
			count++;
	return count;
}

const struct clock *hopx_clock(const struct hopx *hx)
{
	return &hx->hclock;
}

int64_t hopx_skew_ms(const struct hopx *hx, int *known)
{
	if (known)
		*known = hx->skew.known;
	return skew_offset(&hx->skew);
}

void hopx_skew_restart(struct hopx *hx)
{
	skew_restart(&hx->skew);
}

void hopx_on_skew(struct hopx *hx, hopx_skew_fn fn, void *ud)
{
	hx->on_skew = fn;
	hx->skew_ud = ud;
}

void hopx_on_batch(struct hopx *hx, http_batch_fn fn, void *ud)
{
	http_on_batch(hx->http, fn, ud);
}

int hopx_budget(const struct hopx *hx)
{
	return hx->budget;
}

void hopx_set_budget(struct hopx *hx, int per_min)
{
	if (per_min < 1 || per_min == hx->budget)
		return;
	refill(hx); /* what was earned so far, at the old rate */
	hx->budget = per_min;
	hx->burst = (per_min + 9) / 10;
	if (hx->tokens > hx->burst)
		hx->tokens = hx->burst;
	pump(hx);
}

unsigned hopx_attempts(const struct hopx *hx)
{
	return hx->nspent;
}
