//! Rows as the database holds them, and the values written to it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    audit_events, counters, django_imported_accounts, django_link_states, email_changes,
    email_sign_ins, factors, mfa_challenges, outbox, recovery_codes, refresh_tokens, registrations,
    revocations, sessions, signing_keys, users, webauthn_ceremonies,
};
use crate::domain::{Email, FactorId, RefreshTokenHash, SessionId, UserId};

/// A `users` row, password hash included: never leaves the service layer.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    /// Id.
    pub id: UserId,
    /// Normalised email.
    pub email: Email,
    /// PHC string; `None` when the account has no usable password.
    pub password_hash: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// May sign in.
    pub is_active: bool,
    /// Proved the address.
    pub is_verified: bool,
    /// May read other users.
    pub is_staff: bool,
    /// Holds every permission.
    pub is_superuser: bool,
    /// Creation time (UTC).
    pub date_joined: NaiveDateTime,
    /// Last sign-in (UTC).
    pub last_login: Option<NaiveDateTime>,
    /// Last password change (UTC); links issued before it are void.
    pub password_changed_at: NaiveDateTime,
    /// When every (other) session was last ended (UTC); tokens minted elsewhere before it
    /// are refused.
    pub sessions_ended_at: Option<NaiveDateTime>,
    /// The password came with the sign-up that proved the address and has not signed in
    /// since: perhaps not the mailbox owner's.
    pub password_unproven: bool,
}

/// Values of a new `users` row.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    /// Normalised email.
    pub email: Email,
    /// PHC string.
    pub password_hash: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// May sign in.
    pub is_active: bool,
    /// Proved the address.
    pub is_verified: bool,
    /// May read other users.
    pub is_staff: bool,
    /// Holds every permission.
    pub is_superuser: bool,
    /// Creation time (UTC).
    pub date_joined: NaiveDateTime,
    /// Same as `date_joined` for a new account.
    pub password_changed_at: NaiveDateTime,
}

/// A `users` row as an import from another system writes it: with the id it had there.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct ImportedUser {
    /// The id it had, so links and references made with it stay valid.
    pub id: UserId,
    /// Normalised email.
    pub email: Email,
    /// The hash exactly as the other system stored it; `None` when unusable.
    pub password_hash: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// May sign in.
    pub is_active: bool,
    /// Proved the address.
    pub is_verified: bool,
    /// Staff.
    pub is_staff: bool,
    /// Superuser.
    pub is_superuser: bool,
    /// Creation time (UTC).
    pub date_joined: NaiveDateTime,
    /// Last sign-in (UTC).
    pub last_login: Option<NaiveDateTime>,
    /// When the import wrote it.
    pub password_changed_at: NaiveDateTime,
}

/// A `django_imported_accounts` row: the account an import created from one Django user,
/// and what that import wrote.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = django_imported_accounts)]
pub struct DjangoImportRecord {
    /// The Django user's primary key.
    pub source_pk: i64,
    /// The account made from it; `None` once that account was deleted here (a tombstone).
    pub user_id: Option<UserId>,
    /// The address the import wrote.
    pub email: Email,
    /// The given name the import wrote.
    pub first_name: String,
    /// The family name the import wrote.
    pub last_name: String,
    /// The flags the import wrote.
    pub is_active: bool,
    /// Proven, as the import wrote it.
    pub is_verified: bool,
    /// Staff, as the import wrote it.
    pub is_staff: bool,
    /// Superuser, as the import wrote it.
    pub is_superuser: bool,
    /// The password hash the import wrote; `None` when unusable.
    pub password_hash: Option<String>,
    /// When the import last wrote it (UTC).
    pub imported_at: NaiveDateTime,
}

/// A `django_link_states` row: what Django's link tokens for an imported account covered.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = django_link_states)]
pub struct DjangoLinkRow {
    /// The account.
    pub user_id: UserId,
    /// Its address, exactly as Django stored it.
    pub email: String,
    /// Its `password` field, exactly as Django stored it.
    pub password: String,
    /// Its last sign-in in Django (UTC).
    pub last_login: Option<NaiveDateTime>,
}

/// A `registrations` row: one sign-up of an unverified address, with its own password
/// and code.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = registrations)]
pub struct RegistrationRow {
    /// Id; links and codes name the registration they were sent for.
    pub id: i64,
    /// The account it would activate.
    pub user_id: UserId,
    /// PHC string of the password chosen at this sign-up.
    pub password_hash: Option<String>,
    /// Given name chosen at this sign-up.
    pub first_name: String,
    /// Family name chosen at this sign-up.
    pub last_name: String,
    /// When the sign-up was made (UTC).
    pub created_at: NaiveDateTime,
    /// Keyed hash of the live code, if one was sent.
    pub code_hash: Option<String>,
    /// When the live code stops working (UTC).
    pub code_expires_at: Option<NaiveDateTime>,
    /// Codes tried against this registration in its whole life.
    pub code_attempts: i32,
}

