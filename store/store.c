#include "store_int.h"

#include "config.h"

#include "err.h"
#include "log.h"
#include "migrations.h"
#include "paths.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "hpxd": tells our files from other SQLite databases. */
#define STORE_APPLICATION_ID  0x68707864
#define STORE_BUSY_TIMEOUT_MS 5000

/* The columns of enum sbx_col; LABELS is C_LABELS's expression. */
#define SBX_COLS_WITH(LABELS)                                                  \
	"s.id, s.name, s.status, s.template_id, s.template_name, s.region, "   \
	"s.public_host, s.vcpu, s.memory_mb, s.disk_mb, s.internet_access, "   \
	"s.timeout_seconds, s.expires_at, s.created_at, s.tracked_at, "        \
	"s.updated_at, s.confirmed_at, s.stale, s.last_error, "                \
	"s.auto_resume, s.keepalive_s, s.pause_on_shutdown, "                  \
	"s.paused_by_agent, t.token, "                                         \
	"t.expires_at, t.issued_at, s.status_since, " LABELS                   \
	", s.idle_pause_s, s.on_expiry"

#define SBX_COLS                                                               \
	SBX_COLS_WITH("(SELECT json_group_array(json_array(key, value)) FROM " \
	              "labels l WHERE l.sandbox_id = s.id)")

#define SBX_FROM " FROM sandboxes s LEFT JOIN tokens t ON t.sandbox_id = s.id "

#define STR_(x)  #x
#define STR(x)   STR_(x)

