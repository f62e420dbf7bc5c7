/*
 * Attach and create: new records from a HopX Sandbox object. A create is
 * an intent first (so a kill never loses a sandbox HopX made), a named
 * one single-flight here and, in a fleet, claimed across the fleet.
 */
#include "methods_int.h"

#include "adopt.h"
#include "agent.h"
#include "connect.h"
#include "err.h"
#include "fleet.h"
#include "fleetlink.h"
#include "hopx.h"
#include "json.h"
#include "log.h"
#include "reconcile.h"
#include "sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

/* ---- attach and create: new records from a HopX Sandbox object ---- */

/*
 * A create of a name in flight: creates of the same name that come
 * meanwhile wait for it and answer with what it made, so racing "ensure"
 * scripts all get the one sandbox.
 */
struct joiner {
	struct deferred *d;
	struct joiner *next;
};

struct methods_flight {
	char name[SBX_NAME_MAX + 1];
	struct joiner *joiners;
	struct methods_flight *prev, *next;
};

/* A fleet's claim of a name, closed once its sandbox is stored. */
struct claim_done {
	struct agent *a;
	int64_t claim;
	char id[SBX_ID_MAX + 1];
};

/* What attach and create carry from the request to the answer. */
struct track {
	struct deferred *d;
	cJSON *params;  /* a copy: the request is gone by then */
	int64_t intent; /* create: the intent to resolve; 0 for none */
	int resume;
	struct methods_flight *flight; /* a named create: its joiners */
	int64_t claim;   /* the fleet's claim of the name; 0 for none */
	int64_t give_up; /* waiting for another agent's create until then */
};

static struct methods_flight *flight_find(struct agent *a, const char *name)
{
	struct methods_flight *f;

