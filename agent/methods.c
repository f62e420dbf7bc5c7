/*
 * The agent's methods: one table, sorted by name and searched with
 * bsearch, of {name, parameter rules, handler}. Generic code parses and
 * checks; a handler only does the work and fills a result or an error.
 */
#include "methods.h"
#include "methods_int.h"

#include "agent.h"
#include "apiep.h"
#include "config.h"
#include "err.h"
#include "events.h"
#include "fleet.h"
#include "fleetlink.h"
#include "hopx.h"
#include "httpd.h"
#include "ipc_server.h"
#include "json.h"
#include "leases.h"
#include "metrics.h"
#include "proxy.h"
#include "proto.h"
#include "reconcile.h"
#include "rfc3339.h"
#include "sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EVENTS_MAX 10000
#define LIST_MAX   10000

typedef int method_fn(struct call *c);

struct method {
	const char *name;
	const struct proto_param *params;
	method_fn *fn;
	int flags;
};

/* A method's flags. */
enum {
	M_CONN = 1,   /* belongs to a client's connection */
	M_CHANGES = 2 /* changes the registry: refused while it cannot be
	               * stored, answered once stored (a fleet's database) */
};

/* ---- JSON views of records and events ---- */

static void add_int(cJSON *o, const char *key, int64_t v)
{
	if (v == STORE_NULL)
		cJSON_AddNullToObject(o, key);
	else
		json_add_i64(o, key, v);
}

/* A record as clients see it: never the token itself. */
cJSON *methods_sandbox_json(const struct store_sandbox *r)
{
	cJSON *o = cJSON_CreateObject(), *labels, *pol;
	size_t i;

	json_add_str(o, "id", r->id);
	json_add_str(o, "name", r->name);
	json_add_str(o, "status", sbx_status_str(r->status));
	json_add_time(o, "status_since", r->status_since);
	cJSON_AddBoolToObject(o, "stale", r->stale);
	json_add_str(o, "last_error", r->last_error);
	json_add_str(o, "template_id", r->template_id);
	json_add_str(o, "template_name", r->template_name);
	json_add_str(o, "region", r->region);
	json_add_str(o, "public_host", r->public_host);
	add_int(o, "timeout_seconds", r->timeout_seconds);
	json_add_time(o, "expires_at", r->expires_at);
	json_add_time(o, "created_at", r->created_at);
	json_add_time(o, "tracked_at", r->tracked_at);
	json_add_time(o, "confirmed_at", r->confirmed_at);
	json_add_time(o, "token_expires_at", r->token_expires_at);
	labels = cJSON_AddObjectToObject(o, "labels");
	for (i = 0; i < r->nlabels; i++)
		json_add_str(labels, r->labels[i].key, r->labels[i].value);
	pol = cJSON_AddObjectToObject(o, "policy");
	cJSON_AddBoolToObject(pol, "auto_resume", r->auto_resume);
	json_add_i64(pol, "keepalive_s", r->keepalive_s);
	cJSON_AddBoolToObject(pol, "pause_on_shutdown", r->pause_on_shutdown);
	json_add_i64(pol, "idle_pause_s", r->idle_pause_s);
	json_add_str(pol, "on_expiry", store_expiry_str(r->on_expiry));
	return o;
}

/* ---- helpers for handlers ---- */

/* A string parameter (types were checked by dispatch), or NULL. */
const char *methods_param_str(const struct call *c, const char *key)
{
	return cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(c->params, key));
}

/* Loads the record named by params.ref (id or local name). */
int methods_load_ref(struct call *c, struct store_sandbox *r)
{
	const char *ref = methods_param_str(c, "ref");
	int e = store_sandbox_get(c->a->store, ref, r);

	if (e == ERR_NOTFOUND)
		snprintf(c->msg, sizeof(c->msg),
		         "no tracked sandbox with id or name '%.128s'", ref);
	return e;
}

/* Answers with the record's current state. */
int methods_reply_record(struct call *c, const char *id)
{
	struct store_sandbox r;
	int e = store_sandbox_get(c->a->store, id, &r);

	if (e == 0)
		c->result = methods_sandbox_json(&r);
	store_sandbox_finish(&r);
	return e;
}

int methods_fail(struct call *c, int code, const char *msg)
{
	snprintf(c->msg, sizeof(c->msg), "%s", msg);
	return code;
}

