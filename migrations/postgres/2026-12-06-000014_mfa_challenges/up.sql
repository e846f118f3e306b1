-- A first factor passed for an account with a second factor: the `mfa_token` it answered
-- (as a SHA-256 hash), bound to the kind of first factor and to the password the sign-in
-- checked. Single use (`used_at`, by one conditional update) and short-lived.
CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    first_factor TEXT NOT NULL,
    password_changed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX mfa_challenges_expires_at ON mfa_challenges (expires_at);
