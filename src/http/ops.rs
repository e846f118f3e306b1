//! Endpoints for machines: liveness, readiness, and the key set that verifies access tokens.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use super::BridgeState;
use crate::services::Services;

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

/// `/.well-known/jwks.json`: the public keys of access tokens, cacheable for `JWKS_MAX_AGE`
/// (a key is published longer than that before it signs, so a verifier that caches this
/// long never meets an unknown `kid`), with an `ETag` so a revalidation costs a `304`.
pub async fn jwks(State(state): State<BridgeState>, request: HeaderMap) -> Response {
    let services = &state.services;
    let body = services.tokens.jwks(services.clock.now()).to_string();
    let etag = format!("\"{}\"", hex_prefix(&Sha256::digest(body.as_bytes())));
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let headers = response.headers_mut();
    let max_age = services.config.jwt.jwks_max_age.as_secs();
    if let Ok(value) = header::HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Ok(value) = header::HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// `/.well-known/openid-configuration`: where standard JWT libraries find the issuer's keys.
/// It names only what exists here: no authorization or token endpoints, no OAuth flows.
pub async fn openid_configuration(State(state): State<BridgeState>) -> Json<serde_json::Value> {
    let config = &state.services.config;
    Json(serde_json::json!({
        "issuer": config.jwt.issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", config.public_base_url),
        "id_token_signing_alg_values_supported": [state.services.tokens.algorithm_name()],
    }))
}

fn hex_prefix(digest: &[u8]) -> String {
    crate::text::hex(&digest[..digest.len().min(16)])
}

/// `/metrics`: Prometheus text exposition.
pub async fn metrics(State(services): State<Services>) -> Response {
    let mut response = services.metrics_snapshot().into_response();
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
