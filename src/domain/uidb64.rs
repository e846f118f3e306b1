//! The user id as emailed links carry it: Django's `urlsafe_base64_encode(str(pk))`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{ParseError, UserId};

/// A user id encoded for a URL path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uidb64(UserId);

impl Uidb64 {
    /// Decodes the path segment.
    ///
    /// # Errors
    /// When it is not base64 of a positive decimal id.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError::new("is not a valid link");
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim().trim_end_matches('='))
            .map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
            return Err(invalid());
        }
        let id = text.parse::<i64>().map_err(|_| invalid())?;
        UserId::parse(id).map(Self).map_err(|_| invalid())
    }

    /// The user this link is for.
    #[must_use]
    pub fn user_id(self) -> UserId {
        self.0
    }

    /// Encodes a user id for a link.
    #[must_use]
    pub fn encode(id: UserId) -> String {
        URL_SAFE_NO_PAD.encode(id.get().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{Uidb64, UserId};

    #[test]
    fn round_trips_as_django_writes_it() {
        let id = UserId::parse(42).unwrap();
        assert_eq!(Uidb64::encode(id), "NDI");
        assert_eq!(Uidb64::parse("NDI").unwrap().user_id(), id);
    }

    #[test]
    fn refuses_garbage() {
        for raw in ["", "!!", "MDA", "LTE", "YWJj"] {
            assert!(Uidb64::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }
}
