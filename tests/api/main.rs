//! Black-box tests: each starts the real server on an ephemeral port over its own fresh
//! database (Postgres and SQLite alike), with a real SMTP sink on loopback.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed step should fail the test loudly"
)]
mod fake_google;
mod fake_smtp;
mod helpers;
mod throwaway_postgres;

mod account_changes;
mod accounts;
mod admin;
mod assurance_table;
mod audit;
mod binary;
mod bounds;
mod bridge;
mod bridge_properties;
mod bridge_safety;
mod browser;
mod cli;
mod client;
mod client_ip;
mod concurrency;
mod devices;
mod django;
mod django_cutover;
mod email_sign_in;
mod factors;
mod faults;
mod google;
mod keys;
mod mail_faults;
mod operations;
mod ownership;
mod passkey_browser;
mod passkeys;
mod password_reset;
mod sessions;
mod snapshots;
mod tls;
mod token_service;
mod transport;
mod users;