static const char *const stmt_sql[ST_COUNT_] = {
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_SAVEPOINT] = "SAVEPOINT w",
        [ST_RELEASE] = "RELEASE w",
        [ST_ROLLBACK_TO] = "ROLLBACK TO w",
        [ST_SBX_EXISTS] =
                "SELECT status, name, stale FROM sandboxes WHERE id = ?1",
        [ST_SBX_PUT] =
                "INSERT INTO sandboxes (id, name, status, template_id, "
                "template_name, region, public_host, vcpu, memory_mb, disk_mb, "
                "internet_access, timeout_seconds, expires_at, created_at, "
                "confirmed_at, stale, last_error, auto_resume, keepalive_s, "
                "pause_on_shutdown, tracked_at, updated_at, idle_pause_s, "
                "on_expiry) "
                "VALUES (?1, ?2, ?3, "
                "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                "?17, "
                "?18, ?19, ?20, ?21, ?21, ?22, ?23) ON CONFLICT (id) DO "
                "UPDATE SET "
                "name = ?2, status = ?3, template_id = ?4, template_name = ?5, "
                "region = ?6, public_host = ?7, vcpu = ?8, memory_mb = ?9, "
                "disk_mb = ?10, internet_access = ?11, timeout_seconds = ?12, "
                "expires_at = ?13, created_at = ?14, confirmed_at = ?15, "
                "stale = ?16, last_error = ?17, auto_resume = ?18, "
                "keepalive_s = ?19, pause_on_shutdown = ?20, updated_at = ?21, "
                "idle_pause_s = ?22, on_expiry = ?23",
        /* Two plain index seeks: an OR with ORDER BY needs a sorter. */
        [ST_SBX_GET_ID] = "SELECT " SBX_COLS SBX_FROM "WHERE s.id = ?1",
        [ST_SBX_GET_NAME] = "SELECT " SBX_COLS SBX_FROM "WHERE s.name = ?1",
        [ST_SBX_LIST] =
                "SELECT " SBX_COLS SBX_FROM
                "WHERE (?1 IS NULL OR s.status = ?1) "
                "AND (?2 IS NULL OR s.name = ?2) "
                "AND (?3 IS NULL OR EXISTS (SELECT 1 FROM labels l WHERE "
                "l.sandbox_id = s.id AND l.key = ?3 AND "
                "(?4 IS NULL OR l.value = ?4))) "
                "AND s.id > ?5 ORDER BY s.id LIMIT ?6",
        /* list's rows with the labels as one object in key order, for
         * store_json.c to write as text. */
        [ST_SBX_LIST_JSON] = "SELECT " SBX_COLS_WITH(
                "NULL") ", (SELECT "
                        "json_group_object(key, value) FROM (SELECT key, value "
                        "FROM "
                        "labels l WHERE l.sandbox_id = s.id ORDER BY "
                        "key))" SBX_FROM "WHERE (?1 IS NULL OR s.status = ?1) "
                        "AND (?2 IS NULL OR s.name = ?2) "
                        "AND (?3 IS NULL OR EXISTS (SELECT 1 FROM labels l "
                        "WHERE "
                        "l.sandbox_id = s.id AND l.key = ?3 AND "
                        "(?4 IS NULL OR l.value = ?4))) "
                        "AND s.id > ?5 ORDER BY s.id LIMIT ?6",
        [ST_SBX_COUNT] = "SELECT status, n FROM status_counts",
        [ST_SBX_RENAME] =
                "UPDATE sandboxes SET name = ?2, updated_at = ?3 WHERE id = ?1",
        /* Any status change ends "paused by the agent". */
        [ST_SBX_STATUS] =
                "UPDATE sandboxes SET status = ?2, confirmed_at = ?3, "
                "updated_at = ?3, stale = 0, last_error = NULL, "
                "paused_by_agent = paused_by_agent AND status = ?2 "
                "WHERE id = ?1",
        [ST_SBX_META] = "UPDATE sandboxes SET "
                        "template_id = coalesce(?2, template_id), "
                        "template_name = coalesce(?3, template_name), "
                        "region = coalesce(?4, region), "
                        "public_host = coalesce(?5, public_host), "
                        "timeout_seconds = ?6, expires_at = ?7, "
                        "created_at = coalesce(?8, created_at), "
                        "vcpu = coalesce(?9, vcpu), "
                        "memory_mb = coalesce(?10, memory_mb), "
                        "disk_mb = coalesce(?11, disk_mb) WHERE id = ?1 "
                        /* only when something differs: the changes
                         * count says whether HopX told anything new */
                        "AND (template_id IS NOT coalesce(?2, template_id) "
                        "OR template_name IS NOT coalesce(?3, "
                        "template_name) OR region IS NOT coalesce(?4, "
                        "region) OR public_host IS NOT coalesce(?5, "
                        "public_host) OR timeout_seconds IS NOT ?6 OR "
                        "expires_at IS NOT ?7 OR created_at IS NOT "
                        "coalesce(?8, created_at) OR vcpu IS NOT "
                        "coalesce(?9, vcpu) OR memory_mb IS NOT "
                        "coalesce(?10, memory_mb) OR disk_mb IS NOT "
                        "coalesce(?11, disk_mb))",
        [ST_SBX_PAUSED_BY_AGENT] =
                "UPDATE sandboxes SET paused_by_agent = ?2 WHERE id = ?1",
        [ST_SBX_STALE] = "UPDATE sandboxes SET stale = 1, last_error = ?2, "
                         "updated_at = ?3 WHERE id = ?1",
        [ST_SBX_POLICY] =
                "UPDATE sandboxes SET "
                "auto_resume = coalesce(?2, auto_resume), "
                "keepalive_s = coalesce(?3, keepalive_s), "
                "pause_on_shutdown = coalesce(?4, pause_on_shutdown), "
                "idle_pause_s = coalesce(?6, idle_pause_s), "
                "on_expiry = coalesce(?7, on_expiry), "
                "updated_at = ?5 WHERE id = ?1 "
                "RETURNING auto_resume, keepalive_s, pause_on_shutdown, "
                "idle_pause_s, on_expiry",
        [ST_SBX_FORGET] = "DELETE FROM sandboxes WHERE id = ?1",
        [ST_LABEL_SET] = "INSERT INTO labels (sandbox_id, key, value) "
                         "VALUES (?1, ?2, ?3) ON CONFLICT (sandbox_id, key) "
                         "DO UPDATE SET value = ?3",
        [ST_LABEL_UNSET] =
                "DELETE FROM labels WHERE sandbox_id = ?1 AND key = ?2",
        [ST_TOKEN_PUT] =
                "INSERT INTO tokens (sandbox_id, token, expires_at, issued_at) "
                "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sandbox_id) DO UPDATE "
                "SET token = ?2, expires_at = ?3, issued_at = ?4 "
                "WHERE ?3 > tokens.expires_at OR (?3 = tokens.expires_at "
                "AND ?2 <> tokens.token AND ?4 > tokens.issued_at)",
        [ST_EVENT_ADD] = "INSERT INTO events (at, sandbox_id, type, cause, "
                         "detail, host, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                         "?7)",
        [ST_EVENT_SINCE] = "SELECT seq, at, sandbox_id, type, cause, detail, "
                           "host FROM events WHERE seq > ?1 ORDER BY seq "
                           "LIMIT ?2",
        [ST_EVENT_LAST] =
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
        [ST_EVENT_PRUNE_AGE] = "DELETE FROM events WHERE at < ?1",
        [ST_EVENT_PRUNE_COUNT] =
                "DELETE FROM events WHERE seq <= (SELECT seq FROM events "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
        [ST_INTENT_ADD] = "INSERT INTO intents (kind, request, name, "
                          "created_at) VALUES (?1, ?2, ?3, ?4)",
        [ST_INTENT_NAME_OPEN] = "SELECT id FROM intents WHERE state = 'open' "
                                "AND name = ?1",
        [ST_INTENT_RESOLVE] = "UPDATE intents SET state = ?2, sandbox_id = ?3, "
                              "resolved_at = ?4 WHERE id = ?1 "
                              "AND state = 'open'",
        [ST_INTENT_OPEN] = "SELECT id, kind, request, name, created_at, "
                           "sent_at FROM intents WHERE state = 'open' "
                           "ORDER BY id",
        [ST_INTENT_SENT] = "UPDATE intents SET sent_at = ?2 WHERE id = ?1 "
                           "AND state = 'open'",
        [ST_REPORT_ADD] = "INSERT INTO reports (trigger, started_at, "
                          "finished_at, report) VALUES (?1, ?2, ?3, ?4)",
        [ST_REPORT_PRUNE] =
                "DELETE FROM reports WHERE id <= (SELECT id FROM reports "
                "ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        [ST_REPORT_LAST] = "SELECT id, report FROM reports ORDER BY id DESC "
                           "LIMIT 1",
        [ST_OUTBOX_ADD] = "INSERT INTO outbox (sandbox_id, parts) VALUES "
                          "(?1, ?2) ON CONFLICT (sandbox_id) DO UPDATE SET "
                          "parts = parts | CASE WHEN parts & 128 <> 0 "
                          "THEN ?3 ELSE ?2 END",
        [ST_OUTBOX_DEL] = "DELETE FROM outbox WHERE sandbox_id = ?1",
        [ST_OUTBOX_SET] = "UPDATE outbox SET parts = ?2 WHERE sandbox_id = ?1",
        [ST_OUTBOX_OR_NEW] = "UPDATE outbox SET parts = parts | ?2 WHERE "
                             "sandbox_id = ?1 AND parts & 128 <> 0",
        [ST_OUTBOX_LIST] = "SELECT sandbox_id, parts FROM outbox",
        [ST_PROXY_HOST_GET] = "SELECT n FROM proxy_hosts WHERE sandbox_id = ?1",
        [ST_PROXY_HOST_ADD] = "INSERT INTO proxy_hosts (sandbox_id) SELECT id "
                              "FROM sandboxes WHERE id = ?1 RETURNING n",
        [ST_PROXY_HOST_ID] = "SELECT sandbox_id FROM proxy_hosts WHERE n = ?1",
        [ST_PROOF_ADD] = "INSERT INTO token_proofs (fp, sandbox_id, "
                         "issued_at) VALUES (?1, ?2, ?3) ON CONFLICT (fp) "
                         "DO NOTHING",
        [ST_PROOF_CHECK] = "SELECT coalesce(used_at, 0) FROM token_proofs "
                           "WHERE fp = ?1 AND sandbox_id = ?2",
        [ST_PROOF_USE] = "UPDATE token_proofs SET used_at = ?2 WHERE fp = ?1",
        [ST_PROOF_PRUNE] = "DELETE FROM token_proofs WHERE (used_at IS NULL "
                           "AND issued_at < ?1) OR used_at < ?2",
};

