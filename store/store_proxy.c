/*
 * What the agent's local proxy keeps: a stable number per sandbox for its
 * address, and the fingerprints of every token held for a sandbox, which
 * prove that whoever presents one was given access to it.
 */
#include "store_int.h"

#include "err.h"

#include <gnutls/crypto.h>
#include <string.h>

/* A proof's use is written at most this often (a busy client presents
 * it on every request). */
#define PROOF_USE_WRITE_MS (3600 * 1000)

void store_proof_of(const char *token, unsigned char fp[STORE_PROOF_LEN])
{
	unsigned char d[32];

	gnutls_hash_fast(GNUTLS_DIG_SHA256, token, strlen(token), d);
	memcpy(fp, d, STORE_PROOF_LEN);
}

int store_proof_add(struct store *s, const char *id, const char *token,
                    int64_t issued_at)
{
	sqlite3_stmt *st = store_stmt(s, ST_PROOF_ADD);
	unsigned char fp[STORE_PROOF_LEN];

	store_proof_of(token, fp);
	sqlite3_bind_blob(st, 1, fp, sizeof(fp), SQLITE_TRANSIENT);
	store_bind_str(st, 2, id);
	store_bind_i64(st, 3,
	               issued_at == STORE_NULL ? store_now(s) : issued_at);
	return store_step_done(st);
}

/* Steps st for one integer row: 0 with *v, ERR_NOTFOUND, or ERR_*. */
static int one_i64(sqlite3_stmt *st, int64_t *v)
{
	int rc = sqlite3_step(st), r;

	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(st, 0);
		r = 0;
	} else {
		r = rc == SQLITE_DONE ? ERR_NOTFOUND : store_err(rc);
	}
	sqlite3_reset(st);
	return r;
}

int store_proxy_host(struct store *s, const char *id, int64_t *n)
{
	sqlite3_stmt *st = store_stmt(s, ST_PROXY_HOST_GET);
	int r;

	store_bind_str(st, 1, id);
	if ((r = one_i64(st, n)) != ERR_NOTFOUND)
		return r;
	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_PROXY_HOST_ADD);
	store_bind_str(st, 1, id);
	r = one_i64(st, n);
	return store_wend(s, r);
}

int store_proxy_host_id(struct store *s, int64_t num, char *id, size_t n)
{
	sqlite3_stmt *st = store_stmt(s, ST_PROXY_HOST_ID);
	const unsigned char *v;
	int rc, r = ERR_NOTFOUND;

	store_bind_i64(st, 1, num);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && (v = sqlite3_column_text(st, 0)) != NULL &&
	    strlen((const char *)v) < n) {
		memcpy(id, v, strlen((const char *)v) + 1);
		r = 0;
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		r = store_err(rc);
	}
	sqlite3_reset(st);
	return r;
}

int store_proof_check(struct store *s, const char *id,
                      const unsigned char fp[STORE_PROOF_LEN])
{
	int64_t now = store_now(s), last = 0;
	sqlite3_stmt *st = store_stmt(s, ST_PROOF_CHECK);
	int r;

	sqlite3_bind_blob(st, 1, fp, STORE_PROOF_LEN, SQLITE_TRANSIENT);
	store_bind_str(st, 2, id);
	if ((r = one_i64(st, &last)) != 0 || now - last < PROOF_USE_WRITE_MS)
		return r;
	if ((r = store_wbegin(s)) != 0)
		return r;
	st = store_stmt(s, ST_PROOF_USE);
	sqlite3_bind_blob(st, 1, fp, STORE_PROOF_LEN, SQLITE_TRANSIENT);
	store_bind_i64(st, 2, now);
	return store_wend(s, store_step_done(st));
}

int store_proof_prune(struct store *s, int64_t unused_before,
                      int64_t used_before, size_t *removed)
{
	sqlite3_stmt *st = store_stmt(s, ST_PROOF_PRUNE);
	int r;

	if ((r = store_wbegin(s)) != 0)
		return r;
	store_bind_i64(st, 1, unused_before);
	store_bind_i64(st, 2, used_before);
	r = store_step_done(st);
	if (r == 0 && removed)
		*removed = (size_t)sqlite3_changes(s->db);
	return store_wend(s, r);
}