/* ---- handlers ---- */

static int m_hello(struct call *c)
{
	c->result = cJSON_CreateObject();
	json_add_i64(c->result, "protocol", PROTO_VERSION);
	json_add_str(c->result, "agent", "hopxd");
	json_add_str(c->result, "version", HOPXD_VERSION);
	return 0;
}

/* The HopX side of status: API state, budget, renewals, reconcile. */
static void add_api_status(struct agent *a, cJSON *o)
{
	cJSON *api = cJSON_AddObjectToObject(o, "api");
	const char *msg = NULL;
	enum sess_api st = sessions_api(a->sess, &msg);
	int64_t next, skew = 0;
	int known = 0;

	json_add_str(api, "state", sess_api_str(st));
	json_add_str(api, "error", msg && *msg ? msg : NULL);
	json_add_str(api, "base_url", a->cfg.api_base);
	if (a->hopx) {
		json_add_i64(api, "budget_per_min", hopx_budget(a->hopx));
		json_add_i64(api, "used_last_min",
		             hopx_spent_last_minute(a->hopx));
		json_add_i64(api, "queued", hopx_pending(a->hopx));
		skew = hopx_skew_ms(a->hopx, &known);
	}
	if (known)
		json_add_i64(api, "clock_skew_ms", skew);
	else
		cJSON_AddNullToObject(api, "clock_skew_ms");
	/* Renewals are planned on HopX's clock; shown on this machine's. */
	next = sessions_next_renewal(a->sess);
	json_add_time(o, "next_renewal", next ? next - skew : STORE_NULL);
	cJSON_AddBoolToObject(o, "reconciling",
	                      a->rec && reconcile_running(a->rec));
	next = a->rec ? reconcile_next_at(a->rec) : 0;
	json_add_time(o, "next_reconcile", next ? next : STORE_NULL);
}

static int m_status(struct call *c)
{
	size_t counts[SBX_STATUS_COUNT], total = 0;
	cJSON *o, *by;
	int64_t seq = 0;
	int i, e;

	if ((e = store_sandbox_count(c->a->store, counts)) != 0 ||
	    (e = store_event_last_seq(c->a->store, &seq)) != 0)
		return e;
	o = c->result = cJSON_CreateObject();
	json_add_str(o, "agent", "hopxd");
	json_add_str(o, "version", HOPXD_VERSION);
	json_add_i64(o, "protocol", PROTO_VERSION);
	json_add_i64(o, "pid", (int64_t)getpid());
	json_add_i64(o, "uptime_s",
	             (clock_mono_ms(c->a->clk) - c->a->started_mono) / 1000);
	json_add_str(o, "db", c->a->cfg.db);
	json_add_str(o, "socket", c->a->cfg.socket);
	by = cJSON_AddObjectToObject(o, "by_status");
	for (i = 0; i < SBX_STATUS_COUNT; i++) {
		json_add_i64(by, sbx_status_str((enum sbx_status)i),
		             (int64_t)counts[i]);
		total += counts[i];
	}
	json_add_i64(o, "sandboxes", (int64_t)total);
	/* Records load a chunk per loop turn after the socket answers. */
	cJSON_AddBoolToObject(o, "loaded",
	                      c->a->sess && !sessions_loading(c->a->sess));
	json_add_i64(o, "last_event", seq);
	json_add_i64(o, "connections",
	             (int64_t)ipc_server_connections(c->a->ipc));
	json_add_i64(o, "subscribers",
	             (int64_t)ipc_server_subscribers(c->a->ipc));
	add_api_status(c->a, o);
	fleetlink_status(c->a, o);
	json_add_str(o, "endpoint",
	             c->a->apiep ? apiep_url(c->a->apiep) : NULL);
	if (c->a->metrics)
		json_add_i64(o, "metrics_port", httpd_port(c->a->metrics));
	if (c->a->proxy && proxy_port(c->a->proxy) > 0)
		json_add_i64(o, "proxy_port", proxy_port(c->a->proxy));
	return 0;
}

/* metrics: Prometheus's text format, as GET /metrics serves it. */
static int m_metrics(struct call *c)
{
	size_t len = 0;
	char *text = metrics_text(c->a, &len);

	if (text == NULL)
		return ERR_NOMEM;
	c->result = cJSON_CreateObject();
	json_add_str(c->result, "text", text);
	free(text);
	return 0;
}

