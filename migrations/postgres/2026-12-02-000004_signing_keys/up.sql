-- The access-token signing keys. A key is published from the moment it is written, signs
-- from `activates_at` until the next key activates, and stays published until every token
-- it signed has expired. Every replica derives the same states from these times alone.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    -- One key per generation: of replicas racing to schedule the next key, one wins.
    generation BIGINT NOT NULL UNIQUE,
    -- PKCS#8 PEM, or `sealed:v1:` and its ChaCha20-Poly1305 encryption under KEY_ENCRYPTION_KEY.
    private_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    activates_at TIMESTAMP NOT NULL
);
