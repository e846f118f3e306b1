//! What the audit trail records: the kind of event, how it ended, and who did it.

use std::fmt;

use super::{ParseError, UserId};

/// A security-relevant event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A sign-in started a session (its detail names the methods and the level).
    SignIn,
    /// Failed sign-ins for one address reached the back-off.
    SignInThrottled,
    /// A spent refresh token came back and its session was revoked.
    RefreshReuse,
    /// The owner changed the password.
    PasswordChange,
    /// A reset link set a new password.
    PasswordReset,
    /// The owner asked to move to a new address.
    EmailChangeRequest,
    /// The account moved to a new address.
    EmailChange,
    /// A Google account was linked.
    GoogleLink,
    /// The owner deleted the account.
    AccountDelete,
    /// An administrator created an account.
    UserCreate,
    /// An administrator changed an account.
    UserUpdate,
    /// An administrator deleted an account.
    UserDelete,
    /// One session was ended (logout, or by its owner from the list of devices).
    SessionRevoke,
    /// Every session of the account was ended.
    LogoutAll,
    /// Every session but the caller's was ended.
    LogoutOthers,
    /// A second factor was confirmed (and, with the first, recovery codes made).
    FactorAdd,
    /// A session proved a second factor again (`StepUp`).
    StepUp,
    /// A second factor was removed.
    FactorRemove,
    /// A second factor was given another name.
    FactorRename,
    /// A new set of recovery codes replaced the old.
    RecoveryCodesRegenerate,
    /// An administrator removed every second factor of an account.
    FactorsReset,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [Self; 21] = [
        Self::SignIn,
        Self::SignInThrottled,
        Self::RefreshReuse,
        Self::PasswordChange,
        Self::PasswordReset,
        Self::EmailChangeRequest,
        Self::EmailChange,
        Self::GoogleLink,
        Self::AccountDelete,
        Self::UserCreate,
        Self::UserUpdate,
        Self::UserDelete,
        Self::SessionRevoke,
        Self::LogoutAll,
        Self::LogoutOthers,
        Self::FactorAdd,
        Self::StepUp,
        Self::FactorRemove,
        Self::FactorRename,
        Self::RecoveryCodesRegenerate,
        Self::FactorsReset,
    ];

    /// The stored and wire name, e.g. `sign_in`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInThrottled => "sign_in_throttled",
            Self::RefreshReuse => "refresh_reuse",
            Self::PasswordChange => "password_change",
            Self::PasswordReset => "password_reset",
            Self::EmailChangeRequest => "email_change_request",
            Self::EmailChange => "email_change",
            Self::GoogleLink => "google_link",
            Self::AccountDelete => "account_delete",
            Self::UserCreate => "user_create",
            Self::UserUpdate => "user_update",
            Self::UserDelete => "user_delete",
            Self::SessionRevoke => "session_revoke",
            Self::LogoutAll => "logout_all",
            Self::LogoutOthers => "logout_others",
            Self::FactorAdd => "factor_add",
            Self::StepUp => "step_up",
            Self::FactorRemove => "factor_remove",
            Self::FactorRename => "factor_rename",
            Self::RecoveryCodesRegenerate => "recovery_codes_regenerate",
            Self::FactorsReset => "factors_reset",
        }
    }

    /// Parses a kind by its name; `None` for an empty one (every kind).
    ///
    /// # Errors
    /// When it names no kind.
    pub fn parse(raw: &str) -> Result<Option<Self>, ParseError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                ParseError::new(format!("must be one of {}", names.join(", ")))
            })
    }
}

/// How an audited event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// It happened.
    Success,
    /// It was attempted and refused.
    Failure,
}

impl AuditOutcome {
    /// The stored and wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User(UserId),
    /// A backend service, by its credential's name.
    Service(String),
    /// Someone not signed in (a sign-in, a reset link).
    Anonymous,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Service(name) => write!(f, "service:{name}"),
            Self::Anonymous => f.write_str("anonymous"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Actor, AuditKind, UserId};

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()).unwrap(), Some(kind));
        }
        assert_eq!(AuditKind::parse(" ").unwrap(), None);
        assert!(AuditKind::parse("sign-in").is_err());
    }

    #[test]
    fn actors_name_themselves() {
        let user = Actor::User(UserId::parse(7).unwrap());
        assert_eq!(user.to_string(), "user:7");
        assert_eq!(
            Actor::Service("billing".into()).to_string(),
            "service:billing"
        );
    }
}
