-- When a sandbox was last used by an agent other than its lease holder
-- (PostgreSQL's clock): the holder pauses it for idleness by the fleet's
-- use, not by its own alone. Not part of the record: no event.
ALTER TABLE sandboxes ADD COLUMN used_at BIGINT;
