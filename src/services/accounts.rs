//! Accounts: registration and proving the address, by emailed code or link.
//!
//! An unverified account belongs to whoever proves the mailbox. Each Register of an address
//! still unproven records a sign-up of its own, with its own password, code and link;
//! proving the address with one of them activates that sign-up's password and no other.

use anyhow::Context;

use super::{
    Caller, NewAccount, Services, Standing,
    limits::{IpBudget, MailStream},
    registration_link_state,
};
use crate::{
    auth::{LinkPurpose, LinkToken, LinkTokenError, constant_time_eq},
    config::VerificationMethod,
    domain::{Email, Otp, Password, PersonName, Uidb64, User},
    email::{EmailedLink, Notice},
    error::{ServiceError, ServiceResult},
    storage::{NewRegistration, Queries, RegistrationRow, UserRow},
};

/// Codes tried against one sign-up over its whole life, however often its code is resent.
pub const CODE_LIFETIME_TRIES: i32 = 100;

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

/// The answer to every registration, whether or not the address has an account.
pub const REGISTER_MESSAGE: &str =
    "Check your email: a message is on its way to finish signing up.";

/// The answer to every resend, whether or not the address has an account.
pub const RESEND_MESSAGE: &str =
    "If an unverified account uses this address, a new email is on its way.";

