//! Signing in with a passkey: username-first (the options name the account's passkeys) or
//! usernameless (the browser offers whichever discoverable passkey the person picks); and
//! the ceremonies that prove a passkey as a second factor (checked with the other second
//! factors, in the core). A
//! passkey that verified its user opens an `aal2` session by itself; one that did not is one
//! factor, and an account with another factor then needs it.

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use webauthn_rs_core::proto::Credential;

use super::{
    Caller, Credentials, Services,
    core::{
        access::{Access, Authenticated},
        ceremonies::{CeremonyKind, StartedCeremony},
        limits::IpBudget,
        sign_in::{SignInOutcome, SignedIn},
    },
};
use crate::{
    auth::{ChallengeToken, credential_key, sign_in_answer},
    domain::{AuthMethod, Email, FactorKind, UserId},
    error::{ServiceError, ServiceResult},
};

/// Whom a passkey ceremony is for.
#[derive(Debug)]
pub enum PasskeyCeremonyFor {
    /// Signing in to the account of this address (username-first).
    Account(Email),
    /// Signing in with whichever discoverable passkey the person picks (usernameless).
    AnyDiscoverable,
    /// The second factor of a sign-in that answered `mfa_required`, for `VerifySecondFactor`.
    Challenge(ChallengeToken),
    /// The caller's own session, for `StepUp`.
    StepUp(Credentials),
}

impl Services {
    /// Starts a passkey ceremony: a sign-in for an address, with the options naming its
    /// passkeys (an address without an account or without passkeys gets options of the same
    /// shape, naming a passkey that does not exist), or for any discoverable passkey; or a
    /// second factor, for a sign-in's challenge or the caller's step-up.
    ///
    /// # Errors
    /// `PasskeysNotConfigured`, `RateLimited`; for a second factor `TokenInvalid` or
    /// `TokenExpired` (the challenge), those of [`Services::require`], and `InvalidArgument`
    /// when the account has no passkey.
    #[tracing::instrument(skip_all)]
    pub async fn start_passkey_sign_in(
        &self,
        caller: Caller,
        purpose: PasskeyCeremonyFor,
    ) -> ServiceResult<StartedCeremony> {
        let relying_party = self.relying_party()?;
        self.spend_ip_budget(&caller, IpBudget::Login, self.clock.now())
            .await?;
        let email = match purpose {
            PasskeyCeremonyFor::Account(email) => email,
            PasskeyCeremonyFor::AnyDiscoverable => {
                let ceremony = relying_party
                    .start_sign_in(Vec::new())
                    .map_err(|e| anyhow::anyhow!("starting a passkey sign-in: {e}"))?;
                return self
                    .keep_ceremony(CeremonyKind::SignIn, None, ceremony)
                    .await;
            }
            PasskeyCeremonyFor::Challenge(token) => {
                let challenge = self
                    .connection()
                    .await?
                    .queries()
                    .mfa_challenge(&token.hash())
                    .await
                    .context("loading the challenge")?
                    .filter(|challenge| challenge.used_at.is_none())
                    .ok_or(ServiceError::TokenInvalid)?;
                if challenge.expires_at <= self.clock.now_naive() {
                    return Err(ServiceError::TokenExpired);
                }
                return self
                    .start_second_factor(challenge.user_id, "mfa_token")
                    .await;
            }
            PasskeyCeremonyFor::StepUp(credentials) => {
                let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
                return self.start_second_factor(me.user.id, "for_step_up").await;
            }
        };
        let account = self
            .user_by_email(&email)
            .await?
            .filter(|user| user.is_active);
        let passkeys = match &account {
            Some(user) => self.passkeys_of(user.id).await?,
            None => Vec::new(),
        };
        let decoy = passkeys.is_empty();
        let mut ceremony = relying_party
            .start_sign_in(passkeys)
            .map_err(|e| anyhow::anyhow!("starting a passkey sign-in: {e}"))?;
        let allowed = &mut ceremony.options["publicKey"]["allowCredentials"];
        if decoy {
            // Shaped as an account's passkeys are, stable for the address: one or two, so
            // that neither count tells that an account exists.
            let address = email.as_str().as_bytes();
            let decoys = 1 + self.secret.mac("webauthn-decoy-count", &[address])[0] % 2;
            *allowed = (0..decoys)
                .map(|nth| {
                    let id = self
                        .secret
                        .mac("webauthn-decoy-credential", &[address, &[nth]]);
                    json!({"type": "public-key", "id": URL_SAFE_NO_PAD.encode(id)})
                })
                .collect();
        } else if let Some(passkeys) = allowed.as_array_mut() {
            // Transports kept from a registration's attestation (packed or TPM) would tell a
            // real passkey from a decoy; without them the browser offers every way to one.
            for passkey in passkeys.iter_mut().filter_map(Value::as_object_mut) {
                passkey.remove("transports");
            }
        }
        let owner = account.filter(|_| !decoy).map(|user| user.id);
        self.keep_ceremony(CeremonyKind::SignIn, owner, ceremony)
            .await
    }

