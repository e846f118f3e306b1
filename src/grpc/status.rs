//! The only place a `ServiceError` becomes a `tonic::Status`: the code, a message safe to show,
//! and `google.rpc` details (`ErrorInfo` always, `BadRequest` for bad fields, `RetryInfo` for waits).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::ServiceError;

/// The `ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "identity";

/// When a call the database could not serve is worth retrying.
const DATABASE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Converts a service error into the status the client sees. Unexpected errors are logged
/// here, once, and reach the client as a bare `INTERNAL`.
#[must_use]
pub fn to_status(error: ServiceError) -> Status {
    let code = match &error {
        ServiceError::InvalidArgument { .. }
        | ServiceError::OtpInvalid
        | ServiceError::OtpExpired
        | ServiceError::LinkInvalid
        | ServiceError::LinkExpired => Code::InvalidArgument,
        ServiceError::EmailTaken => Code::AlreadyExists,
        ServiceError::InvalidCredentials
        | ServiceError::GoogleRejected(_)
        | ServiceError::GoogleEmailUnverified
        | ServiceError::Unauthenticated
        | ServiceError::TokenInvalid
        | ServiceError::TokenExpired
        | ServiceError::TokenReused
        | ServiceError::SessionRevoked
        | ServiceError::PasskeyCounterWentBack => Code::Unauthenticated,
        ServiceError::NotVerified
        | ServiceError::AccountDisabled
        | ServiceError::GoogleNotConfigured
        | ServiceError::EmailSignInDisabled
        | ServiceError::PasskeysNotConfigured
        | ServiceError::GoogleLinkRefused
        | ServiceError::LastSuperuser => Code::FailedPrecondition,
        ServiceError::StaleEtag | ServiceError::ConcurrentChange => Code::Aborted,
        ServiceError::GoogleUnavailable
        | ServiceError::DatabaseUnavailable(_)
        | ServiceError::StorageFull(_) => Code::Unavailable,
        ServiceError::TooManyAttempts
        | ServiceError::Cooldown { .. }
        | ServiceError::RateLimited { .. }
        | ServiceError::LoginThrottled { .. }
        | ServiceError::Busy { .. } => Code::ResourceExhausted,
        ServiceError::PermissionDenied | ServiceError::StepUpRequired => Code::PermissionDenied,
        ServiceError::NotFound => Code::NotFound,
        ServiceError::Unexpected(_) => Code::Internal,
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(error.reason(), ERROR_DOMAIN, HashMap::new());
    match &error {
        ServiceError::InvalidArgument { field, reason } => {
            details.add_bad_request_violation(*field, reason.clone());
        }
        ServiceError::OtpInvalid | ServiceError::OtpExpired => {
            details.add_bad_request_violation("otp", error.to_string());
        }
        ServiceError::LinkInvalid | ServiceError::LinkExpired => {
            details.add_bad_request_violation("token", error.to_string());
        }
        ServiceError::StaleEtag => {
            details.add_bad_request_violation("etag", error.to_string());
        }
        ServiceError::Cooldown { retry_after }
        | ServiceError::RateLimited { retry_after }
        | ServiceError::LoginThrottled { retry_after }
        | ServiceError::Busy { retry_after } => {
            details.set_retry_info(Some(*retry_after));
        }
        ServiceError::DatabaseUnavailable(cause) | ServiceError::StorageFull(cause) => {
            tracing::warn!(error.cause_chain = %format!("{cause:#}"), "the database could not serve a call");
            details.set_retry_info(Some(DATABASE_RETRY_AFTER));
        }
        ServiceError::Unexpected(cause) => {
            tracing::error!(error.cause_chain = ?cause, "request failed unexpectedly");
            return Status::with_error_details(code, "internal error", details);
        }
        _ => {}
    }
    Status::with_error_details(code, error.to_string(), details)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;
    use tonic_types::StatusExt;

    use super::to_status;
    use crate::error::ServiceError;

    #[test]
    fn cooldowns_carry_retry_info_and_reason() {
        let status = to_status(ServiceError::Cooldown {
            retry_after: Duration::from_secs(42),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(42))
        );
        assert_eq!(details.error_info().unwrap().reason, "RESEND_COOLDOWN");
    }

    #[test]
    fn unexpected_errors_hide_their_cause() {
        let status = to_status(ServiceError::Unexpected(anyhow::anyhow!(
            "password=hunter2 leaked"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn field_errors_name_the_field() {
        let status = to_status(ServiceError::InvalidArgument {
            field: "email",
            reason: "must be an email address".into(),
        });
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(
            (violation.field.as_str(), status.message()),
            ("email", "email must be an email address")
        );
    }
}
