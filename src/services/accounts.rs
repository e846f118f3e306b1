//! Accounts: registration and proving the address, by emailed code or link.

use anyhow::Context;

use super::{
    Caller, NewAccount, Services, Standing,
    limits::{IpBudget, MailStream},
    link_state, to_user,
};
use crate::{
    auth::{LinkPurpose, LinkToken, LinkTokenError},
    config::VerificationMethod,
    domain::{Email, Otp, Password, PersonName, Uidb64, User},
    email::EmailedLink,
    error::{ServiceError, ServiceResult},
    storage::{OtpRow, Queries, UserRow},
};

/// Wrong guesses allowed against one code.
pub const OTP_MAX_ATTEMPTS: i32 = 5;

/// A parsed registration request.
#[derive(Debug)]
pub struct Registration {
    /// Address, unique regardless of case.
    pub email: Email,
    /// Chosen password.
    pub password: Password,
    /// Given name.
    pub first_name: PersonName,
    /// Family name.
    pub last_name: PersonName,
}

/// The answer to every resend, whether or not the address has an account.
pub const RESEND_MESSAGE: &str =
    "If an unverified account uses this address, a new email is on its way.";

impl Services {
    /// Creates an unverified account and queues its verification email(s) in the same transaction.
    ///
    /// # Errors
    /// `RateLimited`, `InvalidArgument` (password built from the email), `EmailTaken`.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        caller: Caller,
        registration: Registration,
    ) -> ServiceResult<User> {
        self.spend_ip_budget(caller, IpBudget::Register).await?;
        registration
            .password
            .check_against(&registration.email)
            .map_err(|e| ServiceError::invalid("password", &e))?;
        let password_hash = self.hasher.hash(registration.password.secret()).await?;
        let account = NewAccount {
            email: registration.email.clone(),
            password_hash: Some(password_hash),
            first_name: registration.first_name.into_inner(),
            last_name: registration.last_name.into_inner(),
            standing: Standing::Unverified,
        };
        let row = self
            .store
            .transaction(async |tx| {
                let row = self.insert_account(tx, account).await?;
                self.queue_verification(tx, &row, self.config.verification.method)
                    .await?;
                Ok::<_, ServiceError>(row)
            })
            .await?;
        // The first email opens the resend cooldown, as a resend would.
        self.spend_mail_budget(&registration.email, MailStream::Verification)
            .await
            .ok();
        self.outbox_wake.notify_one();
        tracing::info!(user.id = %row.id, "account registered");
        Ok(to_user(&row))
    }

    /// Verifies the address with the emailed code. Attempts are counted before comparing.
    ///
    /// # Errors
    /// `RateLimited`, `OtpInvalid` (also for unknown addresses), `OtpExpired`, `TooManyAttempts`.
    #[tracing::instrument(skip_all)]
    pub async fn verify_otp(&self, caller: Caller, email: Email, otp: Otp) -> ServiceResult<User> {
        self.spend_ip_budget(caller, IpBudget::Verify).await?;
        self.spend_otp_budget(&email).await?;
        let Some(user) = self.user_by_email(&email).await? else {
            return Err(ServiceError::OtpInvalid);
        };
        let now = self.clock.now_naive();
        let mut conn = self.connection().await?;
        let mut queries = conn.queries();
        let Some(stored) = queries
            .count_otp_attempt(user.id, OTP_MAX_ATTEMPTS)
            .await
            .context("counting an OTP attempt")?
        else {
            let spent = queries
                .has_otp(user.id)
                .await
                .context("looking up the OTP")?;
            return Err(if spent {
                ServiceError::TooManyAttempts
            } else {
                ServiceError::OtpInvalid
            });
        };
        let offered = self.secret.otp_hash(user.id, otp.expose());
        if !crate::auth::constant_time_eq(&offered, &stored.code_hash) {
            return Err(ServiceError::OtpInvalid);
        }
        if stored.expires_at <= now {
            return Err(ServiceError::OtpExpired);
        }
        drop(conn);
        let row = self
            .store
            .transaction(async |tx| {
                tx.mark_verified(user.id)
                    .await
                    .context("marking the user verified")?;
                tx.delete_otp(user.id)
                    .await
                    .context("deleting the used OTP")?;
                let row = tx.user_by_id(user.id).await.context("reloading the user")?;
                row.ok_or(ServiceError::OtpInvalid)
            })
            .await?;
        tracing::info!(user.id = %row.id, "email verified by code");
        Ok(to_user(&row))
    }

    /// Queues a new code (voiding the old one) for an unverified account. The answer, and the
    /// cooldown, are the same for every address.
    ///
    /// # Errors
    /// `RateLimited`, `Cooldown`.
    #[tracing::instrument(skip_all)]
    pub async fn resend_otp(&self, caller: Caller, email: Email) -> ServiceResult<&'static str> {
        self.resend(caller, email, VerificationMethod::Code).await
    }

    /// Queues a new activation link for an unverified account; same answer for every address.
    ///
    /// # Errors
    /// `RateLimited`, `Cooldown`.
    #[tracing::instrument(skip_all)]
    pub async fn resend_activation_email(
        &self,
        caller: Caller,
        email: Email,
    ) -> ServiceResult<&'static str> {
        self.resend(caller, email, VerificationMethod::Link).await
    }

    /// Verifies the address from the emailed link.
    ///
    /// # Errors
    /// `RateLimited`, `LinkInvalid` (tampered, used, unknown user), `LinkExpired`.
    #[tracing::instrument(skip_all)]
    pub async fn activate(
        &self,
        caller: Caller,
        uid: Uidb64,
        token: LinkToken,
    ) -> ServiceResult<User> {
        self.spend_ip_budget(caller, IpBudget::Verify).await?;
        let Some(user) = self.user_by_id(uid.user_id()).await? else {
            return Err(ServiceError::LinkInvalid);
        };
        self.links
            .check(
                LinkPurpose::Activation,
                &token,
                &link_state(&user),
                self.clock.now(),
                self.config.activation_link_lifetime,
            )
            .map_err(|e| match e {
                LinkTokenError::Invalid => ServiceError::LinkInvalid,
                LinkTokenError::Expired => ServiceError::LinkExpired,
            })?;
        let row = self
            .store
            .transaction(async |tx| {
                // Only the first of two racing clicks changes the row.
                let verified = tx
                    .mark_verified(user.id)
                    .await
                    .context("marking the user verified")?;
                if !verified {
                    return Err(ServiceError::LinkInvalid);
                }
                tx.delete_otp(user.id)
                    .await
                    .context("deleting the unused OTP")?;
                let row = tx.user_by_id(user.id).await.context("reloading the user")?;
                row.ok_or(ServiceError::LinkInvalid)
            })
            .await?;
        tracing::info!(user.id = %row.id, "email verified by link");
        Ok(to_user(&row))
    }

    async fn resend(
        &self,
        caller: Caller,
        email: Email,
        asked: VerificationMethod,
    ) -> ServiceResult<&'static str> {
        self.spend_ip_budget(caller, IpBudget::Email).await?;
        self.spend_mail_budget(&email, MailStream::Verification)
            .await?;
        let Some(method) = asked.within(self.config.verification.method) else {
            return Ok(RESEND_MESSAGE);
        };
        if let Some(user) = self.user_by_email(&email).await?
            && !user.is_verified
        {
            self.store
                .transaction(async |tx| self.queue_verification(tx, &user, method).await)
                .await?;
            self.outbox_wake.notify_one();
        }
        Ok(RESEND_MESSAGE)
    }

    /// Issues a code and/or link for `user` and queues the emails, inside the caller's transaction.
    async fn queue_verification(
        &self,
        tx: &mut Queries<'_>,
        user: &UserRow,
        method: VerificationMethod,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        if method.sends_code() {
            let code =
                Otp::generate().map_err(|e| anyhow::anyhow!("no randomness for the OTP: {e}"))?;
            let row = OtpRow {
                user_id: user.id,
                code_hash: self.secret.otp_hash(user.id, code.expose()),
                attempts: 0,
                created_at: now.naive_utc(),
                expires_at: (now + super::duration(self.config.otp_lifetime)).naive_utc(),
            };
            tx.replace_otp(&row).await.context("storing the OTP")?;
            let mail = self.mailer.otp(
                &user.email,
                &user.first_name,
                code.expose(),
                self.config.otp_lifetime,
                now.naive_utc(),
            );
            tx.enqueue_email(&mail)
                .await
                .context("queueing the OTP email")?;
        }
        if method.sends_link() {
            let token = self
                .links
                .make(LinkPurpose::Activation, &link_state(user), now);
            let uidb64 = Uidb64::encode(user.id);
            let link = EmailedLink {
                uidb64: &uidb64,
                token: &token,
                lifetime: self.config.activation_link_lifetime,
                now: now.naive_utc(),
            };
            let mail = self.mailer.activation(&user.email, &user.first_name, &link);
            tx.enqueue_email(&mail)
                .await
                .context("queueing the activation email")?;
        }
        Ok(())
    }

    /// Creates a verified, active staff superuser (the `create-superuser` command).
    ///
    /// # Errors
    /// `EmailTaken`, or `InvalidArgument` for a password built from the address.
    pub async fn create_superuser(&self, email: Email, password: Password) -> ServiceResult<User> {
        password
            .check_against(&email)
            .map_err(|e| ServiceError::invalid("password", &e))?;
        let account = NewAccount {
            email,
            password_hash: Some(self.hasher.hash(password.secret()).await?),
            first_name: String::new(),
            last_name: String::new(),
            standing: Standing::Superuser,
        };
        let mut conn = self.connection().await?;
        let row = self.insert_account(&mut conn.queries(), account).await?;
        tracing::info!(user.id = %row.id, "superuser created");
        Ok(to_user(&row))
    }
}
