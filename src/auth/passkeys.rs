//! The WebAuthn relying party (W3C Web Authentication): the options a browser passes to
//! `navigator.credentials.create` and `.get`, and the checks of what it answers, over
//! `webauthn-rs-core`. Ceremonies prefer user verification and report whether it happened,
//! so a passkey that verified its user counts as two factors and one that did not as one.
//! The state a ceremony keeps is JSON the caller stores server side, used once.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;
use uuid::Uuid;
use webauthn_rs_core::{
    WebauthnCore,
    error::WebauthnError,
    proto::{
        AttestationConveyancePreference, AuthenticationResult, AuthenticationState, COSEAlgorithm,
        Credential, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState,
        ResidentKeyRequirement, UserVerificationPolicy,
    },
};

use crate::config::WebauthnConfig;

/// How long a browser may take over a ceremony (the options' `timeout`).
pub const CEREMONY_TIMEOUT: Duration = Duration::from_secs(300);

/// The relying party this deployment is.
pub struct RelyingParty {
    core: WebauthnCore,
}

/// A started ceremony: the options for the browser, and the state kept server side.
#[derive(Debug)]
pub struct Ceremony {
    /// The W3C JSON of `CredentialCreationOptions` or `CredentialRequestOptions`.
    pub options: Value,
    /// What finishing it needs (the challenge among it), as JSON.
    pub state: String,
}

/// Why a browser's answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// It does not decode, or fails a check (challenge, origin, signature, RP ID).
    #[error("the passkey's answer is not valid ({0})")]
    Invalid(String),
    /// Its signature counter did not move forward: perhaps a cloned authenticator.
    #[error("the passkey's signature counter went back")]
    CounterWentBack,
}

impl From<WebauthnError> for PasskeyError {
    fn from(error: WebauthnError) -> Self {
        match error {
            WebauthnError::CredentialPossibleCompromise => Self::CounterWentBack,
            // The kind of failure, never the data: it names no secret.
            other => Self::Invalid(format!("{other:?}")),
        }
    }
}

impl RelyingParty {
    /// The relying party of `config` (checked when it was read).
    ///
    /// # Errors
    /// When an origin is not a URL.
    pub fn new(config: &WebauthnConfig, name: &str) -> Result<Self, url::ParseError> {
        let origins = config
            .origins
            .iter()
            .map(|origin| url::Url::parse(origin))
            .collect::<Result<Vec<_>, _>>()?;
        let core = WebauthnCore::new_unsafe_experts_only(
            name,
            &config.rp_id,
            origins,
            CEREMONY_TIMEOUT,
            None,
            None,
        );
        Ok(Self { core })
    }

    /// Starts registering a passkey for the user whose WebAuthn handle is `handle`; the
    /// credentials in `exclude` (the account's) cannot be registered again. A discoverable
    /// credential is asked for (so the passkey can sign in without an address) but not required.
    ///
    /// # Errors
    /// When the names are empty or the state cannot be encoded.
    pub fn start_registration(
        &self,
        handle: Uuid,
        name: &str,
        display_name: &str,
        exclude: Vec<Vec<u8>>,
    ) -> Result<Ceremony, PasskeyError> {
        let builder = self
            .core
            .new_challenge_register_builder(handle.as_bytes(), name, display_name)?
            .attestation(AttestationConveyancePreference::None)
            .credential_algorithms(COSEAlgorithm::secure_algs())
            .user_verification_policy(UserVerificationPolicy::Preferred)
            .require_resident_key(false)
            .exclude_credentials(Some(exclude));
        let (mut options, state) = self.core.generate_challenge_register(builder)?;
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
        }
        Ok(Ceremony {
            options: encode(&options)?,
            state: encode(&state)?.to_string(),
        })
    }

    /// Checks a browser's answer to a registration and returns the new credential.
    ///
    /// # Errors
    /// When the answer does not decode or fails a check.
    pub fn finish_registration(
        &self,
        answer: &Value,
        state: &str,
    ) -> Result<Credential, PasskeyError> {
        let answer: RegisterPublicKeyCredential = decode_value(answer)?;
        let state: RegistrationState = decode_str(state)?;
        Ok(self.core.register_credential(&answer, &state, None)?)
    }

    /// Starts a sign-in with one of `credentials`; with none, with whichever discoverable
    /// passkey the person picks.
    ///
    /// # Errors
    /// When the state cannot be encoded.
    pub fn start_sign_in(&self, credentials: Vec<Credential>) -> Result<Ceremony, PasskeyError> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(
                credentials,
                Some(UserVerificationPolicy::Preferred),
            )?
            .allow_backup_eligible_upgrade(true);
        let (options, state) = self.core.generate_challenge_authenticate(builder)?;
        Ok(Ceremony {
            options: encode(&options)?,
            state: encode(&state)?.to_string(),
        })
    }

    /// Checks a browser's answer to a sign-in against the stored credential it names.
    ///
    /// # Errors
    /// When the answer does not decode or fails a check, or the counter went back.
    pub fn finish_sign_in(
        &self,
        answer: &PublicKeyCredential,
        state: &str,
        stored: &Credential,
    ) -> Result<AuthenticationResult, PasskeyError> {
        let state: AuthenticationState = decode_str(state)?;
        Ok(self
            .core
            .authenticate_single_credential(answer, &state, stored)?)
    }
}

/// A browser's answer to a sign-in, decoded.
///
/// # Errors
/// When it is not a `PublicKeyCredential`.
pub fn sign_in_answer(answer: &Value) -> Result<PublicKeyCredential, PasskeyError> {
    decode_value(answer)
}

/// A credential id as stored and looked up (base64url, no padding).
#[must_use]
pub fn credential_key(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The credential id a stored key names ([`credential_key`] undone).
#[must_use]
pub fn credential_id_of_key(key: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(key).ok()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Value, PasskeyError> {
    serde_json::to_value(value).map_err(|e| PasskeyError::Invalid(e.to_string()))
}

fn decode_value<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, PasskeyError> {
    T::deserialize(value).map_err(|e| PasskeyError::Invalid(e.to_string()))
}

fn decode_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(text).map_err(|e| PasskeyError::Invalid(e.to_string()))
}
