//! Paging through lists: a bounded page size and opaque cursors.

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
        let id = decode(raw, "after:")?
            .map(|id| UserId::parse(id).map_err(|_| invalid()))
            .transpose()?;
        Ok(Self(id))
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

/// Where the next page of the audit trail starts: before this event, or at the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditPageToken(Option<i64>);

impl AuditPageToken {
    /// Parses a token from a previous page; empty means the newest page.
    ///
    /// # Errors
    /// When it was not made by [`AuditPageToken::encode`].
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let before = decode(raw, "before:")?;
        if before.is_some_and(|id| id <= 0) {
            return Err(invalid());
        }
        Ok(Self(before))
    }

    /// The token for the page older than the event `last`.
    #[must_use]
    pub fn encode(last: i64) -> String {
        URL_SAFE_NO_PAD.encode(format!("before:{last}"))
    }

    /// The event the page starts before (`None` for the newest page).
    #[must_use]
    pub fn before(self) -> Option<i64> {
        self.0
    }
}

fn invalid() -> ParseError {
    ParseError::new("is not a token from a previous page")
}

/// The number in a token `prefix<n>`; `None` for an empty token.
fn decode(raw: &str, prefix: &str) -> Result<Option<i64>, ParseError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    text.strip_prefix(prefix)
        .and_then(|n| n.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::{AuditPageToken, PageSize, PageToken, UserId};

    #[test]
    fn audit_tokens_round_trip_and_are_not_user_tokens() {
        let token = AuditPageToken::encode(12);
        assert_eq!(AuditPageToken::parse(&token).unwrap().before(), Some(12));
        let user_token = PageToken::encode(UserId::parse(12).unwrap());
        assert!(AuditPageToken::parse(&user_token).is_err());
        assert!(PageToken::parse(&token).is_err());
    }

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
