//! Accounts: registration and proving the address, by emailed code or link.
//!
//! An unverified account belongs to whoever proves the mailbox. Each Register of an address
//! still unproven records a sign-up of its own, with its own password, code and link;
//! proving the address with one of them activates that sign-up's password and no other.

use anyhow::Context;
use chrono::NaiveDateTime;

use super::{
    Caller, Services,
    core::{
        accounts::{NewAccount, Standing},
        effects::Tx,
        limits::{IpBudget, MailStream},
        links::{PasswordLink, registration_link_state},
    },
};
use crate::{
    auth::{LinkPurpose, LinkToken, LinkTokenError, constant_time_eq},
    config::VerificationMethod,
    domain::{Email, Otp, Password, PersonName, Uidb64, User},
    email::{EmailedLink, Notice},
    error::{ServiceError, ServiceResult},
    storage::{NewRegistration, RegistrationRow, UserRow},
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
    /// Records a sign-up and queues its verification email in the same transaction. An
    /// address with an unverified account gets a new sign-up beside the others; the owner of
    /// a verified one is sent a notice instead. Every call is recorded and hashed, and the
    /// answer is the same in every case, whatever the address's email cooldown: the mail
    /// waits for the cooldown, or is dropped past the hourly budget. Unless
    /// `REGISTER_REVEALS_EXISTING` is set (then a taken address is refused and the new user
    /// returned), the answer carries no user.
    ///
    /// # Errors
    /// `RateLimited` (the caller's address), `InvalidArgument` (password built from the
    /// email); `EmailTaken` only when revealing.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        caller: Caller,
        registration: Registration,
    ) -> ServiceResult<Option<User>> {
        self.spend_ip_budget(&caller, IpBudget::Register, self.clock.now())
            .await?;
        registration
            .password
            .check_against(&registration.email)
            .map_err(|e| ServiceError::invalid("password", &e))?;
        let reveals = self.config.register_reveals_existing;
        let email = registration.email.clone();
        let password_hash = self.hasher.hash(registration.password.secret()).await?;
        let mail_at = self
            .take_mail_slot(&email, MailStream::Verification)
            .await?;
        let sign_up = NewSignUp {
            email: registration.email,
            password_hash,
            first_name: registration.first_name.into_inner(),
            last_name: registration.last_name.into_inner(),
            mail_at,
        };
        let created = self.record_sign_up(&caller, &sign_up, reveals).await;
        if let (Err(_), Some(at)) = (&created, mail_at) {
            self.give_back_mail_slot(&email, MailStream::Verification, at)
                .await;
        }
        let created = created?;
        Ok(created.filter(|_| reveals).map(|row| self.to_user(&row)))
    }

    /// Writes a sign-up. A concurrent first sign-up may create the account first; the
    /// second round then joins it as a sign-up of its own.
    async fn record_sign_up(
        &self,
        caller: &Caller,
        sign_up: &NewSignUp,
        reveals: bool,
    ) -> ServiceResult<Option<UserRow>> {
        // A mailed sign-up gets a new code, with tries of its own.
        if sign_up.mail_at.is_some() {
            self.reset_code_tries(&sign_up.email).await?;
        }
        let mut created = Err(ServiceError::EmailTaken);
        for _ in 0..2 {
            created = self
                .transaction(caller, async |tx| self.sign_up(tx, sign_up, reveals).await)
                .await;
            if !matches!(created, Err(ServiceError::EmailTaken)) || reveals {
                break;
            }
        }
        created
    }

    /// The transaction of [`Services::register`]: the account it signed up for, or `None`
    /// when the address was proven already (and its owner is told).
    async fn sign_up(
        &self,
        tx: &mut Tx<'_, '_>,
        sign_up: &NewSignUp,
        reveals: bool,
    ) -> ServiceResult<Option<UserRow>> {
        let now = tx.now_naive();
        let user = match tx
            .user_by_email(&sign_up.email)
            .await
            .context("finding the account")?
        {
            Some(_) if reveals => return Err(ServiceError::EmailTaken),
            Some(owner) if owner.is_verified => {
                if let Some(at) = sign_up.mail_at {
                    let mut notice = self.mailer.notice(
                        Notice::SignupAttempt,
                        &owner.email,
                        &owner.first_name,
                        now,
                    );
                    notice.next_attempt_at = at;
                    tx.queue_mail(&notice).await?;
                }
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
                tx.insert_account(account).await?
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
        if let Some(at) = sign_up.mail_at {
            self.queue_verification(
                tx,
                &user,
                &registration,
                self.config.verification.method,
                at,
            )
            .await?;
        }
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
        self.spend_ip_budget(&caller, IpBudget::Verify, self.clock.now())
            .await?;
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
            .prove_address(&caller, &user, &registration)
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
        self.spend_ip_budget(&caller, IpBudget::Verify, self.clock.now())
            .await?;
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
            .prove_address(&caller, &user, &registration)
            .await?
            .ok_or(ServiceError::LinkInvalid)?;
        tracing::info!(user.id = %row.id, registration.id = registration.id, "email verified by link");
        Ok(self.to_user(&row))
    }

    /// Verifies the account with `registration`'s names, forgets every other sign-up, and
    /// ends any session a sign-up's password opened meanwhile; `None` when the account was
    /// proven first by another. The sign-up's password is kept when it was the only one:
    /// with competing sign-ups the code or link used may have been anyone's (the newest mail
    /// in the mailbox may be a squatter's), so none is kept and the mailbox gets a link to
    /// choose one.
    async fn prove_address(
        &self,
        caller: &Caller,
        user: &UserRow,
        registration: &RegistrationRow,
    ) -> ServiceResult<Option<UserRow>> {
        self.transaction(caller, async |tx| {
            let competing = tx
                .registrations_of(user.id)
                .await
                .context("loading the sign-ups")?
                .len()
                > 1;
            let now = tx.now_naive();
            let proven = tx
                .verify_with(user.id, registration, !competing, now)
                .await
                .context("verifying the account")?;
            if !proven {
                return Ok(None);
            }
            tx.prove_mailbox(user.id).await?;
            let row = tx
                .user_by_id(user.id)
                .await
                .context("reloading the user")?
                .ok_or(ServiceError::LinkInvalid)?;
            if competing {
                tx.send_password_link(&row, PasswordLink::AfterCompetingSignUps)
                    .await?;
            }
            Ok(Some(row))
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
        self.spend_ip_budget(&caller, IpBudget::Email, self.clock.now())
            .await?;
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
            self.transaction(&caller, async |tx| {
                let newest = tx
                    .newest_registration(user.id)
                    .await
                    .context("finding the newest sign-up")?;
                match newest {
                    Some(registration) => {
                        let now = tx.now_naive();
                        self.queue_verification(tx, &user, &registration, method, now)
                            .await
                    }
                    None => Ok(()),
                }
            })
            .await
        };
        self.within_mail_budget(&email, MailStream::Verification, resend)
            .await?;
        Ok(RESEND_MESSAGE)
    }

    /// Issues a code and/or link for one sign-up and queues them in one email, sent from
    /// `send_at` on, inside the caller's transaction.
    async fn queue_verification(
        &self,
        tx: &mut Tx<'_, '_>,
        user: &UserRow,
        registration: &RegistrationRow,
        method: VerificationMethod,
        send_at: NaiveDateTime,
    ) -> ServiceResult<()> {
        let now = tx.now();
        let name = &registration.first_name;
        let code = if method.sends_code() {
            let code =
                Otp::generate().map_err(|e| anyhow::anyhow!("no randomness for the OTP: {e}"))?;
            // A code lasts its lifetime from when it is mailed.
            let expires_at = send_at + crate::clock::span(self.config.otp_lifetime);
            let code_hash = self.secret.otp_hash(user.id, code.expose());
            tx.set_registration_code(registration.id, &code_hash, expires_at)
                .await
                .context("storing the code")?;
            Some(code)
        } else {
            None
        };
        let token = method.sends_link().then(|| {
            self.links.make(
                LinkPurpose::Activation,
                &registration_link_state(user, registration),
                now,
            )
        });
        let uidb64 = Uidb64::encode(user.id);
        let link = token.as_deref().map(|token| EmailedLink {
            uidb64: &uidb64,
            token,
            lifetime: self.config.activation_link_lifetime,
            now: now.naive_utc(),
        });
        let lifetime = self.config.otp_lifetime;
        let mut mail = match (&code, &link) {
            (Some(code), Some(link)) => {
                self.mailer
                    .verification(&user.email, name, code.expose(), lifetime, link)
            }
            (Some(code), None) => {
                self.mailer
                    .otp(&user.email, name, code.expose(), lifetime, now.naive_utc())
            }
            (None, Some(link)) => self.mailer.activation(&user.email, name, link),
            (None, None) => return Ok(()),
        };
        mail.next_attempt_at = send_at;
        tx.queue_mail(&mail).await
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
        let operator = Caller::default();
        let row = self
            .transaction(&operator, async |tx| tx.insert_account(account).await)
            .await?;
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
    /// When its email may go out; `None`: it is not mailed (the address's budget is spent).
    mail_at: Option<NaiveDateTime>,
}
