//! Budgets that hold across replicas because they live in the database: per-IP request
//! windows, per-address email cooldowns, per-account code attempts and login back-off.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{
    domain::{Email, UserId, client_bucket},
    error::{ServiceError, ServiceResult},
    services::{Caller, Services},
    storage::{CounterPolicy, Queries, StoreError},
};

use super::effects::Tx;

/// The window of every per-IP budget.
const IP_WINDOW: Duration = Duration::from_secs(300);
/// The window of per-address email and code-attempt budgets.
const HOUR: Duration = Duration::from_secs(3600);
/// Code attempts per account per hour, across codes (a resend does not reset it).
const OTP_ATTEMPTS_PER_HOUR: u32 = 10;
/// Wrong guesses allowed against one code.
const CODE_TRIES: u32 = 5;
/// Failed sign-ins allowed before back-off starts.
const FREE_LOGIN_FAILURES: u32 = 5;
/// First back-off delay; it doubles with each further failure.
const FIRST_LOGIN_DELAY: Duration = Duration::from_secs(30);
/// Longest back-off delay.
const MAX_LOGIN_DELAY: Duration = Duration::from_secs(3600);
/// Failures older than this are forgotten.
const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(86_400);

/// Which per-IP budget a call spends.
#[derive(Debug, Clone, Copy)]
pub enum IpBudget {
    /// Login.
    Login,
    /// Register.
    Register,
    /// Code and link verification.
    Verify,
    /// Resends and password resets.
    Email,
    /// Refresh.
    Refresh,
}

/// Which stream of email to one address a request adds to.
#[derive(Debug, Clone, Copy)]
pub enum MailStream {
    /// Verification codes and activation links, and the notice a sign-up attempt on a
    /// verified address sends instead.
    Verification,
    /// Password reset links.
    PasswordReset,
    /// Codes that confirm a new address, sent to it (or the notice sent instead).
    EmailChange,
    /// Sign-in codes and links.
    EmailSignIn,
}

impl Services {
    /// Spends one request of the caller's per-IP budget.
    pub(crate) async fn spend_ip_budget(
        &self,
        caller: &Caller,
        budget: IpBudget,
        now: DateTime<Utc>,
    ) -> ServiceResult<()> {
        let limits = &self.config.rate_limits;
        let (name, max_hits) = match budget {
            IpBudget::Login => ("login", limits.login),
            IpBudget::Register => ("register", limits.register),
            IpBudget::Verify => ("verify", limits.verify),
            IpBudget::Email => ("email", limits.email),
            IpBudget::Refresh => ("refresh", limits.refresh),
        };
        let Some(ip) = caller.ip else { return Ok(()) };
        if max_hits == 0 {
            return Ok(());
        }
        let policy = CounterPolicy {
            window: IP_WINDOW,
            max_hits,
            cooldown: Duration::ZERO,
        };
        let client = client_bucket(ip, self.config.ipv6_client_prefix);
        self.take_hit(&format!("ip:{name}:{client}"), policy, now.naive_utc())
            .await?
            .map_err(|retry_after| ServiceError::RateLimited { retry_after })
    }

    /// Runs `send` (the work that queues an email to `email` in `stream`) within the
    /// address's mail budget: one email is counted first, refused within the cooldown or past
    /// the hourly cap, and given back when `send` fails, so a call that failed for the
    /// service's own trouble (the database, a saturated hasher) leaves no cooldown behind.
    /// Unknown addresses are counted too, so the answer never tells whether an account exists.
    pub(crate) async fn within_mail_budget<T>(
        &self,
        email: &Email,
        stream: MailStream,
        send: impl Future<Output = ServiceResult<T>>,
    ) -> ServiceResult<T> {
        let bucket = mail_bucket(email, stream);
        let policy = self.mail_policy();
        let at = self.clock.now_naive();
        {
            let mut conn = self.connection().await?;
            conn.queries()
                .take_hit(&bucket, at, policy)
                .await
                .context("counting an email against its address's budget")?
                .map_err(|retry_after| ServiceError::Cooldown { retry_after })?;
        }
        let outcome = send.await;
        if outcome.is_err() {
            self.give_back_mail_slot(email, stream, at).await;
        }
        outcome
    }

