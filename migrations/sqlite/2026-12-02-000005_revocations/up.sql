-- Every revocation, in order, for services that verify tokens themselves to follow: a
-- session, or every session of a user before an instant. Pruned once no access token it
-- could void is alive.
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    user_id BIGINT,
    not_valid_before TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
