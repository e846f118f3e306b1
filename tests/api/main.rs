//! Black-box tests: each starts the real server on an ephemeral port over its own fresh
//! database (Postgres and SQLite alike), with a real SMTP sink on loopback.

mod fake_smtp;
mod helpers;

mod accounts;
mod operations;
mod password_reset;
mod sessions;
mod users;
