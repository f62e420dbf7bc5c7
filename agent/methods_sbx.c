/*
 * The methods that talk to HopX about tracked sandboxes: the lifecycle
 * verbs, timeout, keepalive, token, leases, reconcile, wait and policy
 * (attach and create are in methods_new.c). Each checks its
 * input, defers its reply, and answers from a sessions/hopx callback.
 */
#include "methods_int.h"

#include "agent.h"
#include "connect.h"
#include "leases.h"
#include "err.h"
#include "hopx.h"
#include "ipc_server.h"
#include "json.h"
#include "proxy.h"
#include "rfc3339.h"
#include "reconcile.h"
#include "sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_DEFAULT_S 300
#define WAIT_MAX_S     86400
#define MIN_TTL_MAX_S  86400
/* The shortest idle period (tests use a few seconds). */
#define IDLE_MIN_S 2

/* Lifecycle work needs the API and a running agent. */
int methods_need_api(struct call *c)
{
	const char *msg = NULL;

	if (c->a->stopping)
		return methods_fail(c, ERR_STATE, "hopxd is shutting down");
	if (c->a->hopx == NULL) {
		sessions_api(c->a->sess, &msg);
		return methods_fail(c, ERR_AUTH, msg);
	}
	return 0;
}

/* Answers a deferred call with the record's state (existing: a create
 * that found it made already), or the error. */
void methods_answer_record(struct deferred *d, const char *id, int e,
                           const char *msg, int existing)
{
	struct store_sandbox r;
	cJSON *j = NULL;

	if (e == 0)
		e = store_sandbox_get(methods_agent(d)->store, id, &r);
	else
		store_sandbox_init(&r);
	if (e == 0)
		j = methods_sandbox_json(&r);
	if (j && existing)
		cJSON_AddBoolToObject(j, "existing", 1);
	methods_finish(d, e, j, msg);
	store_sandbox_finish(&r);
}

void methods_finish_record(struct deferred *d, const char *id, int e,
                           const char *msg)
{
	methods_answer_record(d, id, e, msg, 0);
}

struct pend *methods_pend_new(struct call *c, const char *id)
{
	struct pend *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	if ((p->d = methods_defer(c)) == NULL) {
		free(p);
		return NULL;
	}
	snprintf(p->id, sizeof(p->id), "%s", id);
	return p;
}

void methods_pend_done(void *ud, const struct sess_outcome *o)
{
	struct pend *p = ud;

	methods_finish_record(p->d, p->id, o->err, o->msg);
	free(p);
}

/* Runs act on the sandbox id and answers with its new state. */
static int act_on(struct call *c, const char *id, enum sess_act act,
                  int64_t arg)
{
	struct pend *p = methods_pend_new(c, id);

	if (p == NULL)
		return ERR_NOMEM;
	sessions_do(c->a->sess, id, act, arg, HOPX_PRIO_USER, STORE_CAUSE_USER,
	            methods_pend_done, p);
	return 0;
}

/* Runs act on the record named by ref. */
static int run_act(struct call *c, enum sess_act act, int64_t arg)
{
	struct store_sandbox r;
	int e;

	if ((e = methods_need_api(c)) != 0 ||
	    (e = methods_load_ref(c, &r)) != 0)
		return e;
	e = act_on(c, r.id, act, arg);
	store_sandbox_finish(&r);
	return e;
}

int methods_lifecycle(struct call *c)
{
	static const struct {
		const char *method;
		enum sess_act act;
	} verbs[] = {{"kill", SESS_KILL},
	             {"pause", SESS_PAUSE},
	             {"resume", SESS_RESUME},
	             {"start", SESS_START},
	             {"stop", SESS_STOP}};
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(*verbs); i++)
		if (strcmp(c->method, verbs[i].method) == 0)
			return run_act(c, verbs[i].act, 0);
	return methods_fail(c, ERR_INVAL, "unknown lifecycle verb");
}

