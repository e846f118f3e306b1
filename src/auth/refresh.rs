//! Opaque refresh tokens: 256 random bits handed out once, stored only as a SHA-256 hash.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::keyed_hash::ServerSecret;
use crate::domain::RefreshTokenHash;

/// The purpose under which a token's successor is derived.
const SUCCESSOR_PURPOSE: &str = "refresh-successor";

/// 256 random bits from the operating system's CSPRNG, base64url: what every opaque token
/// handed out once (refresh tokens, `mfa_token`s) is.
pub(super) fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A refresh token as the client holds it.
pub struct RefreshToken(String);

impl RefreshToken {
    /// Draws a new token from the operating system's CSPRNG.
    ///
    /// # Errors
    /// When the operating system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        random_token().map(Self)
    }

    /// Wraps a token a client sent. Any text is accepted: an unknown token simply matches
    /// no stored hash.
    #[must_use]
    pub fn from_client(token: &str) -> Self {
        Self(token.trim().to_owned())
    }

    /// The token that replaces this one when it is spent: derived under the server secret,
    /// so a retried refresh can be answered with the same successor again without the
    /// server ever storing a token it could hand out, and unguessable without the secret.
    #[must_use]
    pub fn successor(&self, secret: &ServerSecret) -> Self {
        Self(URL_SAFE_NO_PAD.encode(secret.mac(SUCCESSOR_PURPOSE, &[self.0.as_bytes()])))
    }

    /// The hash the database stores.
    #[must_use]
    pub fn hash(&self) -> RefreshTokenHash {
        RefreshTokenHash::of(&self.0)
    }

    /// The token, for the response.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// The token as sent, for telling one of another system's formats apart.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}
