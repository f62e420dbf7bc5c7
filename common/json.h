#ifndef HOPXD_JSON_H
#define HOPXD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/*
 * Typed, checked access to cJSON objects. Getters return 0 and set *out,
 * ERR_NOTFOUND when the key is missing or null, ERR_TYPE when the value has
 * another type (or, for integers, is not a whole number that a double holds
 * exactly). The _opt forms treat missing/null as success and leave the
 * default in *out. Strings returned point into the cJSON tree.
 */

/*
 * Parses len bytes into a tree the caller deletes with cJSON_Delete.
 * Returns 0, ERR_PARSE (malformed, trailing garbage, nesting deeper than
 * cJSON allows) or ERR_NOMEM.
 */
int json_parse(const char *s, size_t len, cJSON **out);

int json_get_str(const cJSON *o, const char *key, const char **out);
int json_get_str_opt(const cJSON *o, const char *key, const char **out);
int json_get_i64(const cJSON *o, const char *key, int64_t *out);
int json_get_i64_opt(const cJSON *o, const char *key, int64_t *out);
int json_get_bool(const cJSON *o, const char *key, int *out);
int json_get_bool_opt(const cJSON *o, const char *key, int *out);
int json_get_obj(const cJSON *o, const char *key, const cJSON **out);
int json_get_arr(const cJSON *o, const char *key, const cJSON **out);

/* An RFC 3339 string field as Unix milliseconds; ERR_PARSE if malformed. */
int json_get_time(const cJSON *o, const char *key, int64_t *out_ms);
int json_get_time_opt(const cJSON *o, const char *key, int64_t *out_ms);

/* Adds key: value (or null when value is NULL). 0 or ERR_NOMEM. */
int json_add_str(cJSON *o, const char *key, const char *value);
int json_add_i64(cJSON *o, const char *key, int64_t value);
int json_add_bool(cJSON *o, const char *key, int value);

/* Adds key: the RFC 3339 UTC time of ms, or null when ms is negative
 * (unknown). 0 or ERR_NOMEM. */
int json_add_time(cJSON *o, const char *key, int64_t ms);

struct buf;

/*
 * Appends str as a JSON string, escaped as cJSON escapes (UTF-8 as it
 * is), for replies written as text. An append that fails leaves the
 * buffer short (the caller checks what it wrote).
 */
void json_buf_str(struct buf *b, const char *str);

/* Compact text of o (free() it), or NULL when out of memory. */
char *json_print(const cJSON *o);

#endif
