//! The integer id of a user, as Django numbers them.

use std::fmt;

use super::ParseError;

/// A positive user id. Stored as `BigInt` (see `storage::values`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::BigInt)]
pub struct UserId(i64);

impl UserId {
    /// Parses an id from the wire.
    ///
    /// # Errors
    /// When it is not positive.
    pub fn parse(raw: i64) -> Result<Self, ParseError> {
        if raw > 0 {
            Ok(Self(raw))
        } else {
            Err(ParseError::new("must be a positive integer"))
        }
    }

    /// Rebuilds an id the database assigned.
    pub(crate) fn from_trusted(id: i64) -> Self {
        Self(id)
    }

    /// The number.
    #[must_use]
    pub fn get(self) -> i64 {
        self.0
    }

    /// The number, borrowed, for the database to bind.
    pub(crate) fn as_i64(&self) -> &i64 {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
