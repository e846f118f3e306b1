//! HMAC-SHA256 under the server secret: codes are stored as keyed hashes, so a database
//! leak alone does not let anyone test the million possible codes offline.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

use crate::{domain::UserId, text::hex};

/// The server-wide secret behind every keyed hash.
#[derive(Clone)]
pub struct ServerSecret(SecretSlice<u8>);

impl ServerSecret {
    /// Wraps the secret bytes.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// The key for one `purpose`: HMAC-SHA256 keyed by the secret over the purpose's label.
    /// Each use of the secret has its own, so none can stand in for another.
    #[must_use]
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut derive = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        derive.update(purpose.as_bytes());
        derive.finalize().into_bytes().into()
    }

    /// HMAC of `parts` under a key derived for `purpose`, so one purpose's MACs never verify as another's.
    #[must_use]
    pub fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        let purpose_key = self.derive_key(purpose);
        let mut mac = Hmac::<Sha256>::new_from_slice(&purpose_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        for part in parts {
            // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The keyed hash of a one-time code for one user, as stored.
    #[must_use]
    pub fn otp_hash(&self, user_id: UserId, code: &str) -> String {
        hex(&self.mac("otp", &[&user_id.get().to_be_bytes(), code.as_bytes()]))
    }

    /// The keyed hash of a recovery code, bound to its account.
    #[must_use]
    pub fn recovery_code_hash(&self, user_id: UserId, code: &str) -> String {
        hex(&self.mac(
            "recovery-code",
            &[&user_id.get().to_be_bytes(), code.as_bytes()],
        ))
    }

    /// The keyed hash of a code sent to confirm an address change, bound to the account and
    /// the address it moves to.
    #[must_use]
    pub fn email_change_code_hash(&self, user_id: UserId, new_email: &str, code: &str) -> String {
        hex(&self.mac(
            "email-change",
            &[
                &user_id.get().to_be_bytes(),
                new_email.as_bytes(),
                code.as_bytes(),
            ],
        ))
    }
}

/// Compares two strings (or byte strings) in time independent of where they differ.
pub(crate) fn constant_time_eq(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> bool {
    let (a, b) = (a.as_ref(), b.as_ref());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{ServerSecret, UserId, constant_time_eq};

    #[test]
    fn purposes_and_users_are_kept_apart() {
        let secret = ServerSecret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let (one, two) = (UserId::parse(1).unwrap(), UserId::parse(2).unwrap());
        assert_ne!(
            secret.otp_hash(one, "123456"),
            secret.otp_hash(two, "123456")
        );
        assert_ne!(secret.mac("a", &[b"x"]), secret.mac("b", &[b"x"]));
        assert_eq!(
            secret.otp_hash(one, "123456"),
            secret.otp_hash(one, "123456")
        );
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
