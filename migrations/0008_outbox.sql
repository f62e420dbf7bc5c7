-- hopxd schema, version 8: in a fleet, the sandboxes changed here whose
-- changes PostgreSQL does not hold yet (parts: STORE_PART_* bits),
-- written in the change's own transaction so that a crash or a kill
-- before the push loses nothing: the next start pushes them.
CREATE TABLE outbox (
	sandbox_id TEXT PRIMARY KEY,
	parts      INTEGER NOT NULL
);