static int add_to_array(void *ud, const struct store_sandbox *r)
{
	return cJSON_AddItemToArray(ud, methods_sandbox_json(r)) ? 0
	                                                         : ERR_NOMEM;
}

/* list's filter from params; label is "key" or "key=value". */
static int list_filter(struct call *c, struct store_filter *f, char *key,
                       size_t keyn)
{
	const char *status = methods_param_str(c, "status"), *label;
	int64_t limit = 1000;

	memset(f, 0, sizeof(*f));
	if (status && sbx_status_parse(status, &f->status) != 0)
		return methods_fail(
		        c, ERR_INVAL,
		        "status must be one of creating, running, paused, "
		        "stopped, gone, unknown");
	f->has_status = status != NULL;
	f->name = methods_param_str(c, "name");
	f->after_id = methods_param_str(c, "after");
	if ((label = methods_param_str(c, "label")) != NULL) {
		const char *eq = strchr(label, '=');

		snprintf(key, keyn, "%.*s",
		         (int)(eq ? (size_t)(eq - label) : strlen(label)),
		         label);
		f->label_key = key;
		f->label_value = eq ? eq + 1 : NULL;
	}
	json_get_i64(c->params, "limit", &limit);
	if (limit < 1 || limit > LIST_MAX)
		return methods_fail(c, ERR_INVAL, "limit must be 1..10000");
	f->limit = (size_t)limit;
	return 0;
}

struct page {
	struct buf *b;
	size_t n;
	char last[SBX_ID_MAX + 1];
};

static int add_text(void *ud, const char *id, const char *text, size_t len)
{
	struct page *p = ud;
	int e = p->n++ ? buf_append(p->b, ",", 1) : 0;

	snprintf(p->last, sizeof(p->last), "%s", id);
	return e ? e : buf_append(p->b, text, len);
}

/*
 * list: the page written as text straight from SQLite's rows (a tree
 * per record made a 10k list several times slower than sqlite3 -json).
 * A full page may have more: the client pages with "after".
 */
static int m_list(struct call *c)
{
	struct store_filter f;
	char key[SBX_LABEL_KEY_MAX + 1];
	struct page p = {.b = &c->result_text};
	int e, full;

	if ((e = list_filter(c, &f, key, sizeof(key))) != 0)
		return e;
	buf_init(p.b, PROTO_MAX - 256);
	if ((e = buf_puts(p.b, "{\"sandboxes\":[")) == 0)
		e = store_sandbox_list_json(c->a->store, &f,
		                            cJSON_IsTrue(cJSON_GetObjectItem(
		                                    c->params, "with_tokens")),
		                            add_text, &p);
	full = p.n == f.limit;
	if (e == 0)
		e = buf_printf(p.b, "],\"next_after\":%s%s%s}",
		               full ? "\"" : "", full ? p.last : "null",
		               full ? "\"" : "");
	if (e == ERR_TOOBIG)
		return methods_fail(c, e,
		                    "this page is over 1 MiB: ask for "
		                    "fewer records (limit)");
	return e;
}

/* show: the record, and who holds it in use right now. */
static int m_show(struct call *c)
{
	struct store_sandbox r;
	int e = methods_load_ref(c, &r);

	if (e == 0)
		e = methods_reply_held(c, &r);
	store_sandbox_finish(&r);
	return e;
}

int methods_reply_held(struct call *c, const struct store_sandbox *r)
{
	cJSON *holders = leases_json(c->a, r->id);

	c->result = methods_sandbox_json(r);
	if (c->result == NULL || holders == NULL ||
	    (c->a->proxy &&
	     proxy_holders_json(c->a->proxy, r->id, holders) != 0)) {
		cJSON_Delete(holders);
		return ERR_NOMEM;
	}
	cJSON_AddItemToObject(c->result, "leases", holders);
	return 0;
}

