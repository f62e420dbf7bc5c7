/*
 * list's rows written straight into JSON text, in the shape and member
 * order of the agent's sandbox objects (methods_sandbox_json), with the
 * same escaping as cJSON: a 10k list never becomes structs or trees.
 */
#include "store_int.h"

#include "buf.h"
#include "err.h"
#include "json.h"
#include "rfc3339.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define C_LABEL_OBJECT (C_ON_EXPIRY + 1) /* the extra column */

/* ,"key": */
static void key(struct buf *b, const char *k)
{
	buf_append(b, ",\"", 2);
	buf_append(b, k, strlen(k));
	buf_append(b, "\":", 2);
}

static void col_str(struct buf *b, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	if (s)
		json_buf_str(b, (const char *)s);
	else
		buf_append(b, "null", 4);
}

static void col_int(struct buf *b, sqlite3_stmt *st, int col)
{
	char n[24];

	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		buf_append(b, "null", 4);
		return;
	}
	snprintf(n, sizeof(n), "%lld",
	         (long long)sqlite3_column_int64(st, col));
	buf_append(b, n, strlen(n));
}

static void col_bool(struct buf *b, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_int64(st, col))
		buf_append(b, "true", 4);
	else
		buf_append(b, "false", 5);
}

/* A time as json_add_time writes it: RFC 3339, or null when unknown. */
static void col_time(struct buf *b, sqlite3_stmt *st, int col)
{
	char t[RFC3339_MAX];
	int64_t ms = sqlite3_column_int64(st, col);

	if (sqlite3_column_type(st, col) == SQLITE_NULL || ms < 0 ||
	    rfc3339_format(ms, 0, t, sizeof(t)) != 0) {
		buf_append(b, "null", 4);
		return;
	}
	json_buf_str(b, t);
}

static void policy(struct buf *b, sqlite3_stmt *st)
{
	buf_append(b, ",\"policy\":{\"auto_resume\":", 25);
	col_bool(b, st, C_AUTO_RESUME);
	key(b, "keepalive_s");
	col_int(b, st, C_KEEPALIVE_S);
	key(b, "pause_on_shutdown");
	col_bool(b, st, C_PAUSE_ON_SHUTDOWN);
	key(b, "idle_pause_s");
	col_int(b, st, C_IDLE_PAUSE_S);
	key(b, "on_expiry");
	col_str(b, st, C_ON_EXPIRY);
	buf_append(b, "}", 1);
}

static void row(struct buf *b, sqlite3_stmt *st, int with_token)
{
	static const struct {
		const char *key;
		int col;
		void (*put)(struct buf *, sqlite3_stmt *, int);
	} cols[] = {
	        {"name", C_NAME, col_str},
	        {"status", C_STATUS, col_str},
	        {"status_since", C_STATUS_SINCE, col_time},
	        {"stale", C_STALE, col_bool},
	        {"last_error", C_LAST_ERROR, col_str},
	        {"template_id", C_TEMPLATE_ID, col_str},
	        {"template_name", C_TEMPLATE_NAME, col_str},
	        {"region", C_REGION, col_str},
	        {"public_host", C_PUBLIC_HOST, col_str},
	        {"timeout_seconds", C_TIMEOUT_S, col_int},
	        {"expires_at", C_EXPIRES_AT, col_time},
	        {"created_at", C_CREATED_AT, col_time},
	        {"tracked_at", C_TRACKED_AT, col_time},
	        {"confirmed_at", C_CONFIRMED_AT, col_time},
	        {"token_expires_at", C_TOKEN_EXPIRES, col_time},
	};
	const unsigned char *labels = sqlite3_column_text(st, C_LABEL_OBJECT);
	size_t i;

	buf_append(b, "{\"id\":", 6);
	col_str(b, st, C_ID);
	for (i = 0; i < sizeof(cols) / sizeof(*cols); i++) {
		key(b, cols[i].key);
		cols[i].put(b, st, cols[i].col);
	}
	/* SQLite's json_group_object, already JSON. */
	key(b, "labels");
	if (labels)
		buf_append(b, labels, strlen((const char *)labels));
	else
		buf_append(b, "{}", 2);
	policy(b, st);
	if (with_token) {
		key(b, "token");
		col_str(b, st, C_TOKEN);
	}
	buf_append(b, "}", 1);
}

int store_sandbox_list_json(struct store *s, const struct store_filter *f,
                            int with_token, store_json_cb cb, void *ud)
{
	sqlite3_stmt *st = store_stmt(s, ST_SBX_LIST_JSON);
	struct buf b;
	int rc, ret = 0;

	buf_init(&b, 1u << 20);
	store_bind_filter(st, f);
	while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		buf_consume(&b, b.len);
		row(&b, st, with_token);
		if (b.len == 0 || b.data[b.len - 1] != '}')
			ret = ERR_NOMEM; /* an append failed: not whole */
		else
			ret = cb(ud,
			         (const char *)sqlite3_column_text(st, C_ID),
			         b.data, b.len);
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = store_err(rc);
	buf_finish(&b);
	sqlite3_reset(st);
	return ret;
}
