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

/// Where the next page starts: after this user, or at the first; bound to the filters of
/// the listing it came from (AIP-158), so it cannot continue another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageToken {
    after: Option<UserId>,
    query: Option<String>,
}

impl PageToken {
    /// Parses a token from a previous page; empty means the first page.
    ///
    /// # Errors
    /// When it was not made by [`PageToken::encode`].
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let Some((id, query)) = decode(raw, "after:")? else {
            return Ok(Self::default());
        };
        let after = UserId::parse(id).map_err(|_| invalid())?;
        Ok(Self {
            after: Some(after),
            query: Some(query),
        })
    }

    /// The token for the page after the user `last` of the listing `query` names.
    #[must_use]
    pub fn encode(last: UserId, query: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("after:{last}:{query}"))
    }

    /// The user the page starts after (`None` for the first page).
    #[must_use]
    pub fn after(&self) -> Option<UserId> {
        self.after
    }

    /// Whether the token continues the listing `query` names (a first page continues any).
    #[must_use]
    pub fn continues(&self, query: &str) -> bool {
        self.query.as_deref().is_none_or(|q| q == query)
    }
}

/// Where the next page of the audit trail starts: before this event, or at the newest;
/// bound to the listing's filters as [`PageToken`] is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditPageToken {
    before: Option<i64>,
    query: Option<String>,
}

impl AuditPageToken {
    /// Parses a token from a previous page; empty means the newest page.
    ///
    /// # Errors
    /// When it was not made by [`AuditPageToken::encode`].
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let Some((before, query)) = decode(raw, "before:")? else {
            return Ok(Self::default());
        };
        if before <= 0 {
            return Err(invalid());
        }
        Ok(Self {
            before: Some(before),
            query: Some(query),
        })
    }

    /// The token for the page older than the event `last` of the listing `query` names.
    #[must_use]
    pub fn encode(last: i64, query: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("before:{last}:{query}"))
    }

    /// The event the page starts before (`None` for the newest page).
    #[must_use]
    pub fn before(&self) -> Option<i64> {
        self.before
    }

    /// Whether the token continues the listing `query` names (a first page continues any).
    #[must_use]
    pub fn continues(&self, query: &str) -> bool {
        self.query.as_deref().is_none_or(|q| q == query)
    }
}

/// A short fingerprint of a listing's filters, for its page tokens.
#[must_use]
pub fn query_fingerprint(filters: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for filter in filters {
        digest.update(filter.len().to_be_bytes());
        digest.update(filter.as_bytes());
    }
    crate::text::hex(&digest.finalize()[..8])
}

fn invalid() -> ParseError {
    ParseError::new("is not a token from a previous page")
}

/// The position and query of a token `prefix<n>:<query>`; `None` for an empty token.
fn decode(raw: &str, prefix: &str) -> Result<Option<(i64, String)>, ParseError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let (position, query) = text
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(invalid)?;
    let position = position.parse::<i64>().map_err(|_| invalid())?;
    Ok(Some((position, query.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::{AuditPageToken, PageSize, PageToken, UserId, query_fingerprint};

    #[test]
    fn audit_tokens_round_trip_and_are_not_user_tokens() {
        let token = AuditPageToken::encode(12, "q");
        assert_eq!(AuditPageToken::parse(&token).unwrap().before(), Some(12));
        let user_token = PageToken::encode(UserId::parse(12).unwrap(), "q");
        assert!(AuditPageToken::parse(&user_token).is_err());
        assert!(PageToken::parse(&token).is_err());
    }

    #[test]
    fn tokens_continue_only_the_listing_they_came_from() {
        let query = query_fingerprint(&["ann", "true"]);
        let other = query_fingerprint(&["ann", "false"]);
        assert_ne!(query, other);
        let token =
            PageToken::parse(&PageToken::encode(UserId::parse(3).unwrap(), &query)).unwrap();
        assert!(token.continues(&query) && !token.continues(&other));
        assert!(PageToken::default().continues(&other));
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
            PageToken::parse(&PageToken::encode(last, "q"))
                .unwrap()
                .after(),
            Some(last)
        );
        assert!(PageToken::parse("garbage!").is_err());
        assert!(PageToken::parse("NDE").is_err());
    }
}
