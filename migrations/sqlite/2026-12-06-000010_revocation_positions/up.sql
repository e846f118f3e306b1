-- Where each revocation stands in the feed. SQLite has one writer at a time, holding the
-- database from its first write to its commit, so ids are already in commit order.
ALTER TABLE revocations ADD COLUMN position BIGINT GENERATED ALWAYS AS (id) VIRTUAL;
CREATE UNIQUE INDEX revocations_position ON revocations (position);
