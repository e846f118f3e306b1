ALTER TABLE revocations DROP COLUMN position;
DROP SEQUENCE revocation_positions;
