//! Second factors: adding an authenticator app (TOTP, RFC 6238) and confirming it with one of
//! its codes, registering a passkey (WebAuthn), the recovery codes that come with the first
//! factor, and listing, renaming and removing them.
//!
//! A TOTP secret is sealed with `KEY_ENCRYPTION_KEY` when one is set; a time step is accepted
//! once per factor; recovery codes are stored as keyed hashes and shown once.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{
    Caller, Credentials, Services,
    core::{
        access::{Access, Authenticated},
        accounts::utc,
        audit::AuditEntry,
        ceremonies::{CeremonyKind, StartedCeremony},
        effects::Tx,
    },
};
use crate::{
    auth::{PasskeyError, Sealed, TotpSecret, credential_id_of_key, credential_key},
    clock::span,
    domain::{Actor, AuditKind, FactorId, FactorKind, FactorName, Otp, RecoveryCode, UserId},
    email::Notice,
    error::{ServiceError, ServiceResult},
    storage::{FactorRow, NewRecoveryCode},
};

/// How long a started enrollment waits for its first code.
const ENROLLMENT_LIFETIME: Duration = Duration::from_secs(600);

/// Recovery codes in a set.
const RECOVERY_CODES: usize = 10;

/// What managing an account's factors asks of the caller: signed in and, for an account with a
/// second factor, one proven within `STEP_UP_MAX_AGE`.
const CHANGES_FACTORS: Access = Access::SIGNED_IN.with_fresh_second_factor();

/// What an authenticator app is called when its owner gives no name.
pub const DEFAULT_TOTP_NAME: &str = "authenticator app";

/// What a passkey is called when its owner gives no name.
pub const DEFAULT_PASSKEY_NAME: &str = "passkey";

/// A started TOTP enrollment: the secret, shown once.
#[derive(Debug)]
pub struct TotpEnrollment {
    /// The pending factor.
    pub factor_id: FactorId,
    /// The `otpauth://` URI for a QR code.
    pub otpauth_uri: String,
    /// The secret in base32.
    pub secret: String,
    /// When the pending factor lapses.
    pub expires_at: DateTime<Utc>,
}

/// A confirmed factor, as its owner sees it.
#[derive(Debug, Clone)]
pub struct Factor {
    /// Its id.
    pub id: FactorId,
    /// Its kind.
    pub kind: FactorKind,
    /// What the owner calls it.
    pub name: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When a code of it was last accepted.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Factor {
    /// A stored factor as its owner sees it; `None` for a kind this build does not know.
    fn from_row(row: FactorRow) -> Option<Self> {
        Some(Self {
            kind: FactorKind::from_stored(&row.kind)?,
            id: row.id,
            name: row.name,
            created_at: utc(row.created_at),
            last_used_at: row.last_used_at.map(utc),
        })
    }
}

/// A factor just confirmed, and with the account's first factor its recovery codes.
#[derive(Debug)]
pub struct ConfirmedFactor {
    /// The factor.
    pub factor: Factor,
    /// The recovery codes, as shown (`abcd-efgh-…`); empty when the account had a factor.
    pub recovery_codes: Vec<String>,
}

/// The caller's factors.
#[derive(Debug)]
pub struct Factors {
    /// The confirmed factors, oldest first.
    pub factors: Vec<Factor>,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u32,
}

impl Services {
    /// Starts adding an authenticator app: a new secret, pending until a code of it comes
    /// back within ten minutes.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    #[tracing::instrument(skip_all)]
    pub async fn start_totp_enrollment(
        &self,
        caller: Caller,
        credentials: Credentials,
        name: FactorName,
    ) -> ServiceResult<TotpEnrollment> {
        // Adding a factor to an account that has one is a change a second factor guards.
        let me: Authenticated = self.require(&credentials, CHANGES_FACTORS).await?;
        let secret = TotpSecret::generate()?;
        let now = self.clock.now();
        let expires_at = now + span(ENROLLMENT_LIFETIME);
        let factor = FactorRow {
            id: FactorId::generate(),
            user_id: me.user.id,
            kind: FactorKind::Totp.as_str().to_owned(),
            name: name.as_str().to_owned(),
            secret: self
                .key_encryption
                .seal(Sealed::TotpSecret, &secret.to_base32())?,
            last_step: None,
            created_at: now.naive_utc(),
            confirmed_at: None,
            expires_at: Some(expires_at.naive_utc()),
            last_used_at: None,
            credential_id: None,
            credential: None,
        };
        self.transaction_at(&caller, now, async |tx| {
            tx.insert_factor(&factor)
                .await
                .context("recording the pending factor")?;
            Ok::<_, ServiceError>(())
        })
        .await?;
        tracing::info!(user.id = %me.user.id, factor.id = %factor.id, "TOTP enrollment started");
        Ok(TotpEnrollment {
            otpauth_uri: secret.otpauth_uri(&self.config.jwt.issuer, me.user.email.as_str()),
            secret: secret.to_base32(),
            factor_id: factor.id,
            expires_at,
        })
    }

