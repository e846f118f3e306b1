//! Sealing the private signing keys kept in the database under the key-encryption key from
//! configuration (ChaCha20-Poly1305), so a database dump alone holds no usable key.

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use secrecy::{ExposeSecret, SecretSlice};

/// How a sealed key is marked in its column; a value without it is a plain PEM.
const SEALED_PREFIX: &str = "sealed:v1:";
/// Bound into every seal, so a sealed value from elsewhere does not open as a signing key.
const ASSOCIATED_DATA: &[u8] = b"identity signing key";
const NONCE_LEN: usize = 12;

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

    /// The value to store for a private key PEM.
    ///
    /// # Errors
    /// When there is no randomness for the nonce.
    pub fn seal(&self, pem: &str) -> anyhow::Result<String> {
        let Some(cipher) = &self.0 else {
            return Ok(pem.to_owned());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: pem.as_bytes(),
                    aad: ASSOCIATED_DATA,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing a signing key failed"))?;
        let mut stored = nonce.to_vec();
        stored.extend(sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(stored)))
    }

    /// The private key PEM of a stored value.
    ///
    /// # Errors
    /// When the value is sealed and no key, or another key, is configured, or it is damaged.
    pub fn open(&self, stored: &str) -> anyhow::Result<String> {
        let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let cipher = self.0.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the signing keys are sealed: set KEY_ENCRYPTION_KEY")
        })?;
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| anyhow::anyhow!("a sealed signing key is damaged"))?;
        anyhow::ensure!(bytes.len() > NONCE_LEN, "a sealed signing key is damaged");
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| anyhow::anyhow!("a sealed signing key is damaged"))?;
        let pem = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: ASSOCIATED_DATA,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("a signing key does not open with this KEY_ENCRYPTION_KEY")
            })?;
        String::from_utf8(pem).map_err(|_| anyhow::anyhow!("a sealed signing key is damaged"))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretSlice;

    use super::KeyEncryption;

    #[test]
    fn sealed_keys_open_with_their_key_only() {
        let key = SecretSlice::from(vec![7u8; 32]);
        let other = SecretSlice::from(vec![8u8; 32]);
        let sealing = KeyEncryption::new(Some(&key)).unwrap();
        let sealed = sealing.seal("-----BEGIN PRIVATE KEY-----").unwrap();

        assert!(sealed.starts_with("sealed:v1:") && !sealed.contains("PRIVATE KEY"));
        assert_eq!(
            sealing.open(&sealed).unwrap(),
            "-----BEGIN PRIVATE KEY-----"
        );
        assert!(
            KeyEncryption::new(Some(&other))
                .unwrap()
                .open(&sealed)
                .is_err()
        );
        assert!(KeyEncryption::new(None).unwrap().open(&sealed).is_err());
        let plain = KeyEncryption::new(None).unwrap();
        assert_eq!(plain.seal("pem").unwrap(), "pem");
        assert_eq!(sealing.open("pem").unwrap(), "pem", "plain keys still open");
    }
}