/* Checks every label change before any is written. */
int methods_check_labels(struct call *c, const cJSON *set, const cJSON *unset)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, set)
	{
		if (!cJSON_IsString(v) ||
		    sbx_label_check(v->string, v->valuestring) != 0) {
			snprintf(c->msg, sizeof(c->msg),
			         "bad label '%.64s': keys are [A-Za-z0-9._/-] "
			         "(1-64), values printable text (0-256)",
			         v->string);
			return ERR_INVAL;
		}
	}
	cJSON_ArrayForEach(v, unset)
	{
		if (!cJSON_IsString(v))
			return methods_fail(
			        c, ERR_INVAL,
			        "unset must be an array of label keys");
	}
	if (!set && !unset)
		return methods_fail(c, ERR_INVAL, "give set and/or unset");
	return 0;
}

int methods_apply_labels(struct call *c, const char *id, const cJSON *set,
                         const cJSON *unset)
{
	struct store *s = c->a->store;
	const cJSON *v;
	int e = 0;

	cJSON_ArrayForEach(v, set)
	{
		if (e == 0)
			e = store_label_set(s, id, v->string, v->valuestring,
			                    STORE_CAUSE_USER);
	}
	cJSON_ArrayForEach(v, unset)
	{
		/* Removing a label that is not there is not an error. */
		if (e == 0) {
			e = store_label_unset(s, id, v->valuestring,
			                      STORE_CAUSE_USER);
			e = e == ERR_NOTFOUND ? 0 : e;
		}
	}
	return e;
}

static int m_label(struct call *c)
{
	const cJSON *set = cJSON_GetObjectItem(c->params, "set");
	const cJSON *unset = cJSON_GetObjectItem(c->params, "unset");
	struct store_sandbox r;
	int e;

	if ((e = methods_check_labels(c, set, unset)) != 0 ||
	    (e = methods_load_ref(c, &r)) != 0)
		return e;
	/* All changes in one transaction: all or none. */
	if ((e = store_begin(c->a->store)) == 0) {
		e = methods_apply_labels(c, r.id, set, unset);
		if (e == 0)
			e = store_commit(c->a->store);
		else
			store_rollback(c->a->store);
	}
	if (e == 0)
		e = methods_reply_record(c, r.id);
	store_sandbox_finish(&r);
	return e;
}

static int m_rename(struct call *c)
{
	const cJSON *n = cJSON_GetObjectItem(c->params, "name");
	const char *name = cJSON_IsString(n) ? n->valuestring : NULL;
	struct store_sandbox r;
	int e;

	if (name && sbx_name_check(name) != 0)
		return methods_fail(
		        c, ERR_INVAL,
		        "names are 1-64 of [A-Za-z0-9._-], starting with "
		        "a letter or digit");
	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	e = store_sandbox_rename(c->a->store, r.id, name, STORE_CAUSE_USER);
	if (e == ERR_EXISTS)
		snprintf(c->msg, sizeof(c->msg),
		         "the name '%s' belongs to another sandbox", name);
	if (e == 0)
		e = methods_reply_record(c, r.id);
	store_sandbox_finish(&r);
	return e;
}

static int m_detach(struct call *c)
{
	struct store_sandbox r;
	int e;

	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	e = store_sandbox_forget(c->a->store, r.id, STORE_CAUSE_USER);
	if (e == 0)
		sessions_forget(c->a->sess, r.id);
	if (e == 0) {
		c->result = cJSON_CreateObject();
		json_add_str(c->result, "id", r.id);
		cJSON_AddBoolToObject(c->result, "detached", 1);
	}
	store_sandbox_finish(&r);
	return e;
}

static int add_event(void *ud, const struct store_event *ev)
{
	return cJSON_AddItemToArray(ud, events_json(ev)) ? 0 : ERR_NOMEM;
}

static int m_events(struct call *c)
{
	int64_t since = 0, limit = 1000, last = 0;
	cJSON *arr;
	int e;

	json_get_i64(c->params, "since", &since);
	json_get_i64(c->params, "limit", &limit);
	if (since < 0 || limit < 1 || limit > EVENTS_MAX)
		return methods_fail(c, ERR_INVAL,
		                    "since >= 0 and limit 1..10000");
	if ((e = store_event_last_seq(c->a->store, &last)) != 0)
		return e;
	c->result = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(c->result, "events");
	json_add_i64(c->result, "last_seq", last);
	return store_event_since(c->a->store, since, (size_t)limit, add_event,
	                         arr);
}

