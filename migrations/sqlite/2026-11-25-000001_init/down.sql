DROP TABLE instance_secrets;
DROP TABLE outbox;
DROP TABLE counters;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE otps;
DROP TABLE users;
