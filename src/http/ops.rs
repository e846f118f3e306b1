//! Endpoints for machines: liveness, readiness, and the key set that verifies access tokens.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::BridgeState;

/// `/healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `/readyz`: the database answers.
pub async fn readyz(State(state): State<BridgeState>) -> Response {
    if state.services.is_ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

/// `/.well-known/jwks.json`: the public keys of access tokens.
pub async fn jwks(State(state): State<BridgeState>) -> Response {
    let mut response = Json(state.services.tokens.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `/metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<BridgeState>) -> Response {
    let mut response = state.services.metrics_snapshot().await.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// `/openapi.json`: the bridge's OpenAPI document.
pub async fn openapi(State(state): State<BridgeState>) -> Json<serde_json::Value> {
    Json(state.openapi.as_ref().clone())
}
