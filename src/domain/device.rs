//! A session's device as the client described it: a name it chose (`x-device-name`), or its
//! user agent. Never refused, since it only labels a session: control characters are dropped,
//! whitespace is collapsed, and it is cut to a bounded length.

/// The longest device description kept, in characters.
pub const MAX_CHARS: usize = 200;

/// A client's own description of its device, cleaned for display.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceName(String);

impl DeviceName {
    /// The cleaned description of `raw`; empty when nothing printable is left.
    #[must_use]
    pub fn from_client(raw: &str) -> Self {
        let words: Vec<&str> = raw
            .split(|c: char| c.is_whitespace() || c.is_control())
            .filter(|word| !word.is_empty())
            .collect();
        Self(words.join(" ").chars().take(MAX_CHARS).collect())
    }

    /// A stored description, as it was cleaned when stored.
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The description.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{DeviceName, MAX_CHARS};

    #[test]
    fn descriptions_are_cleaned_and_bounded() {
        assert_eq!(
            DeviceName::from_client("  Pixel\t8\n\u{1b}[31m  Pro ").as_str(),
            "Pixel 8 [31m Pro"
        );
        assert_eq!(DeviceName::from_client("\u{0}\u{7}").as_str(), "");
        assert_eq!(
            DeviceName::from_client(&"é".repeat(500))
                .as_str()
                .chars()
                .count(),
            MAX_CHARS
        );
    }
}
