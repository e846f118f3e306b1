DROP TABLE webauthn_ceremonies;
DROP INDEX factors_credential_id;
ALTER TABLE factors DROP COLUMN credential;
ALTER TABLE factors DROP COLUMN credential_id;
