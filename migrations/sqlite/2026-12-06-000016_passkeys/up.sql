-- A passkey is a factor of kind `passkey`: `credential_id` (base64url) names it to browsers
-- and is unique across accounts; `credential` is what checking it needs (its public key,
-- signature counter, backup state), as webauthn-rs-core's JSON. It holds no secret.
ALTER TABLE factors ADD COLUMN credential_id TEXT;
ALTER TABLE factors ADD COLUMN credential TEXT;
CREATE UNIQUE INDEX factors_credential_id ON factors (credential_id);

-- A WebAuthn ceremony under way: the state the server keeps (its challenge among it), of one
-- kind, for one account (none for a sign-in that names no account, or an unknown one).
-- Single use (`used_at`, set by one conditional update that returns the state) and
-- short-lived, so replicas keep nothing and nothing can be replayed.
CREATE TABLE webauthn_ceremonies (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX webauthn_ceremonies_expires_at ON webauthn_ceremonies (expires_at);
