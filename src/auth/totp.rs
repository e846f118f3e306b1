//! Time-based one-time passwords (RFC 6238) as authenticator apps make them: HMAC-SHA1, six
//! digits, 30-second steps, one step of clock skew either way, secrets of 160 bits. Which
//! step a code matched is returned, so the caller accepts each step once.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretSlice};
use totp_rs::{Builder, Secret, Totp};

use crate::text::percent_encode;

/// Bytes in a secret: 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;

/// A TOTP secret. Its `Debug` shows nothing.
pub struct TotpSecret(SecretSlice<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(******)")
    }
}

impl TotpSecret {
    /// A fresh secret from the operating system's CSPRNG.
    ///
    /// # Errors
    /// When there is no randomness to give.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Self(SecretSlice::from(bytes)))
    }

    /// A secret as stored (base32).
    ///
    /// # Errors
    /// When it is not base32 of a usable length.
    pub fn from_base32(stored: &str) -> anyhow::Result<Self> {
        let secret = Secret::try_from_base32(stored)
            .map_err(|_| anyhow::anyhow!("a stored TOTP secret is not base32"))?;
        Ok(Self(SecretSlice::from(secret.as_ref().to_vec())))
    }

    /// The secret in base32, as people type it into an app and as it is stored.
    #[must_use]
    pub fn to_base32(&self) -> String {
        Secret::from(self.0.expose_secret()).to_base32()
    }

    /// The `otpauth://` URI an app reads from a QR code: the issuer and the account's label,
    /// the secret, and the parameters spelled out.
    #[must_use]
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let (issuer, account) = (percent_encode(issuer), percent_encode(account));
        format!(
            "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
            self.to_base32()
        )
    }

    /// The time step `code` matches at `at`, within one step either way; `None` when it
    /// matches none.
    #[must_use]
    pub fn matching_step(&self, code: &str, at: DateTime<Utc>) -> Option<u64> {
        let time = u64::try_from(at.timestamp()).ok()?;
        self.totp(6)?.check(code, time)
    }

    fn totp(&self, digits: u8) -> Option<Totp> {
        Builder::new()
            .with_digits(digits)
            .with_secret(self.0.expose_secret())
            .build()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use secrecy::SecretSlice;

    use super::TotpSecret;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    /// RFC 6238, Appendix B: the SHA-1 vectors (eight digits there).
    #[test]
    fn the_rfc_6238_vectors_hold() {
        let secret = TotpSecret(SecretSlice::from(b"12345678901234567890".to_vec()));
        let totp = secret.totp(8).unwrap();
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "at {time}");
        }
        // Six digits are the last six of the eight.
        assert_eq!(secret.matching_step("287082", at(59)), Some(1));
        assert_eq!(
            secret.matching_step("005924", at(1_234_567_890)),
            Some(41_152_263)
        );
    }

    #[test]
    fn a_code_matches_one_step_of_skew_and_no_more() {
        let secret = TotpSecret::generate().unwrap();
        let now = at(1_800_000_000);
        let code = secret.totp(6).unwrap().generate(1_800_000_000).to_string();
        let step = secret.matching_step(&code, now).unwrap();
        assert_eq!(secret.matching_step(&code, at(1_800_000_030)), Some(step));
        assert_eq!(secret.matching_step(&code, at(1_799_999_970)), Some(step));
        assert_eq!(secret.matching_step(&code, at(1_800_000_090)), None);
        assert_eq!(secret.matching_step("12345", now), None);
        assert_eq!(secret.matching_step("abcdef", now), None);
    }

    #[test]
    fn the_secret_round_trips_through_base32_and_the_uri_names_it() {
        let secret = TotpSecret::generate().unwrap();
        let stored = secret.to_base32();
        assert_eq!(stored.len(), 32);
        assert_eq!(
            TotpSecret::from_base32(&stored).unwrap().to_base32(),
            stored
        );
        let uri = secret.otpauth_uri("identity", "ada@example.com");
        assert!(
            uri.starts_with("otpauth://totp/identity:ada%40example.com?secret="),
            "{uri}"
        );
        assert!(uri.contains(&stored));
        assert_eq!(format!("{secret:?}"), "TotpSecret(******)");
    }
}
