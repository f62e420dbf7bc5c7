-- hopxd schema, version 6: the idle policy. A running sandbox nobody has
-- used (no lease held, no token asked) for idle_pause_s seconds is paused
-- by the agent and woken by the next use; 0 is off, the default.
ALTER TABLE sandboxes ADD COLUMN idle_pause_s INTEGER NOT NULL DEFAULT 0
	CHECK (idle_pause_s >= 0);