static int m_subscribe(struct call *c)
{
	int64_t since = -1, last = 0;
	cJSON *arr;
	int e;

	json_get_i64(c->params, "since", &since);
	if ((e = store_event_last_seq(c->a->store, &last)) != 0)
		return e;
	c->result = cJSON_CreateObject();
	json_add_i64(c->result, "last_seq", last);
	/* a large registry's snapshot outgrows a subscriber's queue: those
	 * clients page with list and ask for none */
	if (!cJSON_IsFalse(cJSON_GetObjectItem(c->params, "snapshot"))) {
		arr = cJSON_AddArrayToObject(c->result, "snapshot");
		e = store_sandbox_list(c->a->store, NULL, add_to_array, arr);
		if (e != 0)
			return e;
	}
	/* Replay from since (if given), else only what happens next. */
	ipc_conn_subscribe(c->conn, c->id,
	                   since >= 0 && since < last ? since : last);
	return 0;
}

/* Keep sorted by name: looked up with bsearch. */
static const struct proto_param p_none[] = {{NULL, 0, 0}};
static const struct proto_param p_ref[] = {{"ref", PT_STRING, 1}, {NULL, 0, 0}};
static const struct proto_param p_events[] = {
        {"since", PT_INT, 0}, {"limit", PT_INT, 0}, {NULL, 0, 0}};
static const struct proto_param p_label[] = {{"ref", PT_STRING, 1},
                                             {"set", PT_OBJECT, 0},
                                             {"unset", PT_ARRAY, 0},
                                             {NULL, 0, 0}};
static const struct proto_param p_list[] = {{"status", PT_STRING, 0},
                                            {"label", PT_STRING, 0},
                                            {"name", PT_STRING, 0},
                                            {"after", PT_STRING, 0},
                                            {"limit", PT_INT, 0},
                                            {"with_tokens", PT_BOOL, 0},
                                            {NULL, 0, 0}};
static const struct proto_param p_rename[] = {
        {"ref", PT_STRING, 1}, {"name", PT_STRING_OR_NULL, 1}, {NULL, 0, 0}};
static const struct proto_param p_subscribe[] = {
        {"since", PT_INT, 0}, {"snapshot", PT_BOOL, 0}, {NULL, 0, 0}};

static const struct proto_param p_attach[] = {{"id", PT_STRING, 1},
                                              {"idle_pause_s", PT_INT, 0},
                                              {"on_expiry", PT_STRING, 0},
                                              {"name", PT_STRING, 0},
                                              {"labels", PT_OBJECT, 0},
                                              {"resume", PT_BOOL, 0},
                                              {NULL, 0, 0}};
static const struct proto_param p_create[] = {
        {"template", PT_STRING, 1},      {"idle_pause_s", PT_INT, 0},
        {"on_expiry", PT_STRING, 0},     {"name", PT_STRING, 0},
        {"labels", PT_OBJECT, 0},        {"timeout_s", PT_INT, 0},
        {"region", PT_STRING, 0},        {"env", PT_OBJECT, 0},
        {"internet_access", PT_BOOL, 0}, {NULL, 0, 0}};
static const struct proto_param p_seconds[] = {
        {"ref", PT_STRING, 1}, {"seconds", PT_INT, 1}, {NULL, 0, 0}};
static const struct proto_param p_token[] = {{"confirm", PT_BOOL, 0},
                                             {"min_ttl_s", PT_INT, 0},
                                             {"ref", PT_STRING, 1},
                                             {"rejected", PT_STRING, 0},
                                             {NULL, 0, 0}};
static const struct proto_param p_reconcile[] = {{"last", PT_BOOL, 0},
                                                 {NULL, 0, 0}};
static const struct proto_param p_wait[] = {{"ref", PT_STRING, 1},
                                            {"status", PT_STRING, 1},
                                            {"timeout_s", PT_INT, 0},
                                            {NULL, 0, 0}};
static const struct proto_param p_policy[] = {{"ref", PT_STRING, 1},
                                              {"auto_resume", PT_BOOL, 0},
                                              {"idle_pause_s", PT_INT, 0},
                                              {"on_expiry", PT_STRING, 0},
                                              {"pause_on_shutdown", PT_BOOL, 0},
                                              {NULL, 0, 0}};

