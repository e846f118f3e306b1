-- A sign-in code and link mailed to a verified address: the link's token (as a SHA-256
-- hash) keys it, the code is kept as a keyed hash. Single use, by either (`used_at`, set by
-- one conditional update), short-lived, and only for the address it was mailed to; a newer
-- one replaces it.
CREATE TABLE email_sign_ins (
    link_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX email_sign_ins_user_id ON email_sign_ins (user_id);
CREATE INDEX email_sign_ins_expires_at ON email_sign_ins (expires_at);
