//! Sealing the secrets kept in the database (private signing keys, a generated
//! `SECRET_KEY`) under the key-encryption key from configuration (ChaCha20-Poly1305), so a
//! database dump alone holds no usable secret.

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use secrecy::{ExposeSecret, SecretSlice};

/// How a sealed key is marked in its column; a value without it is a plain PEM.
const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// What a sealed value is. Bound into its seal, so a value sealed as one kind never opens
/// as another (a stored secret copied into the signing-key table, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// A private signing key, as PEM.
    SigningKey,
    /// A secret the service generated for itself (`SECRET_KEY` when none is configured).
    InstanceSecret,
    /// The secret of a TOTP factor, as base32.
    TotpSecret,
}

impl Sealed {
    fn associated_data(self) -> &'static [u8] {
        match self {
            Self::SigningKey => b"identity signing key",
            Self::InstanceSecret => b"identity instance secret",
            Self::TotpSecret => b"identity totp secret",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::SigningKey => "signing key",
            Self::InstanceSecret => "stored secret",
            Self::TotpSecret => "TOTP secret",
        }
    }
}

/// Seals and opens private keys; without a key-encryption key, keys are stored as they are.
#[derive(Clone)]
pub struct KeyEncryption(Option<ChaCha20Poly1305>);

impl KeyEncryption {
    /// With `key` (32 bytes) keys are sealed; without, they are kept plain.
    ///
    /// # Errors
    /// When `key` is not 32 bytes.
    pub fn new(key: Option<&SecretSlice<u8>>) -> anyhow::Result<Self> {
        let cipher = key
            .map(|key| {
                ChaCha20Poly1305::new_from_slice(key.expose_secret())
                    .map_err(|_| anyhow::anyhow!("KEY_ENCRYPTION_KEY must be 32 bytes"))
            })
            .transpose()?;
        Ok(Self(cipher))
    }

    /// Whether keys are sealed.
    #[must_use]
    pub fn seals(&self) -> bool {
        self.0.is_some()
    }

    /// The value to store for `what`, whose plain text is `plain`: sealed, or as it is when
    /// no key-encryption key is configured.
    ///
    /// # Errors
    /// When there is no randomness for the nonce.
    pub fn seal(&self, what: Sealed, plain: &str) -> anyhow::Result<String> {
        let Some(cipher) = &self.0 else {
            return Ok(plain.to_owned());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: what.associated_data(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing a {} failed", what.name()))?;
        let mut stored = nonce.to_vec();
        stored.extend(sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(stored)))
    }

    /// Whether `stored` is sealed (a plain value was stored before a key was configured).
    #[must_use]
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// The plain text of a stored `what`.
    ///
    /// # Errors
    /// When the value is sealed and no key, or another key, is configured, or it is damaged.
    pub fn open(&self, what: Sealed, stored: &str) -> anyhow::Result<String> {
        let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let damaged = || anyhow::anyhow!("a sealed {} is damaged", what.name());
        let cipher = self.0.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the {}s are sealed: set KEY_ENCRYPTION_KEY", what.name())
        })?;
        let bytes = STANDARD.decode(sealed).map_err(|_| damaged())?;
        anyhow::ensure!(bytes.len() > NONCE_LEN, damaged());
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged())?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: what.associated_data(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "a {} does not open with this KEY_ENCRYPTION_KEY",
                    what.name()
                )
            })?;
        String::from_utf8(plain).map_err(|_| damaged())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretSlice;

    use super::{KeyEncryption, Sealed};

    #[test]
    fn sealed_keys_open_with_their_key_and_as_their_kind_only() {
        let key = SecretSlice::from(vec![7u8; 32]);
        let other = SecretSlice::from(vec![8u8; 32]);
        let sealing = KeyEncryption::new(Some(&key)).unwrap();
        let pem = "-----BEGIN PRIVATE KEY-----";
        let sealed = sealing.seal(Sealed::SigningKey, pem).unwrap();

        assert!(KeyEncryption::is_sealed(&sealed) && !sealed.contains("PRIVATE KEY"));
        assert_eq!(sealing.open(Sealed::SigningKey, &sealed).unwrap(), pem);
        assert!(
            sealing.open(Sealed::InstanceSecret, &sealed).is_err(),
            "a signing key never opens as a stored secret"
        );
        assert!(
            KeyEncryption::new(Some(&other))
                .unwrap()
                .open(Sealed::SigningKey, &sealed)
                .is_err()
        );
        let plain = KeyEncryption::new(None).unwrap();
        assert!(plain.open(Sealed::SigningKey, &sealed).is_err());
        assert_eq!(plain.seal(Sealed::InstanceSecret, "pem").unwrap(), "pem");
        assert_eq!(
            sealing.open(Sealed::SigningKey, "pem").unwrap(),
            "pem",
            "plain values still open"
        );
    }
}
