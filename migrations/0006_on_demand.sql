-- hopxd schema, version 6: sandboxes that sleep when unused.
-- idle_pause_s: a running sandbox nobody has used (no lease held, no token
-- asked) for that long is paused by the agent and woken by the next use;
-- 0 is off, the default.
-- on_expiry: what happens at HopX's kill deadline: 'kill' (HopX's own
-- behaviour, the default), 'pause' (paused shortly before, and the
-- deadline kept re-armed while paused, so it never kills), 'extend'
-- (re-armed to the sandbox's own timeout, like a keep-alive).
ALTER TABLE sandboxes ADD COLUMN idle_pause_s INTEGER NOT NULL DEFAULT 0
	CHECK (idle_pause_s >= 0);
ALTER TABLE sandboxes ADD COLUMN on_expiry TEXT NOT NULL DEFAULT 'kill'
	CHECK (on_expiry IN ('kill', 'pause', 'extend'));