    /// Takes a slot for one email of `stream` to `email` from its address's budget: now, or
    /// when the cooldown the last one opened ends (the mail waits for it); `None` when one
    /// already waits, or the hourly budget is spent (the mail is dropped). Never a refusal:
    /// the call that sends it answers alike either way.
    pub(crate) async fn take_mail_slot(
        &self,
        email: &Email,
        stream: MailStream,
    ) -> ServiceResult<Option<NaiveDateTime>> {
        let bucket = mail_bucket(email, stream);
        let policy = self.mail_policy();
        let now = self.clock.now_naive();
        let mut conn = self.connection().await?;
        let mut queries = conn.queries();
        let wait = match queries
            .take_hit(&bucket, now, policy)
            .await
            .context("counting an email against its address's budget")?
        {
            Ok(()) => return Ok(Some(now)),
            Err(wait) if wait > policy.cooldown => return Ok(None),
            Err(wait) => wait,
        };
        let at = now + crate::clock::span(wait);
        Ok(queries
            .take_hit(&bucket, at, policy)
            .await
            .context("counting a waiting email against its address's budget")?
            .ok()
            .map(|()| at))
    }

    /// Gives back a slot [`Self::take_mail_slot`] took for a mail that was not queued after
    /// all (the call failed).
    pub(crate) async fn give_back_mail_slot(
        &self,
        email: &Email,
        stream: MailStream,
        at: NaiveDateTime,
    ) {
        let refunded = match self.connection().await {
            Ok(mut conn) => {
                conn.queries()
                    .refund_hit(&mail_bucket(email, stream), at, self.mail_policy())
                    .await
            }
            Err(error) => Err(StoreError::Unreachable(error.to_string())),
        };
        if let Err(error) = refunded {
            tracing::warn!(error = %error, "an email that was not queued stays counted");
        }
    }

    fn mail_policy(&self) -> CounterPolicy {
        CounterPolicy {
            window: HOUR,
            max_hits: self.config.resend_per_hour,
            cooldown: self.config.resend_cooldown,
        }
    }

    /// Spends one code attempt of the account's hourly budget, before the code is compared.
    pub(crate) async fn spend_otp_budget(&self, email: &Email) -> ServiceResult<()> {
        let policy = CounterPolicy {
            window: HOUR,
            max_hits: OTP_ATTEMPTS_PER_HOUR,
            cooldown: Duration::ZERO,
        };
        self.take_hit(&otp_budget_bucket(email), policy, self.clock.now_naive())
            .await?
            .map_err(|retry_after| ServiceError::RateLimited { retry_after })
    }

    /// Spends one try against the address's current code, before it is compared: five per
    /// code, counted alike for every address so the answers never tell which have accounts.
    pub(crate) async fn spend_code_try(&self, email: &Email) -> ServiceResult<()> {
        let policy = CounterPolicy {
            window: self.config.otp_lifetime,
            max_hits: CODE_TRIES,
            cooldown: Duration::ZERO,
        };
        self.take_hit(&code_tries_bucket(email), policy, self.clock.now_naive())
            .await?
            .map_err(|_| ServiceError::TooManyAttempts)
    }

    /// Spends one second-factor guess before it is checked: five against one challenge or
    /// pending factor (`against`), ten per account per hour across them all, counted alike
    /// over every transport and replica.
    pub(crate) async fn spend_second_factor_guess(
        &self,
        user_id: UserId,
        against: &str,
        now: NaiveDateTime,
    ) -> ServiceResult<()> {
        let hourly = CounterPolicy {
            window: HOUR,
            max_hits: OTP_ATTEMPTS_PER_HOUR,
            cooldown: Duration::ZERO,
        };
        self.take_hit(&second_factor_bucket(user_id), hourly, now)
            .await?
            .map_err(|retry_after| ServiceError::RateLimited { retry_after })?;
        let per_challenge = CounterPolicy {
            window: HOUR,
            max_hits: CODE_TRIES,
            cooldown: Duration::ZERO,
        };
        self.take_hit(&format!("mfa-try:{against}"), per_challenge, now)
            .await?
            .map_err(|_| ServiceError::TooManyAttempts)
    }

    /// Gives the address's next code its own tries: a new code was sent (or, for an address
    /// without an account, would have been).
    pub(crate) async fn reset_code_tries(&self, email: &Email) -> ServiceResult<()> {
        self.clear_counter(&code_tries_bucket(email)).await
    }

    /// Reserves one sign-in attempt for the address before its password is checked, so a
    /// burst of guesses is counted as it arrives: the first [`FREE_LOGIN_FAILURES`] and one
    /// more are checked, and each attempt past the free ones holds the next off for a
    /// doubling delay. Returns the attempt's number, for [`Services::forget_login_attempts`].
    pub(crate) async fn reserve_login_attempt(&self, email: &Email) -> ServiceResult<u32> {
        let mut conn = self.connection().await?;
        let reserved = conn
            .queries()
            .reserve_attempt(
                &login_bucket(email),
                self.clock.now_naive(),
                LOGIN_FAILURE_WINDOW,
                |attempt| {
                    attempt
                        .checked_sub(FREE_LOGIN_FAILURES)
                        .filter(|past| *past > 0)
                        .map(login_delay)
                },
            )
            .await
            .context("reserving a sign-in attempt")?;
        reserved.map_err(|retry_after| ServiceError::LoginThrottled { retry_after })
    }