impl Services {
    /// Records a sign-up and queues its verification email(s) in the same transaction. An
    /// address with an unverified account gets a new sign-up beside the others; the owner of
    /// a verified one is sent a notice instead. The answer, its cost and its cooldown are the
    /// same in every case, so it carries no user, unless `REGISTER_REVEALS_EXISTING` is set:
    /// then a taken address is refused and the new user returned.
    ///
    /// # Errors
    /// `RateLimited`, `InvalidArgument` (password built from the email), `Cooldown`;
    /// `EmailTaken` only when revealing.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        caller: Caller,
        registration: Registration,
    ) -> ServiceResult<Option<User>> {
        self.spend_ip_budget(&caller, IpBudget::Register).await?;
        registration
            .password
            .check_against(&registration.email)
            .map_err(|e| ServiceError::invalid("password", &e))?;
        let reveals = self.config.register_reveals_existing;
        let email = registration.email.clone();
        let sign_up = async {
            let password_hash = self.hasher.hash(registration.password.secret()).await?;
            self.reset_code_tries(&registration.email).await?;
            let sign_up = NewSignUp {
                email: registration.email,
                password_hash,
                first_name: registration.first_name.into_inner(),
                last_name: registration.last_name.into_inner(),
            };
            // A concurrent first sign-up may create the account first; the second round then
            // joins it as a sign-up of its own.
            let mut created = Err(ServiceError::EmailTaken);
            for _ in 0..2 {
                created = self
                    .store
                    .transaction(async |tx| self.sign_up(tx, &sign_up, reveals).await)
                    .await;
                if !matches!(created, Err(ServiceError::EmailTaken)) || reveals {
                    break;
                }
            }
            created
        };
        let created = if reveals {
            let created = sign_up.await?;
            // The first email opens the resend cooldown, as a resend would.
            self.count_mail(&email, MailStream::Verification).await;
            created
        } else {
            self.within_mail_budget(&email, MailStream::Verification, sign_up)
                .await?
        };
        self.outbox_wake.notify_one();
        Ok(created.filter(|_| reveals).map(|row| self.to_user(&row)))
    }

    /// The transaction of [`Services::register`]: the account it signed up for, or `None`
    /// when the address was proven already (and its owner is told).
    async fn sign_up(
        &self,
        tx: &mut Queries<'_>,
        sign_up: &NewSignUp,
        reveals: bool,
    ) -> ServiceResult<Option<UserRow>> {
        let now = self.clock.now_naive();
        let user = match tx
            .user_by_email(&sign_up.email)
            .await
            .context("finding the account")?
        {
            Some(_) if reveals => return Err(ServiceError::EmailTaken),
            Some(owner) if owner.is_verified => {
                let notice =
                    self.mailer
                        .notice(Notice::SignupAttempt, &owner.email, &owner.first_name, now);
                tx.enqueue_email(&notice)
                    .await
                    .context("queueing the sign-up notice")?;
                tracing::info!(user.id = %owner.id, "sign-up attempted on a verified address");
                return Ok(None);
            }
            Some(pending) => pending,
            None => {
                let account = NewAccount {
                    email: sign_up.email.clone(),
                    password_hash: Some(sign_up.password_hash.clone()),
                    first_name: sign_up.first_name.clone(),
                    last_name: sign_up.last_name.clone(),
                    standing: Standing::Unverified,
                };
                self.insert_account(tx, account).await?
            }
        };
        let registration = tx
            .insert_registration(&NewRegistration {
                user_id: user.id,
                password_hash: Some(sign_up.password_hash.clone()),
                first_name: sign_up.first_name.clone(),
                last_name: sign_up.last_name.clone(),
                created_at: now,
            })
            .await
            .context("recording the sign-up")?;
        self.queue_verification(tx, &user, &registration, self.config.verification.method)
            .await?;
        tracing::info!(user.id = %user.id, registration.id = registration.id, "sign-up recorded");
        Ok(Some(user))
    }

    /// Verifies the address with an emailed code, activating the sign-up it was sent for.
    /// Every try is counted before the code is compared, alike for every address.
    ///
    /// # Errors
    /// `RateLimited`, `TooManyAttempts`, `OtpInvalid` (also for unknown and verified
    /// addresses), `OtpExpired`.
    #[tracing::instrument(skip_all)]
    pub async fn verify_otp(&self, caller: Caller, email: Email, otp: Otp) -> ServiceResult<User> {
        self.spend_ip_budget(&caller, IpBudget::Verify).await?;
        self.spend_otp_budget(&email).await?;
        self.spend_code_try(&email).await?;
        let Some(user) = self
            .user_by_email(&email)
            .await?
            .filter(|user| !user.is_verified)
        else {
            return Err(ServiceError::OtpInvalid);
        };
        let mut conn = self.connection().await?;
        let triable = conn
            .queries()
            .count_code_attempt(user.id, CODE_LIFETIME_TRIES)
            .await
            .context("counting a code attempt")?;
        drop(conn);
        let offered = self.secret.otp_hash(user.id, otp.expose());
        let Some(registration) = triable
            .into_iter()
            .filter(|r| {
                r.code_hash
                    .as_deref()
                    .is_some_and(|stored| constant_time_eq(&offered, stored))
            })
            .max_by_key(|r| r.id)
        else {
            return Err(ServiceError::OtpInvalid);
        };
        if registration
            .code_expires_at
            .is_none_or(|at| at <= self.clock.now_naive())
        {
            return Err(ServiceError::OtpExpired);
        }
        let row = self
            .prove_address(&user, &registration)
            .await?
            .ok_or(ServiceError::OtpInvalid)?;
        // From now on the address answers codes as one without an account does.
        self.reset_code_tries(&email).await?;
        tracing::info!(user.id = %row.id, registration.id = registration.id, "email verified by code");
        Ok(self.to_user(&row))
    }

    /// Queues a new code (voiding the old one) for the newest sign-up of an unverified
    /// account. The answer, and the cooldown, are the same for every address.
    ///
    /// # Errors
    /// `RateLimited`, `Cooldown`.
    #[tracing::instrument(skip_all)]
    pub async fn resend_otp(&self, caller: Caller, email: Email) -> ServiceResult<&'static str> {
        self.resend(caller, email, VerificationMethod::Code).await
    }

    /// Queues a new activation link for the newest sign-up of an unverified account; same
    /// answer for every address.
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

    /// Verifies the address from an emailed link, activating the sign-up it was sent for.
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
        self.spend_ip_budget(&caller, IpBudget::Verify).await?;
        let Some(user) = self
            .user_by_id(uid.user_id())
            .await?
            .filter(|user| !user.is_verified)
        else {
            return Err(ServiceError::LinkInvalid);
        };
        let mut conn = self.connection().await?;
        let registrations = conn
            .queries()
            .registrations_of(user.id)
            .await
            .context("loading the sign-ups")?;
        drop(conn);
        let mut refusal = ServiceError::LinkInvalid;
        let mut proven = None;
        for registration in registrations {
            let checked = self.links.check(
                LinkPurpose::Activation,
                &token,
                &registration_link_state(&user, &registration),
                self.clock.now(),
                self.config.activation_link_lifetime,
            );
            match checked {
                Ok(()) => {
                    proven = Some(registration);
                    break;
                }
                Err(LinkTokenError::Expired) => refusal = ServiceError::LinkExpired,
                Err(LinkTokenError::Invalid) => {}
            }
        }
        let Some(registration) = proven else {
            if matches!(refusal, ServiceError::LinkInvalid) && self.django_links.is_configured() {
                // Perhaps an activation link Django mailed before the cutover.
                self.check_django_link(&user, &token).await?;
                return self.prove_imported_address(&user).await;
            }
            return Err(refusal);
        };
        // Only the first of racing clicks proves the address.
        let row = self
            .prove_address(&user, &registration)
            .await?
            .ok_or(ServiceError::LinkInvalid)?;
        tracing::info!(user.id = %row.id, registration.id = registration.id, "email verified by link");
        Ok(self.to_user(&row))
    }

    /// Verifies the account with `registration`'s password and names, forgets every other
    /// sign-up, and ends any session a sign-up's password opened meanwhile; `None` when the
    /// account was proven first by another.
    async fn prove_address(
        &self,
        user: &UserRow,
        registration: &RegistrationRow,
    ) -> ServiceResult<Option<UserRow>> {
        let now = self.clock.now_naive();
        self.store
            .transaction(async |tx| {
                let proven = tx
                    .verify_with(user.id, registration, now)
                    .await
                    .context("verifying the account")?;
                if !proven {
                    return Ok(None);
                }
                tx.delete_registrations(user.id)
                    .await
                    .context("forgetting the other sign-ups")?;
                tx.revoke_user_sessions(user.id, now)
                    .await
                    .context("ending sessions of unproven passwords")?;
                Ok(tx.user_by_id(user.id).await.context("reloading the user")?)
            })
            .await
    }

    /// Verifies an imported account whose Django activation link came back; only the first
    /// of racing clicks does.
    async fn prove_imported_address(&self, user: &UserRow) -> ServiceResult<User> {
        let mut conn = self.connection().await?;
        let mut queries = conn.queries();
        let proven = queries
            .mark_verified(user.id)
            .await
            .context("verifying the account")?;
        if !proven {
            return Err(ServiceError::LinkInvalid);
        }
        let row = queries
            .user_by_id(user.id)
            .await
            .context("reloading the user")?
            .ok_or(ServiceError::LinkInvalid)?;
        tracing::info!(user.id = %row.id, "email verified by a link Django mailed");
        Ok(self.to_user(&row))
    }

    async fn resend(
        &self,
        caller: Caller,
        email: Email,
        asked: VerificationMethod,
    ) -> ServiceResult<&'static str> {
        self.spend_ip_budget(&caller, IpBudget::Email).await?;
        let resend = async {
            let Some(method) = asked.within(self.config.verification.method) else {
                return Ok(());
            };
            if method.sends_code() {
                self.reset_code_tries(&email).await?;
            }
            let Some(user) = self
                .user_by_email(&email)
                .await?
                .filter(|user| !user.is_verified)
            else {
                return Ok(());
            };
            self.store
                .transaction(async |tx| {
                    let newest = tx
                        .newest_registration(user.id)
                        .await
                        .context("finding the newest sign-up")?;
                    match newest {
                        Some(registration) => {
                            self.queue_verification(tx, &user, &registration, method)
                                .await
                        }
                        None => Ok(()),
                    }
                })
                .await
        };
        self.within_mail_budget(&email, MailStream::Verification, resend)
            .await?;
        self.outbox_wake.notify_one();
        Ok(RESEND_MESSAGE)
    }

    /// Issues a code and/or link for one sign-up and queues the emails, inside the caller's
    /// transaction.
    async fn queue_verification(
        &self,
        tx: &mut Queries<'_>,
        user: &UserRow,
        registration: &RegistrationRow,
        method: VerificationMethod,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        let name = &registration.first_name;
        if method.sends_code() {
            let code =
                Otp::generate().map_err(|e| anyhow::anyhow!("no randomness for the OTP: {e}"))?;
            let expires_at = (now + super::duration(self.config.otp_lifetime)).naive_utc();
            let code_hash = self.secret.otp_hash(user.id, code.expose());
            tx.set_registration_code(registration.id, &code_hash, expires_at)
                .await
                .context("storing the code")?;
            let mail = self.mailer.otp(
                &user.email,
                name,
                code.expose(),
                self.config.otp_lifetime,
                now.naive_utc(),
            );
            tx.enqueue_email(&mail)
                .await
                .context("queueing the OTP email")?;
        }
        if method.sends_link() {
            let token = self.links.make(
                LinkPurpose::Activation,
                &registration_link_state(user, registration),
                now,
            );
            let uidb64 = Uidb64::encode(user.id);
            let link = EmailedLink {
                uidb64: &uidb64,
                token: &token,
                lifetime: self.config.activation_link_lifetime,
                now: now.naive_utc(),
            };
            let mail = self.mailer.activation(&user.email, name, &link);
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
        Ok(self.to_user(&row))
    }
}

/// One sign-up, as [`Services::register`] records it.
struct NewSignUp {
    email: Email,
    password_hash: String,
    first_name: String,
    last_name: String,
}