/// Values of a new `registrations` row.
#[derive(Debug, Insertable)]
#[diesel(table_name = registrations)]
pub struct NewRegistration {
    /// The account it would activate.
    pub user_id: UserId,
    /// PHC string of the chosen password.
    pub password_hash: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// When (UTC).
    pub created_at: NaiveDateTime,
}

/// A `sessions` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    /// Random id, carried in access tokens as `sid`.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// Login time (UTC).
    pub created_at: NaiveDateTime,
    /// Absolute end of the session (UTC).
    pub expires_at: NaiveDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<NaiveDateTime>,
    /// The device as the client described it at sign-in (cleaned, bounded).
    pub device: String,
    /// The client's address at sign-in.
    pub client_ip: Option<String>,
    /// When a refresh token of it was last spent.
    pub last_refreshed_at: Option<NaiveDateTime>,
    /// The kinds of factor its user proved themselves with (`password,totp`).
    pub methods: String,
    /// When they last proved one; `None` for a session older than this record: its start.
    pub auth_time: Option<NaiveDateTime>,
}

impl SessionRow {
    /// When its user last proved a factor.
    #[must_use]
    pub fn authenticated_at(&self) -> NaiveDateTime {
        self.auth_time.unwrap_or(self.created_at)
    }
}

/// A `refresh_tokens` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    /// SHA-256 of the token.
    pub token_hash: RefreshTokenHash,
    /// Session (family) it belongs to.
    pub session_id: SessionId,
    /// Issue time (UTC).
    pub issued_at: NaiveDateTime,
    /// Expiry (UTC).
    pub expires_at: NaiveDateTime,
    /// When it was spent by a rotation.
    pub used_at: Option<NaiveDateTime>,
}

/// What spending a refresh token tells beside its session (which is read with it).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct SpentRefreshToken {
    /// Expiry of the spent token (UTC).
    pub expires_at: NaiveDateTime,
}

/// The parts of a `counters` row that decide whether to wait: one fixed window of one bucket.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = counters)]
pub struct CounterRow {
    /// Start of the current window (UTC).
    pub window_started_at: NaiveDateTime,
    /// Hits in the window.
    pub hits: i32,
    /// Time of the last hit (UTC).
    pub last_hit_at: NaiveDateTime,
    /// Refused until then, if set.
    pub blocked_until: Option<NaiveDateTime>,
}

/// An `outbox` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    /// Id.
    pub id: i64,
    /// Address to deliver to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body_text: String,
    /// HTML body.
    pub body_html: String,
    /// Enqueue time (UTC).
    pub created_at: NaiveDateTime,
    /// Delivery attempts so far, this one included once claimed.
    pub attempts: i32,
    /// Not to be tried before then (UTC).
    pub next_attempt_at: NaiveDateTime,
    /// Claimed by a worker until then.
    pub locked_until: Option<NaiveDateTime>,
    /// Delivered at.
    pub sent_at: Option<NaiveDateTime>,
    /// Abandoned at, after too many failures.
    pub gave_up_at: Option<NaiveDateTime>,
    /// Last delivery error.
    pub last_error: Option<String>,
}

/// Values of a new `outbox` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewEmail {
    /// Address to deliver to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body_text: String,
    /// HTML body.
    pub body_html: String,
    /// Enqueue time (UTC).
    pub created_at: NaiveDateTime,
    /// Deliver from then on (UTC).
    pub next_attempt_at: NaiveDateTime,
}

/// A `signing_keys` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKeyRow {
    /// Key id, as tokens and the JWKS name it.
    pub kid: String,
    /// 1 for the first key, one more for each that follows.
    pub generation: i64,
    /// The private key: PKCS#8 PEM, or sealed under the key-encryption key.
    pub private_key: String,
    /// When it was made (UTC).
    pub created_at: NaiveDateTime,
    /// When it starts signing (UTC).
    pub activates_at: NaiveDateTime,
}

/// A `revocations` row: one session, or every session of a user before an instant.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = revocations)]
pub struct RevocationRow {
    /// Position in the feed, in commit order; followers resume after it.
    pub position: Option<i64>,
    /// The session revoked, for a one-session revocation.
    pub session_id: Option<SessionId>,
    /// The user, for a revocation of all their sessions.
    pub user_id: Option<UserId>,
    /// Tokens of that user issued before this are void.
    pub not_valid_before: Option<NaiveDateTime>,
    /// When (UTC).
    pub created_at: NaiveDateTime,
}

