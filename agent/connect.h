#ifndef HOPXD_CONNECT_H
#define HOPXD_CONNECT_H

/*
 * HopX's connect() for a tracked sandbox, the way every path that hands
 * out a token does it (token, env, run; later the proxy): a paused
 * sandbox is resumed when its policy allows (joining any resume in
 * flight), then a token is handed out; paused with auto-resume off,
 * stopped and gone are refused with the command that fixes them; creating
 * is waited for. With CONNECT_CONFIRM, HopX is asked first (a GET shared
 * by concurrent callers), so that a pause made behind the agent's back is
 * seen; a caller whose token the sandbox refused passes it as rejected:
 * HopX is asked, and the answer is never that token.
 */

#include <stdint.h>

struct sessions;

#define CONNECT_CONFIRM 1u /* ask HopX for the status first */
#define CONNECT_TRAFFIC 2u /* for the proxy: events say cause traffic */

struct connect_result {
	int err;           /* 0 or ERR_* (ERR_STATE: see msg for the fix) */
	char msg[320];     /* for people, when err != 0 */
	const char *token; /* valid during the callback */
	int64_t expires_at;
	int resumed; /* it was paused and this resumed it */
};

typedef void (*connect_fn)(void *ud, const struct connect_result *r);

/*
 * Connects to the sandbox with this id, called ref (its name or id) in
 * messages, for a token lasting min_ttl_ms. rejected (may be NULL) is
 * copied. fn runs exactly once, possibly before this returns. Returns 0 or
 * ERR_NOMEM (fn has run then too).
 */
int connect_sandbox(struct sessions *ss, const char *id, const char *ref,
                    int64_t min_ttl_ms, unsigned flags, const char *rejected,
                    connect_fn fn, void *ud);

#endif
