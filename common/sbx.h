#ifndef HOPXD_SBX_H
#define HOPXD_SBX_H

#include <stddef.h>

/*
 * The sandbox vocabulary shared by the agent, the store and the CLI:
 * statuses and the rules for ids, local names and labels.
 */

/* Statuses shown to users (DESIGN.md "The sandbox record"). */
enum sbx_status {
	SBX_UNKNOWN = 0, /* never confirmed by HopX */
	SBX_CREATING,
	SBX_RUNNING,
	SBX_PAUSED,
	SBX_STOPPED,
	SBX_GONE, /* HopX answered 404: deleted or expired */
	SBX_STATUS_COUNT
};

/* "running", ...; never NULL. */
const char *sbx_status_str(enum sbx_status s);

/* Parses a status name. Returns 0 or ERR_INVAL. */
int sbx_status_parse(const char *s, enum sbx_status *out);

/* Bounds on what a client may give us. */
#define SBX_ID_MAX          128
#define SBX_NAME_MAX        64
#define SBX_LABEL_KEY_MAX   64
#define SBX_LABEL_VALUE_MAX 256

/*
 * A HopX id: 1..SBX_ID_MAX bytes of [A-Za-z0-9_-]. Returns 0 or ERR_INVAL.
 * Rejecting everything else keeps ids safe in URLs, logs and shells.
 */
int sbx_id_check(const char *id);

/*
 * A local name: 1..SBX_NAME_MAX bytes of [A-Za-z0-9._-], starting with a
 * letter or digit. Returns 0 or ERR_INVAL.
 */
int sbx_name_check(const char *name);

/*
 * A label key ([A-Za-z0-9._/-], 1..SBX_LABEL_KEY_MAX) and value (printable
 * UTF-8 without control bytes, 0..SBX_LABEL_VALUE_MAX). 0 or ERR_INVAL.
 */
int sbx_label_check(const char *key, const char *value);

#endif
