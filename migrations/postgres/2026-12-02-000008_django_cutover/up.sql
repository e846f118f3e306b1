-- What a Django token's hash covered for an imported account, exactly as Django held it
-- (its address unnormalised, its password field, its last sign-in), so links Django mailed
-- before the cutover can be checked. Stale once the password or last sign-in changes here.
CREATE TABLE django_link_states (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    password TEXT NOT NULL,
    last_login TIMESTAMP
);

-- Refresh tokens the Django deployment's simplejwt issued, exchanged here for a session:
-- each once.
CREATE TABLE django_refresh_exchanges (
    jti TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    exchanged_at TIMESTAMP NOT NULL
);

-- Refresh tokens simplejwt's blacklist held at the import: never exchanged.
CREATE TABLE django_blacklisted_refresh (
    jti TEXT PRIMARY KEY
);
