//! Tokens for emailed links, in the manner of Django's `PasswordResetTokenGenerator`:
//! a timestamp and an HMAC over the account's state. Nothing is stored; a token dies when
//! the state it was made for changes (the address is verified, the password changes) or
//! when it is too old.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use super::{ServerSecret, keyed_hash::constant_time_eq};
use crate::domain::{Email, UserId};

/// What a link is for; a token made for one purpose never works for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Verify the address and activate the account.
    Activation,
    /// Choose a new password.
    PasswordReset,
}

impl LinkPurpose {
    fn label(self) -> &'static str {
        match self {
            Self::Activation => "link:activation",
            Self::PasswordReset => "link:password-reset",
        }
    }
}

/// The token of an emailed link, as the person who clicked it sent it back.
#[derive(Clone)]
pub struct LinkToken(String);

impl LinkToken {
    /// Wraps a token from a link. Any text is accepted here: [`LinkTokens::check`] decides.
    #[must_use]
    pub fn from_client(token: &str) -> Self {
        Self(token.trim().to_owned())
    }

    /// The token, for the page that posts it back.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

/// The parts of an account a link token is bound to.
#[derive(Debug, Clone, Copy)]
pub struct UserState<'a> {
    /// Account id.
    pub id: UserId,
    /// Current address.
    pub email: &'a Email,
    /// Current password hash, if any.
    pub password_hash: Option<&'a str>,
    /// Last password change.
    pub password_changed_at: DateTime<Utc>,
    /// Whether the address is verified.
    pub is_verified: bool,
    /// The sign-up an activation link is for; its password is the one above.
    pub registration: Option<i64>,
}

/// Why a link token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkTokenError {
    /// Malformed, forged, for another purpose, or void because the account changed.
    #[error("invalid link token")]
    Invalid,
    /// Genuine but too old.
    #[error("expired link token")]
    Expired,
}

/// Makes and checks link tokens.
#[derive(Clone)]
pub struct LinkTokens {
    secret: ServerSecret,
}

impl LinkTokens {
    /// Tokens keyed by the server secret.
    #[must_use]
    pub fn new(secret: ServerSecret) -> Self {
        Self { secret }
    }

    /// A token for `purpose`, bound to the account's current state.
    #[must_use]
    pub fn make(&self, purpose: LinkPurpose, user: &UserState<'_>, now: DateTime<Utc>) -> String {
        let issued = now.timestamp();
        format!("{}-{}", to_base36(issued), self.mac(purpose, user, issued))
    }

    /// Checks a token against the account's current state and the allowed age.
    ///
    /// # Errors
    /// `Invalid` when it does not match; `Expired` when it matches but is older than `max_age`.
    pub fn check(
        &self,
        purpose: LinkPurpose,
        token: &LinkToken,
        user: &UserState<'_>,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<(), LinkTokenError> {
        let (stamp, mac) = token.0.split_once('-').ok_or(LinkTokenError::Invalid)?;
        let issued = from_base36(stamp).ok_or(LinkTokenError::Invalid)?;
        if !constant_time_eq(mac, self.mac(purpose, user, issued)) {
            return Err(LinkTokenError::Invalid);
        }
        let age = now.timestamp().saturating_sub(issued);
        if age < 0 || age.unsigned_abs() > max_age.as_secs() {
            return Err(LinkTokenError::Expired);
        }
        Ok(())
    }

    fn mac(&self, purpose: LinkPurpose, user: &UserState<'_>, issued: i64) -> String {
        let mac = self.secret.mac(
            purpose.label(),
            &[
                &user.id.get().to_be_bytes(),
                user.email.as_str().as_bytes(),
                user.password_hash.unwrap_or("").as_bytes(),
                &user.password_changed_at.timestamp_micros().to_be_bytes(),
                &[u8::from(user.is_verified)],
                &user.registration.unwrap_or(0).to_be_bytes(),
                &issued.to_be_bytes(),
            ],
        );
        URL_SAFE_NO_PAD.encode(mac)
    }
}

fn to_base36(mut n: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n <= 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn from_base36(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 12 {
        return None;
    }
    i64::from_str_radix(s, 36).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::{LinkPurpose, LinkToken, LinkTokenError, LinkTokens, UserState};
    use crate::{
        auth::ServerSecret,
        domain::{Email, UserId},
    };

    fn tokens() -> LinkTokens {
        LinkTokens::new(ServerSecret::new(vec![7; 32]))
    }

    fn state(email: &Email, is_verified: bool) -> UserState<'_> {
        UserState {
            id: UserId::parse(9).unwrap(),
            email,
            password_hash: Some("$argon2id$x"),
            password_changed_at: chrono::DateTime::UNIX_EPOCH,
            is_verified,
            registration: None,
        }
    }

    #[test]
    fn a_token_works_once_for_its_purpose_and_state() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        let email = Email::parse("a@example.com").unwrap();
        let state = |is_verified| state(&email, is_verified);
        let token =
            LinkToken::from_client(&tokens().make(LinkPurpose::Activation, &state(false), now));
        assert_eq!(
            tokens().check(LinkPurpose::Activation, &token, &state(false), now, day),
            Ok(())
        );
        assert_eq!(
            tokens().check(LinkPurpose::Activation, &token, &state(true), now, day),
            Err(LinkTokenError::Invalid)
        );
        assert_eq!(
            tokens().check(LinkPurpose::PasswordReset, &token, &state(false), now, day),
            Err(LinkTokenError::Invalid)
        );
        let later = now + chrono::Duration::days(2);
        assert_eq!(
            tokens().check(LinkPurpose::Activation, &token, &state(false), later, day),
            Err(LinkTokenError::Expired)
        );
        let tampered = LinkToken::from_client(&format!("{}x", token.expose()));
        assert_eq!(
            tokens().check(LinkPurpose::Activation, &tampered, &state(false), now, day),
            Err(LinkTokenError::Invalid)
        );
    }
}
