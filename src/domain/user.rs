//! A user account as the rest of the system sees it: no secrets.

use chrono::{DateTime, Utc};

use super::{Email, UserId};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Database id.
    pub id: UserId,
    /// Normalised address.
    pub email: Email,
    /// Given name, possibly empty.
    pub first_name: String,
    /// Family name, possibly empty.
    pub last_name: String,
    /// May sign in.
    pub is_active: bool,
    /// Has proven the address.
    pub is_verified: bool,
    /// May read other users.
    pub is_staff: bool,
    /// Holds every permission.
    pub is_superuser: bool,
    /// Creation time.
    pub date_joined: DateTime<Utc>,
    /// Last successful sign-in.
    pub last_login: Option<DateTime<Utc>>,
}

impl User {
    /// A fingerprint of what an operator can see and change (AIP-154): an update that
    /// carries the `etag` it read is refused once the account has changed since.
    #[must_use]
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        let flags = [
            self.is_active,
            self.is_verified,
            self.is_staff,
            self.is_superuser,
        ]
        .map(|flag| if flag { '1' } else { '0' });
        let mut digest = Sha256::new();
        for part in [
            self.id.to_string().as_str(),
            self.email.as_str(),
            &self.first_name,
            &self.last_name,
            &String::from_iter(flags),
        ] {
            digest.update(part.len().to_be_bytes());
            digest.update(part.as_bytes());
        }
        let hash = digest.finalize();
        crate::text::hex(&hash[..8])
    }
}

/// Longest first or last name, as Django's `AbstractUser` allows.
pub const MAX_NAME_CHARS: usize = 150;

/// A first or last name: trimmed, possibly empty, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonName(String);

impl PersonName {
    /// Parses an optional name.
    ///
    /// # Errors
    /// When it is too long or holds control or invisible characters.
    pub fn parse(raw: &str) -> Result<Self, super::ParseError> {
        let name = raw.trim();
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(super::ParseError::new(format!(
                "must be at most {MAX_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(super::is_invisible) {
            return Err(super::ParseError::new(
                "must not contain control or invisible characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn into_inner(self) -> String {
        self.0
    }
}
