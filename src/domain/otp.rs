//! A one-time code as a person types it.

use std::fmt;

use super::ParseError;

/// Number of digits in every code.
pub const OTP_DIGITS: usize = 6;

/// Six ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Otp(String);

impl Otp {
    /// Parses a code, ignoring surrounding spaces.
    ///
    /// # Errors
    /// When it is not exactly six digits.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let code = raw.trim();
        if code.len() == OTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(code.to_owned()))
        } else {
            Err(ParseError::new(format!("must be {OTP_DIGITS} digits")))
        }
    }

    /// Draws a fresh code uniformly from the operating system's CSPRNG.
    ///
    /// # Errors
    /// When the operating system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        // Rejection sampling keeps every code equally likely.
        const RANGE: u32 = 1_000_000;
        const LIMIT: u32 = u32::MAX - (u32::MAX % RANGE);
        loop {
            let candidate = getrandom::u32()?;
            if candidate < LIMIT {
                return Ok(Self(format!("{:06}", candidate % RANGE)));
            }
        }
    }

    /// The digits.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Otp(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::Otp;

    #[test]
    fn accepts_six_digits_only() {
        assert_eq!(Otp::parse(" 012345 ").unwrap().expose(), "012345");
        for raw in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert!(Otp::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn generated_codes_parse_back() {
        for _ in 0..100 {
            let otp = Otp::generate().unwrap();
            assert_eq!(Otp::parse(otp.expose()).unwrap(), otp);
        }
    }
}