    /// A second-factor ceremony over the account's passkeys.
    async fn start_second_factor(
        &self,
        user_id: UserId,
        field: &'static str,
    ) -> ServiceResult<StartedCeremony> {
        let passkeys = self.passkeys_of(user_id).await?;
        if passkeys.is_empty() {
            return Err(ServiceError::InvalidArgument {
                field,
                reason: "the account has no passkey".into(),
            });
        }
        let ceremony = self
            .relying_party()?
            .start_sign_in(passkeys)
            .map_err(|e| anyhow::anyhow!("starting a passkey ceremony: {e}"))?;
        self.keep_ceremony(CeremonyKind::SecondFactor, Some(user_id), ceremony)
            .await
    }

    /// The account's passkeys, as the relying party checks them.
    async fn passkeys_of(&self, user_id: UserId) -> ServiceResult<Vec<Credential>> {
        let factors = self
            .connection()
            .await?
            .queries()
            .confirmed_factors(user_id)
            .await
            .context("loading the passkeys")?;
        let mut passkeys = Vec::new();
        for stored in factors
            .iter()
            .filter(|f| FactorKind::from_stored(&f.kind) == Some(FactorKind::Passkey))
            .filter_map(|f| f.credential.as_deref())
        {
            passkeys.push(serde_json::from_str(stored).context("reading a passkey")?);
        }
        Ok(passkeys)
    }

    /// Finishes a passkey sign-in with the browser's answer, once: a session (`aal2` when the
    /// passkey verified its user), or for one that did not on an account with a second factor,
    /// its challenge. A counter that went back refuses it and tells the owner.
    ///
    /// # Errors
    /// `PasskeysNotConfigured`, `RateLimited`, `TokenInvalid` or `TokenExpired` (the
    /// ceremony), `InvalidCredentials` (a passkey of another account, unknown, or an answer
    /// that fails a check), `PasskeyCounterWentBack`, `AccountDisabled`.
    #[tracing::instrument(skip_all)]
    pub async fn finish_passkey_sign_in(
        &self,
        caller: Caller,
        ceremony_id: &str,
        answer: &Value,
    ) -> ServiceResult<SignInOutcome> {
        self.relying_party()?;
        let now = self.clock.now();
        self.spend_ip_budget(&caller, IpBudget::Login, now).await?;
        let ceremony = self
            .take_ceremony(ceremony_id, CeremonyKind::SignIn)
            .await?;
        let answer = sign_in_answer(answer).map_err(|e| ServiceError::InvalidArgument {
            field: "credential",
            reason: e.to_string(),
        })?;
        let factor = self
            .connection()
            .await?
            .queries()
            .passkey_by_credential_id(&credential_key(answer.get_credential_id()))
            .await
            .context("loading the passkey")?
            .ok_or(ServiceError::InvalidCredentials)?;
        let owned = match ceremony.user_id {
            // Username-first: only a passkey of the account the ceremony was started for.
            Some(user_id) => user_id == factor.user_id,
            // Usernameless: the authenticator names its account, which must own the passkey.
            None => answer
                .get_user_unique_id()
                .is_some_and(|handle| handle == self.webauthn_handle(factor.user_id).as_bytes()),
        };
        if !owned {
            return Err(ServiceError::InvalidCredentials);
        }
        let user = self
            .user_by_id(factor.user_id)
            .await?
            .ok_or(ServiceError::InvalidCredentials)?;
        if !user.is_active {
            return Err(ServiceError::AccountDisabled);
        }
        let proven = self
            .transaction_at(&caller, now, async |tx| {
                tx.prove_passkey(&factor, &answer, &ceremony.state).await
            })
            .await;
        let method = self
            .told_of_counter_going_back(&caller, user.id, proven)
            .await?;
        tracing::info!(user.id = %user.id, "signed in with a passkey");
        let signed_in = if method == AuthMethod::VerifiedPasskey {
            SignedIn::VerifiedPasskey
        } else {
            SignedIn::Passkey(&factor.id)
        };
        self.start_session(&user, &caller, signed_in, now).await
    }
}
