-- hopxd schema, version 5: when each sandbox took its current status, so
-- that people read "paused 2h ago". Kept by triggers from updated_at (every
-- write sets it); rows that exist already start at their last update, the
-- best time known.
ALTER TABLE sandboxes ADD COLUMN status_since INTEGER;

UPDATE sandboxes SET status_since = updated_at;

CREATE TRIGGER status_since_insert AFTER INSERT ON sandboxes
BEGIN
	UPDATE sandboxes SET status_since = NEW.updated_at WHERE id = NEW.id;
END;

CREATE TRIGGER status_since_update AFTER UPDATE OF status ON sandboxes
	WHEN NEW.status IS NOT OLD.status
BEGIN
	UPDATE sandboxes SET status_since = NEW.updated_at WHERE id = NEW.id;
END;
