-- hopxd schema, version 2: what the agent needs to talk to HopX.

-- Set when hopxd paused a sandbox at shutdown (pause_on_shutdown), so the
-- next start resumes it even with auto_resume off; cleared by any other
-- status change.
ALTER TABLE sandboxes ADD COLUMN paused_by_agent INTEGER NOT NULL DEFAULT 0;

-- One row per reconcile run: when, why, and the report (JSON) with a line
-- per sandbox that changed or failed. The newest few are kept.
CREATE TABLE reports (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	trigger     TEXT NOT NULL CHECK (trigger IN ('start','periodic','user')),
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL,
	report      TEXT NOT NULL
);
