#include "sbx.h"

#include "err.h"

#include <string.h>

static const char *const status_names[SBX_STATUS_COUNT] = {
        "unknown", "creating", "running", "paused", "stopped", "gone",
};

const char *sbx_status_str(enum sbx_status s)
{
	if ((int)s < 0 || s >= SBX_STATUS_COUNT)
		return "unknown";
	return status_names[s];
}

int sbx_status_parse(const char *s, enum sbx_status *out)
{
	int i;

	for (i = 0; s && i < SBX_STATUS_COUNT; i++) {
		if (strcmp(s, status_names[i]) == 0) {
			*out = (enum sbx_status)i;
			return 0;
		}
	}
	return ERR_INVAL;
}

static int is_alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9');
}

/* Checks 1..max bytes, each alphanumeric or in extra. */
static int check_chars(const char *s, size_t max, const char *extra)
{
	size_t n;

	if (s == NULL || *s == '\0')
		return ERR_INVAL;
	for (n = 0; s[n]; n++) {
		if (n >= max)
			return ERR_INVAL;
		if (!is_alnum(s[n]) && strchr(extra, s[n]) == NULL)
			return ERR_INVAL;
	}
	return 0;
}

int sbx_id_check(const char *id)
{
	return check_chars(id, SBX_ID_MAX, "_-");
}

int sbx_name_check(const char *name)
{
	if (name == NULL || !is_alnum(name[0]))
		return ERR_INVAL;
	return check_chars(name, SBX_NAME_MAX, "._-");
}

int sbx_label_check(const char *key, const char *value)
{
	size_t n;

	if (check_chars(key, SBX_LABEL_KEY_MAX, "._/-") != 0)
		return ERR_INVAL;
	if (value == NULL)
		return ERR_INVAL;
	for (n = 0; value[n]; n++) {
		unsigned char c = (unsigned char)value[n];

		if (n >= SBX_LABEL_VALUE_MAX || c < 0x20 || c == 0x7f)
			return ERR_INVAL;
	}
	return 0;
}
