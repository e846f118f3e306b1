-- The kinds of factor a session's user proved themselves with (`password,totp`), from which
-- its tokens' `aal` and `amr` come, and when they last proved one (`auth_time`; a session
-- made before this migration counts from its start).
ALTER TABLE sessions ADD COLUMN methods TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN auth_time TIMESTAMP;
