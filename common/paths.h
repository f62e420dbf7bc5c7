#ifndef HOPXD_PATHS_H
#define HOPXD_PATHS_H

#include <stddef.h>

/*
 * Default locations, shared by hopxd and hopxctl so that both find the
 * same socket. Order: the environment variable (HOPXD_SOCKET, HOPXD_DB),
 * then XDG ($XDG_RUNTIME_DIR/hopxd/hopxd.sock,
 * $XDG_STATE_HOME/hopxd/hopxd.db), then a per-user fallback
 * (/tmp/hopxd-UID/hopxd.sock, $HOME/.local/state/hopxd/hopxd.db).
 * Each writes a NUL-terminated path into out and returns 0, ERR_TOOBIG
 * when it does not fit, or ERR_NOTFOUND when no base can be found.
 */
int paths_socket(char *out, size_t n);
int paths_db(char *out, size_t n);

#endif
