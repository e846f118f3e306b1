ALTER TABLE sessions DROP COLUMN last_refreshed_at;
ALTER TABLE sessions DROP COLUMN client_ip;
ALTER TABLE sessions DROP COLUMN device;