/// An `email_changes` row: an address an account asked to move to, and its code.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = email_changes)]
pub struct EmailChangeRow {
    /// The account.
    pub user_id: UserId,
    /// The address it moves to once the code comes back.
    pub new_email: Email,
    /// Keyed hash of the code mailed to the new address.
    pub code_hash: String,
    /// Codes tried against it.
    pub attempts: i32,
    /// When it was asked for (UTC).
    pub created_at: NaiveDateTime,
    /// When the code stops working (UTC).
    pub expires_at: NaiveDateTime,
}

/// Values of a new `audit_events` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
    /// When (UTC).
    pub occurred_at: NaiveDateTime,
    /// What happened, e.g. `sign_in`.
    pub kind: &'static str,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    /// Who did it: `user:<id>`, `service:<name>` or `anonymous`.
    pub actor: String,
    /// The account it happened to.
    pub subject_user_id: Option<UserId>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's device, as it described itself.
    pub user_agent: String,
    /// What else an investigator needs; never a secret.
    pub detail: String,
}

/// An `audit_events` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEventRow {
    /// Position in the trail.
    pub id: i64,
    /// When (UTC).
    pub occurred_at: NaiveDateTime,
    /// What happened.
    pub kind: String,
    /// How it ended.
    pub outcome: String,
    /// Who did it.
    pub actor: String,
    /// The account it happened to.
    pub subject_user_id: Option<UserId>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's device.
    pub user_agent: String,
    /// Details.
    pub detail: String,
}

/// A `factors` row: one second factor of an account, pending until confirmed.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = factors)]
pub struct FactorRow {
    /// Random id.
    pub id: FactorId,
    /// Owner.
    pub user_id: UserId,
    /// Its kind (`totp`).
    pub kind: String,
    /// What the owner calls it.
    pub name: String,
    /// The TOTP secret, sealed when a key-encryption key is set.
    pub secret: String,
    /// The last time step a code was accepted for.
    pub last_step: Option<i64>,
    /// When enrollment started (UTC).
    pub created_at: NaiveDateTime,
    /// When a code confirmed it; `None` while pending.
    pub confirmed_at: Option<NaiveDateTime>,
    /// When a pending enrollment lapses; `None` once confirmed.
    pub expires_at: Option<NaiveDateTime>,
    /// When a code of it last signed in or stepped up.
    pub last_used_at: Option<NaiveDateTime>,
    /// A passkey's credential id (base64url), unique across accounts.
    pub credential_id: Option<String>,
    /// A passkey's public key, counter and backup state (webauthn-rs-core's JSON).
    pub credential: Option<String>,
}

/// A `webauthn_ceremonies` row: a ceremony's state, kept server side until it is used once.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webauthn_ceremonies)]
pub struct CeremonyRow {
    /// Random id, handed to the browser's page as `ceremony_id`.
    pub id: String,
    /// What it is for (`registration`, `sign_in`, `second_factor`).
    pub kind: String,
    /// The account, when the ceremony names one.
    pub user_id: Option<UserId>,
    /// The state finishing it needs (webauthn-rs-core's JSON, the challenge among it).
    pub state: String,
    /// When it started (UTC).
    pub created_at: NaiveDateTime,
    /// When it stops working (UTC).
    pub expires_at: NaiveDateTime,
    /// When it was used; `None` until then.
    pub used_at: Option<NaiveDateTime>,
}

/// A new `recovery_codes` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = recovery_codes)]
pub struct NewRecoveryCode {
    /// Keyed hash of the code.
    pub code_hash: String,
    /// Owner.
    pub user_id: UserId,
    /// When it was made (UTC).
    pub created_at: NaiveDateTime,
}

/// An `email_sign_ins` row: a sign-in code and link mailed to an account's address.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = email_sign_ins)]
pub struct EmailSignInRow {
    /// SHA-256 (hex) of the link's token.
    pub link_hash: String,
    /// The account.
    pub user_id: UserId,
    /// The address it was mailed to: it signs in only while the account still has it.
    pub email: Email,
    /// Keyed hash of the code.
    pub code_hash: String,
    /// When it was mailed (UTC).
    pub created_at: NaiveDateTime,
    /// When the code and the link stop working (UTC).
    pub expires_at: NaiveDateTime,
    /// When it signed someone in; `None` until then.
    pub used_at: Option<NaiveDateTime>,
}

/// An `mfa_challenges` row: a first factor passed, waiting for the second.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = mfa_challenges)]
pub struct MfaChallengeRow {
    /// SHA-256 (hex) of the `mfa_token`.
    pub token_hash: String,
    /// The account.
    pub user_id: UserId,
    /// The kind of first factor passed (`password`, `google`, `django`).
    pub first_factor: String,
    /// The account's `password_changed_at` the sign-in checked.
    pub password_changed_at: NaiveDateTime,
    /// When the first factor passed (UTC).
    pub created_at: NaiveDateTime,
    /// When the token stops working (UTC).
    pub expires_at: NaiveDateTime,
    /// When it was used; `None` until then.
    pub used_at: Option<NaiveDateTime>,
}
