//! A user's own changes to their account: a new password, a new address (confirmed by a
//! code sent there), and deleting the account. Each asks for proof beyond the access token:
//! the password, or a fresh Google sign-in for an account without one.

use anyhow::Context;

use super::{
    Caller, Credentials, GoogleCredential, Services,
    core::{
        access::{Access, Authenticated},
        audit::AuditEntry,
        limits::{IpBudget, MailStream},
    },
};
use crate::{
    auth::{Verification, constant_time_eq},
    domain::{Actor, AuditKind, Email, LoginPassword, Otp, Password, SessionId, User},
    email::Notice,
    error::{ServiceError, ServiceResult},
    storage::{EmailChangeRow, StoreError, UserRow},
};

/// What changing the account's password, address or existence asks of the caller: signed in
/// and, for an account with a second factor, one proven within `STEP_UP_MAX_AGE`.
const CHANGES_ACCOUNT: Access = Access::SIGNED_IN.with_fresh_second_factor();

/// Tries against one address-change code.
const EMAIL_CHANGE_TRIES: i32 = 5;

/// The answer to a password change.
pub const PASSWORD_CHANGED_MESSAGE: &str =
    "Your password has been changed, and your other devices have been signed out.";

/// The answer to every address change request, whether or not the address is free.
pub const EMAIL_CHANGE_MESSAGE: &str =
    "If the new address can be used, a code to confirm it is on its way there.";

/// What proves the caller is the account's owner now, beyond holding an access token.
#[derive(Debug)]
pub enum Proof {
    /// The account's password.
    Password(LoginPassword),
    /// A Google credential of the Google account linked to it.
    Google(GoogleCredential),
}

impl Services {
    /// Sets a new password after checking the current one (or a Google sign-in, for an
    /// account without a password), ends every other session and mails a notice; returns how
    /// many sessions ended.
    ///
    /// # Errors
    /// Those of [`Services::require`], `LoginThrottled`, `InvalidArgument`
    /// (`current_password` wrong, or `new_password` built from the address),
    /// `GoogleRejected`, `ConcurrentChange`.
    #[tracing::instrument(skip_all)]
    pub async fn change_password(
        &self,
        caller: Caller,
        credentials: Credentials,
        proof: Proof,
        new_password: Password,
    ) -> ServiceResult<u64> {
        let (me, row) = self.account_of(&credentials, CHANGES_ACCOUNT).await?;
        self.reauthenticate(&row, proof, "current_password").await?;
        new_password
            .check_against(&row.email)
            .map_err(|e| ServiceError::invalid("new_password", &e))?;
        let hash = self.hasher.hash(new_password.secret()).await?;
        let current = current_session(&me)?;
        let revoked = self
            .transaction(&caller, async |tx| {
                // Conditional on the password the proof was checked against: of two changes
                // at once, one wins, and a login that checked the old password is refused.
                if !tx.replace_password(&row, Some(&hash)).await? {
                    return Err(ServiceError::ConcurrentChange);
                }
                let now = tx.now_naive();
                let revoked = tx
                    .revoke_other_sessions(row.id, &current, now)
                    .await
                    .context("ending the other sessions")?;
                tx.notify(Notice::PasswordChanged, &row).await?;
                let entry =
                    AuditEntry::success(AuditKind::PasswordChange, Actor::User(row.id), row.id)
                        .detail(format!("sessions_revoked={revoked}"));
                tx.audit(entry).await?;
                Ok(revoked)
            })
            .await?;
        self.clear_login_failures(&row.email).await?;
        tracing::info!(user.id = %row.id, sessions.revoked = revoked, "password changed");
        Ok(u64::try_from(revoked).unwrap_or(u64::MAX))
    }

