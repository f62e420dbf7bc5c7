-- Events caused by traffic through an agent's local proxy.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_cause_check;
ALTER TABLE events ADD CONSTRAINT events_cause_check
	CHECK (cause IN ('user','agent','remote','traffic'));
