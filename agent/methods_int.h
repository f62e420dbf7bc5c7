#ifndef HOPXD_METHODS_INT_H
#define HOPXD_METHODS_INT_H

/*
 * Shared by methods.c (dispatch, local records) and methods_sbx.c (what
 * talks to HopX): the call being handled and helpers for handlers.
 */

#include <cjson/cJSON.h>
#include <stdint.h>

#include "buf.h"
#include "methods.h"
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

/* Handlers of methods_sbx.c, listed in methods.c's table. */
int methods_attach(struct call *c);
int methods_create(struct call *c);
int methods_lifecycle(struct call *c); /* pause, resume, start, stop, kill */
int methods_timeout(struct call *c);
int methods_keepalive(struct call *c);
int methods_token(struct call *c);
int methods_lease(struct call *c);
int methods_release(struct call *c);

/* The record as show answers it: with its lease holders. */
int methods_reply_held(struct call *c, const struct store_sandbox *r);
int methods_reconcile(struct call *c);
int methods_wait(struct call *c);
int methods_policy(struct call *c);

#endif
