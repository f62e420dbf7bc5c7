#ifndef HOPXD_STORE_INT_H
#define HOPXD_STORE_INT_H

/* Private to store/: the struct and helpers shared by its .c files. */

#include <sqlite3.h>

#include "store.h"

/* Every statement the store runs, prepared once at open. */
enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_SBX_EXISTS,
	ST_SBX_PUT,
	ST_SBX_GET_ID,
	ST_SBX_GET_NAME,
	ST_SBX_LIST,
	ST_SBX_LIST_JSON,
	ST_SBX_COUNT,
	ST_SBX_RENAME,
	ST_SBX_STATUS,
	ST_SBX_STALE,
	ST_SBX_POLICY,
	ST_SBX_FORGET,
	ST_LABEL_SET,
	ST_LABEL_UNSET,
	ST_TOKEN_PUT,
	ST_EVENT_ADD,
	ST_EVENT_SINCE,
	ST_EVENT_LAST,
	ST_EVENT_PRUNE_AGE,
	ST_EVENT_PRUNE_COUNT,
	ST_INTENT_ADD,
	ST_INTENT_NAME_OPEN,
	ST_INTENT_RESOLVE,
	ST_INTENT_OPEN,
	ST_INTENT_SENT,
	ST_SBX_META,
	ST_SBX_PAUSED_BY_AGENT,
	ST_REPORT_ADD,
	ST_REPORT_PRUNE,
	ST_REPORT_LAST,
	ST_OUTBOX_ADD,
	ST_OUTBOX_DEL,
	ST_OUTBOX_SET,
	ST_OUTBOX_OR_NEW,
	ST_OUTBOX_LIST,
	ST_PROXY_HOST_GET,
	ST_PROXY_HOST_ADD,
	ST_PROXY_HOST_ID,
	ST_PROOF_ADD,
	ST_PROOF_CHECK,
	ST_PROOF_USE,
	ST_PROOF_PRUNE,
	ST_COUNT_
};

struct store {
	sqlite3 *db;
	const struct clock *clk;
	sqlite3_stmt *st[ST_COUNT_];
	int version;
	int depth;     /* write nesting: 0 = no transaction open */
	int group;     /* store_begin() nesting: 0 = none in force */
	int group_err; /* a write inside the group lost the transaction */
	struct store_journal journal; /* fn NULL: none */
	int journal_muted;
};

/* Tells the journal (if any) that a write changed these parts of id. */
void store_journal_changed(struct store *s, const char *id, unsigned parts);

/* Translates an SQLite result code into an ERR_* code. */
int store_err(int rc);

/* The statement, reset and unbound, ready to bind. */
sqlite3_stmt *store_stmt(struct store *s, enum stmt_id id);

/* Steps a statement that returns no rows; resets it. 0 or ERR_*. */
int store_step_done(sqlite3_stmt *st);

/*
 * Opens a write: a transaction at the outermost level, a savepoint inside
 * one. store_wend commits or releases when r == 0, rolls back otherwise,
 * and returns r or the commit's error.
 */
int store_wbegin(struct store *s);
int store_wend(struct store *s, int r);

/* Binds a string or NULL; an integer or NULL for STORE_NULL. */
int store_bind_str(sqlite3_stmt *st, int i, const char *v);
int store_bind_i64(sqlite3_stmt *st, int i, int64_t v);

int64_t store_now(const struct store *s);

/* Notes the token stored for id as proof of access (store_proxy.c). */
int store_proof_add(struct store *s, const char *id, const char *token,
                    int64_t issued_at);

/* The columns of SBX_COLS (store.c), in order. */
enum sbx_col {
	C_ID,
	C_NAME,
	C_STATUS,
	C_TEMPLATE_ID,
	C_TEMPLATE_NAME,
	C_REGION,
	C_PUBLIC_HOST,
	C_VCPU,
	C_MEMORY_MB,
	C_DISK_MB,
	C_INTERNET,
	C_TIMEOUT_S,
	C_EXPIRES_AT,
	C_CREATED_AT,
	C_TRACKED_AT,
	C_UPDATED_AT,
	C_CONFIRMED_AT,
	C_STALE,
	C_LAST_ERROR,
	C_AUTO_RESUME,
	C_KEEPALIVE_S,
	C_PAUSE_ON_SHUTDOWN,
	C_PAUSED_BY_AGENT,
	C_TOKEN,
	C_TOKEN_EXPIRES,
	C_TOKEN_ISSUED,
	C_STATUS_SINCE,
	C_LABELS,
	C_IDLE_PAUSE_S,
	C_ON_EXPIRY
};

/* Binds list's filter to a list statement's ?1..?6. */
void store_bind_filter(sqlite3_stmt *st, const struct store_filter *f);

#endif
