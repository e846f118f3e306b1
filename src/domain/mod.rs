//! Domain types, parsed once at the edge: holding one proves its input was valid.

mod assurance;
mod audit;
mod device;
mod email;
mod factor;
mod ip_net;
mod otp;
mod page;
mod password;
mod random_id;
mod refresh_token_hash;
mod session_id;
mod uidb64;
mod user;
mod user_id;

pub use assurance::{Aal, AuthMethod, AuthMethods};
pub use audit::{Actor, AuditKind, AuditOutcome};
pub use device::DeviceName;
pub use email::{Email, EmailPrefix};
pub use factor::{FactorId, FactorKind, FactorName, RECOVERY_CODE_CHARS, RecoveryCode};
pub use ip_net::{IpNet, canonical as canonical_ip, client_bucket};
pub use otp::Otp;
pub use page::{AuditPageToken, PageSize, PageToken, query_fingerprint};
pub use password::{
    LoginPassword, MAX_CHARS as PASSWORD_MAX_CHARS, MIN_CHARS as PASSWORD_MIN_CHARS, Password,
};
pub use refresh_token_hash::RefreshTokenHash;
pub use session_id::SessionId;
pub use uidb64::Uidb64;
pub use user::{PersonName, User};
pub use user_id::UserId;

/// Why a raw input was refused; the adapter adds the name of the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub(crate) String);

impl ParseError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }

    /// The human-readable reason.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// Characters that render as nothing or reorder text: refused in identities so two
/// addresses that look the same are the same.
pub(crate) fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}')
}
