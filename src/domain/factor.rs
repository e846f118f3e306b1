//! Second factors: their ids, their kinds, their names, and recovery codes as people type them.

use std::fmt;

use super::{ParseError, random_id::random_id};

random_id!(
    /// A random factor id (a UUID in its hyphenated form).
    FactorId,
    "is not a factor id"
);

/// What kind of second factor it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    /// A time-based one-time password app (RFC 6238).
    Totp,
    /// A WebAuthn credential (a passkey or a security key).
    Passkey,
}

impl FactorKind {
    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Passkey => "passkey",
        }
    }

    /// The kind a stored name stands for.
    #[must_use]
    pub fn from_stored(stored: &str) -> Option<Self> {
        match stored {
            "totp" => Some(Self::Totp),
            "passkey" => Some(Self::Passkey),
            _ => None,
        }
    }
}

/// Longest factor name, in characters.
const NAME_MAX_CHARS: usize = 64;

/// What the owner calls a factor ("phone"), shown when they list them: trimmed, at most 64
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorName(String);

impl FactorName {
    /// Parses a name; an empty one becomes `default`.
    ///
    /// # Errors
    /// When it is too long or holds control characters.
    pub fn parse(raw: &str, default: &str) -> Result<Self, ParseError> {
        let name = raw.trim();
        if name.chars().any(char::is_control) {
            return Err(ParseError::new("must not contain control characters"));
        }
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(ParseError::new(format!(
                "must be at most {NAME_MAX_CHARS} characters"
            )));
        }
        Ok(Self(
            if name.is_empty() { default } else { name }.to_owned(),
        ))
    }

    /// Parses a name the owner must give (a new name for a factor).
    ///
    /// # Errors
    /// When it is empty, too long or holds control characters.
    pub fn parse_given(raw: &str) -> Result<Self, ParseError> {
        if raw.trim().is_empty() {
            return Err(ParseError::new("must not be empty"));
        }
        Self::parse(raw, "")
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many characters a recovery code has, without its dashes: 24 of base32's 32, 120 bits.
pub const RECOVERY_CODE_CHARS: usize = 24;

/// A recovery code as a person types it: case, spaces and dashes do not matter.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// Parses a code.
    ///
    /// # Errors
    /// When it is not 24 characters of base32 (dashes and spaces aside).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let code: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let base32 = |c: char| c.is_ascii_lowercase() || ('2'..='7').contains(&c);
        if code.chars().count() == RECOVERY_CODE_CHARS && code.chars().all(base32) {
            Ok(Self(code))
        } else {
            Err(ParseError::new("is not a recovery code"))
        }
    }

    /// A fresh code of 120 random bits.
    ///
    /// # Errors
    /// When the operating system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut code = String::with_capacity(RECOVERY_CODE_CHARS);
        for _ in 0..RECOVERY_CODE_CHARS {
            // 256 is a multiple of 32: every character is equally likely.
            let byte = getrandom::u32()?.to_le_bytes()[0];
            code.push(char::from(ALPHABET[usize::from(byte % 32)]));
        }
        Ok(Self(code))
    }

    /// The code as it is hashed: lowercase, without dashes.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The code as it is shown, in groups of four: `abcd-efgh-…`.
    #[must_use]
    pub fn to_display(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars
            .chunks(4)
            .map(|group| group.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::{FactorId, FactorName, RecoveryCode};

    #[test]
    fn factor_ids_parse_back_and_garbage_does_not() {
        let id = FactorId::generate();
        assert_eq!(FactorId::parse(id.as_str()).unwrap(), id);
        assert!(FactorId::parse("f1").is_err());
    }

    #[test]
    fn recovery_codes_parse_as_shown_in_any_case_and_carry_120_bits() {
        let code = RecoveryCode::generate().unwrap();
        let shown = code.to_display();
        assert_eq!(shown.len(), 29, "{shown}");
        assert_eq!(RecoveryCode::parse(&shown).unwrap(), code);
        assert_eq!(RecoveryCode::parse(&shown.to_uppercase()).unwrap(), code);
        assert!(RecoveryCode::parse("abcd-efgh").is_err());
        assert!(RecoveryCode::parse(&"1".repeat(24)).is_err());
        assert_ne!(RecoveryCode::generate().unwrap(), code);
    }

    #[test]
    fn names_are_bounded_and_default_when_empty() {
        assert_eq!(FactorName::parse("  ", "app").unwrap().as_str(), "app");
        assert_eq!(
            FactorName::parse(" phone ", "app").unwrap().as_str(),
            "phone"
        );
        assert!(FactorName::parse(&"x".repeat(65), "app").is_err());
        assert!(FactorName::parse("a\u{7}b", "app").is_err());
    }
}
