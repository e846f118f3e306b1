//! Middleware around every bridge request: request id, trace id, one log line, and metrics
//! labelled by route template (never by the raw path, which holds tokens).

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

use super::{Metrics, request_id, trace_id};

/// Records one bridge request; use with `axum::middleware::from_fn_with_state`.
pub async fn track_http(
    State(metrics): State<Metrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let request_id = request_id(request.headers());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert("x-request-id", value);
    }
    let span = tracing::info_span!(
        "http",
        http.method = %method,
        http.route = %route,
        request.id = %request_id,
        trace.id = %trace_id(request.headers()).unwrap_or_default(),
    );
    super::continue_trace(&span, request.headers());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    metrics.http_handled(&method, &route, status, seconds);
    span.in_scope(|| {
        if route == "/healthz" || route == "/readyz" || route == "/metrics" {
            tracing::debug!(
                http.status = status,
                duration_ms = seconds * 1000.0,
                "HTTP request"
            );
        } else {
            tracing::info!(
                http.status = status,
                duration_ms = seconds * 1000.0,
                "HTTP request"
            );
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
