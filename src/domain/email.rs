//! An email address, normalised so that one mailbox has exactly one spelling.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::{ParseError, is_invisible};

/// The longest address SMTP can carry (RFC 5321 path limit less the brackets).
const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

/// A syntactically valid email address: trimmed, NFKC-normalised and lower-cased. Stored as
/// `Text` (see `storage::values`).
#[derive(
    Clone, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub struct Email(String);

impl Email {
    /// Parses and normalises a raw address.
    ///
    /// # Errors
    /// When the address is empty, too long, malformed or holds invisible characters.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let normalised = normalise(raw)?;
        if normalised.is_empty() {
            return Err(ParseError::new("is required"));
        }
        let Some((local, domain)) = normalised.rsplit_once('@') else {
            return Err(ParseError::new("must be an email address"));
        };
        let local_ok = !local.is_empty()
            && local.chars().count() <= MAX_LOCAL_LEN
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.contains(['"', '(', ')', ',', ':', ';', '<', '>', '[', '\\', ']']);
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(ParseError::new("must be an email address"));
        }
        Ok(Self(normalised))
    }

    /// The normalised address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    #[must_use]
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(local, _)| local)
    }

    /// Rebuilds an address already stored, which was parsed when it was written.
    pub(crate) fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Addresses identify people: debug output shows only the domain.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.rsplit_once('@').map_or("", |(_, d)| d);
        write!(f, "Email(***@{domain})")
    }
}

/// The start of an address, for finding accounts: normalised as [`Email`] is, so it matches
/// the stored spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailPrefix(String);

impl EmailPrefix {
    /// Parses a prefix; `None` for an empty one, which matches every address.
    ///
    /// # Errors
    /// When it is too long or holds spaces or invisible characters.
    pub fn parse(raw: &str) -> Result<Option<Self>, ParseError> {
        let normalised = normalise(raw)?;
        Ok(Some(normalised).filter(|n| !n.is_empty()).map(Self))
    }

    /// The normalised prefix.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A `LIKE` pattern matching the addresses that start with the prefix, with `\` as the
    /// escape character, so `_` and `%` in it match only themselves.
    #[must_use]
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.0.len() + 1);
        for c in self.0.chars() {
            if matches!(c, '\\' | '%' | '_') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

/// Trimmed, NFKC-normalised and lower-cased, as every stored address is; refused when too
/// long or holding spaces or invisible characters.
fn normalise(raw: &str) -> Result<String, ParseError> {
    let normalised: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    if normalised.chars().count() > MAX_LEN {
        return Err(ParseError::new(format!(
            "must be at most {MAX_LEN} characters"
        )));
    }
    if normalised
        .chars()
        .any(|c| is_invisible(c) || c.is_whitespace())
    {
        return Err(ParseError::new(
            "must not contain spaces or invisible characters",
        ));
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::{Email, EmailPrefix};

    #[test]
    fn prefixes_are_normalised_and_match_only_themselves() {
        let prefix = EmailPrefix::parse(" Ａn_a%\\ ").unwrap().unwrap();
        assert_eq!(prefix.like_pattern(), "an\\_a\\%\\\\%");
        assert_eq!(EmailPrefix::parse("  ").unwrap(), None);
        assert!(EmailPrefix::parse("a b").is_err());
        assert!(EmailPrefix::parse(&"a".repeat(255)).is_err());
    }

    #[test]
    fn normalises_case_width_and_spaces() {
        let email = Email::parse("  Ｊohn.Doe@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "john.doe@example.com");
        assert_eq!(email.local_part(), "john.doe");
    }

    #[test]
    fn refuses_malformed_and_invisible() {
        for raw in [
            "",
            "plain",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a\u{200B}@example.com",
            "a@-x.com",
            "a..b@example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
