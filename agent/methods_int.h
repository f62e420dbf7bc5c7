#ifndef HOPXD_METHODS_INT_H
#define HOPXD_METHODS_INT_H

/*
 * Shared by methods.c (dispatch, local records), methods_sbx.c (what
 * talks to HopX about tracked sandboxes) and methods_new.c (attach and
 * create): the call being handled and helpers for handlers.
 */

#include <cjson/cJSON.h>
#include <stdint.h>

#include "buf.h"
#include "methods.h"
#include "sbx.h"
#include "store.h"

struct agent;
struct ipc_conn;
struct deferred;

struct call {
	struct agent *a;
	struct ipc_conn *conn; /* NULL: an in-process call (methods_call) */
	methods_reply_fn reply_fn;
	void *reply_ud;
	const char *method;
	const cJSON *id;
	const cJSON *params;
	cJSON *result;
	struct buf result_text;    /* or the result as JSON text (when len) */
	struct deferred *deferred; /* set: the reply comes later */
	int changes;               /* the method changes the registry */
	char msg[256];
};

/* A record as clients see it (never the token itself). */
cJSON *methods_sandbox_json(const struct store_sandbox *r);

/* A string parameter (types were checked by dispatch), or NULL. */
const char *methods_param_str(const struct call *c, const char *key);

/* Loads the record named by params.ref (id or local name). */
int methods_load_ref(struct call *c, struct store_sandbox *r);

/* Sets the result to the record's current state. */
int methods_reply_record(struct call *c, const char *id);

/* Sets the error message and returns code. */
int methods_fail(struct call *c, int code, const char *msg);

/* Label changes: checked all first, then applied (inside a transaction). */
int methods_check_labels(struct call *c, const cJSON *set, const cJSON *unset);
int methods_apply_labels(struct call *c, const char *id, const cJSON *set,
                         const cJSON *unset);

/*
 * Makes the reply wait (e.g. for HopX): dispatch sends nothing, and the
 * handler's callbacks later answer with methods_finish exactly once.
 * Returns NULL when out of memory (the handler then fails ERR_NOMEM).
 */
struct deferred *methods_defer(struct call *c);

/*
 * Sends the deferred reply: result (consumed) when e == 0, else an error
 * with msg (or the code's text), then publishes new events.
 */
void methods_finish(struct deferred *d, int e, cJSON *result, const char *msg);

/* The agent a deferred reply belongs to. */
struct agent *methods_agent(const struct deferred *d);

/* ---- helpers of methods_sbx.c for the HopX handlers ---- */

struct sess_outcome;

/* Lifecycle work needs the API and a running agent: 0, or fails c. */
int methods_need_api(struct call *c);

/* Answers a deferred call with the record's state (existing: a create
 * that found it made already), or the error. */
void methods_answer_record(struct deferred *d, const char *id, int e,
                           const char *msg, int existing);
void methods_finish_record(struct deferred *d, const char *id, int e,
                           const char *msg);

/* What a sessions callback needs to answer: the call and the record. */
struct pend {
	struct deferred *d;
	char id[SBX_ID_MAX + 1];
};

/* Defers c's reply; NULL when out of memory. */
struct pend *methods_pend_new(struct call *c, const char *id);

/* A sessions callback: answers the pend with the record, frees it. */
void methods_pend_done(void *ud, const struct sess_outcome *o);

/* The policies a request names (policy, create, attach), the rest kept
 * (-1): 0, or fails c. Whether it names any. */
int methods_policy_params(struct call *c, struct store_policy *p);
int methods_policy_named(const struct store_policy *p);

/* CONNECT_CONFIRM when told to ask HopX first (confirm) and the record
 * was not confirmed lately; else 0. */
unsigned methods_connect_flags(struct call *c, const struct store_sandbox *r,
                               int confirm);

/* Handlers of methods_sbx.c and methods_new.c, in methods.c's table. */
int methods_attach(struct call *c);
int methods_create(struct call *c);
int methods_lifecycle(struct call *c); /* pause, resume, start, stop, kill */
int methods_timeout(struct call *c);
int methods_keepalive(struct call *c);
int methods_token(struct call *c);
int methods_lease(struct call *c);
int methods_release(struct call *c);
int methods_proxy(struct call *c); /* a fixed address while connected */

/* The record as show answers it: with its lease holders. */
int methods_reply_held(struct call *c, const struct store_sandbox *r);
int methods_reconcile(struct call *c);
int methods_wait(struct call *c);
int methods_policy(struct call *c);

#endif
