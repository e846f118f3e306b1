//! Checking a second factor and spending it, for every call that takes one: a TOTP code's time
//! step is accepted once per factor, and a recovery code once.

use anyhow::Context;

use super::effects::Tx;
use crate::{
    auth::{Sealed, TotpSecret},
    domain::{AuthMethod, FactorKind, Otp, RecoveryCode},
    error::{ServiceError, ServiceResult},
    services::Services,
    storage::{FactorRow, UserRow},
};

/// A second factor as a caller presents it.
#[derive(Debug)]
pub enum SecondFactorProof {
    /// A code of one of the account's authenticator apps.
    Totp(Otp),
    /// One of the account's recovery codes.
    RecoveryCode(RecoveryCode),
}

impl Services {
    /// The secret of a TOTP factor, opened.
    pub(crate) fn totp_secret(&self, factor: &FactorRow) -> ServiceResult<TotpSecret> {
        let base32 = self
            .key_encryption
            .open(Sealed::TotpSecret, &factor.secret)?;
        Ok(TotpSecret::from_base32(&base32)?)
    }
}

impl Tx<'_, '_> {
    /// Checks `proof` against `account`'s second factors and spends what it matched, in this
    /// transaction; a used recovery code tells the owner how many are left. A proof that
    /// matched gives back the guess it spent.
    ///
    /// # Errors
    /// `OtpInvalid` when it matches nothing unspent.
    pub(crate) async fn prove_second_factor(
        &mut self,
        account: &UserRow,
        proof: &SecondFactorProof,
    ) -> ServiceResult<AuthMethod> {
        let services = self.services;
        let at = self.now();
        let now = at.naive_utc();
        match proof {
            SecondFactorProof::Totp(code) => {
                let factors = self
                    .confirmed_factors(account.id)
                    .await
                    .context("loading the factors")?;
                for factor in factors
                    .iter()
                    .filter(|f| FactorKind::from_stored(&f.kind) == Some(FactorKind::Totp))
                {
                    let secret = services.totp_secret(factor)?;
                    let Some(step) = secret
                        .matching_step(code.expose(), at)
                        .and_then(|step| i64::try_from(step).ok())
                    else {
                        continue;
                    };
                    if self
                        .accept_totp_step(&factor.id, step, now)
                        .await
                        .context("accepting a code's time step")?
                    {
                        self.give_back_second_factor_guess(account.id).await?;
                        return Ok(AuthMethod::Totp);
                    }
                }
                Err(ServiceError::OtpInvalid)
            }
            SecondFactorProof::RecoveryCode(code) => {
                let hash = services
                    .secret
                    .recovery_code_hash(account.id, code.expose());
                if !self
                    .spend_recovery_code(account.id, &hash, now)
                    .await
                    .context("spending a recovery code")?
                {
                    return Err(ServiceError::OtpInvalid);
                }
                let left = self
                    .recovery_codes_left(account.id)
                    .await
                    .context("counting recovery codes")?;
                let mail = services.mailer.recovery_code_used(
                    &account.email,
                    &account.first_name,
                    left,
                    now,
                );
                self.queue_mail(&mail).await?;
                self.give_back_second_factor_guess(account.id).await?;
                Ok(AuthMethod::RecoveryCode)
            }
        }
    }
}
