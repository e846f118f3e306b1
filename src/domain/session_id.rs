//! The id of a session, as access tokens carry it in `sid`.

use std::fmt;

use super::ParseError;

/// A random session id (a UUID in its hyphenated form). Stored as `Text`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub struct SessionId(String);

impl SessionId {
    /// A new, unguessable id.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Parses the `sid` of a token.
    ///
    /// # Errors
    /// When it is not a UUID.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        uuid::Uuid::try_parse(raw)
            .map(|id| Self(id.hyphenated().to_string()))
            .map_err(|_| ParseError::new("is not a session id"))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an id the database holds.
    pub(crate) fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::SessionId;

    #[test]
    fn generated_ids_parse_back_and_garbage_does_not() {
        let id = SessionId::generate();
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
        assert!(SessionId::parse("s1").is_err());
        assert!(SessionId::parse("").is_err());
    }
}
