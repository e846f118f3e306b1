//! Tokens handed out once and looked up by their hash: the `mfa_token` a first factor
//! answers for an account with a second factor, and the token of an emailed sign-in link.
//! 256 random bits, stored only as a SHA-256 hash.

use sha2::{Digest, Sha256};

use super::refresh::random_token;
use crate::text::hex;

/// An `mfa_token` or a sign-in link's token, as the client holds it.
pub struct ChallengeToken(String);

impl ChallengeToken {
    /// Draws a new token from the operating system's CSPRNG.
    ///
    /// # Errors
    /// When the operating system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        random_token().map(Self)
    }

    /// Wraps a token a client sent: an unknown one simply matches no stored hash.
    #[must_use]
    pub fn from_client(token: &str) -> Self {
        Self(token.trim().to_owned())
    }

    /// The hash the database stores (SHA-256, hex).
    #[must_use]
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The token, for the response.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// The token, for the email that carries it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ChallengeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeToken(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::ChallengeToken;

    #[test]
    fn tokens_are_fresh_and_hash_as_sent() {
        let token = ChallengeToken::generate().unwrap();
        let hash = token.hash();
        let sent = ChallengeToken::from_client(&format!(" {} ", token.into_string()));
        assert_eq!(sent.hash(), hash);
        assert_eq!(hash.len(), 64);
        assert_ne!(ChallengeToken::generate().unwrap().hash(), hash);
    }
}
