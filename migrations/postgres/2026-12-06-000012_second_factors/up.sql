-- Second factors of an account. A TOTP factor counts once confirmed (`confirmed_at`); a
-- pending one is void after `expires_at`. `secret` is the TOTP secret, sealed with
-- KEY_ENCRYPTION_KEY when one is set. `last_step` is the last time step a code was accepted
-- for: a step is accepted once, by one conditional update.
CREATE TABLE factors (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    last_step BIGINT,
    created_at TIMESTAMP NOT NULL,
    confirmed_at TIMESTAMP,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP
);
CREATE INDEX factors_user ON factors (user_id);

-- Recovery codes, as keyed hashes: each is spent once (`used_at`), by one conditional update.
CREATE TABLE recovery_codes (
    code_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);