    /// Whether the sign-in attempt numbered `attempt` is the last free one: failing it starts
    /// the back-off, which the audit trail records.
    pub(crate) fn is_burst(attempt: u32) -> bool {
        attempt == FREE_LOGIN_FAILURES
    }

    /// Gives back a successful sign-in's attempt: the count is forgotten, unless more
    /// attempts were reserved beside it (a burst keeps its count, less this one).
    pub(crate) async fn forget_login_attempts(
        &self,
        email: &Email,
        attempt: u32,
    ) -> ServiceResult<()> {
        let mut conn = self.connection().await?;
        Self::forget_login_attempt_in(&mut conn.queries(), email, attempt).await
    }

    /// [`Services::forget_login_attempts`], inside the transaction that starts the session.
    pub(crate) async fn forget_login_attempt_in(
        queries: &mut Queries<'_>,
        email: &Email,
        attempt: u32,
    ) -> ServiceResult<()> {
        queries
            .release_attempt(&login_bucket(email), attempt, FREE_LOGIN_FAILURES)
            .await
            .context("clearing login failures")?;
        Ok(())
    }

    /// Forgets an address's failed sign-ins.
    pub(crate) async fn clear_login_failures(&self, email: &Email) -> ServiceResult<()> {
        self.clear_counter(&login_bucket(email)).await
    }

    async fn clear_counter(&self, bucket: &str) -> ServiceResult<()> {
        let mut conn = self.connection().await?;
        conn.queries()
            .clear_counter(bucket)
            .await
            .context("clearing a counter")?;
        Ok(())
    }

    async fn take_hit(
        &self,
        bucket: &str,
        policy: CounterPolicy,
        now: NaiveDateTime,
    ) -> ServiceResult<Result<(), Duration>> {
        let mut conn = self.connection().await?;
        Ok(conn
            .queries()
            .take_hit(bucket, now, policy)
            .await
            .context("spending a rate-limit budget")?)
    }
}

fn mail_bucket(email: &Email, stream: MailStream) -> String {
    let name = match stream {
        MailStream::Verification => "mail:verify",
        MailStream::PasswordReset => "mail:reset",
        MailStream::EmailChange => "mail:change",
        MailStream::EmailSignIn => "mail:sign-in",
    };
    format!("{name}:{email}")
}

fn otp_budget_bucket(email: &Email) -> String {
    format!("otp:{email}")
}

fn code_tries_bucket(email: &Email) -> String {
    format!("code:{email}")
}

fn login_bucket(email: &Email) -> String {
    format!("login:{email}")
}

/// The delay after the `n`th failure past the free ones: 30 s, 60 s, 120 s, ... up to an hour.
fn login_delay(n: u32) -> Duration {
    FIRST_LOGIN_DELAY
        .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
        .min(MAX_LOGIN_DELAY)
}

impl Tx<'_, '_> {
    /// A right code for the address, in the transaction that acts on it: its tries start
    /// over, and the attempt it spent from the hourly budget is given back, so someone who
    /// signs in by email often is never held off by their own codes.
    pub(crate) async fn code_proven(&mut self, email: &Email) -> ServiceResult<()> {
        self.clear_counter(&code_tries_bucket(email))
            .await
            .context("clearing a code's tries")?;
        self.give_back_hit(&otp_budget_bucket(email))
            .await
            .context("giving back a code attempt")?;
        Ok(())
    }

    /// Gives back the guess a second factor that proved right spent, in the transaction that
    /// acts on it: someone who signs in often is never locked out by their own codes, while
    /// wrong guesses keep their count.
    pub(crate) async fn give_back_second_factor_guess(
        &mut self,
        user_id: UserId,
    ) -> ServiceResult<()> {
        self.give_back_hit(&second_factor_bucket(user_id))
            .await
            .context("giving back a second-factor guess")?;
        Ok(())
    }
}

/// The bucket of an account's second-factor guesses, across its challenges and factors.
fn second_factor_bucket(user_id: UserId) -> String {
    format!("mfa:{user_id}")
}

#[cfg(test)]
mod tests {
    use super::login_delay;

    #[test]
    fn login_delay_doubles_to_an_hour() {
        let delays: Vec<u64> = [1, 2, 3, 8, 40].map(|n| login_delay(n).as_secs()).to_vec();
        assert_eq!(delays, [30, 60, 120, 3600, 3600]);
    }
}
