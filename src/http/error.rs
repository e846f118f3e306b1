//! The only place a gRPC `Status` becomes an HTTP response, the way grpc-gateway v2 writes it:
//! the status code from its table, `Retry-After` from `RetryInfo`, and the body
//! `{"code", "message", "details": [{"@type", ...}]}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::StatusExt;

const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";

/// The HTTP status grpc-gateway uses for a gRPC code.
#[must_use]
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The response for a failed call.
#[must_use]
pub fn status_response(status: &Status) -> Response {
    let details = status.get_error_details();
    let mut body_details = Vec::new();
    if let Some(info) = details.error_info() {
        body_details.push(json!({
            "@type": format!("{TYPE_PREFIX}ErrorInfo"),
            "reason": info.reason,
            "domain": info.domain,
            "metadata": info.metadata,
        }));
    }
    if let Some(bad_request) = details.bad_request() {
        let violations: Vec<Value> = bad_request
            .field_violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description}))
            .collect();
        body_details.push(
            json!({"@type": format!("{TYPE_PREFIX}BadRequest"), "fieldViolations": violations}),
        );
    }
    let retry_after = details.retry_info().and_then(|info| info.retry_delay);
    if let Some(delay) = retry_after {
        body_details.push(json!({
            "@type": format!("{TYPE_PREFIX}RetryInfo"),
            "retryDelay": format!("{}s", delay.as_secs()),
        }));
    }
    let mut response = error_response(
        http_status(status.code()),
        status.code(),
        status.message(),
        body_details,
    );
    if let Some(delay) = retry_after
        && let Ok(value) = HeaderValue::from_str(&delay.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A gateway-style error the bridge itself decides (unknown path, wrong method, bad body).
#[must_use]
pub fn bridge_error(http: StatusCode, code: Code, message: &str) -> Response {
    error_response(http, code, message, Vec::new())
}

/// A request the bridge refuses before any RPC runs.
#[derive(Debug)]
pub struct Rejection {
    /// HTTP status.
    pub http: StatusCode,
    /// The gRPC code written in the body.
    pub code: Code,
    /// What is wrong, for the client.
    pub message: String,
}

impl Rejection {
    /// A 400 `INVALID_ARGUMENT` rejection.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            http: StatusCode::BAD_REQUEST,
            code: Code::InvalidArgument,
            message: message.into(),
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for Rejection {
    /// A body that could not be read: too large, cut off, or not in by the request's
    /// deadline (408, `DEADLINE_EXCEEDED`).
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        let timed_out = {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
            std::iter::from_fn(|| {
                let current = cause?;
                cause = current.source();
                Some(current)
            })
            .any(|error| error.is::<super::server::BodyTimedOut>())
        };
        let http = rejection.status();
        let (http, code) = if timed_out {
            (StatusCode::REQUEST_TIMEOUT, Code::DeadlineExceeded)
        } else if http == StatusCode::PAYLOAD_TOO_LARGE {
            (http, Code::ResourceExhausted)
        } else {
            (http, Code::InvalidArgument)
        };
        Self {
            http,
            code,
            message: rejection.body_text(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        bridge_error(self.http, self.code, &self.message)
    }
}

fn error_response(http: StatusCode, code: Code, message: &str, details: Vec<Value>) -> Response {
    let body = json!({"code": code as i32, "message": message, "details": details});
    (http, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tonic::Code;

    use super::http_status;

    #[test]
    fn follows_the_grpc_gateway_table() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
        ];
        for (code, http) in table {
            assert_eq!(
                http_status(code),
                StatusCode::from_u16(http).unwrap(),
                "{code:?}"
            );
        }
    }
}
