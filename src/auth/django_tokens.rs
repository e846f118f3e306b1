//! What the Django deployment handed out before a cutover: reset links (its
//! `PasswordResetTokenGenerator` tokens, `<timestamp base36>-<hash>`, checked as Django
//! checks them under its `SECRET_KEY` or a fallback) and simplejwt refresh tokens (HS256
//! JWTs under its signing key), so neither in someone's hands dies at the switch.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::keyed_hash::constant_time_eq;
use crate::text::hex;

/// Django's `key_salt` for these tokens.
const KEY_SALT: &str = "django.contrib.auth.tokens.PasswordResetTokenGenerator";

/// What Django's token hash covers, as Django held it when it made the link.
#[derive(Debug, Clone)]
pub struct DjangoLinkState<'a> {
    /// The user's primary key.
    pub id: i64,
    /// The `password` field, exactly as Django stored it.
    pub password: &'a str,
    /// The last sign-in (UTC), if any.
    pub last_login: Option<NaiveDateTime>,
    /// The address, exactly as Django stored it.
    pub email: &'a str,
}

/// Checks Django's tokens under its secret keys.
#[derive(Clone, Default)]
pub struct DjangoTokens {
    secrets: Vec<SecretString>,
}

/// Why a Django token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DjangoTokenError {
    /// Malformed, forged, or made for another state of the account.
    Invalid,
    /// Older than the timeout.
    Expired,
}

impl DjangoTokens {
    /// Checks tokens made under `SECRET_KEY` or one of `SECRET_KEY_FALLBACKS`; with no
    /// secret, every token is refused.
    #[must_use]
    pub fn new(secrets: Vec<SecretString>) -> Self {
        Self { secrets }
    }

    /// Whether any secret is configured.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Checks `token` for the account in `state` at `now`, within `timeout` of its making.
    ///
    /// # Errors
    /// `Invalid` or `Expired`.
    pub fn check(
        &self,
        token: &str,
        state: &DjangoLinkState<'_>,
        now: DateTime<Utc>,
        timeout: std::time::Duration,
    ) -> Result<(), DjangoTokenError> {
        let (stamp, hash) = token.split_once('-').ok_or(DjangoTokenError::Invalid)?;
        let timestamp = from_base36(stamp).ok_or(DjangoTokenError::Invalid)?;
        let valid = self
            .secrets
            .iter()
            .any(|secret| constant_time_eq(token_hash(secret, state, timestamp), hash));
        if !valid {
            return Err(DjangoTokenError::Invalid);
        }
        let age = django_seconds(now).saturating_sub(timestamp);
        if age > i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX) {
            return Err(DjangoTokenError::Expired);
        }
        Ok(())
    }
}

/// A simplejwt refresh token that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoRefresh {
    /// The `user_id` claim.
    pub user_id: i64,
    /// The `jti` claim, which makes it single-use here.
    pub jti: String,
    /// The `iat` claim: a token issued before the account's sessions were last ended here
    /// (a password change or reset, signing out everywhere, a disable) is refused.
    pub issued_at: DateTime<Utc>,
}

/// The claims of a simplejwt refresh token `identity` reads.
#[derive(serde::Deserialize)]
struct RefreshClaims {
    token_type: String,
    exp: i64,
    iat: i64,
    jti: String,
    user_id: serde_json::Value,
}

/// Checks simplejwt refresh tokens under its signing key, until the exchange window closes.
#[derive(Clone, Default)]
pub struct DjangoRefreshTokens {
    key: Option<jsonwebtoken::DecodingKey>,
    until: Option<DateTime<Utc>>,
}

impl DjangoRefreshTokens {
    /// Tokens signed with `key` (simplejwt's `SIGNING_KEY`, HS256), exchanged until `until`.
    #[must_use]
    pub fn new(key: Option<&SecretString>, until: Option<DateTime<Utc>>) -> Self {
        Self {
            key: key
                .map(|key| jsonwebtoken::DecodingKey::from_secret(key.expose_secret().as_bytes())),
            until,
        }
    }