static int seconds_param(struct call *c, int64_t lo, int64_t *out)
{
	*out = -1;
	json_get_i64(c->params, "seconds", out);
	if (*out < lo || *out > 30L * 86400)
		return methods_fail(c, ERR_INVAL,
		                    lo ? "seconds must be 1..2592000"
		                       : "seconds must be 0 (off) or "
		                         "1..2592000");
	return 0;
}

int methods_timeout(struct call *c)
{
	int64_t s;
	int e = seconds_param(c, 1, &s);

	return e ? e : run_act(c, SESS_TIMEOUT, s);
}

/*
 * Keep-alive N: the policy is stored, then the deadline is set to now + N
 * at once; the session re-arms it from then on. 0 turns it off.
 */
int methods_keepalive(struct call *c)
{
	struct store_sandbox r;
	struct store_policy p;
	int64_t s;
	int e;

	if ((e = seconds_param(c, 0, &s)) != 0 ||
	    (s > 0 && (e = methods_need_api(c)) != 0) ||
	    (e = methods_load_ref(c, &r)) != 0)
		return e;
	store_policy_keep(&p);
	p.keepalive_s = s;
	if (s > 0 && s < 10)
		e = methods_fail(c, ERR_INVAL, "a keep-alive is at least 10 s");
	if (e == 0)
		e = store_sandbox_set_policy(c->a->store, r.id, &p,
		                             STORE_CAUSE_USER);
	if (e == 0)
		e = sessions_policy_changed(c->a->sess, r.id);
	if (e == 0 && s > 0)
		e = act_on(c, r.id, SESS_TIMEOUT, s);
	else if (e == 0)
		e = methods_reply_record(c, r.id);
	store_sandbox_finish(&r);
	return e;
}

/* The policies a request names (policy, create, attach); the rest kept. */
int methods_policy_params(struct call *c, struct store_policy *p)
{
	const cJSON *ar = cJSON_GetObjectItem(c->params, "auto_resume");
	const cJSON *ps = cJSON_GetObjectItem(c->params, "pause_on_shutdown");

	store_policy_keep(p);
	if (ar)
		p->auto_resume = cJSON_IsTrue(ar);
	if (ps)
		p->pause_on_shutdown = cJSON_IsTrue(ps);
	json_get_i64(c->params, "idle_pause_s", &p->idle_pause_s);
	if (cJSON_GetObjectItem(c->params, "on_expiry") &&
	    (p->on_expiry =
	             store_expiry_parse(methods_param_str(c, "on_expiry"))) < 0)
		return methods_fail(c, ERR_INVAL,
		                    "on_expiry must be kill, pause or extend");
	if (p->idle_pause_s != -1 &&
	    (p->idle_pause_s < 0 || p->idle_pause_s > 30L * 86400 ||
	     (p->idle_pause_s > 0 && p->idle_pause_s < IDLE_MIN_S)))
		return methods_fail(c, ERR_INVAL,
		                    "idle_pause_s must be 0 (off) or "
		                    "2..2592000 seconds");
	return 0;
}

int methods_policy_named(const struct store_policy *p)
{
	return p->auto_resume >= 0 || p->pause_on_shutdown >= 0 ||
	       p->idle_pause_s >= 0 || p->keepalive_s >= 0 || p->on_expiry >= 0;
}

int methods_policy(struct call *c)
{
	struct store_sandbox r;
	struct store_policy p;
	int e;

	if ((e = methods_policy_params(c, &p)) != 0 ||
	    (e = methods_load_ref(c, &r)) != 0)
		return e;
	if (methods_policy_named(&p))
		e = store_sandbox_set_policy(c->a->store, r.id, &p,
		                             STORE_CAUSE_USER);
	if (e == 0)
		e = sessions_policy_changed(c->a->sess, r.id);
	if (e == 0)
		e = methods_reply_record(c, r.id);
	store_sandbox_finish(&r);
	return e;
}

/* ---- token ---- */

