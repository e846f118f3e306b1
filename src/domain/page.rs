//! Paging through users: a bounded page size and an opaque cursor.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{ParseError, UserId};

/// Users per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most users per page; larger requests are reduced to it (AIP-158).
pub const MAX_PAGE_SIZE: u32 = 100;

/// How many users one page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Parses a requested size: 0 means the default, above the maximum means the maximum.
    ///
    /// # Errors
    /// When it is negative.
    pub fn parse(raw: i32) -> Result<Self, ParseError> {
        match u32::try_from(raw) {
            Err(_) => Err(ParseError::new("must not be negative")),
            Ok(0) => Ok(Self(DEFAULT_PAGE_SIZE)),
            Ok(size) => Ok(Self(size.min(MAX_PAGE_SIZE))),
        }
    }

    /// The size.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where the next page starts: after this user, or at the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageToken(Option<UserId>);

impl PageToken {
    /// Parses a token from a previous page; empty means the first page.
    ///
    /// # Errors
    /// When it was not made by [`PageToken::encode`].
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() {
            return Ok(Self(None));
        }
        let invalid = || ParseError::new("is not a token from a previous page");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let id = text
            .strip_prefix("after:")
            .and_then(|id| id.parse::<i64>().ok())
            .and_then(|id| UserId::parse(id).ok())
            .ok_or_else(invalid)?;
        Ok(Self(Some(id)))
    }

    /// The token for the page after the user `last`.
    #[must_use]
    pub fn encode(last: UserId) -> String {
        URL_SAFE_NO_PAD.encode(format!("after:{last}"))
    }

    /// The user the page starts after (`None` for the first page).
    #[must_use]
    pub fn after(self) -> Option<UserId> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{PageSize, PageToken, UserId};

    #[test]
    fn sizes_are_defaulted_and_capped() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 20);
        assert_eq!(PageSize::parse(500).unwrap().get(), 100);
        assert!(PageSize::parse(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let last = UserId::parse(41).unwrap();
        assert_eq!(
            PageToken::parse(&PageToken::encode(last)).unwrap().after(),
            Some(last)
        );
        assert!(PageToken::parse("garbage!").is_err());
        assert!(PageToken::parse("NDE").is_err());
    }
}