int store_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM:
		return ERR_NOMEM;
	case SQLITE_FULL:
		return ERR_FULL;
	case SQLITE_READONLY:
		return ERR_READONLY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return ERR_CORRUPT;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return ERR_BUSY;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return ERR_PERM;
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_UNIQUE ||
		    rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			return ERR_EXISTS;
		if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
			return ERR_NOTFOUND;
		return ERR_INVAL;
	case SQLITE_TOOBIG:
		return ERR_TOOBIG;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	default:
		return ERR_IO;
	}
}

sqlite3_stmt *store_stmt(struct store *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->st[id];

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

int store_step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_err(rc);
}

int store_bind_str(sqlite3_stmt *st, int i, const char *v)
{
	int rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)
	           : sqlite3_bind_null(st, i);

	return store_err(rc);
}

int store_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	int rc = v == STORE_NULL ? sqlite3_bind_null(st, i)
	                         : sqlite3_bind_int64(st, i, v);

	return store_err(rc);
}

int64_t store_now(const struct store *s)
{
	return clock_wall_ms(s->clk);
}

static void set_cause(char **cause, const char *fmt, ...) LOG_PRINTF(2, 3);

static void set_cause(char **cause, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	if (cause == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	free(*cause);
	*cause = strdup(msg);
}

/* ---- transactions ---- */

int store_wbegin(struct store *s)
{
	int r;

	if (s->group && s->depth == 0) /* the group's transaction was lost */
		return s->group_err ? s->group_err : ERR_IO;
	if (s->depth == 0)
		r = store_step_done(store_stmt(s, ST_BEGIN));
	else
		r = store_step_done(store_stmt(s, ST_SAVEPOINT));
	if (r == 0)
		s->depth++;
	return r;
}

/* Rolls back whatever is open; SQLite may already have done it. */
static void abort_txn(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		store_step_done(store_stmt(s, ST_ROLLBACK));
	s->depth = 0;
}

/*
 * After a write failed for want of space: move the WAL into the database
 * and truncate it. That frees what the WAL held beyond the live pages, so
 * writes can resume once a little space is back (or at once, if the WAL
 * was what filled the disk).
 */
static int reclaim(struct store *s, int r)
{
	if (r == ERR_FULL &&
	    sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
	                              NULL, NULL) == SQLITE_OK)
		log_info("disk full: database log checkpointed and truncated");
	return r;
}

