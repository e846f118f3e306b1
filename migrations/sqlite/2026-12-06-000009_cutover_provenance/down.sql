ALTER TABLE users DROP COLUMN sessions_ended_at;
DROP TABLE django_imported_accounts;
