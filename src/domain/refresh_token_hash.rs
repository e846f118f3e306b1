//! The stored form of a refresh token, which the service layer and the storage seam share
//! (the token itself stays in `auth`).

use sha2::{Digest, Sha256};

use crate::text::hex;

/// The hex SHA-256 of a refresh token: all the database holds of it. A fast hash suffices:
/// the token has full entropy. Stored as `Text`.
#[derive(
    Debug, Clone, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub struct RefreshTokenHash(String);

impl RefreshTokenHash {
    /// The hash of `token`.
    #[must_use]
    pub fn of(token: &str) -> Self {
        Self(hex(&Sha256::digest(token.as_bytes())))
    }

    /// The hash as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a hash the database holds.
    pub(crate) fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}
