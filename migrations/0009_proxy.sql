-- hopxd schema, version 9: the agent's local proxy to each sandbox's own
-- agent API.
--
-- events.cause gains 'traffic': a wake or other change caused by requests
-- through the proxy. SQLite cannot change a CHECK, so the table is made
-- anew with its rows and its numbering (sequence numbers never go back).
CREATE TABLE events_v9 (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	at         INTEGER NOT NULL,
	sandbox_id TEXT,
	type       TEXT NOT NULL,
	cause      TEXT NOT NULL
	           CHECK (cause IN ('user','agent','remote','traffic')),
	detail     TEXT,
	host       TEXT
);
INSERT INTO events_v9 (seq, at, sandbox_id, type, cause, detail, host)
	SELECT seq, at, sandbox_id, type, cause, detail, host FROM events;
INSERT INTO sqlite_sequence (name, seq)
	SELECT 'events_v9', seq FROM sqlite_sequence WHERE name = 'events'
	AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_v9');
UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence
	WHERE name = 'events')) WHERE name = 'events_v9'
	AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events');
DROP TABLE events;
ALTER TABLE events_v9 RENAME TO events;
CREATE INDEX events_at ON events (at);

-- The number behind a sandbox's local proxy address (127.2.0.0 + n): a
-- client keeps the address it was given (the SDKs keep public_host), so
-- it never changes and is never given to another sandbox. Local to this
-- host: in a fleet each agent serves its own proxy, so PostgreSQL holds
-- none of it.
CREATE TABLE proxy_hosts (
	n          INTEGER PRIMARY KEY AUTOINCREMENT,
	sandbox_id TEXT NOT NULL UNIQUE
	           REFERENCES sandboxes (id) ON DELETE CASCADE
);

-- Tokens this agent held for a sandbox, as the first 16 bytes of their
-- SHA-256: a client presenting one, current or expired, has been given
-- access to that sandbox, which the proxy then carries with the current
-- token (a JS SDK process keeps sending the first token it got). used_at:
-- last presented, which keeps it; unused ones are dropped after days.
CREATE TABLE token_proofs (
	fp         BLOB PRIMARY KEY,
	sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	issued_at  INTEGER NOT NULL,
	used_at    INTEGER
) WITHOUT ROWID;

CREATE INDEX token_proofs_sandbox ON token_proofs (sandbox_id);
