#ifndef HOPXD_ERR_H
#define HOPXD_ERR_H

/*
 * One error vocabulary for the whole project. Functions return 0 on
 * success or one of these negative codes. Foreign codes (SQLite, CURLcode,
 * UV_E*) are translated at the edge of the module that calls the foreign
 * library and never travel further.
 */
enum err_code {
	ERR_OK = 0,
	ERR_NOMEM = -1,        /* out of memory */
	ERR_INVAL = -2,        /* invalid argument or request */
	ERR_NOTFOUND = -3,     /* no such record, key or file */
	ERR_EXISTS = -4,       /* already exists (name taken) */
	ERR_TOOBIG = -5,       /* over a size limit */
	ERR_PARSE = -6,        /* malformed input (JSON, timestamp) */
	ERR_TYPE = -7,         /* a field has the wrong type */
	ERR_RANGE = -8,        /* a value is out of range */
	ERR_IO = -9,           /* input/output error */
	ERR_FULL = -10,        /* disk full */
	ERR_READONLY = -11,    /* read-only file or file system */
	ERR_CORRUPT = -12,     /* database file is corrupt or not a database */
	ERR_TOONEW = -13,      /* database written by a newer hopxd */
	ERR_BUSY = -14,        /* locked by another process */
	ERR_STATE = -15,       /* wrong state for this operation */
	ERR_AUTH = -16,        /* API key missing or refused */
	ERR_NET = -17,         /* network or API unreachable */
	ERR_RATE = -18,        /* rate limited */
	ERR_TIMEOUT = -19,     /* timed out */
	ERR_CONFLICT = -20,    /* the API refused a state transition */
	ERR_UNAVAIL = -21,     /* service unavailable (5xx) */
	ERR_BADRESP = -22,     /* the API answered something we cannot use */
	ERR_SYS = -23,         /* an unexpected system call failure */
	ERR_PERM = -24,        /* permission denied */
	ERR_PROTO = -25,       /* IPC protocol violation */
	ERR_UNSUPPORTED = -26, /* the API or the build lacks this feature */
	ERR_LAST_ = -27
};

/* Human text for a code; never NULL, also for unknown codes. */
const char *err_str(int code);

/* Stable snake_case name for a code, used on the wire ("not_found"). */
const char *err_name(int code);

/*
 * Whether a HopX call that failed with err may succeed if tried again
 * (network, timeout, 5xx, 429, an answer we could not use).
 */
int err_transient(int err);

/* Code for a stable name, or ERR_INVAL when the name is unknown. */
int err_from_name(const char *name);

/* Maps an errno value to the closest code (ENOSPC -> ERR_FULL, ...). */
int err_from_errno(int e);

#endif
