-- Every account the Django import created, by the Django user it came from, with what the
-- import last wrote: a re-run touches only these, changes only what changed in Django since,
-- and never reverts what changed here. A NULL user_id is a tombstone: the account was
-- deleted here, and a re-run does not bring it back.
CREATE TABLE django_imported_accounts (
    source_pk BIGINT PRIMARY KEY,
    user_id BIGINT UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    email TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    is_active BOOLEAN NOT NULL,
    is_verified BOOLEAN NOT NULL,
    is_staff BOOLEAN NOT NULL,
    is_superuser BOOLEAN NOT NULL,
    password_hash TEXT,
    imported_at TIMESTAMP NOT NULL
);

-- Accounts an earlier import wrote, as far as their traces tell (an unspent Django link, an
-- exchanged simplejwt token), taken as they stand now.
INSERT INTO django_imported_accounts
SELECT u.id, u.id, u.email, u.first_name, u.last_name, u.is_active, u.is_verified, u.is_staff,
       u.is_superuser, u.password_hash, u.password_changed_at
FROM users u
WHERE u.id IN (SELECT user_id FROM django_link_states UNION SELECT user_id FROM django_refresh_exchanges);

-- When every session (or every other one) of the account was last ended: a password change or
-- reset, signing out everywhere, a disable. Tokens minted elsewhere before it (simplejwt's) are
-- refused.
ALTER TABLE users ADD COLUMN sessions_ended_at TIMESTAMP;