int store_wend(struct store *s, int r)
{
	int c;

	if (s->depth > 1) {
		s->depth--;
		if (sqlite3_get_autocommit(s->db)) {
			/* SQLite rolled the whole group back (disk full, I/O).
			 */
			s->depth = 0;
			s->group_err = r ? r : ERR_IO;
			return s->group_err;
		}
		if (r != 0)
			store_step_done(store_stmt(s, ST_ROLLBACK_TO));
		c = store_step_done(store_stmt(s, ST_RELEASE));
		return r ? r : c;
	}
	if (r != 0) {
		abort_txn(s);
		return reclaim(s, r);
	}
	c = store_step_done(store_stmt(s, ST_COMMIT));
	if (c != 0)
		abort_txn(s);
	s->depth = 0;
	return reclaim(s, c);
}

int store_begin(struct store *s)
{
	int r;

	if (s->group == 0)
		s->group_err = 0;
	r = store_wbegin(s);
	if (r == 0)
		s->group++;
	return r;
}

int store_commit(struct store *s)
{
	int r;

	if (s->group == 0)
		return ERR_STATE;
	if (--s->group > 0) /* an inner group: its savepoint */
		return store_wend(s, 0);
	if (s->depth == 0 || s->group_err) {
		r = s->group_err ? s->group_err : ERR_IO;
		s->group_err = 0;
		abort_txn(s);
		return r;
	}
	return store_wend(s, 0);
}

int store_rollback(struct store *s)
{
	if (s->group == 0)
		return ERR_STATE;
	if (--s->group > 0) {
		if (s->depth > 1)
			store_wend(s, ERR_STATE);
		return 0;
	}
	s->group_err = 0;
	abort_txn(s);
	return 0;
}

int store_grouped(const struct store *s)
{
	return s->group > 0;
}

/* ---- open, migrate, close ---- */

/*
 * Creates the file 0600 before SQLite does (SQLite would use 0644 less the
 * umask); the -wal and -shm files copy the database's mode. An existing
 * file with group or world bits is tightened: it holds tokens.
 */
static int prepare_file(const char *path, char **cause)
{
	char dir[4096] = "";
	struct stat sb;
	int fd, r;

	if ((r = paths_make_parents(path, dir, sizeof(dir))) != 0) {
		set_cause(cause, "cannot create directory %s: %s", dir,
		          err_str(r));
		return r;
	}
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EACCES || errno == EROFS))
		return 0; /* SQLite will open it read-only; checked later */
	if (fd < 0) {
		int e = errno;

		set_cause(cause, "cannot open database %s: %s", path,
		          strerror(e));
		return err_from_errno(e);
	}
	if (fstat(fd, &sb) == 0 && (sb.st_mode & 077) &&
	    sb.st_uid == geteuid()) {
		log_warn("database %s was mode %03o; making it 0600", path,
		         (unsigned)(sb.st_mode & 0777));
		fchmod(fd, 0600);
	}
	close(fd);
	return 0;
}