static const struct proto_param p_proxy[] = {
        {"ref", PT_STRING, 1}, {"listen", PT_STRING, 1}, {NULL, 0, 0}};

static const struct method methods[] = {
        {"attach", p_attach, methods_attach, M_CHANGES},
        {"create", p_create, methods_create, M_CHANGES},
        {"detach", p_ref, m_detach, M_CHANGES},
        {"events", p_events, m_events, 0},
        {"hello", p_none, m_hello, 0},
        {"keepalive", p_seconds, methods_keepalive, M_CHANGES},
        {"kill", p_ref, methods_lifecycle, M_CHANGES},
        {"label", p_label, m_label, M_CHANGES},
        {"lease", p_ref, methods_lease, M_CONN},
        {"list", p_list, m_list, 0},
        {"metrics", p_none, m_metrics, 0},
        {"pause", p_ref, methods_lifecycle, M_CHANGES},
        {"policy", p_policy, methods_policy, M_CHANGES},
        {"proxy", p_proxy, methods_proxy, M_CONN},
        {"reconcile", p_reconcile, methods_reconcile, 0},
        {"release", p_ref, methods_release, M_CONN},
        {"rename", p_rename, m_rename, M_CHANGES},
        {"resume", p_ref, methods_lifecycle, M_CHANGES},
        {"show", p_ref, m_show, 0},
        {"start", p_ref, methods_lifecycle, M_CHANGES},
        {"status", p_none, m_status, 0},
        {"stop", p_ref, methods_lifecycle, M_CHANGES},
        {"subscribe", p_subscribe, m_subscribe, M_CONN},
        {"timeout", p_seconds, methods_timeout, M_CHANGES},
        {"token", p_token, methods_token, 0},
        {"wait", p_wait, methods_wait, 0},
};

static int method_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct method *)elem)->name);
}

struct deferred {
	struct agent *a;
	struct ipc_conn *conn;
	methods_reply_fn reply_fn;
	void *reply_ud;
	cJSON *id;
	int barrier;   /* answer once the fleet's registry holds the change */
	cJSON *result; /* ... kept meanwhile */
};

struct deferred *methods_defer(struct call *c)
{
	struct deferred *d = calloc(1, sizeof(*d));

	if (d == NULL ||
	    (c->id && (d->id = cJSON_Duplicate(c->id, 1)) == NULL)) {
		free(d);
		return NULL;
	}
	d->a = c->a;
	d->conn = c->conn;
	d->reply_fn = c->reply_fn;
	d->reply_ud = c->reply_ud;
	d->barrier = c->changes && c->a->fleet;
	if (c->conn)
		ipc_conn_hold(c->conn);
	c->deferred = d;
	return d;
}

struct agent *methods_agent(const struct deferred *d)
{
	return d->a;
}

/* The message of an error answer: a storage fault says what it means. */
static const char *err_text(int e, const char *msg, char *buf, size_t n)
{
	if (msg && *msg)
		return msg;
	if (e == ERR_FULL || e == ERR_IO || e == ERR_READONLY ||
	    e == ERR_CORRUPT) {
		log_warn("a request failed: the database could not be "
		         "written (%s)",
		         err_str(e));
		snprintf(buf, n,
		         "the database could not be written (%s): nothing was "
		         "changed; the agent's log has the cause",
		         err_str(e));
		return buf;
	}
	return err_str(e);
}

static void stored(void *ud, int err, const char *msg)
{
	struct deferred *d = ud;
	cJSON *result = d->result;

	d->result = NULL;
	methods_finish(d, err, result, msg);
}

/* The sandbox a change's answer is about ("": agent-wide). */
static const char *result_id(const cJSON *result)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(result, "id");

	return cJSON_IsString(id) ? id->valuestring : "";
}

void methods_finish(struct deferred *d, int e, cJSON *result, const char *msg)
{
	char buf[160];
	size_t len = 0;
	char *text;

	if (d->barrier && e == 0 && d->a->fleet) {
		d->barrier = 0;
		d->result = result;
		fleet_barrier(d->a->fleet, result_id(result), stored, d);
		return;
	}
	if (d->conn == NULL) {
		d->reply_fn(d->reply_ud, e, e == 0 ? result : NULL,
		            e ? err_text(e, msg, buf, sizeof(buf)) : NULL);
		cJSON_Delete(result);
		goto done;
	}
	if (e == 0) {
		text = proto_result(d->id, result, &len);
	} else {
		cJSON_Delete(result);
		text = proto_error(d->id, e, err_text(e, msg, buf, sizeof(buf)),
		                   &len);
	}
	ipc_conn_send(d->conn, text, len);
	ipc_conn_release(d->conn);
done:
	events_publish(d->a);
	cJSON_Delete(d->id);
	free(d);
}

