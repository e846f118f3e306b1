//! `ServiceError`: every way a call can fail, in the service layer's terms.
//!
//! Adapters turn it into their protocol's status in exactly one place (`grpc::status`).

use std::time::Duration;

use crate::{domain::ParseError, storage::StoreError};

/// The outcome of a service call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is malformed.
    #[error("{field} {reason}")]
    InvalidArgument {
        /// The field, as named on the wire.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The email is already registered.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Email and password do not match an account.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The account has not verified its email address.
    #[error("verify your email address before signing in")]
    NotVerified,
    /// The account is disabled.
    #[error("this account is disabled")]
    AccountDisabled,
    /// The code is wrong, used or was never sent.
    #[error("the code is invalid")]
    OtpInvalid,
    /// The code was right but is too old.
    #[error("the code has expired; request a new one")]
    OtpExpired,
    /// Too many wrong codes: this code, or this account for now, is locked.
    #[error("too many attempts; request a new code")]
    TooManyAttempts,
    /// The emailed link is malformed, tampered with or already used.
    #[error("the link is invalid or has already been used")]
    LinkInvalid,
    /// The emailed link is too old.
    #[error("the link has expired; request a new one")]
    LinkExpired,
    /// Another email to this address must wait.
    #[error("please wait before requesting another email")]
    Cooldown {
        /// When another request would succeed.
        retry_after: Duration,
    },
    /// This client has spent its request budget.
    #[error("too many requests; try again later")]
    RateLimited {
        /// When another request would succeed.
        retry_after: Duration,
    },
    /// The service is saturated (password hashing); nothing was done.
    #[error("the service is busy; try again shortly")]
    Busy {
        /// When another request would likely succeed.
        retry_after: Duration,
    },
    /// Too many failed sign-ins for this address.
    #[error("too many failed sign-ins; try again later")]
    LoginThrottled {
        /// When another attempt will be considered.
        retry_after: Duration,
    },
    /// No bearer token was sent.
    #[error("authentication required")]
    Unauthenticated,
    /// A token is malformed, forged, of the wrong kind, or unknown.
    #[error("the token is invalid")]
    TokenInvalid,
    /// A token is past its expiry.
    #[error("the token has expired")]
    TokenExpired,
    /// A spent refresh token came back: its whole session has been revoked.
    #[error("the refresh token was already used; the session has been revoked")]
    TokenReused,
    /// The session was logged out or revoked.
    #[error("the session has been revoked")]
    SessionRevoked,
    /// Google sign-in is not configured on this deployment.
    #[error("Google sign-in is not configured (set GOOGLE_OAUTH_CLIENT_ID)")]
    GoogleNotConfigured,
    /// Signing in by an emailed code or link is turned off (`EMAIL_SIGN_IN=false`).
    #[error("signing in by email is turned off")]
    EmailSignInDisabled,
    /// Passkeys are off: no origin a browser would run WebAuthn on is configured.
    #[error("passkeys are not configured (set WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS)")]
    PasskeysNotConfigured,
    /// A passkey's signature counter went back: perhaps a copied authenticator.
    #[error("this passkey may have been copied; sign in another way and replace it")]
    PasskeyCounterWentBack,
    /// Google refused the credential, or it was minted for another application.
    #[error("{0}")]
    GoogleRejected(String),
    /// Google says the address is not verified.
    #[error("Google has not verified this email address")]
    GoogleEmailUnverified,
    /// The address belongs to an account Google is not authoritative for.
    #[error("an account with this email already exists; sign in with your password first")]
    GoogleLinkRefused,
    /// Google could not be reached in time.
    #[error("Google is unavailable; try again later")]
    GoogleUnavailable,
    /// The caller may not do this.
    #[error("you do not have permission to do this")]
    PermissionDenied,
    /// The call needs a second factor proven in this session within `STEP_UP_MAX_AGE`
    /// (`StepUp`, or a sign-in with the factor).
    #[error("prove a second factor again (StepUp) to do this")]
    StepUpRequired,
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The change would leave no active superuser.
    #[error("this would leave no active superuser; make another superuser first")]
    LastSuperuser,
    /// The caller's `etag` is not the account's: it changed since the caller read it.
    #[error("the account changed since it was read; read it again and retry")]
    StaleEtag,
    /// A concurrent change to the same account got there first; nothing was changed.
    #[error("the account was changed at the same time; try again")]
    ConcurrentChange,
    /// The database cannot serve the call now (unreachable, saturated, too slow, read-only);
    /// nothing was changed, and a retry may succeed.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// The database's disk is full; nothing was changed.
    #[error("the database has no space left; nothing was changed")]
    StorageFull(#[source] anyhow::Error),
    /// Something outside the caller's control failed.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for ServiceError {
    /// A storage outage anywhere in the chain is told as such; anything else is unexpected.
    fn from(error: anyhow::Error) -> Self {
        match error
            .chain()
            .find_map(|cause| cause.downcast_ref::<StoreError>())
        {
            Some(StoreError::DiskFull) => Self::StorageFull(error),
            Some(store) if store.is_outage() => Self::DatabaseUnavailable(error),
            _ => Self::Unexpected(error),
        }
    }
}

impl ServiceError {
    /// A stable, machine-readable reason code (the `ErrorInfo.reason` on the wire).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::NotVerified => "EMAIL_NOT_VERIFIED",
            Self::AccountDisabled => "ACCOUNT_DISABLED",
            Self::OtpInvalid => "OTP_INVALID",
            Self::OtpExpired => "OTP_EXPIRED",
            Self::TooManyAttempts => "OTP_ATTEMPTS_EXCEEDED",
            Self::LinkInvalid => "LINK_INVALID",
            Self::LinkExpired => "LINK_EXPIRED",
            Self::Cooldown { .. } => "RESEND_COOLDOWN",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::LoginThrottled { .. } => "LOGIN_THROTTLED",
            Self::Busy { .. } => "SERVER_BUSY",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenReused => "REFRESH_TOKEN_REUSED",
            Self::SessionRevoked => "SESSION_REVOKED",
            Self::GoogleNotConfigured => "GOOGLE_NOT_CONFIGURED",
            Self::EmailSignInDisabled => "EMAIL_SIGN_IN_DISABLED",
            Self::PasskeysNotConfigured => "PASSKEYS_NOT_CONFIGURED",
            Self::PasskeyCounterWentBack => "PASSKEY_COUNTER_WENT_BACK",
            Self::GoogleRejected(_) => "GOOGLE_TOKEN_INVALID",
            Self::GoogleEmailUnverified => "GOOGLE_EMAIL_UNVERIFIED",
            Self::GoogleLinkRefused => "GOOGLE_LINK_REFUSED",
            Self::GoogleUnavailable => "GOOGLE_UNAVAILABLE",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::StepUpRequired => "STEP_UP_REQUIRED",
            Self::NotFound => "NOT_FOUND",
            Self::LastSuperuser => "LAST_SUPERUSER",
            Self::StaleEtag => "ETAG_MISMATCH",
            Self::ConcurrentChange => "CONCURRENT_CHANGE",
            Self::DatabaseUnavailable(_) => "DATABASE_UNAVAILABLE",
            Self::StorageFull(_) => "STORAGE_FULL",
            Self::Unexpected(_) => "INTERNAL",
        }
    }

    /// The refusal of a page token from a listing with other filters (AIP-158).
    #[must_use]
    pub fn other_listing() -> Self {
        Self::InvalidArgument {
            field: "page_token",
            reason: "belongs to a listing with other filters; start again from the first page"
                .into(),
        }
    }

    /// Attaches a wire field name to a parse failure.
    #[must_use]
    pub fn invalid(field: &'static str, error: &ParseError) -> Self {
        Self::InvalidArgument {
            field,
            reason: error.reason().to_owned(),
        }
    }
}

/// Shorthand for service results.
pub type ServiceResult<T> = Result<T, ServiceError>;