static int pragma_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int exec_sql(struct store *s, const char *sql, char **cause)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		set_cause(cause, "%s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return store_err(sqlite3_extended_errcode(s->db));
	}
	return 0;
}

/* Refuses a file that is some other program's SQLite database. */
static int check_identity(struct store *s, const char *path, char **cause)
{
	int app = 0, tables = 0, rc;

	rc = pragma_int(s->db, "PRAGMA application_id", &app);
	if (rc == SQLITE_OK)
		rc = pragma_int(s->db, "PRAGMA user_version", &s->version);
	if (rc == SQLITE_OK)
		rc = pragma_int(s->db, "SELECT count(*) FROM sqlite_master",
		                &tables);
	if (rc != SQLITE_OK && store_err(rc) == ERR_CORRUPT) {
		set_cause(cause,
		          "database %s is corrupt or not an SQLite database "
		          "(%s); move it aside and restart to rebuild it",
		          path, sqlite3_errmsg(s->db));
		return ERR_CORRUPT;
	}
	if (rc != SQLITE_OK) {
		set_cause(cause, "cannot read database %s: %s", path,
		          sqlite3_errmsg(s->db));
		return store_err(rc);
	}
	if (app != STORE_APPLICATION_ID && (app != 0 || tables > 0)) {
		set_cause(cause, "%s is not a hopxd database", path);
		return ERR_CORRUPT;
	}
	if (s->version > migrations_count) {
		set_cause(cause,
		          "database %s has schema version %d, newer than the "
		          "version %d this hopxd " HOPXD_VERSION
		          " supports; upgrade hopxd",
		          path, s->version, migrations_count);
		return ERR_TOONEW;
	}
	return 0;
}

static int set_pragmas(struct store *s, int readonly, char **cause)
{
	int r;

	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	r = exec_sql(
	        s,
	        "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; "
	        "PRAGMA cache_size = -" STR(
	                STORE_CACHE_KIB) "; PRAGMA synchronous = FULL; "
	                                 /* Few writes: checkpoint at 1 MiB, not
	                                  * 4, and cut the WAL back after, so it
	                                  * never hoards a small disk. */
	                                 "PRAGMA wal_autocheckpoint = 256; "
	                                 "PRAGMA journal_size_limit = 1048576;",
	        cause);
	if (r != 0 || readonly)
		return r;
	return exec_sql(s, "PRAGMA journal_mode = WAL", cause);
}

/* Applies each newer migration in its own transaction. */
static int migrate(struct store *s, int readonly, const char *path,
                   char **cause)
{
	char sql[128];
	int i, r;

	if (s->version < migrations_count && readonly) {
		set_cause(cause,
		          "database %s needs upgrading from schema %d to %d "
		          "but is read-only",
		          path, s->version, migrations_count);
		return ERR_READONLY;
	}
	for (i = s->version; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];

		snprintf(
		        sql, sizeof(sql),
		        "PRAGMA application_id = %d; PRAGMA user_version = %d;",
		        STORE_APPLICATION_ID, m->version);
		if ((r = exec_sql(s, "BEGIN IMMEDIATE", cause)) != 0)
			return r;
		if ((r = exec_sql(s, m->sql, cause)) != 0 ||
		    (r = exec_sql(s, sql, cause)) != 0 ||
		    (r = exec_sql(s, "COMMIT", cause)) != 0) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			log_error("migration %04d_%s failed", m->version,
			          m->name);
			return r;
		}
		s->version = m->version;
		log_info("database migrated to schema %d (%s)", m->version,
		         m->name);
	}
	return 0;
}

static int prepare_all(struct store *s, char **cause)
{
	int i, rc;

	for (i = 0; i < ST_COUNT_; i++) {
		rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1,
		                        SQLITE_PREPARE_PERSISTENT, &s->st[i],
		                        NULL);
		if (rc != SQLITE_OK) {
			set_cause(cause, "cannot prepare statement %d: %s", i,
			          sqlite3_errmsg(s->db));
			return store_err(rc);
		}
	}
	return 0;
}

