-- The registry a fleet of hopxd agents shares on PostgreSQL: the same
-- records as the SQLite store (times are milliseconds since the epoch;
-- tokens' and deadlines' on HopX's clock), plus who is in the fleet and
-- which agent does each sandbox's background work. Every change appends
-- an event, and every event wakes the other agents (NOTIFY with its
-- sequence number, which they use to catch up on anything missed).

CREATE TABLE hosts (
	host_id    TEXT PRIMARY KEY,          -- hostname/pid/start, unique per run
	hostname   TEXT NOT NULL,
	pid        BIGINT NOT NULL,
	started_at BIGINT NOT NULL,
	last_seen  BIGINT NOT NULL
);

CREATE TABLE sandboxes (
	id                TEXT PRIMARY KEY,
	name              TEXT UNIQUE,
	status            TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN
	                  ('unknown','creating','running','paused','stopped','gone')),
	template_id       TEXT,
	template_name     TEXT,
	region            TEXT,
	public_host       TEXT,
	vcpu              BIGINT,
	memory_mb         BIGINT,
	disk_mb           BIGINT,
	internet_access   BOOLEAN,
	timeout_seconds   BIGINT,
	expires_at        BIGINT,
	created_at        BIGINT,
	tracked_at        BIGINT NOT NULL,
	updated_at        BIGINT NOT NULL,
	confirmed_at      BIGINT,
	status_since      BIGINT,
	stale             BOOLEAN NOT NULL DEFAULT false,
	last_error        TEXT,
	auto_resume       BOOLEAN NOT NULL DEFAULT true,
	keepalive_s       BIGINT NOT NULL DEFAULT 0 CHECK (keepalive_s >= 0),
	pause_on_shutdown BOOLEAN NOT NULL DEFAULT false,
	idle_pause_s      BIGINT NOT NULL DEFAULT 0 CHECK (idle_pause_s >= 0),
	on_expiry         TEXT NOT NULL DEFAULT 'kill'
	                  CHECK (on_expiry IN ('kill','pause','extend')),
	paused_by_agent   BOOLEAN NOT NULL DEFAULT false,
	-- the agent that renews its token, keeps it alive and resumes it,
	-- for as long as it keeps renewing this lease
	owner             TEXT REFERENCES hosts (host_id) ON DELETE SET NULL,
	owner_until       BIGINT,
	rev               BIGINT NOT NULL DEFAULT 0  -- seq of its last event
);

CREATE INDEX sandboxes_status ON sandboxes (status);
CREATE INDEX sandboxes_owner_until ON sandboxes (owner_until);

CREATE TABLE labels (
	sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	key        TEXT NOT NULL,
	value      TEXT NOT NULL,
	PRIMARY KEY (sandbox_id, key)
);

CREATE INDEX labels_key_value ON labels (key, value);

CREATE TABLE tokens (
	sandbox_id TEXT PRIMARY KEY REFERENCES sandboxes (id) ON DELETE CASCADE,
	token      TEXT NOT NULL,
	expires_at BIGINT NOT NULL,
	issued_at  BIGINT NOT NULL
);

CREATE TABLE events (
	seq        BIGSERIAL PRIMARY KEY,
	at         BIGINT NOT NULL,
	sandbox_id TEXT,
	type       TEXT NOT NULL,
	cause      TEXT NOT NULL CHECK (cause IN ('user','agent','remote')),
	host       TEXT,                      -- the agent that made the change
	detail     TEXT
);

CREATE INDEX events_at ON events (at);

CREATE TABLE intents (
	id          BIGSERIAL PRIMARY KEY,
	kind        TEXT NOT NULL,
	request     TEXT NOT NULL,
	name        TEXT,
	host        TEXT,
	created_at  BIGINT NOT NULL,
	sent_at     BIGINT,
	state       TEXT NOT NULL DEFAULT 'open'
	            CHECK (state IN ('open','done','failed')),
	sandbox_id  TEXT,
	resolved_at BIGINT
);

-- One create of a name in flight in the whole fleet.
CREATE UNIQUE INDEX intents_open_name ON intents (name)
	WHERE state = 'open' AND name IS NOT NULL;

CREATE TABLE reports (
	id          BIGSERIAL PRIMARY KEY,
	trigger     TEXT NOT NULL CHECK (trigger IN ('start','periodic','user')),
	host        TEXT,
	started_at  BIGINT NOT NULL,
	finished_at BIGINT NOT NULL,
	report      TEXT NOT NULL
);

-- HopX's budget is per key, so the fleet spends it together: requests
-- made in each minute, by every agent.
CREATE TABLE budget (
	minute BIGINT PRIMARY KEY,
	used   INTEGER NOT NULL CHECK (used >= 0)
);
