-- Where each revocation stands in the feed: given just before its transaction commits, under
-- a lock held until the commit is visible, so positions are in commit order and a follower
-- that read position p has seen every smaller one. Ids are given at insert, and a transaction
-- that waited on a lock could commit a smaller id after a larger one was read.
CREATE SEQUENCE revocation_positions;
ALTER TABLE revocations ADD COLUMN position BIGINT;
UPDATE revocations SET position = id;
SELECT setval('revocation_positions', COALESCE((SELECT MAX(id) FROM revocations), 0) + 1, false);
CREATE UNIQUE INDEX revocations_position ON revocations (position);