    /// Whether `token` may be a simplejwt token this deployment exchanges now.
    #[must_use]
    pub fn accepts_now(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.key.is_some()
            && self.until.is_some_and(|until| now < until)
            && token.matches('.').count() == 2
    }

    /// Checks signature (HS256 only), `token_type`, expiry and that `iat` is present.
    ///
    /// # Errors
    /// `Invalid` (also past the window), `Expired`.
    pub fn check(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DjangoRefresh, DjangoTokenError> {
        let key = self.key.as_ref().ok_or(DjangoTokenError::Invalid)?;
        if self.until.is_none_or(|until| now >= until) {
            return Err(DjangoTokenError::Invalid);
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        // Expiry is checked against the service clock, which tests can move.
        validation.validate_exp = false;
        validation.required_spec_claims =
            std::collections::HashSet::from(["exp".to_owned(), "iat".to_owned()]);
        let claims = jsonwebtoken::decode::<RefreshClaims>(token, key, &validation)
            .map_err(|_| DjangoTokenError::Invalid)?
            .claims;
        if claims.token_type != "refresh" || claims.jti.is_empty() {
            return Err(DjangoTokenError::Invalid);
        }
        if claims.exp <= now.timestamp() {
            return Err(DjangoTokenError::Expired);
        }
        // simplejwt writes the id as the model gives it: a number, or text for some models.
        let user_id = match &claims.user_id {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or(DjangoTokenError::Invalid)?;
        let issued_at = DateTime::from_timestamp(claims.iat, 0).ok_or(DjangoTokenError::Invalid)?;
        Ok(DjangoRefresh {
            user_id,
            jti: claims.jti,
            issued_at,
        })
    }
}

/// Django's hash part: every other hex digit of `salted_hmac(KEY_SALT, value, secret)`.
fn token_hash(secret: &SecretString, state: &DjangoLinkState<'_>, timestamp: i64) -> String {
    let login = state
        .last_login
        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let value = format!(
        "{}{}{login}{timestamp}{}",
        state.id, state.password, state.email
    );
    let key = Sha256::new()
        .chain_update(KEY_SALT)
        .chain_update(secret.expose_secret())
        .finalize();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(value.as_bytes());
    hex(&mac.finalize().into_bytes())
        .chars()
        .step_by(2)
        .collect()
}

/// Seconds since 2001-01-01, Django's epoch for these tokens.
fn django_seconds(now: DateTime<Utc>) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(2001, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc().timestamp())
        .unwrap_or_default();
    now.timestamp() - epoch
}

fn from_base36(raw: &str) -> Option<i64> {
    // Django refuses more than 13 digits, which would overflow an i64 anyway.
    if raw.is_empty() || raw.len() > 13 {
        return None;
    }
    i64::from_str_radix(raw, 36).ok().filter(|n| *n >= 0)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use secrecy::SecretString;

    use super::{
        DjangoLinkState, DjangoRefresh, DjangoRefreshTokens, DjangoTokenError, DjangoTokens,
    };

    /// Made by Django 5.1's `default_token_generator` with this key, for this state, at
    /// 2024-06-02T00:00:00 (Django's `_make_token_with_timestamp`).
    const KEY: &str = "django-insecure-import-test-key";
    const TOKEN: &str = "c7yw00-e8a5024374d4f253ed4482b9c4c1d5e5";

    fn state() -> DjangoLinkState<'static> {
        DjangoLinkState {
            id: 100,
            password: "pbkdf2_sha256$1000$N3YY7ySvzEuLpyC8kSPGOv$vrS4iYw/dFf6/DAx/cz2Quisw72bthTbFT/kQ0y+Ueo=",
            last_login: NaiveDate::from_ymd_opt(2024, 6, 1).and_then(|d| d.and_hms_opt(8, 30, 0)),
            email: "Ada@example.com",
        }
    }

    /// Made by simplejwt 5.3.1's `RefreshToken.for_user` under `KEY`, for user 100; it
    /// expires at 1796330976.
    const REFRESH: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCIsImV4cCI6MTc5NjMzMDk3NiwiaWF0IjoxNzk2MjQ0NTc2LCJqdGkiOiI5NmFjNGQzN2I1Y2Y0ZGE3OTYxZTBiNDYwYWVlMDllNCIsInVzZXJfaWQiOjEwMH0.bec4FbxZXmdyeFRAYH5cxRGPNfp4ngbGKq0gWRNAhEY";

    #[test]
    fn a_simplejwt_refresh_token_checks_until_it_or_the_window_ends() {
        let key = SecretString::from(KEY);
        let issued = Utc.timestamp_opt(1_796_244_576, 0).unwrap();
        let window = issued + chrono::Duration::days(30);
        let tokens = DjangoRefreshTokens::new(Some(&key), Some(window));
        assert!(tokens.accepts_now(REFRESH, issued));
        assert_eq!(
            tokens.check(REFRESH, issued),
            Ok(DjangoRefresh {
                user_id: 100,
                jti: "96ac4d37b5cf4da7961e0b460aee09e4".into(),
                issued_at: issued,
            })
        );
        // simplejwt always writes `iat`; a token without one cannot be placed in time.
        let without_iat = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({
                "token_type": "refresh", "exp": 1_796_330_976, "jti": "no-iat", "user_id": 100
            }),
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            tokens.check(&without_iat, issued),
            Err(DjangoTokenError::Invalid)
        );
        let expired = Utc.timestamp_opt(1_796_330_976, 0).unwrap();
        assert_eq!(
            tokens.check(REFRESH, expired),
            Err(DjangoTokenError::Expired)
        );
        let closed = DjangoRefreshTokens::new(Some(&key), Some(issued));
        assert!(!closed.accepts_now(REFRESH, issued));
        assert_eq!(
            closed.check(REFRESH, issued),
            Err(DjangoTokenError::Invalid)
        );
        let other = SecretString::from("another key entirely, long enough");
        let unkeyed = DjangoRefreshTokens::new(Some(&other), Some(window));
        assert_eq!(
            unkeyed.check(REFRESH, issued),
            Err(DjangoTokenError::Invalid)
        );
        let (head, rest) = REFRESH.split_once('.').unwrap();
        let none_alg = format!("{}.{rest}", head.replace('J', "K"));
        assert_eq!(
            tokens.check(&none_alg, issued),
            Err(DjangoTokenError::Invalid)
        );
        assert!(!DjangoRefreshTokens::default().accepts_now(REFRESH, issued));
    }

