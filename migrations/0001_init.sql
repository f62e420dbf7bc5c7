-- hopxd schema, version 1. Never edit a migration once it has landed:
-- add NNNN_next.sql instead. Times are Unix milliseconds (UTC).

-- One row per tracked sandbox. Metadata mirrors HopX's Sandbox object;
-- name, policies and labels are local (HopX sandboxes have no metadata).
CREATE TABLE sandboxes (
	id                TEXT PRIMARY KEY NOT NULL,
	name              TEXT UNIQUE,
	status            TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN
	                  ('unknown','creating','running','paused','stopped','gone')),
	template_id       TEXT,
	template_name     TEXT,
	region            TEXT,
	public_host       TEXT,
	vcpu              INTEGER,
	memory_mb         INTEGER,
	disk_mb           INTEGER,
	internet_access   INTEGER,
	timeout_seconds   INTEGER,
	expires_at        INTEGER,
	created_at        INTEGER,
	tracked_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL,
	confirmed_at      INTEGER,          -- last time HopX confirmed status
	stale             INTEGER NOT NULL DEFAULT 0,  -- last sync failed
	last_error        TEXT,
	auto_resume       INTEGER NOT NULL DEFAULT 1,
	keepalive_s       INTEGER NOT NULL DEFAULT 0 CHECK (keepalive_s >= 0),
	pause_on_shutdown INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX sandboxes_status ON sandboxes (status);

CREATE TABLE labels (
	sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	key        TEXT NOT NULL,
	value      TEXT NOT NULL,
	PRIMARY KEY (sandbox_id, key)
) WITHOUT ROWID;

CREATE INDEX labels_key_value ON labels (key, value);

-- The current VM-agent token of a sandbox. Written only through an
-- upsert that keeps the row unless the new token expires later.
CREATE TABLE tokens (
	sandbox_id TEXT PRIMARY KEY NOT NULL
	           REFERENCES sandboxes (id) ON DELETE CASCADE,
	token      TEXT NOT NULL,
	expires_at INTEGER NOT NULL,
	issued_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Append-only log of every change with its cause. AUTOINCREMENT so that
-- sequence numbers are never reused after pruning: subscribers replay
-- from a number. No foreign key: events outlive a forgotten sandbox.
CREATE TABLE events (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	at         INTEGER NOT NULL,
	sandbox_id TEXT,
	type       TEXT NOT NULL,
	cause      TEXT NOT NULL CHECK (cause IN ('user','agent','remote')),
	detail     TEXT
);

CREATE INDEX events_at ON events (at);

-- A create is written here before the API call so that a crash between
-- the call and its answer never leaves a sandbox nobody tracks.
CREATE TABLE intents (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	kind       TEXT NOT NULL,
	request    TEXT NOT NULL,
	name       TEXT,
	created_at INTEGER NOT NULL,
	state      TEXT NOT NULL DEFAULT 'open'
	           CHECK (state IN ('open','done','failed')),
	sandbox_id TEXT,
	resolved_at INTEGER
);

CREATE INDEX intents_open ON intents (state) WHERE state = 'open';
