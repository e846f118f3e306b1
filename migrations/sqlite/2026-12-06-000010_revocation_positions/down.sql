DROP INDEX revocations_position;
ALTER TABLE revocations DROP COLUMN position;