/* The text result as a tree, for an in-process caller. */
static void text_to_tree(struct call *c)
{
	if (c->result_text.len && c->result == NULL &&
	    json_parse(c->result_text.data, c->result_text.len, &c->result) !=
	            0)
		c->result = NULL;
}

static void reply(struct call *c, int e)
{
	char buf[160];
	size_t len = 0;
	char *text;

	if (c->conn == NULL) {
		text_to_tree(c);
		c->reply_fn(c->reply_ud, e, e == 0 ? c->result : NULL,
		            e ? err_text(e, c->msg, buf, sizeof(buf)) : NULL);
		cJSON_Delete(c->result);
		c->result = NULL;
		return;
	}
	if (e == 0 && c->result_text.len)
		text = proto_result_text(c->id, c->result_text.data,
		                         c->result_text.len, &len);
	else if (e == 0)
		text = proto_result(c->id, c->result, &len);
	else
		text = proto_error(c->id, e,
		                   err_text(e, c->msg, buf, sizeof(buf)), &len);
	if (e != 0)
		cJSON_Delete(c->result);
	c->result = NULL;
	ipc_conn_send(c->conn, text, len);
}

/* A change answered at once becomes one answered once it is stored. */
static void defer_done(struct call *c)
{
	struct deferred *d;

	text_to_tree(c);
	if ((d = methods_defer(c)) == NULL)
		return; /* answered now: the change is pushed all the same */
	methods_finish(d, 0, c->result, NULL);
	c->result = NULL;
}

/* Looks the method up, checks its parameters and runs it; answers. */
static void run_call(struct call *c, const char *method)
{
	const struct method *m;
	int e = 0;

	if ((m = bsearch(method, methods, sizeof(methods) / sizeof(*m),
	                 sizeof(*m), method_cmp)) == NULL ||
	    (c->conn == NULL && (m->flags & M_CONN))) {
		snprintf(c->msg, sizeof(c->msg), "unknown method '%.64s'",
		         method);
		e = ERR_INVAL;
	}
	if (e == 0)
		e = proto_check_params(c->params, m->params, c->msg,
		                       sizeof(c->msg));
	if (e == 0 && (m->flags & M_CHANGES)) {
		c->changes = 1;
		e = fleetlink_writable(c->a, c->msg, sizeof(c->msg));
	}
	if (e == 0) {
		c->method = m->name;
		e = m->fn(c);
	}
	/* In a fleet, a change is answered once the registry holds it. */
	if (e == 0 && c->changes && c->a->fleet && c->deferred == NULL)
		defer_done(c);
	/* A deferred call that failed before deferring answers now. */
	if (c->deferred == NULL)
		reply(c, e);
	else if (e != 0)
		methods_finish(c->deferred, e, NULL, c->msg);
	buf_finish(&c->result_text);
	events_publish(c->a);
}

void methods_dispatch(struct agent *a, struct ipc_conn *conn, const char *line,
                      size_t len)
{
	struct call c = {.a = a, .conn = conn};
	struct proto_req req;
	int e;

	e = proto_req_parse(line, len, &req, c.msg, sizeof(c.msg));
	c.id = req.id;
	c.params = req.params;
	if (e == 0)
		run_call(&c, req.method);
	else
		reply(&c, e);
	proto_req_finish(&req);
}

void methods_call(struct agent *a, const char *method, const cJSON *params,
                  methods_reply_fn fn, void *ud)
{
	cJSON *p = params ? cJSON_Duplicate(params, 1) : cJSON_CreateObject();
	struct call c = {.a = a, .reply_fn = fn, .reply_ud = ud, .params = p};

	if (p == NULL) {
		fn(ud, ERR_NOMEM, NULL, err_str(ERR_NOMEM));
		return;
	}
	run_call(&c, method);
	cJSON_Delete(p);
}