	DL_FOREACH(a->creating, f)
	{
		if (strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

/* Another create of a name in flight waits for that one. */
static int flight_join(struct call *c, struct methods_flight *f)
{
	struct joiner *j = calloc(1, sizeof(*j));

	if (j == NULL || (j->d = methods_defer(c)) == NULL) {
		free(j);
		return ERR_NOMEM;
	}
	LL_PREPEND(f->joiners, j);
	return 0;
}

/* The create ended: its joiners get its sandbox (id) or its error. */
static void flight_end(struct agent *a, struct methods_flight *f,
                       const char *id, int e, const char *msg)
{
	struct joiner *j, *tmp;

	if (f == NULL)
		return;
	DL_DELETE(a->creating, f);
	LL_FOREACH_SAFE(f->joiners, j, tmp)
	{
		methods_answer_record(j->d, id, e, msg, 1);
		free(j);
	}
	free(f);
}

static void track_free(struct track *t)
{
	cJSON_Delete(t->params);
	free(t);
}

/*
 * Writes the record, its labels and its token, and closes the create
 * intent (0: none), in one transaction.
 */
static int put_record(struct call *c, const struct hopx_sandbox *h,
                      const cJSON *params, int auto_resume, int64_t intent)
{
	const char *name =
	        cJSON_GetStringValue(cJSON_GetObjectItem(params, "name"));
	/* The token's issue time is on HopX's clock, like its expiry. */
	int e = adopt_put(c->a->store, h, name,
	                  cJSON_GetObjectItem(params, "labels"), auto_resume,
	                  clock_wall_ms(hopx_clock(c->a->hopx)),
	                  STORE_CAUSE_USER, intent);

	struct store_policy p;

	if (e == ERR_EXISTS)
		snprintf(c->msg, sizeof(c->msg),
		         "the name '%s' belongs to another sandbox", name);
	/* Checked before HopX was asked (check_new). */
	if (e == 0 && methods_policy_params(c, &p) == 0 &&
	    methods_policy_named(&p))
		e = store_sandbox_set_policy(c->a->store, h->id, &p,
		                             STORE_CAUSE_USER);
	return e == 0 ? sessions_track(c->a->sess, h->id) : e;
}

/* After the record exists: resume or get a token, then answer. */
static void settle(struct call *c, struct track *t,
                   const struct hopx_sandbox *h)
{
	struct pend *p = calloc(1, sizeof(*p));
	enum sess_act act = SESS_SYNC;

	if (h->status == SBX_PAUSED && t->resume)
		act = SESS_RESUME;
	else if (h->status == SBX_RUNNING && h->token[0] == '\0')
		act = SESS_REFRESH;
	if (p == NULL || act == SESS_SYNC) {
		free(p);
		methods_finish_record(t->d, h->id, 0, NULL);
		return;
	}
	p->d = t->d;
	snprintf(p->id, sizeof(p->id), "%s", h->id);
	sessions_do(c->a->sess, h->id, act, 0, HOPX_PRIO_USER, STORE_CAUSE_USER,
	            methods_pend_done, p);
}

/* A call rebuilt around the deferred reply, for the shared helpers. */
static void call_of(struct call *c, struct track *t)
{
	memset(c, 0, sizeof(*c));
	c->a = methods_agent(t->d);
	c->params = t->params;
}

static void attached(void *ud, const struct hopx_result *r)
{
	struct track *t = ud;
	struct call c;
	int e = r->err;

	call_of(&c, t);
	sessions_note_api(c.a->sess, r->err, r->message);
	if (e == ERR_NOTFOUND)
		snprintf(c.msg, sizeof(c.msg),
		         "HopX has no sandbox %.128s (or it belongs to "
		         "another organization)",
		         r->sbx.id[0] ? r->sbx.id : "with this id");
	else if (e != 0)
		snprintf(c.msg, sizeof(c.msg), "HopX: %s", r->message);
	if (e == 0)
		e = put_record(&c, &r->sbx, t->params, t->resume, 0);
	if (e == 0)
		settle(&c, t, &r->sbx);
	else
		methods_finish(t->d, e, NULL, c.msg);
	track_free(t);
}

static struct track *track_new(struct call *c)
{
	struct track *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->params = cJSON_Duplicate(c->params, 1);
	if (t->params == NULL || (t->d = methods_defer(c)) == NULL) {
		track_free(t);
		return NULL;
	}
	return t;
}

/* Checks name, labels and policies before anything is asked of HopX. */
static int check_new(struct call *c)
{
	const char *name = methods_param_str(c, "name");
	struct store_policy p;
	int e;

	if ((e = methods_policy_params(c, &p)) != 0)
		return e;
	if (name && sbx_name_check(name) != 0)
		return methods_fail(c, ERR_INVAL,
		                    "names are 1-64 of [A-Za-z0-9._-], "
		                    "starting with a letter or digit");
	if (cJSON_GetObjectItem(c->params, "labels"))
		return methods_check_labels(
		        c, cJSON_GetObjectItem(c->params, "labels"), NULL);
	return 0;
}

static void attach_connected(void *ud, const struct connect_result *o)
{
	struct pend *p = ud;

	methods_finish_record(p->d, p->id, o->err, o->msg);
	free(p);
}

/*
 * Attaching what is tracked already is HopX's connect(): HopX is asked
 * unless it spoke lately, a paused sandbox is resumed (its policy
 * allowing), stopped and gone are refused with the fix. --no-resume, or
 * no API key: the record as it is.
 */
static int attach_tracked(struct call *c, const struct store_sandbox *r,
                          int resume)
{
	struct pend *p;

	if (!resume || c->a->hopx == NULL || c->a->stopping) {
		c->result = methods_sandbox_json(r);
		return c->result ? 0 : ERR_NOMEM;
	}
	if ((p = methods_pend_new(c, r->id)) == NULL)
		return ERR_NOMEM;
	sessions_use(c->a->sess, r->id);
	connect_sandbox(c->a->sess, r->id, r->name ? r->name : r->id, 0,
	                methods_connect_flags(c, r, 1), NULL, attach_connected,
	                p);
	return 0;
}

int methods_attach(struct call *c)
{
	const char *id = methods_param_str(c, "id");
	const cJSON *resume = cJSON_GetObjectItem(c->params, "resume");
	struct hopx_call hc = {
	        .op = HOPX_GET, .id = id, .prio = HOPX_PRIO_USER};
	struct store_sandbox r;
	struct track *t;
	int e;

	if (sbx_id_check(id) != 0)
		return methods_fail(c, ERR_INVAL,
		                    "ids are 1-128 of [A-Za-z0-9_-]");
	if (store_sandbox_get(c->a->store, id, &r) == 0) {
		e = attach_tracked(c, &r, !cJSON_IsFalse(resume));
		store_sandbox_finish(&r);
		return e;
	}
	if ((e = check_new(c)) != 0 || (e = methods_need_api(c)) != 0)
		return e;
	if ((t = track_new(c)) == NULL)
		return ERR_NOMEM;
	t->resume = !cJSON_IsFalse(resume);
	if (hopx_call(c->a->hopx, &hc, attached, t) != 0) {
		track_free(t);
		return ERR_NOMEM; /* dispatch finishes the deferred reply */
	}
	return 0;
}

/* The create request HopX takes (shared/hopx-api.md 3.1). */
static cJSON *create_body(struct call *c)
{
	const char *tpl = methods_param_str(c, "template");
	const char *region = methods_param_str(c, "region");
	const cJSON *env = cJSON_GetObjectItem(c->params, "env");
	const cJSON *net = cJSON_GetObjectItem(c->params, "internet_access");
	cJSON *b = cJSON_CreateObject();
	int64_t timeout = 0;

	/* A number is a template id, anything else its name. */
	json_add_str(b,
	             tpl[strspn(tpl, "0123456789")] ? "template_name"
	                                            : "template_id",
	             tpl);
	if (json_get_i64(c->params, "timeout_s", &timeout) == 0)
		json_add_i64(b, "timeout_seconds", timeout);
	json_add_str(b, "region", region);
	if (env)
		cJSON_AddItemToObject(b, "env_vars", cJSON_Duplicate(env, 1));
	if (net)
		json_add_bool(b, "internet_access", cJSON_IsTrue(net));
	return b;
}

/*
 * What the intent keeps: the body without env values (they may be
 * secrets and adoption needs only the template) and the labels to give
 * an adopted sandbox.
 */
static char *intent_text(const struct call *c, const cJSON *body)
{
	cJSON *o = cJSON_CreateObject(), *b = cJSON_Duplicate(body, 1);
	const cJSON *labels = cJSON_GetObjectItem(c->params, "labels");
	char *text;

	cJSON_DeleteItemFromObjectCaseSensitive(b, "env_vars");
	cJSON_AddItemToObject(o, "body", b);
	if (labels)
		cJSON_AddItemToObject(o, "labels", cJSON_Duplicate(labels, 1));
	text = json_print(o);
	cJSON_Delete(o);
	return text;
}

static int check_create(struct call *c)
{
	const cJSON *env = cJSON_GetObjectItem(c->params, "env"), *v;
	const char *tpl = methods_param_str(c, "template");
	int64_t timeout = 1;

	json_get_i64(c->params, "timeout_s", &timeout);
	if (*tpl == '\0' || strlen(tpl) > 128)
		return methods_fail(c, ERR_INVAL,
		                    "template must be 1-128 bytes");
	if (timeout < 1 || timeout > 30L * 86400)
		return methods_fail(c, ERR_INVAL,
		                    "timeout_s must be 1..2592000");
	cJSON_ArrayForEach(v, env)
	{
		if (!cJSON_IsString(v) || *v->string == '\0')
			return methods_fail(c, ERR_INVAL,
			                    "env must map names to strings");
	}
	return check_new(c);
}

static void release_claim(struct agent *a, int64_t claim, const char *id);

static void created(void *ud, const struct hopx_result *r)
{
	struct track *t = ud;
	struct call c;
	int e = r->err;

	/* No answer (or a lost one): HopX may have made it, or not. */
	int unknown = err_transient(r->err) && r->err != ERR_RATE;

	call_of(&c, t);
	reconcile_hold(c.a->rec, t->intent, 0);
	sessions_note_api(c.a->sess, r->err, r->message);
	/* Stored with the record, the intent closes in its transaction. */
	if (e == 0)
		e = put_record(&c, &r->sbx, t->params, 1, t->intent);
	/* An unknown outcome leaves the intent open, as the record of it. */
	else if (!unknown)
		store_intent_resolve(c.a->store, t->intent, NULL);
	if (r->err != 0)
		snprintf(c.msg, sizeof(c.msg),
		         "HopX refused the create: %s%s%s", r->code,
		         r->code[0] ? ": " : "", r->message);
	if (unknown)
		snprintf(c.msg, sizeof(c.msg),
		         "the create may or may not have happened (%s): look "
		         "for a new sandbox at HopX and 'hopxctl attach' it",
		         err_str(r->err));
	flight_end(c.a, t->flight, r->sbx.id, e, c.msg);
	/* HopX may have made it: the name stays claimed until it is known */
	if (unknown && t->claim && c.a->fleet) {
		fleet_keep_claim(c.a->fleet, t->claim);
		reconcile_settle_soon(c.a->rec);
		t->claim = 0;
	}
	release_claim(c.a, t->claim, e == 0 ? r->sbx.id : NULL);
	if (e == 0)
		settle(&c, t, &r->sbx);
	else
		methods_finish(t->d, e, NULL, c.msg);
	track_free(t);
}

/* A name that exists already answers with its sandbox: create is
 * idempotent by name. */
static int existing_by_name(struct call *c)
{
	const char *name = methods_param_str(c, "name");
	struct store_sandbox r;

	if (name == NULL || store_sandbox_get(c->a->store, name, &r) != 0)
		return 0;
	c->result = methods_sandbox_json(&r);
	cJSON_AddBoolToObject(c->result, "existing", 1);
	store_sandbox_finish(&r);
	return 1;
}

/* The POST is leaving: from now on HopX may make the sandbox. */
static void create_sent(void *ud)
{
	struct track *t = ud;

	if (store_intent_sent(methods_agent(t->d)->store, t->intent) != 0)
		log_warn("cannot note create #%lld as sent",
		         (long long)t->intent);
}

static int cut_off(struct call *c)
{
	char msg[256];

	snprintf(msg, sizeof(msg),
	         "a create named '%.64s' was cut off before HopX answered; its "
	         "outcome is unknown until a reconcile looks: run 'hopxctl "
	         "reconcile', then create again",
	         methods_param_str(c, "name"));
	return methods_fail(c, ERR_STATE, msg);
}

/* A named create in flight here: later ones of the name join it. */
static int flight_start(struct call *c, struct track *t)
{
	const char *name = methods_param_str(c, "name");

	if (name == NULL)
		return 0;
	if ((t->flight = calloc(1, sizeof(*t->flight))) == NULL)
		return ERR_NOMEM;
	snprintf(t->flight->name, sizeof(t->flight->name), "%s", name);
	DL_APPEND(c->a->creating, t->flight);
	return 0;
}

/* Sends the create once its intent is stored (t: made here if NULL). */
static int send_create(struct call *c, struct track *t, const cJSON *b)
{
	struct hopx_call hc = {.op = HOPX_CREATE,
	                       .prio = HOPX_PRIO_USER,
	                       .on_send = create_sent};
	int64_t intent = 0;
	int own = t == NULL;
	char *itext = intent_text(c, b), *body = json_print(b);
	int e = itext && body ? 0 : ERR_NOMEM;

	/* Written before the call: a crash cannot lose what it creates. */
	if (e == 0)
		e = store_intent_add(c->a->store, "create", itext,
		                     methods_param_str(c, "name"), &intent);
	/* Not in flight here (that one is joined): cut off by a restart. */
	if (e == ERR_EXISTS)
		e = cut_off(c);
	if (e == 0 && t == NULL && (t = track_new(c)) == NULL)
		e = ERR_NOMEM;
	if (e == 0 && t->flight == NULL)
		e = flight_start(c, t);
	if (e == 0) {
		t->intent = intent;
		hc.body = body;
		reconcile_hold(c->a->rec, intent, 1);
		e = hopx_call(c->a->hopx, &hc, created, t);
	}
	if (e != 0 && intent) {
		reconcile_hold(c->a->rec, intent, 0);
		store_intent_resolve(c->a->store, intent, NULL);
	}
	if (e != 0 && t) {
		flight_end(c->a, t->flight, NULL, e, c->msg);
		t->flight = NULL;
		if (own)
			track_free(t);
	}
	free(itext);
	free(body);
	return e;
}

/* ---- a named create in a fleet: one agent makes it ---- */

/*
 * The claim is closed once the record is in the registry, not before:
 * another agent that claims the name then finds the sandbox instead.
 */
static void claim_stored(void *ud, int err, const char *msg)
{
	struct claim_done *cd = ud;

	(void)msg;
	/* not stored yet: left open (it shows the sandbox may come) until
	 * the record is, when the next claim of the name closes it */
	if (cd->a->fleet && (err == 0 || cd->id[0] == '\0'))
		fleet_release(cd->a->fleet, cd->claim,
		              cd->id[0] ? cd->id : NULL);
	free(cd);
}

static void release_claim(struct agent *a, int64_t claim, const char *id)
{
	struct claim_done *cd;

	if (claim == 0 || a->fleet == NULL ||
	    (cd = calloc(1, sizeof(*cd))) == NULL)
		return;
	cd->a = a;
	cd->claim = claim;
	snprintf(cd->id, sizeof(cd->id), "%s", id ? id : "");
	fleet_barrier(a->fleet, id, claim_stored, cd);
}

static void claimed(void *ud, int err, int64_t claim, const char *msg);

/* Another agent made the sandbox (id), or is still at it (NULL). */
static void name_seen(void *ud, const char *id)
{
	struct track *t = ud;
	struct agent *a = methods_agent(t->d);
	struct call c;

	if (id) {
		flight_end(a, t->flight, id, 0, NULL);
		methods_answer_record(t->d, id, 0, NULL, 1);
		track_free(t);
		return;
	}
	if (a->fleet && !a->stopping && clock_mono_ms(a->clk) < t->give_up) {
		call_of(&c, t);
		fleet_claim_name(a->fleet, methods_param_str(&c, "name"),
		                 claimed, t);
		return;
	}
	snprintf(c.msg, sizeof(c.msg),
	         "another agent of the fleet is still creating '%.64s': "
	         "'hopxctl show %.64s' will have it once it is made",
	         cJSON_GetStringValue(cJSON_GetObjectItem(t->params, "name")),
	         cJSON_GetStringValue(cJSON_GetObjectItem(t->params, "name")));
	flight_end(a, t->flight, NULL, ERR_TIMEOUT, c.msg);
	methods_finish(t->d, ERR_TIMEOUT, NULL, c.msg);
	track_free(t);
}

static void claimed(void *ud, int err, int64_t claim, const char *msg)
{
	struct track *t = ud;
	struct call c;
	cJSON *body;

	call_of(&c, t);
	if (err == 0 && claim == 0 &&
	    fleetlink_wait_name(c.a, methods_param_str(&c, "name"), 1000,
	                        name_seen, t) == 0)
		return;
	if (err == 0 && claim == 0)
		err = ERR_NOMEM;
	t->claim = claim;
	if (err == 0 && (body = create_body(&c)) != NULL) {
		err = send_create(&c, t, body);
		cJSON_Delete(body);
		msg = c.msg;
	} else if (err == 0) {
		err = ERR_NOMEM;
	}
	if (err == 0)
		return;
	release_claim(c.a, t->claim, NULL);
	flight_end(c.a, t->flight, NULL, err, msg);
	methods_finish(t->d, err, NULL, msg);
	track_free(t);
}

/* Asks the registry for the name before HopX for the sandbox. */
static int claim_name(struct call *c)
{
	struct track *t = track_new(c);

	if (t == NULL || flight_start(c, t) != 0) {
		if (t)
			track_free(t);
		return ERR_NOMEM;
	}
	t->give_up = clock_mono_ms(c->a->clk) + 120000;
	fleet_claim_name(c->a->fleet, methods_param_str(c, "name"), claimed, t);
	return 0;
}

int methods_create(struct call *c)
{
	struct methods_flight *f;
	const char *name;
	cJSON *body;
	int e;

	if ((e = check_create(c)) != 0)
		return e;
	if (existing_by_name(c))
		return 0;
	if ((e = methods_need_api(c)) != 0)
		return e;
	name = methods_param_str(c, "name");
	if (name && (f = flight_find(c->a, name)) != NULL)
		return flight_join(c, f);
	if (name && c->a->fleet)
		return claim_name(c);
	if ((body = create_body(c)) == NULL)
		return ERR_NOMEM;
	e = send_create(c, NULL, body);
	cJSON_Delete(body);
	return e;
}
