//! Signing in without a password: a code and a link mailed to a verified address, either of
//! which signs in once. The answer to a request is the same for every address; codes share
//! the budgets, cooldowns and guess counting of the other emailed codes.

use anyhow::Context;

use super::{
    Caller, Services,
    core::{
        limits::{IpBudget, MailStream},
        sign_in::{SignInOutcome, SignedIn},
    },
};
use crate::{
    auth::{ChallengeToken, constant_time_eq},
    clock::span,
    domain::{Email, Otp},
    error::{ServiceError, ServiceResult},
    storage::{EmailSignInRow, UserRow},
};

/// The answer to every request for a sign-in email, whether or not the address has an account.
pub const EMAIL_SIGN_IN_MESSAGE: &str =
    "If an account uses this address, a sign-in code is on its way.";

/// What a person brings back from the sign-in email.
#[derive(Debug)]
pub enum EmailSignInProof {
    /// The code, typed beside the address it was mailed to.
    Code {
        /// The address.
        email: Email,
        /// The 6-digit code.
        code: Otp,
    },
    /// The link's token.
    Link(ChallengeToken),
}

impl Services {
    /// Mails a verified, active account a sign-in code and link (voiding earlier ones); any
    /// other address gets nothing, and every address the same answer and cooldown.
    ///
    /// # Errors
    /// `EmailSignInDisabled`, `RateLimited`, `Cooldown`.
    #[tracing::instrument(skip_all)]
    pub async fn start_email_sign_in(
        &self,
        caller: Caller,
        email: Email,
    ) -> ServiceResult<&'static str> {
        self.ensure_email_sign_in()?;
        self.spend_ip_budget(&caller, IpBudget::Email, self.clock.now())
            .await?;
        let send = async {
            // A new code gets its own tries, as for every address.
            self.reset_code_tries(&email).await?;
            let Some(user) = self
                .user_by_email(&email)
                .await?
                .filter(|user| user.is_verified && user.is_active)
            else {
                return Ok(());
            };
            self.mail_sign_in(&caller, &user).await
        };
        self.within_mail_budget(&email, MailStream::EmailSignIn, send)
            .await?;
        Ok(EMAIL_SIGN_IN_MESSAGE)
    }

    /// Signs in with a mailed code or link, once: a session, or for an account with a second
    /// factor, its challenge. A code's tries are counted before it is compared.
    ///
    /// # Errors
    /// `EmailSignInDisabled`, `RateLimited`, `TooManyAttempts`, `OtpInvalid` or `OtpExpired`
    /// (a code), `LinkInvalid` or `LinkExpired` (a link), `AccountDisabled`.
    #[tracing::instrument(skip_all)]
    pub async fn finish_email_sign_in(
        &self,
        caller: Caller,
        proof: EmailSignInProof,
    ) -> ServiceResult<SignInOutcome> {
        self.ensure_email_sign_in()?;
        let now = self.clock.now();
        self.spend_ip_budget(&caller, IpBudget::Verify, now).await?;
        let (user, sign_in, unusable) = match &proof {
            EmailSignInProof::Code { email, code } => {
                self.spend_otp_budget(email).await?;
                self.spend_code_try(email).await?;
                let (user, sign_in) = self
                    .mailed_sign_in_of(email)
                    .await?
                    .ok_or(ServiceError::OtpInvalid)?;
                let offered = self.secret.otp_hash(user.id, code.expose());
                if !constant_time_eq(&offered, &sign_in.code_hash) {
                    return Err(ServiceError::OtpInvalid);
                }
                if sign_in.expires_at <= now.naive_utc() {
                    return Err(ServiceError::OtpExpired);
                }
                (user, sign_in, ServiceError::OtpInvalid)
            }
            EmailSignInProof::Link(token) => {
                let sign_in = self
                    .connection()
                    .await?
                    .queries()
                    .email_sign_in_by_link(&token.hash())
                    .await
                    .context("loading the sign-in link")?
                    .filter(|sign_in| sign_in.used_at.is_none())
                    .ok_or(ServiceError::LinkInvalid)?;
                if sign_in.expires_at <= now.naive_utc() {
                    return Err(ServiceError::LinkExpired);
                }
                let user = self
                    .user_by_id(sign_in.user_id)
                    .await?
                    .filter(|user| user.email == sign_in.email)
                    .ok_or(ServiceError::LinkInvalid)?;
                (user, sign_in, ServiceError::LinkInvalid)
            }
        };
        if !user.is_active {
            return Err(ServiceError::AccountDisabled);
        }
        // Spent, and the session opened, together: a failure leaves the code usable.
        let outcome = self
            .transaction_at(&caller, now, async |tx| {
                let now = tx.now_naive();
                if !tx
                    .use_email_sign_in(&sign_in.link_hash, now)
                    .await
                    .context("using the mailed sign-in")?
                {
                    return Err(unusable);
                }
                if let EmailSignInProof::Code { email, .. } = &proof {
                    tx.code_proven(email).await?;
                }
                tx.start_session(&user, SignedIn::EmailCode).await
            })
            .await?;
        tracing::info!(user.id = %user.id, "signed in by email");
        Ok(outcome)
    }

    fn ensure_email_sign_in(&self) -> ServiceResult<()> {
        if self.config.email_sign_in {
            Ok(())
        } else {
            Err(ServiceError::EmailSignInDisabled)
        }
    }

    /// The account of `email` and its unused mailed sign-in, if it has both and the sign-in
    /// was mailed to that address.
    async fn mailed_sign_in_of(
        &self,
        email: &Email,
    ) -> ServiceResult<Option<(UserRow, EmailSignInRow)>> {
        let Some(user) = self.user_by_email(email).await? else {
            return Ok(None);
        };
        let sign_in = self
            .connection()
            .await?
            .queries()
            .unused_email_sign_in(user.id)
            .await
            .context("loading the mailed sign-in")?
            .filter(|sign_in| sign_in.email == user.email);
        Ok(sign_in.map(|sign_in| (user, sign_in)))
    }

    /// Records a new sign-in code and link for `user`, replacing earlier ones, and queues
    /// the message that carries both.
    async fn mail_sign_in(&self, caller: &Caller, user: &UserRow) -> ServiceResult<()> {
        let code =
            Otp::generate().map_err(|e| anyhow::anyhow!("no randomness for the code: {e}"))?;
        let link = ChallengeToken::generate()
            .map_err(|e| anyhow::anyhow!("no randomness for the link: {e}"))?;
        let lifetime = self.config.otp_lifetime;
        self.transaction(caller, async |tx| {
            let now = tx.now_naive();
            let row = EmailSignInRow {
                link_hash: link.hash(),
                user_id: user.id,
                email: user.email.clone(),
                code_hash: self.secret.otp_hash(user.id, code.expose()),
                created_at: now,
                expires_at: now + span(lifetime),
                used_at: None,
            };
            tx.replace_email_sign_in(&row)
                .await
                .context("recording the sign-in code")?;
            let mail = self.mailer.email_sign_in(
                &user.email,
                &user.first_name,
                code.expose(),
                link.expose(),
                lifetime,
                now,
            );
            tx.queue_mail(&mail).await
        })
        .await
    }
}
