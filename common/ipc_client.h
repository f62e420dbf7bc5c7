#ifndef HOPXD_IPC_CLIENT_H
#define HOPXD_IPC_CLIENT_H

/*
 * A blocking client of the hopxd socket (no event loop): connect, send a
 * request, wait for its reply, optionally read a stream of events.
 */

#include <cjson/cJSON.h>

struct ipc_client;

/*
 * Connects to the agent's socket. Returns 0, ERR_UNAVAIL when no agent
 * listens there (no socket, connection refused), ERR_PERM, ERR_TOOBIG (path
 * longer than a Unix socket allows) or ERR_SYS.
 */
int ipc_client_connect(const char *path, struct ipc_client **out);

/*
 * Sends {"id","method","params"} (params consumed; NULL for none) and
 * waits up to timeout_ms for the reply. On 0, *result is the reply's
 * result (caller deletes). When the agent answers an error, returns its
 * code (err_from_name) and *message gets its text (caller frees). Other
 * failures: ERR_TIMEOUT, ERR_NET (connection lost), ERR_PROTO (the agent
 * sent something that is not a reply), ERR_TOOBIG.
 */
int ipc_client_call(struct ipc_client *c, const char *method, cJSON *params,
                    int timeout_ms, cJSON **result, char **message);

/*
 * ipc_client_call for a caller that passes the result through without
 * parsing it: on 0, *text is the whole reply line ({"id":N,"result":...},
 * without the newline; *len bytes, valid until the next call on c).
 * Errors as ipc_client_call.
 */
int ipc_client_call_text(struct ipc_client *c, const char *method,
                         cJSON *params, int timeout_ms, const char **text,
                         size_t *len, char **message);

/*
 * Reads the next event of a subscription made with ipc_client_call
 * ("subscribe"). timeout_ms < 0 waits forever. *event is the "event"
 * member (caller deletes). ERR_TIMEOUT, ERR_NET, ERR_PROTO as above; an
 * error line from the agent (e.g. the subscriber was dropped) returns its
 * code with *message.
 */
int ipc_client_next_event(struct ipc_client *c, int timeout_ms, cJSON **event,
                          char **message);

/* Closes and frees; accepts NULL. */
void ipc_client_close(struct ipc_client *c);

#endif
