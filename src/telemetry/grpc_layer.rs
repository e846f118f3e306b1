//! A tower layer around every gRPC call: it takes or makes the `x-request-id` (and echoes
//! it), continues a W3C `traceparent`, runs the call in a span carrying both under the
//! caller's `grpc-timeout` (capped by the server's own limit), counts it in the
//! go-grpc-prometheus metrics, and logs one line when it ends.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::http::{HeaderValue, Request, Response};
use tonic::Status;
use tracing::Instrument;

use super::{Metrics, request_id, trace_id};

/// Wraps a service with [`GrpcTelemetry`].
#[derive(Clone)]
pub struct GrpcTelemetryLayer {
    metrics: Metrics,
    request_timeout: Duration,
}

impl GrpcTelemetryLayer {
    /// A layer recording into `metrics` that ends calls after `request_timeout` at most.
    #[must_use]
    pub fn new(metrics: Metrics, request_timeout: Duration) -> Self {
        Self {
            metrics,
            request_timeout,
        }
    }
}

impl<S> tower::Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            metrics: self.metrics.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    metrics: Metrics,
    request_timeout: Duration,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for GrpcTelemetry<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let request_id = request_id(request.headers());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            request.headers_mut().insert("x-request-id", value);
        }
        let trace_id = trace_id(request.headers()).unwrap_or_default();
        let span = tracing::info_span!(
            "grpc",
            grpc.service = %service,
            grpc.method = %method,
            request.id = %request_id,
            trace.id = %trace_id,
        );
        let deadline = grpc_timeout(request.headers())
            // Answer a little before the caller gives up, so it hears why.
            .map(|d| d.saturating_sub((d / 10).min(Duration::from_millis(100))))
            .map_or(self.request_timeout, |d| d.min(self.request_timeout));
        super::continue_trace(&span, request.headers());
        let metrics = self.metrics.clone();
        metrics.grpc_started(&service, &method);
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(
            async move {
                // Dropping the call on expiry cancels its work; the client hears DEADLINE_EXCEEDED.
                let outcome = match tokio::time::timeout(deadline, call).await {
                    Ok(outcome) => outcome,
                    Err(_) => Ok(Status::deadline_exceeded("deadline exceeded").into_http()),
                };
                let seconds = started.elapsed().as_secs_f64();
                let code = match &outcome {
                    // Errors arrive trailers-only, with the status in the headers; a reply
                    // without one succeeded (its status comes in the trailers).
                    Ok(response) => code_name(
                        response
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("0"),
                    ),
                    Err(_) => "Unknown",
                };
                metrics.grpc_handled(&service, &method, code, seconds);
                let duration_ms = seconds * 1000.0;
                if service == "grpc.health.v1.Health" {
                    tracing::debug!(grpc.code = code, duration_ms, "gRPC call");
                } else {
                    tracing::info!(grpc.code = code, duration_ms, "gRPC call");
                }
                outcome.map(|mut response| {
                    if let Ok(value) = HeaderValue::from_str(&request_id) {
                        response.headers_mut().insert("x-request-id", value);
                    }
                    response
                })
            }
            .instrument(span),
        )
    }
}

/// The caller's deadline from `grpc-timeout` (e.g. `250m`, `5S`).
fn grpc_timeout(headers: &axum::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok().filter(|_| amount.len() <= 8)?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// The names go-grpc-prometheus writes in `grpc_code`.
fn code_name(status: &str) -> &'static str {
    match status {
        "0" => "OK",
        "1" => "Canceled",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}
