-- Triggers: status_since follows the status (as in the SQLite store), and
-- every event wakes the other agents with its sequence number.

CREATE FUNCTION hopxd_status_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
		NEW.status_since := NEW.updated_at;
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER sandboxes_status_since BEFORE INSERT OR UPDATE OF status
	ON sandboxes FOR EACH ROW EXECUTE FUNCTION hopxd_status_since();

CREATE FUNCTION hopxd_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('hopxd_events', NEW.seq::text);
	RETURN NULL;
END $$;

CREATE TRIGGER events_notify AFTER INSERT ON events
	FOR EACH ROW EXECUTE FUNCTION hopxd_notify();
