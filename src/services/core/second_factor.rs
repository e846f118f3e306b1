//! Checking a second factor and spending it, for every call that takes one: a TOTP code's time
//! step is accepted once per factor, and a recovery code once.

use anyhow::Context;

use super::{ceremonies::CeremonyKind, effects::Tx};
use crate::{
    auth::{PasskeyError, Sealed, TotpSecret, credential_key, sign_in_answer},
    domain::{AuthMethod, FactorKind, Otp, RecoveryCode, UserId},
    email::Notice,
    error::{ServiceError, ServiceResult},
    services::Caller,
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
    /// A browser's answer to a second-factor passkey ceremony (`StartPasskeySignIn` with an
    /// `mfa_token`, or for a step-up).
    Passkey {
        /// The ceremony.
        ceremony_id: String,
        /// The W3C JSON of the `PublicKeyCredential`.
        answer: serde_json::Value,
    },
}

impl Services {
    /// Passes `outcome` on; when it is a passkey refused for a counter that went back (a
    /// copy's, perhaps), first tells the owner, in a transaction of its own: the one that
    /// refused it rolled back.
    pub(crate) async fn told_of_counter_going_back<T>(
        &self,
        caller: &Caller,
        owner: UserId,
        outcome: ServiceResult<T>,
    ) -> ServiceResult<T> {
        if let Err(ServiceError::PasskeyCounterWentBack) = &outcome {
            self.transaction(caller, async |tx| {
                if let Some(account) = tx.user_by_id(owner).await.context("loading the owner")? {
                    tx.notify(Notice::PasskeyCounterWentBack, &account).await?;
                }
                Ok::<_, ServiceError>(())
            })
            .await?;
            tracing::warn!(user.id = %owner, "a passkey's counter went back");
        }
        outcome
    }

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
            SecondFactorProof::Passkey {
                ceremony_id,
                answer,
            } => {
                let ceremony = self
                    .take_ceremony(ceremony_id, CeremonyKind::SecondFactor)
                    .await?;
                if ceremony.user_id != Some(account.id) {
                    return Err(ServiceError::TokenInvalid);
                }
                let answer = sign_in_answer(answer).map_err(|e| ServiceError::InvalidArgument {
                    field: "passkey",
                    reason: e.to_string(),
                })?;
                let factor = self
                    .passkey_by_credential_id(&credential_key(answer.get_credential_id()))
                    .await
                    .context("loading the passkey")?
                    .filter(|factor| factor.user_id == account.id)
                    .ok_or(ServiceError::InvalidCredentials)?;
                let method = self
                    .prove_passkey(&factor, &answer, &ceremony.state)
                    .await?;
                self.give_back_second_factor_guess(account.id).await?;
                Ok(method)
            }
        }
    }

    /// Checks a browser's answer to a passkey ceremony (`state`) against the account's
    /// passkey `factor` it names, and records the use: the signature counter must move
    /// forward (one conditional update, so an answer counts once). A passkey that verified its
    /// user is two factors; one that did not, one.
    ///
    /// # Errors
    /// `InvalidCredentials` for an answer that fails a check, `PasskeyCounterWentBack` for one
    /// whose counter did not move forward.
    pub(crate) async fn prove_passkey(
        &mut self,
        factor: &FactorRow,
        answer: &webauthn_rs_core::proto::PublicKeyCredential,
        state: &str,
    ) -> ServiceResult<AuthMethod> {
        let services = self.services;
        let relying_party = services.relying_party()?;
        let stored = factor
            .credential
            .as_deref()
            .ok_or(ServiceError::InvalidCredentials)?;
        let mut credential: webauthn_rs_core::proto::Credential =
            serde_json::from_str(stored).context("reading a stored passkey")?;
        let result = match relying_party.finish_sign_in(answer, state, &credential) {
            Ok(result) => result,
            Err(PasskeyError::CounterWentBack) => return Err(ServiceError::PasskeyCounterWentBack),
            Err(PasskeyError::Invalid(reason)) => {
                tracing::info!(factor.id = %factor.id, reason, "a passkey answer was refused");
                return Err(ServiceError::InvalidCredentials);
            }
        };
        credential.counter = result.counter();
        credential.backup_state = result.backup_state();
        credential.backup_eligible |= result.backup_eligible();
        let updated = serde_json::to_string(&credential).context("storing a passkey")?;
        let now = self.now_naive();
        if !self
            .accept_passkey_use(&factor.id, i64::from(result.counter()), &updated, now)
            .await
            .context("recording a passkey's use")?
        {
            return Err(ServiceError::PasskeyCounterWentBack);
        }
        Ok(if result.user_verified() {
            AuthMethod::VerifiedPasskey
        } else {
            AuthMethod::Passkey
        })
    }
}
