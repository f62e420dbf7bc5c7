#ifndef HOPXD_METHODS_H
#define HOPXD_METHODS_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct agent;
struct ipc_conn;

/*
 * Handles one request line from a client: parses it, looks the method up
 * in the table, checks its parameters, runs it and queues the reply on c.
 * Bad input gets an error reply naming the problem; the connection stays.
 */
void methods_dispatch(struct agent *a, struct ipc_conn *c, const char *line,
                      size_t len);

/*
 * What an in-process call gets instead of a reply line: e (0 or ERR_*),
 * and the result (the callee's: valid during the call) or a message.
 */
typedef void (*methods_reply_fn)(void *ud, int e, const cJSON *result,
                                 const char *msg);

/*
 * Runs a method as a client's request would (the same checks, the same
 * single-flight and budget), for callers inside the agent such as the
 * HopX-compatible endpoint. params is copied. fn runs exactly once,
 * possibly before this returns. Methods that belong to a connection
 * (subscribe, lease, release) are refused with ERR_INVAL.
 */
void methods_call(struct agent *a, const char *method, const cJSON *params,
                  methods_reply_fn fn, void *ud);

#endif
