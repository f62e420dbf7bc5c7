-- hopxd schema, version 7: the host that caused an event. In a fleet
-- (--store postgresql://...) this database is the agent's local copy of
-- the shared registry, and its events are the fleet's, numbered by it;
-- NULL for events of an agent on its own.
ALTER TABLE events ADD COLUMN host TEXT;
