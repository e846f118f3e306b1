-- Accounts at outside identity providers, found by (provider, subject), never by email.
CREATE TABLE linked_identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX linked_identities_user_id ON linked_identities (user_id);
