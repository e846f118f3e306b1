-- The password came with the sign-up whose code or link proved the address, and has not
-- signed in since: whoever chose it may not be whoever reads the mailbox (a mail scanner can
-- open a link). A Google link, which proves the mailbox again, removes such a password.
ALTER TABLE users ADD COLUMN password_unproven BOOLEAN NOT NULL DEFAULT FALSE;