    #[test]
    fn a_token_django_made_checks_until_it_expires_and_only_for_its_state() {
        let tokens = DjangoTokens::new(vec![
            SecretString::from("a newer key"),
            SecretString::from(KEY),
        ]);
        let made = Utc.with_ymd_and_hms(2024, 6, 2, 0, 0, 0).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let token = TOKEN;
        assert_eq!(tokens.check(token, &state(), made, day), Ok(()));
        let late = made + chrono::Duration::seconds(86_401);
        assert_eq!(
            tokens.check(token, &state(), late, day),
            Err(DjangoTokenError::Expired)
        );
        let changed = DjangoLinkState {
            password: "pbkdf2_sha256$1000$other",
            ..state()
        };
        assert_eq!(
            tokens.check(token, &changed, made, day),
            Err(DjangoTokenError::Invalid)
        );
        let other_case = DjangoLinkState {
            email: "ada@example.com",
            ..state()
        };
        assert_eq!(
            tokens.check(token, &other_case, made, day),
            Err(DjangoTokenError::Invalid)
        );
        let unkeyed = DjangoTokens::new(vec![SecretString::from("not the key")]);
        assert_eq!(
            unkeyed.check(token, &state(), made, day),
            Err(DjangoTokenError::Invalid)
        );
        for garbage in ["", "-", "zzzzzzzzzzzzzz-abc", "nohyphen"] {
            assert_eq!(
                tokens.check(garbage, &state(), made, day),
                Err(DjangoTokenError::Invalid)
            );
        }
    }
}
