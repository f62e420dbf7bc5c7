-- hopxd schema, version 3: when a create's POST was handed to the network.
-- An open intent never sent made nothing at HopX; only sent ones can be
-- matched to a sandbox whose answer was lost.
ALTER TABLE intents ADD COLUMN sent_at INTEGER;