/* Explains a failure to open in words for people. */
static int open_failed(struct store *s, const char *path, int r, char **cause)
{
	if (cause && *cause == NULL)
		set_cause(cause, "cannot open database %s: %s", path,
		          err_str(r));
	store_close(s);
	return r;
}

static int open_db(struct store *s, const char *path, int readonly,
                   char **cause)
{
	int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
	int rc;

	flags |= readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	rc = sqlite3_open_v2(path, &s->db, flags, NULL);
	if (rc != SQLITE_OK) {
		set_cause(cause, "cannot open database %s: %s", path,
		          s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		return store_err(rc);
	}
	sqlite3_extended_result_codes(s->db, 1);
	if (!readonly && sqlite3_db_readonly(s->db, "main") == 1) {
		set_cause(cause, "database %s is read-only", path);
		return ERR_READONLY;
	}
	return 0;
}

/*
 * SQLite reports each I/O failure once, with its cause (ENOSPC, EROFS,
 * the file and the system call): the log then says why a write was
 * refused. Constraint and schema notices are answers, not faults.
 */
static void on_sqlite_log(void *ud, int rc, const char *msg)
{
	(void)ud;
	switch (rc & 0xff) {
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
		log_warn("database: %s (%s)", msg, sqlite3_errstr(rc));
		break;
	default:
		break;
	}
}

void store_global_init(void)
{
	static int done;

	if (!done++)
		sqlite3_config(SQLITE_CONFIG_LOG, on_sqlite_log, NULL);
}

int store_open(const char *path, unsigned flags, const struct clock *clk,
               struct store **out, char **cause)
{
	int readonly = (flags & STORE_OPEN_READONLY) != 0;
	struct store *s;
	int r;

	store_global_init();
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return ERR_NOMEM;
	s->clk = clk ? clk : clock_system();
	if ((!readonly && (r = prepare_file(path, cause)) != 0) ||
	    (r = open_db(s, path, readonly, cause)) != 0 ||
	    (r = check_identity(s, path, cause)) != 0 ||
	    (r = set_pragmas(s, readonly, cause)) != 0 ||
	    (r = migrate(s, readonly, path, cause)) != 0 ||
	    (r = prepare_all(s, cause)) != 0)
		return open_failed(s, path, r, cause);
	/* The check reads every page once: a cache the size of the loop's
	 * would only add its 16 MiB to the agent's peak while it runs. */
	if ((flags & STORE_OPEN_CHECK) &&
	    ((r = store_cache_kib(s, STORE_CHECK_CACHE_KIB)) != 0 ||
	     (r = store_check(s, 0, cause)) != 0))
		return open_failed(s, path, r, cause);
	*out = s;
	return 0;
}

int store_check(struct store *s, int full, char **cause)
{
	sqlite3_stmt *st = NULL;
	const char *sql =
	        full ? "PRAGMA integrity_check(1)" : "PRAGMA quick_check(1)";
	int rc, r = 0;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(st, 0);

		if (res == NULL || strcmp(res, "ok") != 0) {
			set_cause(cause, "database check failed: %s",
			          res ? res : "(no answer)");
			r = ERR_CORRUPT;
		}
	} else {
		set_cause(cause, "database check failed: %s",
		          sqlite3_errmsg(s->db));
		r = store_err(rc) ? store_err(rc) : ERR_CORRUPT;
	}
	sqlite3_finalize(st);
	return r;
}

void store_release_memory(struct store *s)
{
	sqlite3_db_release_memory(s->db);
}

int store_cache_kib(struct store *s, int kib)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA cache_size = %d", -kib);
	return store_err(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

int store_close(struct store *s)
{
	int i, rc = SQLITE_OK;

	if (s == NULL)
		return 0;
	if (s->db && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	for (i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(s->st[i]);
	if (s->db)
		rc = sqlite3_close(s->db);
	free(s);
	return rc == SQLITE_OK ? 0 : ERR_BUSY;
}

int store_schema_version(const struct store *s)
{
	return s->version;
}

int store_schema_latest(void)
{
	return migrations_count;
}

const char *store_cause_str(enum store_cause c)
{
	switch (c) {
	case STORE_CAUSE_USER:
		return "user";
	case STORE_CAUSE_REMOTE:
		return "remote";
	case STORE_CAUSE_TRAFFIC:
		return "traffic";
	default:
		return "agent";
	}
}
