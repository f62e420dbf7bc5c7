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

/*
 * Where hopxd looks for the API key when neither --api-key-file nor
 * HOPX_API_KEY gives one (a systemd user unit has no shell environment):
 * $XDG_CONFIG_HOME/hopxd/api-key, else $HOME/.config/hopxd/api-key.
 * Same returns as above.
 */
int paths_key_file(char *out, size_t n);

/*
 * The local key clients of the HopX-compatible endpoint may send instead
 * of the API key: $XDG_CONFIG_HOME/hopxd/local-key, else
 * $HOME/.config/hopxd/local-key. Same returns as above.
 */
int paths_local_key_file(char *out, size_t n);

/*
 * Creates every missing parent directory of the file path with mode 0700
 * (existing ones are left alone). Returns 0 or an ERR_* code from errno;
 * on failure, failed (if not NULL, at least n bytes) names the directory.
 */
int paths_make_parents(const char *path, char *failed, size_t n);

#endif
