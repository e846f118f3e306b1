//! Ids drawn at random (UUID v4, hyphenated), stored as `Text`: sessions, factors.

/// Declares a random id: `generate`, `parse` (refusing anything but a UUID with `$refusal`),
/// `as_str`, `Display`, and `from_trusted` for what the database holds.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $refusal:literal) => {
        $(#[$doc])*
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
        pub struct $name(String);

        impl $name {
            /// A new, unguessable id.
            #[must_use]
            pub fn generate() -> Self {
                Self(uuid::Uuid::new_v4().hyphenated().to_string())
            }

            /// Parses an id a client or a token sent.
            ///
            /// # Errors
            /// When it is not a UUID.
            pub fn parse(raw: &str) -> Result<Self, super::ParseError> {
                uuid::Uuid::try_parse(raw.trim())
                    .map(|id| Self(id.hyphenated().to_string()))
                    .map_err(|_| super::ParseError::new($refusal))
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

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use random_id;
