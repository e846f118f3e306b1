//! Passwords as NIST SP 800-63B asks: length, a blocklist, no composition rules, never truncated.

use std::{collections::HashSet, fmt, sync::LazyLock};

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use super::{Email, ParseError};

/// Shortest password accepted, in characters after NFKC.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in characters after NFKC; bounds hashing work.
pub const MAX_CHARS: usize = 128;

/// Common and breached passwords, compared case-insensitively.
static BLOCKLIST: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(|line| line.trim().to_lowercase())
        .filter(|line| !line.is_empty())
        .collect()
});

/// A new password that meets the policy.
pub struct Password(SecretString);

impl Password {
    /// Normalises and checks a password a user is choosing.
    ///
    /// # Errors
    /// When it is too short, too long, or on the blocklist.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let normalised: String = raw.nfkc().collect();
        let chars = normalised.chars().count();
        if chars < MIN_CHARS {
            return Err(ParseError::new(format!(
                "must be at least {MIN_CHARS} characters"
            )));
        }
        if chars > MAX_CHARS {
            return Err(ParseError::new(format!(
                "must be at most {MAX_CHARS} characters"
            )));
        }
        // Unicode Cc (NUL, escapes, line breaks): invisible when typed, mangled by terminals and
        // forms, and a way to make two passwords look alike.
        if normalised.chars().any(char::is_control) {
            return Err(ParseError::new("must not contain control characters"));
        }
        if BLOCKLIST.contains(&normalised.to_lowercase()) {
            return Err(ParseError::new("is too common; choose another"));
        }
        Ok(Self(SecretString::from(normalised)))
    }

    /// Refuses a password built from the address it protects.
    ///
    /// # Errors
    /// When the password contains the address's local part (of four or more characters) or equals the address.
    pub fn check_against(&self, email: &Email) -> Result<(), ParseError> {
        let password = self.0.expose_secret().to_lowercase();
        let local = email.local_part();
        if password == email.as_str() || (local.chars().count() >= 4 && password.contains(local)) {
            return Err(ParseError::new("must not contain your email address"));
        }
        Ok(())
    }

    /// The normalised password, for hashing.
    #[must_use]
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A password offered at sign-in: normalised like a new one but not held to today's policy,
/// so accounts made under an older policy can still sign in.
pub struct LoginPassword(SecretString);

impl LoginPassword {
    /// Normalises a sign-in attempt.
    ///
    /// # Errors
    /// When it is empty or longer than any password that could have been set.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let normalised: String = raw.nfkc().collect();
        if normalised.is_empty() {
            return Err(ParseError::new("is required"));
        }
        if normalised.chars().count() > MAX_CHARS {
            return Err(ParseError::new(format!(
                "must be at most {MAX_CHARS} characters"
            )));
        }
        Ok(Self(SecretString::from(normalised)))
    }

    /// The normalised attempt, for verification.
    #[must_use]
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for LoginPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginPassword(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::{Email, MAX_CHARS, Password};

    #[test]
    fn length_is_counted_in_characters_after_nfkc() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("correct horse").is_ok());
        assert!(Password::parse(&"é".repeat(MAX_CHARS)).is_ok());
        assert!(Password::parse(&"é".repeat(MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn control_characters_are_refused_in_a_new_password_only() {
        for raw in [
            "long-enough\u{0}pass",
            "tab\tseparated-pass",
            "line\nbreak-passes",
            "del\u{7f}-password",
        ] {
            assert!(Password::parse(raw).is_err(), "{raw:?}");
        }
        assert!(super::LoginPassword::parse("long-enough\u{0}pass").is_ok());
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        assert!(Password::parse("Password123").is_err());
        assert!(Password::parse("QWERTY123").is_err());
    }

    #[test]
    fn the_email_local_part_is_refused() {
        let email = Email::parse("marguerite@example.com").unwrap();
        assert!(
            Password::parse("Marguerite2026")
                .unwrap()
                .check_against(&email)
                .is_err()
        );
        assert!(
            Password::parse("tangerine-sky-42")
                .unwrap()
                .check_against(&email)
                .is_ok()
        );
    }
}