static cJSON *token_json(const char *id, const char *token, int64_t expires_at,
                         const char *public_host)
{
	cJSON *res = cJSON_CreateObject();

	json_add_str(res, "id", id);
	json_add_str(res, "token", token);
	json_add_time(res, "expires_at", expires_at);
	json_add_str(res, "public_host", public_host);
	return res;
}

/*
 * token_json's object written as text: the broker's fast path answers
 * without building and printing a tree per request.
 */
static int token_text(struct buf *b, const struct sess_token *tk)
{
	char t[RFC3339_MAX];

	buf_init(b, 16384);
	buf_puts(b, "{\"id\":");
	json_buf_str(b, tk->id);
	buf_puts(b, ",\"token\":");
	json_buf_str(b, tk->token);
	buf_puts(b, ",\"expires_at\":");
	if (tk->expires_at >= 0 &&
	    rfc3339_format(tk->expires_at, 0, t, sizeof(t)) == 0)
		json_buf_str(b, t);
	else
		buf_puts(b, "null");
	buf_puts(b, ",\"public_host\":");
	if (tk->public_host)
		json_buf_str(b, tk->public_host);
	else
		buf_puts(b, "null");
	return buf_puts(b, "}");
}

static void token_done(void *ud, const struct connect_result *o)
{
	struct pend *p = ud;
	struct store_sandbox r;
	cJSON *res = NULL;
	int e = o->err;

	if (e == 0 && (e = store_sandbox_get(methods_agent(p->d)->store, p->id,
	                                     &r)) == 0) {
		res = token_json(p->id, o->token, o->expires_at, r.public_host);
		methods_agent(p->d)->stats.tokens_socket++;
		if (res && o->resumed)
			cJSON_AddBoolToObject(res, "resumed", 1);
		store_sandbox_finish(&r);
	}
	methods_finish(p->d, e, res, o->msg);
	free(p);
}

/* Asking HopX first: when told to (env, run, attach) and the record was
 * not confirmed lately. */
unsigned methods_connect_flags(struct call *c, const struct store_sandbox *r,
                               int confirm)
{
	return confirm && (r->confirmed_at == STORE_NULL ||
	                   clock_wall_ms(c->a->clk) - r->confirmed_at >=
	                           c->a->cfg.confirm_after_s * 1000LL)
	               ? CONNECT_CONFIRM
	               : 0;
}

/*
 * token: from memory when it can be (the broker's fast path); else
 * connect() semantics: a paused sandbox is resumed, a refused token
 * (rejected) makes the agent ask HopX and hand out another.
 */
int methods_token(struct call *c)
{
	const char *rejected = methods_param_str(c, "rejected");
	struct store_sandbox r;
	struct sess_token tk;
	int64_t ttl = 0;
	struct pend *p;
	int e;

	json_get_i64(c->params, "min_ttl_s", &ttl);
	if (ttl < 0 || ttl > MIN_TTL_MAX_S)
		return methods_fail(c, ERR_INVAL, "min_ttl_s must be 0..86400");
	if ((e = methods_need_api(c)) != 0)
		return e;
	if (rejected == NULL &&
	    !cJSON_IsTrue(cJSON_GetObjectItem(c->params, "confirm")) &&
	    sessions_token_cached(c->a->sess, methods_param_str(c, "ref"),
	                          ttl * 1000, &tk) == 0) {
		sessions_use(c->a->sess, tk.id);
		c->a->stats.tokens_socket++;
		return token_text(&c->result_text, &tk);
	}
	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	sessions_use(c->a->sess, r.id);
	p = methods_pend_new(c, r.id);
	if (p)
		connect_sandbox(
		        c->a->sess, r.id, r.name ? r.name : r.id, ttl * 1000,
		        methods_connect_flags(c, &r,
		                              cJSON_IsTrue(cJSON_GetObjectItem(
		                                      c->params, "confirm"))),
		        rejected, token_done, p);
	store_sandbox_finish(&r);
	return p ? 0 : ERR_NOMEM;
}

/* ---- leases ---- */

