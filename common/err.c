#include "err.h"

#include <errno.h>
#include <string.h>

struct err_entry {
	const char *name;
	const char *text;
};

/* Indexed by -code. Keep in the order of enum err_code. */
static const struct err_entry err_table[] = {
        {"ok", "success"},
        {"no_memory", "out of memory"},
        {"invalid", "invalid argument"},
        {"not_found", "not found"},
        {"exists", "already exists"},
        {"too_big", "too large"},
        {"parse", "malformed input"},
        {"type", "wrong type"},
        {"range", "value out of range"},
        {"io", "input/output error"},
        {"disk_full", "disk full"},
        {"read_only", "read-only database or file system"},
        {"corrupt", "database is corrupt or not a database"},
        {"too_new", "database was written by a newer hopxd"},
        {"busy", "locked by another process"},
        {"wrong_state", "wrong state for this operation"},
        {"auth", "API key missing or refused"},
        {"network", "network or API unreachable"},
        {"rate_limited", "rate limited"},
        {"timeout", "timed out"},
        {"conflict", "refused by the API: conflict"},
        {"unavailable", "service unavailable"},
        {"bad_response", "unusable response from the API"},
        {"system", "system call failed"},
        {"permission", "permission denied"},
        {"protocol", "protocol error"},
        {"unsupported", "not supported"},
};

_Static_assert(sizeof(err_table) / sizeof(err_table[0]) == -ERR_LAST_,
               "err_table must list every error code");

static const struct err_entry *err_lookup(int code)
{
	if (code > 0 || code <= ERR_LAST_)
		return NULL;
	return &err_table[-code];
}

const char *err_str(int code)
{
	const struct err_entry *e = err_lookup(code);

	return e ? e->text : "unknown error";
}

const char *err_name(int code)
{
	const struct err_entry *e = err_lookup(code);

	return e ? e->name : "unknown";
}

int err_from_name(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++)
		if (strcmp(err_table[i].name, name) == 0)
			return -(int)i;
	return ERR_INVAL;
}

int err_from_errno(int e)
{
	switch (e) {
	case 0:
		return ERR_OK;
	case ENOMEM:
		return ERR_NOMEM;
	case ENOENT:
		return ERR_NOTFOUND;
	case EEXIST:
		return ERR_EXISTS;
	case ENOSPC:
	case EDQUOT:
		return ERR_FULL;
	case EROFS:
		return ERR_READONLY;
	case EACCES:
	case EPERM:
		return ERR_PERM;
	case EIO:
		return ERR_IO;
	case EINVAL:
		return ERR_INVAL;
	case EAGAIN:
	case EBUSY:
		return ERR_BUSY;
	case ETIMEDOUT:
		return ERR_TIMEOUT;
	case ENAMETOOLONG:
		return ERR_TOOBIG;
	default:
		return ERR_SYS;
	}
}

int err_transient(int err)
{
	return err == ERR_NET || err == ERR_TIMEOUT || err == ERR_UNAVAIL ||
	       err == ERR_RATE || err == ERR_BADRESP;
}