    /// Confirms a pending authenticator app with one of its codes (the guess counted before it
    /// is checked). The account's first factor brings ten recovery codes; the owner is told.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound` (no such pending factor, or it lapsed),
    /// `RateLimited`, `TooManyAttempts`, `OtpInvalid` (wrong, or its time step was used).
    #[tracing::instrument(skip_all)]
    pub async fn confirm_totp_enrollment(
        &self,
        caller: Caller,
        credentials: Credentials,
        id: FactorId,
        code: Otp,
    ) -> ServiceResult<ConfirmedFactor> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let user_id = me.user.id;
        let now = self.clock.now();
        self.spend_second_factor_guess(user_id, id.as_str(), now.naive_utc())
            .await?;
        let pending = self
            .connection()
            .await?
            .queries()
            .factor_of(user_id, &id)
            .await
            .context("loading the factor")?
            .filter(|row| {
                row.confirmed_at.is_none() && row.expires_at.is_some_and(|at| at > now.naive_utc())
            })
            .ok_or(ServiceError::NotFound)?;
        let secret = self.totp_secret(&pending)?;
        let step = secret
            .matching_step(code.expose(), now)
            .and_then(|step| i64::try_from(step).ok())
            .ok_or(ServiceError::OtpInvalid)?;
        let recovery_codes = self
            .transaction_at(&caller, now, async |tx| {
                let now = tx.now_naive();
                if !tx
                    .confirm_factor(&id, step, now)
                    .await
                    .context("confirming the factor")?
                {
                    return Err(ServiceError::OtpInvalid);
                }
                tx.give_back_second_factor_guess(user_id).await?;
                self.factor_added(tx, user_id, &id, FactorKind::Totp).await
            })
            .await?;
        tracing::info!(user.id = %user_id, factor.id = %id, "TOTP factor confirmed");
        let factor = Factor {
            id,
            kind: FactorKind::Totp,
            name: pending.name,
            created_at: utc(pending.created_at),
            last_used_at: Some(now),
        };
        Ok(ConfirmedFactor {
            factor,
            recovery_codes,
        })
    }

    /// Removes one of the caller's factors (a second factor proven within `STEP_UP_MAX_AGE`
    /// first); with the last go the recovery codes. The owner is told of a confirmed one.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound` for a factor that is not the caller's.
    #[tracing::instrument(skip_all)]
    pub async fn remove_factor(
        &self,
        caller: Caller,
        credentials: Credentials,
        id: FactorId,
    ) -> ServiceResult<()> {
        let me: Authenticated = self.require(&credentials, CHANGES_FACTORS).await?;
        let user_id = me.user.id;
        self.transaction(&caller, async |tx| {
            let removed = tx
                .delete_factor(user_id, &id)
                .await
                .context("removing the factor")?
                .ok_or(ServiceError::NotFound)?;
            let kind = FactorKind::from_stored(&removed.kind)
                .with_context(|| format!("a factor of unknown kind {:?}", removed.kind))?;
            if removed.confirmed_at.is_some() {
                let owner = tx
                    .user_by_id(user_id)
                    .await
                    .context("loading the owner")?
                    .ok_or(ServiceError::SessionRevoked)?;
                tx.notify(Notice::FactorRemoved(kind), &owner).await?;
            }
            let entry = AuditEntry::success(AuditKind::FactorRemove, Actor::User(user_id), user_id)
                .detail(format!("factor={id} kind={}", kind.as_str()));
            tx.audit(entry).await
        })
        .await?;
        tracing::info!(user.id = %user_id, factor.id = %id, "factor removed");
        Ok(())
    }

