#include "json.h"

#include "buf.h"
#include "err.h"
#include "rfc3339.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Integers a double represents exactly: |v| <= 2^53. */
#define JSON_INT_MAX 9007199254740992.0

int json_parse(const char *s, size_t len, cJSON **out)
{
	const char *end = NULL;
	cJSON *j;

	*out = NULL;
	if (s == NULL || len == 0)
		return ERR_PARSE;
	j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
	if (j == NULL)
		return ERR_PARSE;
	/* Allow trailing white space only. */
	while (end && (size_t)(end - s) < len &&
	       (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
		end++;
	if (end == NULL || (size_t)(end - s) != len) {
		cJSON_Delete(j);
		return ERR_PARSE;
	}
	*out = j;
	return 0;
}

static const cJSON *item(const cJSON *o, const char *key)
{
	const cJSON *v;

	if (o == NULL || !cJSON_IsObject(o))
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(o, key);
	return v == NULL || cJSON_IsNull(v) ? NULL : v;
}

int json_get_str(const cJSON *o, const char *key, const char **out)
{
	const cJSON *v = item(o, key);

	if (v == NULL)
		return ERR_NOTFOUND;
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return ERR_TYPE;
	*out = v->valuestring;
	return 0;
}

int json_get_i64(const cJSON *o, const char *key, int64_t *out)
{
	const cJSON *v = item(o, key);
	double d;

	if (v == NULL)
		return ERR_NOTFOUND;
	if (!cJSON_IsNumber(v))
		return ERR_TYPE;
	d = v->valuedouble;
	if (!isfinite(d) || d != floor(d) || fabs(d) > JSON_INT_MAX)
		return ERR_TYPE;
	*out = (int64_t)d;
	return 0;
}

int json_get_bool(const cJSON *o, const char *key, int *out)
{
	const cJSON *v = item(o, key);

	if (v == NULL)
		return ERR_NOTFOUND;
	if (!cJSON_IsBool(v))
		return ERR_TYPE;
	*out = cJSON_IsTrue(v);
	return 0;
}

int json_get_obj(const cJSON *o, const char *key, const cJSON **out)
{
	const cJSON *v = item(o, key);

	if (v == NULL)
		return ERR_NOTFOUND;
	if (!cJSON_IsObject(v))
		return ERR_TYPE;
	*out = v;
	return 0;
}

int json_get_arr(const cJSON *o, const char *key, const cJSON **out)
{
	const cJSON *v = item(o, key);

	if (v == NULL)
		return ERR_NOTFOUND;
	if (!cJSON_IsArray(v))
		return ERR_TYPE;
	*out = v;
	return 0;
}

int json_get_time(const cJSON *o, const char *key, int64_t *out_ms)
{
	const char *s;
	int r = json_get_str(o, key, &s);

	if (r != 0)
		return r;
	return rfc3339_parse(s, out_ms);
}

/* Turns "missing" into success for the _opt getters. */
static int opt(int r)
{
	return r == ERR_NOTFOUND ? 0 : r;
}

int json_get_str_opt(const cJSON *o, const char *key, const char **out)
{
	return opt(json_get_str(o, key, out));
}

int json_get_i64_opt(const cJSON *o, const char *key, int64_t *out)
{
	return opt(json_get_i64(o, key, out));
}

int json_get_bool_opt(const cJSON *o, const char *key, int *out)
{
	return opt(json_get_bool(o, key, out));
}

int json_get_time_opt(const cJSON *o, const char *key, int64_t *out_ms)
{
	return opt(json_get_time(o, key, out_ms));
}

int json_add_str(cJSON *o, const char *key, const char *value)
{
	cJSON *v = value ? cJSON_AddStringToObject(o, key, value)
	                 : cJSON_AddNullToObject(o, key);

	return v ? 0 : ERR_NOMEM;
}

int json_add_i64(cJSON *o, const char *key, int64_t value)
{
	return cJSON_AddNumberToObject(o, key, (double)value) ? 0 : ERR_NOMEM;
}

int json_add_bool(cJSON *o, const char *key, int value)
{
	return cJSON_AddBoolToObject(o, key, value) ? 0 : ERR_NOMEM;
}

int json_add_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[RFC3339_MAX];

	if (ms < 0 || rfc3339_format(ms, 0, buf, sizeof(buf)) != 0)
		return json_add_str(o, key, NULL);
	return json_add_str(o, key, buf);
}

char *json_print(const cJSON *o)
{
	return cJSON_PrintUnformatted(o);
}

void json_buf_str(struct buf *b, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str, *run = s;
	char esc[8];

	buf_append(b, "\"", 1);
	for (; *s; s++) {
		const char *e = NULL;

		if (*s >= 0x20 && *s != '"' && *s != '\\')
			continue;
		buf_append(b, run, (size_t)(s - run));
		run = s + 1;
		switch (*s) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case '\b':
			e = "\\b";
			break;
		case '\f':
			e = "\\f";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case '\t':
			e = "\\t";
			break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*s >> 4];
			esc[5] = hex[*s & 15];
			esc[6] = '\0';
			e = esc;
		}
		buf_append(b, e, strlen(e));
	}
	buf_append(b, run, (size_t)(s - run));
	buf_append(b, "\"", 1);
}
