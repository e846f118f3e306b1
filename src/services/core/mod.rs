//! What every feature of the service layer shares, written once. Feature files use this and
//! storage, never each other.
//!
//! - [`access`]: who the caller is and whether a call admits them, stated once per call as a
//!   [`access::Access`] requirement.
//! - [`accounts`]: reading accounts and the named transitions an account goes through
//!   (inserting it, proving its mailbox, taking an address over from an unproven claim,
//!   replacing its password, removing it).
//! - [`links`]: the state an emailed link is bound to, links Django mailed, and the link
//!   to choose a password.
//! - [`sign_in`]: starting a session, and proofs every way of signing in shares (Google).
//! - [`second_factor`]: checking a TOTP or recovery code and spending it, and a passkey's
//!   answer.
//! - [`ceremonies`]: WebAuthn ceremonies kept in the database, and the relying party.
//! - [`effects`]: the transaction every change runs in: audit rows, notices and mail are
//!   written inside it, and the outbox is woken once it commits.
//! - [`audit`]: the entries of the audit trail.
//! - [`paging`]: one page of a listing and the token of the next.
//! - [`limits`]: per-IP budgets, email cooldowns, code tries and login back-off, all in the
//!   database.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod ceremonies;
pub mod effects;
pub mod limits;
pub mod links;
pub mod paging;
pub mod second_factor;
pub mod sign_in;