    /// Starts moving the account to `new_email`: a code goes to the new address, and the old
    /// one stays until the code comes back. As with Register, the answer is the same whether
    /// or not the address has a verified account (whose owner is sent a notice instead),
    /// unless `REGISTER_REVEALS_EXISTING` is set.
    ///
    /// # Errors
    /// Those of [`Services::require`], `RateLimited`, `Cooldown`, `InvalidArgument`
    /// (`password` wrong, or `new_email` the current address), `EmailTaken` only when
    /// revealing.
    #[tracing::instrument(skip_all)]
    pub async fn change_email(
        &self,
        caller: Caller,
        credentials: Credentials,
        new_email: Email,
        proof: Proof,
    ) -> ServiceResult<&'static str> {
        let (_, row) = self.account_of(&credentials, CHANGES_ACCOUNT).await?;
        self.spend_ip_budget(&caller, IpBudget::Email, self.clock.now())
            .await?;
        self.reauthenticate(&row, proof, "password").await?;
        if new_email == row.email {
            return Err(ServiceError::InvalidArgument {
                field: "new_email",
                reason: "is already the account's address".into(),
            });
        }
        let reveals = self.config.register_reveals_existing;
        let holder = self.user_by_email(&new_email).await?;
        if reveals && holder.as_ref().is_some_and(|h| h.is_verified) {
            return Err(ServiceError::EmailTaken);
        }
        let queue = async {
            let code =
                Otp::generate().map_err(|e| anyhow::anyhow!("no randomness for a code: {e}"))?;
            self.transaction(&caller, async |tx| {
                let now = tx.now_naive();
                let entry =
                    AuditEntry::success(AuditKind::EmailChangeRequest, Actor::User(row.id), row.id);
                // Both branches leave the same state: with a verified holder the pending
                // change is a decoy whose code is mailed to no one, so the caller's
                // earlier change is gone either way and no code reveals the holder.
                let change = EmailChangeRow {
                    user_id: row.id,
                    new_email: new_email.clone(),
                    code_hash: self.secret.email_change_code_hash(
                        row.id,
                        new_email.as_str(),
                        code.expose(),
                    ),
                    attempts: 0,
                    created_at: now,
                    expires_at: now + crate::clock::span(self.config.otp_lifetime),
                };
                tx.replace_email_change(&change)
                    .await
                    .context("recording the address change")?;
                if let Some(owner) = holder.as_ref().filter(|h| h.is_verified) {
                    tx.notify(Notice::SignupAttempt, owner).await?;
                    let entry = entry.detail(format!("to={new_email} refused=address_taken"));
                    return tx.audit(entry).await;
                }
                let mail = self.mailer.email_change(
                    &new_email,
                    &row.first_name,
                    code.expose(),
                    self.config.otp_lifetime,
                    now,
                );
                tx.queue_mail(&mail).await?;
                tx.audit(entry.detail(format!("to={new_email}"))).await
            })
            .await
        };
        self.within_mail_budget(&new_email, MailStream::EmailChange, queue)
            .await?;
        tracing::info!(user.id = %row.id, "address change requested");
        Ok(EMAIL_CHANGE_MESSAGE)
    }

    /// Moves the account to the address its pending change named, once the code mailed there
    /// comes back, and tells the old address. Each try is counted before the code is compared.
    ///
    /// # Errors
    /// Those of [`Services::require`], `RateLimited`, `OtpInvalid` (wrong, or nothing
    /// pending), `TooManyAttempts`, `OtpExpired`, `EmailTaken` (the address was proven by
    /// another account meanwhile).
    #[tracing::instrument(skip_all)]
    pub async fn confirm_email_change(
        &self,
        caller: Caller,
        credentials: Credentials,
        otp: Otp,
    ) -> ServiceResult<User> {
        let (_, row) = self.account_of(&credentials, Access::SIGNED_IN).await?;
        self.spend_ip_budget(&caller, IpBudget::Verify, self.clock.now())
            .await?;
        let mut conn = self.connection().await?;
        let tried = conn
            .queries()
            .try_email_change(row.id, EMAIL_CHANGE_TRIES)
            .await
            .context("counting a code try")?;
        let Some(change) = tried else {
            let pending = conn
                .queries()
                .has_email_change(row.id)
                .await
                .context("finding the address change")?;
            return Err(if pending {
                ServiceError::TooManyAttempts
            } else {
                ServiceError::OtpInvalid
            });
        };
        drop(conn);
        let offered =
            self.secret
                .email_change_code_hash(row.id, change.new_email.as_str(), otp.expose());
        if !constant_time_eq(&offered, &change.code_hash) {
            return Err(ServiceError::OtpInvalid);
        }
        let now = self.clock.now_naive();
        if change.expires_at <= now {
            return Err(ServiceError::OtpExpired);
        }
        let moved = self
            .transaction(&caller, async |tx| {
                if !tx
                    .take_email_change(row.id, &change.code_hash)
                    .await
                    .context("spending the code")?
                {
                    return Err(ServiceError::OtpInvalid);
                }
                // The code proved the mailbox: an unproven account on it was never theirs.
                tx.take_over_unproven(&change.new_email).await?;
                match tx.change_email(row.id, &row.email, &change.new_email).await {
                    Ok(true) => {}
                    Ok(false) => return Err(ServiceError::ConcurrentChange),
                    Err(StoreError::UniqueViolation) => return Err(ServiceError::EmailTaken),
                    Err(other) => return Err(other.into()),
                }
                tx.notify(Notice::EmailChanged, &row).await?;
                let entry =
                    AuditEntry::success(AuditKind::EmailChange, Actor::User(row.id), row.id)
                        .detail(format!("from={} to={}", row.email, change.new_email));
                tx.audit(entry).await?;
                tx.user_by_id(row.id)
                    .await
                    .context("reloading the user")?
                    .ok_or(ServiceError::ConcurrentChange)
            })
            .await?;
        self.clear_login_failures(&row.email).await?;
        tracing::info!(user.id = %row.id, "address changed");
        Ok(self.to_user(&moved))
    }

    /// Deletes the caller's own account, after the password (or a Google sign-in), and ends
    /// every session at once. The last active superuser cannot.
    ///
    /// # Errors
    /// Those of [`Services::require`], `LoginThrottled`, `InvalidArgument` (`password`
    /// wrong), `GoogleRejected`, `LastSuperuser`.
    #[tracing::instrument(skip_all)]
    pub async fn delete_account(
        &self,
        caller: Caller,
        credentials: Credentials,
        proof: Proof,
    ) -> ServiceResult<()> {
        let (_, row) = self.account_of(&credentials, CHANGES_ACCOUNT).await?;
        self.reauthenticate(&row, proof, "password").await?;
        self.transaction(&caller, async |tx| {
            let revoked = tx.remove_account(&row).await?;
            let entry = AuditEntry::success(AuditKind::AccountDelete, Actor::User(row.id), row.id)
                .detail(format!("sessions_revoked={revoked}"));
            tx.audit(entry).await
        })
        .await?;
        self.clear_login_failures(&row.email).await?;
        tracing::info!(user.id = %row.id, "account deleted by its owner");
        Ok(())
    }

    /// The bearer and its stored account (with what only the service layer sees).
    async fn account_of(
        &self,
        credentials: &Credentials,
        access: Access,
    ) -> ServiceResult<(Authenticated, UserRow)> {
        let me: Authenticated = self.require(credentials, access).await?;
        let row = self
            .user_by_id(me.user.id)
            .await?
            .ok_or(ServiceError::SessionRevoked)?;
        Ok((me, row))
    }

    /// Checks the proof that the caller owns `account` now. Password guesses count against
    /// the address's sign-in back-off, as a login's would.
    async fn reauthenticate(
        &self,
        account: &UserRow,
        proof: Proof,
        password_field: &'static str,
    ) -> ServiceResult<()> {
        match proof {
            Proof::Password(password) => {
                let attempt = self.reserve_login_attempt(&account.email).await?;
                let verdict = self
                    .hasher
                    .verify(password.secret(), account.password_hash.as_deref())
                    .await?;
                if !matches!(verdict, Verification::Valid { .. }) {
                    return Err(ServiceError::InvalidArgument {
                        field: password_field,
                        reason: "is not the account's password".into(),
                    });
                }
                self.forget_login_attempts(&account.email, attempt).await
            }
            Proof::Google(credential) => {
                let identity = self.verify_google(credential).await?;
                if !self.is_linked_to(&identity, account.id).await? {
                    return Err(ServiceError::GoogleRejected(
                        "this Google account is not linked to yours".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The session the caller's token belongs to.
fn current_session(me: &Authenticated) -> ServiceResult<SessionId> {
    SessionId::parse(&me.claims.sid).map_err(|_| ServiceError::TokenInvalid)
}
