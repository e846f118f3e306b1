-- A sign-up waiting for whoever proves the mailbox: each Register of an unverified address
-- adds one, with its own password and its own code; verifying activates that one only.
CREATE TABLE registrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    code_hash TEXT,
    code_expires_at TIMESTAMP,
    -- Every code tried against this registration, counted before comparing; never reset.
    code_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX registrations_user_id ON registrations (user_id);

-- Pending accounts keep their registration and their live code.
INSERT INTO registrations (user_id, password_hash, first_name, last_name, created_at, code_hash, code_expires_at)
SELECT u.id, u.password_hash, u.first_name, u.last_name, COALESCE(o.created_at, u.date_joined), o.code_hash, o.expires_at
FROM users u LEFT JOIN otps o ON o.user_id = u.id
WHERE NOT u.is_verified;

-- is_active is now only an operator's switch; waiting for verification is is_verified alone.
UPDATE users SET is_active = TRUE WHERE NOT is_verified AND NOT is_active;

DROP TABLE otps;