/* lease: this connection holds the sandbox in use until it closes. */
int methods_lease(struct call *c)
{
	struct store_sandbox r;
	int e;

	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	e = leases_take(c->a, c->conn, r.id, clock_wall_ms(c->a->clk));
	if (e == 0)
		e = methods_reply_held(c, &r);
	store_sandbox_finish(&r);
	return e;
}

int methods_release(struct call *c)
{
	struct store_sandbox r;
	int e;

	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	if (leases_release(c->a, c->conn, r.id) != 0)
		e = methods_fail(c, ERR_NOTFOUND,
		                 "this connection holds no lease on it");
	else
		e = methods_reply_held(c, &r);
	store_sandbox_finish(&r);
	return e;
}

/* ---- a fixed local address (hopxctl proxy) ---- */

/* Lasts as long as the client's connection (its owner). */
int methods_proxy(struct call *c)
{
	const char *listen = methods_param_str(c, "listen");
	char where[160], why[320];
	struct store_sandbox r;
	int e;

	if (c->conn == NULL || c->a->proxy == NULL)
		return methods_fail(c, ERR_STATE, "the agent is stopping");
	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	e = proxy_bind(c->a->proxy, r.id, listen, c->conn, where, sizeof(where),
	               why, sizeof(why));
	if (e != 0) {
		store_sandbox_finish(&r);
		return methods_fail(c, e, why);
	}
	ipc_conn_keep(c->conn);
	c->result = cJSON_CreateObject();
	json_add_str(c->result, "id", r.id);
	json_add_str(c->result, "name", r.name);
	json_add_str(c->result, "url", where);
	store_sandbox_finish(&r);
	return c->result ? 0 : ERR_NOMEM;
}

/* ---- wait ---- */

int methods_wait(struct call *c)
{
	const char *want = methods_param_str(c, "status");
	int64_t t = WAIT_DEFAULT_S;
	struct store_sandbox r;
	enum sbx_status st;
	struct pend *p;
	int e;

	json_get_i64(c->params, "timeout_s", &t);
	if (sbx_status_parse(want, &st) != 0)
		return methods_fail(c, ERR_INVAL,
		                    "status must be one of creating, running, "
		                    "paused, stopped, gone");
	if (t < 0 || t > WAIT_MAX_S)
		return methods_fail(c, ERR_INVAL, "timeout_s must be 0..86400");
	if ((e = methods_load_ref(c, &r)) != 0)
		return e;
	p = methods_pend_new(c, r.id);
	if (p)
		sessions_wait(c->a->sess, r.id, st, t * 1000, methods_pend_done,
		              p);
	store_sandbox_finish(&r);
	return p ? 0 : ERR_NOMEM;
}

/* ---- reconcile ---- */

static void reconciled(void *ud, int err, const cJSON *report)
{
	struct deferred *d = ud;
	const char *msg =
	        cJSON_GetStringValue(cJSON_GetObjectItem(report, "message"));

	if (err == 0 || err == ERR_STATE || report == NULL)
		methods_finish(d, err, cJSON_Duplicate(report, 1), msg);
	else /* HopX could not be asked: an error, with the report's why */
		methods_finish(d, err, NULL, msg);
}

static int last_report(struct call *c)
{
	char *text = NULL;
	int64_t id = 0;
	int e = store_report_last(c->a->store, &id, &text);

	if (e == ERR_NOTFOUND)
		return methods_fail(c, e, "no reconcile has run yet");
	if (e == 0 && (c->result = cJSON_Parse(text)) == NULL)
		e = ERR_CORRUPT;
	free(text);
	return e;
}

int methods_reconcile(struct call *c)
{
	const cJSON *last = cJSON_GetObjectItem(c->params, "last");
	struct deferred *d;
	int e;

	if (cJSON_IsTrue(last))
		return last_report(c);
	if ((e = methods_need_api(c)) != 0)
		return e;
	if ((d = methods_defer(c)) == NULL)
		return ERR_NOMEM;
	if (reconcile_run(c->a->rec, "user", reconciled, d) != 0)
		methods_finish(d, ERR_NOMEM, NULL, NULL);
	return 0;
}