    /// Gives one of the caller's confirmed factors another name; audited. Naming changes
    /// nothing a sign-in checks, so a signed-in session is enough.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound` for a factor that is not the caller's.
    #[tracing::instrument(skip_all)]
    pub async fn rename_factor(
        &self,
        caller: Caller,
        credentials: Credentials,
        id: FactorId,
        name: FactorName,
    ) -> ServiceResult<Factor> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let user_id = me.user.id;
        let renamed = self
            .transaction(&caller, async |tx| {
                let renamed = tx
                    .rename_factor(user_id, &id, name.as_str())
                    .await
                    .context("renaming the factor")?
                    .ok_or(ServiceError::NotFound)?;
                let entry =
                    AuditEntry::success(AuditKind::FactorRename, Actor::User(user_id), user_id)
                        .detail(format!("factor={id}"));
                tx.audit(entry).await?;
                Ok::<_, ServiceError>(renamed)
            })
            .await?;
        tracing::info!(user.id = %user_id, factor.id = %id, "factor renamed");
        Factor::from_row(renamed)
            .context("a factor of unknown kind")
            .map_err(Into::into)
    }

    /// A new set of ten recovery codes, shown once, voiding the old (a second factor proven
    /// within `STEP_UP_MAX_AGE` first). The owner is told.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound` for an account without a second factor.
    #[tracing::instrument(skip_all)]
    pub async fn regenerate_recovery_codes(
        &self,
        caller: Caller,
        credentials: Credentials,
    ) -> ServiceResult<Vec<String>> {
        let me: Authenticated = self.require(&credentials, CHANGES_FACTORS).await?;
        let user_id = me.user.id;
        let codes = self
            .transaction(&caller, async |tx| {
                let has_factor = !tx
                    .confirmed_factors(user_id)
                    .await
                    .context("loading the factors")?
                    .is_empty();
                if !has_factor {
                    return Err(ServiceError::NotFound);
                }
                let codes = self.new_recovery_codes(tx, user_id).await?;
                let owner = tx
                    .user_by_id(user_id)
                    .await
                    .context("loading the owner")?
                    .ok_or(ServiceError::SessionRevoked)?;
                tx.notify(Notice::RecoveryCodesRegenerated, &owner).await?;
                let entry = AuditEntry::success(
                    AuditKind::RecoveryCodesRegenerate,
                    Actor::User(user_id),
                    user_id,
                );
                tx.audit(entry).await?;
                Ok(codes)
            })
            .await?;
        tracing::info!(user.id = %user_id, "recovery codes regenerated");
        Ok(codes)
    }

    /// The caller's confirmed factors and how many recovery codes are left.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    pub async fn list_factors(&self, credentials: Credentials) -> ServiceResult<Factors> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let mut conn = self.connection().await?;
        let mut queries = conn.queries();
        let rows = queries
            .confirmed_factors(me.user.id)
            .await
            .context("loading the factors")?;
        let left = queries
            .recovery_codes_left(me.user.id)
            .await
            .context("counting recovery codes")?;
        Ok(Factors {
            factors: rows.into_iter().filter_map(Factor::from_row).collect(),
            recovery_codes_left: u32::try_from(left).unwrap_or(0),
        })
    }

    /// Starts registering a passkey on the caller's account (a second factor proven within
    /// `STEP_UP_MAX_AGE` first, when the account has one): the options for
    /// `navigator.credentials.create`, and the ceremony that finishes it within five minutes.
    /// The account's passkeys are excluded, so one authenticator is registered once.
    ///
    /// # Errors
    /// Those of [`Services::require`], `PasskeysNotConfigured`.
    #[tracing::instrument(skip_all)]
    pub async fn start_passkey_registration(
        &self,
        credentials: Credentials,
    ) -> ServiceResult<StartedCeremony> {
        let relying_party = self.relying_party()?;
        let me: Authenticated = self.require(&credentials, CHANGES_FACTORS).await?;
        let registered = self
            .connection()
            .await?
            .queries()
            .confirmed_factors(me.user.id)
            .await
            .context("loading the passkeys")?;
        let exclude = registered
            .iter()
            .filter_map(|factor| factor.credential_id.as_deref())
            .filter_map(credential_id_of_key)
            .collect();
        let display_name = format!("{} {}", me.user.first_name, me.user.last_name);
        let display_name = match display_name.trim() {
            "" => me.user.email.as_str(),
            named => named,
        };
        let ceremony = relying_party
            .start_registration(
                self.webauthn_handle(me.user.id),
                me.user.email.as_str(),
                display_name,
                exclude,
            )
            .map_err(|e| anyhow::anyhow!("starting a passkey registration: {e}"))?;
        self.keep_ceremony(CeremonyKind::Registration, Some(me.user.id), ceremony)
            .await
    }

    /// Finishes registering a passkey with the browser's answer: stored as a factor of the
    /// caller's account (the first brings recovery codes), the owner told, audited.
    ///
    /// # Errors
    /// Those of [`Services::require`], `PasskeysNotConfigured`, `TokenInvalid` (an unknown,
    /// used or other kind of ceremony, or another account's), `TokenExpired`,
    /// `InvalidArgument` (an answer that fails a check, or a passkey already registered).
    #[tracing::instrument(skip_all)]
    pub async fn finish_passkey_registration(
        &self,
        caller: Caller,
        credentials: Credentials,
        ceremony_id: &str,
        answer: &serde_json::Value,
        name: FactorName,
    ) -> ServiceResult<ConfirmedFactor> {
        let relying_party = self.relying_party()?;
        let me: Authenticated = self.require(&credentials, CHANGES_FACTORS).await?;
        let user_id = me.user.id;
        let ceremony = self
            .take_ceremony(ceremony_id, CeremonyKind::Registration)
            .await?;
        if ceremony.user_id != Some(user_id) {
            return Err(ServiceError::TokenInvalid);
        }
        let credential = relying_party
            .finish_registration(answer, &ceremony.state)
            .map_err(|error: PasskeyError| ServiceError::InvalidArgument {
                field: "credential",
                reason: format!("is not a valid passkey registration: {error}"),
            })?;
        let now = self.clock.now();
        let id = FactorId::generate();
        let credential_id = credential_key(credential.cred_id.as_slice());
        let factor = FactorRow {
            id: id.clone(),
            user_id,
            kind: FactorKind::Passkey.as_str().to_owned(),
            name: name.as_str().to_owned(),
            secret: String::new(),
            last_step: Some(i64::from(credential.counter)),
            created_at: now.naive_utc(),
            confirmed_at: Some(now.naive_utc()),
            expires_at: None,
            last_used_at: None,
            credential_id: Some(credential_id.clone()),
            credential: Some(serde_json::to_string(&credential).context("storing a passkey")?),
        };
        let recovery_codes = self
            .transaction_at(&caller, now, async |tx| {
                if tx
                    .passkey_by_credential_id(&credential_id)
                    .await
                    .context("looking for the passkey")?
                    .is_some()
                {
                    return Err(ServiceError::InvalidArgument {
                        field: "credential",
                        reason: "this passkey is already registered".into(),
                    });
                }
                tx.insert_factor(&factor)
                    .await
                    .context("storing the passkey")?;
                self.factor_added(tx, user_id, &id, FactorKind::Passkey)
                    .await
            })
            .await?;
        tracing::info!(user.id = %user_id, factor.id = %id, "passkey registered");
        Ok(ConfirmedFactor {
            factor: Factor {
                id,
                kind: FactorKind::Passkey,
                name: name.as_str().to_owned(),
                created_at: now,
                last_used_at: None,
            },
            recovery_codes,
        })
    }

    /// What follows a factor's confirmation, in its transaction: the account's first factor
    /// brings recovery codes (answered, to show once), the owner is told, the change audited.
    async fn factor_added(
        &self,
        tx: &mut Tx<'_, '_>,
        user_id: UserId,
        id: &FactorId,
        kind: FactorKind,
    ) -> ServiceResult<Vec<String>> {
        let first = tx
            .confirmed_factors(user_id)
            .await
            .context("loading the factors")?
            .len()
            == 1;
        let codes = if first {
            self.new_recovery_codes(tx, user_id).await?
        } else {
            Vec::new()
        };
        let owner = tx
            .user_by_id(user_id)
            .await
            .context("loading the owner")?
            .ok_or(ServiceError::SessionRevoked)?;
        tx.notify(Notice::FactorAdded(kind), &owner).await?;
        let entry = AuditEntry::success(AuditKind::FactorAdd, Actor::User(user_id), user_id)
            .detail(format!(
                "factor={id} kind={} recovery_codes={}",
                kind.as_str(),
                codes.len()
            ));
        tx.audit(entry).await?;
        Ok(codes)
    }

    /// A new set of recovery codes for the account, replacing (voiding) any old one; the
    /// codes as shown, once.
    async fn new_recovery_codes(
        &self,
        tx: &mut Tx<'_, '_>,
        user_id: UserId,
    ) -> ServiceResult<Vec<String>> {
        let now = tx.now_naive();
        let mut shown = Vec::with_capacity(RECOVERY_CODES);
        let mut stored = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let code = RecoveryCode::generate()
                .map_err(|e| anyhow::anyhow!("no randomness for a recovery code: {e}"))?;
            stored.push(NewRecoveryCode {
                code_hash: self.secret.recovery_code_hash(user_id, code.expose()),
                user_id,
                created_at: now,
            });
            shown.push(code.to_display());
        }
        tx.replace_recovery_codes(user_id, &stored)
            .await
            .context("storing the recovery codes")?;
        Ok(shown)
    }
}
