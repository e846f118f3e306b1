//! The JSON bridge: the seed's HTTP paths, grpc-gateway style, plus the pages a person clicks
//! and the endpoints machines poll. Each annotated RPC is served at its path with and without
//! the trailing slash, by forwarding to the gRPC adapter in process.
//!
//! - [`routes`]: the route table, read from the `google.api.http` annotations.
//! - `dispatch`: forwarding a JSON call to the gRPC handler.
//! - [`error`]: the one `Status` to HTTP map.
//! - `pages`: the activation page, the password reset form and the email sign-in page.
//! - `ops`: `/healthz`, `/readyz`, `/.well-known/jwks.json`, `/openapi.json`.
//! - [`openapi`]: the generated OpenAPI document.
//! - `webauthn_json`: the W3C WebAuthn JSON shapes the passkey RPCs carry, for that document.

mod dispatch;
pub mod error;
pub mod openapi;
mod ops;
mod pages;
pub mod routes;
pub mod server;
mod webauthn_json;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Extension, Router,
    body::Bytes,
    extract::{
        ConnectInfo, DefaultBodyLimit, Path, RawPathParams, RawQuery, State,
        rejection::BytesRejection,
    },
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, get, on},
};
use serde_json::{Map, Value};
use tonic::{Code, metadata::MetadataMap};

use error::Rejection;

/// The RPC of the emailed activation link, which browsers confirm by POST.
const ACTIVATE: &str = "Activate";
use dispatch::{Input, Rpc};
pub use pages::PageRedirects;
use routes::HttpRoute;
use server::RequestDeadline;

pub use dispatch::Apis;

/// One annotated route as the bridge serves it, decided once when the router is built.
struct BridgedRoute {
    route: HttpRoute,
    /// The RPC it forwards to.
    rpc: Rpc,
    /// Whether the body is the whole request message (no path parameters, no field mask,
    /// JSON only), so it is decoded straight into the message.
    body_only: bool,
}

use crate::{services::Services, telemetry};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every bridge handler shares.
#[derive(Clone)]
pub struct BridgeState {
    apis: dispatch::Apis,
    services: Services,
    redirects: Arc<PageRedirects>,
    openapi: Arc<Value>,
}

/// The metrics listener's router: `/metrics` and nothing else, apart from the bridge that
/// anyone may reach.
pub fn metrics_router(services: Services) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .with_state(services)
}

/// Builds the bridge's router.
///
/// # Errors
/// When the annotations name an RPC the bridge cannot forward, or the descriptors are broken.
pub fn router(
    apis: dispatch::Apis,
    services: Services,
    redirects: PageRedirects,
) -> anyhow::Result<Router> {
    let pool = routes::descriptor_pool()?;
    let annotated = routes::annotated_routes(&pool)?;
    let state = BridgeState {
        apis,
        services,
        redirects: Arc::new(redirects),
        openapi: Arc::new(openapi::document(&pool, &annotated)?),
    };
    let mut router = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(ops::openid_configuration),
        )
        .route("/openapi.json", get(ops::openapi))
        .route(
            "/accounts/password-reset-confirm/{uidb64}/{token}/",
            get(reset_form),
        )
        .route(
            "/accounts/password-reset-confirm/{uidb64}/{token}",
            get(reset_form),
        );
    for path in [
        "/accounts/email-sign-in/{token}/",
        "/accounts/email-sign-in/{token}",
    ] {
        router = router.route(
            path,
            get(email_sign_in_link)
                .post(email_sign_in_link)
                .head(|| async { pages::link_head() }),
        );
    }
    for route in annotated {
        let rpc = Rpc::named(&route.rpc)
            .ok_or_else(|| anyhow::anyhow!("the bridge cannot forward {}", route.rpc))?;
        let filter = MethodFilter::try_from(route.method.clone())
            .map_err(|e| anyhow::anyhow!("{}: unsupported method: {e}", route.rpc))?;
        let paths = [route.template.clone(), route.slashed()];
        let route = Arc::new(BridgedRoute {
            body_only: route.has_body
                && route.path_params.is_empty()
                && route.field_mask_fields.is_empty()
                && rpc != Rpc::PasswordResetConfirm,
            rpc,
            route,
        });
        for path in paths {
            let call = Arc::clone(&route);
            let handler = move |state, method, peer, deadline, params, query, headers, body| {
                bridge(
                    state, call, method, peer, deadline, params, query, headers, body,
                )
            };
            let mut methods = on(filter, handler);
            if route.rpc == Rpc::Activate {
                // The emailed link: a GET that does not ask for JSON (a browser, a mail
                // scanner) shows a button whose POST confirms, and HEAD answers without
                // calling anything.
                let confirm = Arc::clone(&route);
                methods = methods
                    .post(
                        move |state, method, peer, deadline, params, query, headers, body| {
                            bridge(
                                state, confirm, method, peer, deadline, params, query, headers,
                                body,
                            )
                        },
                    )
                    .head(|| async { pages::link_head() });
            }
            router = router.route(&path, methods);
        }
    }
    let metrics = state.services.metrics.clone();
    Ok(router
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            telemetry::track_http,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(answer_headers))
        .with_state(state))
}

/// Headers every answer carries: `nosniff`, and on JSON `no-store` (token answers must not
/// be cached, RFC 6749 §5.1) unless the route chose its own caching.
async fn answer_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// Decodes the HTTP request into the RPC's message, forwards it, and encodes the outcome as
/// JSON (or, for a browser, as a page).
#[expect(
    clippy::too_many_arguments,
    reason = "an axum handler: one argument per part of the request it reads"
)]
async fn bridge(
    State(state): State<BridgeState>,
    route: Arc<BridgedRoute>,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    deadline: Option<Extension<RequestDeadline>>,
    params: RawPathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let deadline = request_deadline(&state, deadline);
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if route.rpc == Rpc::Activate
        && method == Method::GET
        && !pages::asks_for_json(&headers)
        && let [(_, uidb64), (_, token)] = params.as_slice()
    {
        return pages::activation_confirm_page(uidb64, token);
    }
    let input = match request_input(&route, &params, query.as_deref(), &headers, body) {
        Ok(input) => input,
        Err(rejection) => return rejection.into_response(),
    };
    let wants_html = pages::wants_html(&headers);
    let outcome = match forward(&state, route.rpc, input, headers, peer, deadline).await {
        Ok(outcome) => outcome,
        Err(refusal) => return refusal,
    };
    if wants_html
        && let Some(page) = pages::outcome_page(route.rpc, &outcome, &state.redirects, &params)
    {
        return page;
    }
    json_answer(outcome)
}

/// When the call must have answered: the server sets it when the request arrives (the body
/// had part of this time).
fn request_deadline(
    state: &BridgeState,
    deadline: Option<Extension<RequestDeadline>>,
) -> tokio::time::Instant {
    deadline.map_or_else(
        || tokio::time::Instant::now() + state.services.config.request_timeout,
        |Extension(RequestDeadline(at))| at,
    )
}

/// Calls `rpc` in process within the request's deadline: its reply or status, or the
/// bridge's own refusal (the deadline passed, the input did not decode).
async fn forward(
    state: &BridgeState,
    rpc: Rpc,
    input: Input,
    headers: HeaderMap,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<Result<Bytes, tonic::Status>, Response> {
    // The headers move into the call's metadata: read by the caller, never copied.
    let context = dispatch::CallContext {
        metadata: MetadataMap::from_headers(headers),
        peer: Some(peer),
    };
    let call = dispatch::call(&state.apis, rpc, input, context);
    let Ok(outcome) = tokio::time::timeout_at(deadline, call).await else {
        return Err(Rejection {
            http: StatusCode::GATEWAY_TIMEOUT,
            code: Code::DeadlineExceeded,
            message: "deadline exceeded".into(),
        }
        .into_response());
    };
    match outcome {
        Ok(reply) => Ok(Ok(reply)),
        Err(dispatch::CallError::Failed(status)) => Ok(Err(status)),
        Err(dispatch::CallError::Rejected(rejection)) => Err(rejection.into_response()),
    }
}

/// An RPC's outcome as the bridge answers it: the reply's JSON, or the error's.
fn json_answer(outcome: Result<Bytes, tonic::Status>) -> Response {
    match outcome {
        Ok(reply) => (
            [(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            )],
            reply,
        )
            .into_response(),
        Err(status) => error::status_response(&status),
    }
}

/// The emailed sign-in link. A GET that does not ask for JSON (a browser, a mail scanner)
/// gets a button whose POST signs in; a client asking for JSON, or the POST, spends the link
/// through `FinishEmailSignIn`. A browser's POST then goes to the front end, or to a page.
async fn email_sign_in_link(
    State(state): State<BridgeState>,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    deadline: Option<Extension<RequestDeadline>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let for_a_browser = !pages::asks_for_json(&headers);
    if method == Method::GET && for_a_browser {
        return pages::email_sign_in_confirm_page(&token);
    }
    let deadline = request_deadline(&state, deadline);
    let input = Input::Fields(Map::from_iter([("token".to_owned(), Value::String(token))]));
    let outcome = match forward(
        &state,
        Rpc::FinishEmailSignIn,
        input,
        headers,
        peer,
        deadline,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(refusal) => return refusal,
    };
    if for_a_browser {
        return pages::email_sign_in_outcome_page(&outcome, &state.redirects);
    }
    json_answer(outcome)
}

/// The request message: a body-only route's JSON body as it came, or else the body's fields,
/// then the query's, then the path's.
fn request_input(
    bridged: &BridgedRoute,
    params: &[(String, String)],
    query: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Input, Rejection> {
    let route = &bridged.route;
    let mut message = Map::new();
    if route.has_body {
        // What the body says is the request: a query string must not add to it or change it.
        let no_query = || {
            if query.is_some_and(|q| !q.is_empty()) {
                return Err(Rejection::bad_request(
                    "query parameters are not accepted with a request body",
                ));
            }
            Ok(())
        };
        let body = body.map_err(Rejection::from)?;
        if bridged.body_only {
            if !body.is_empty() && media_type(headers) != "application/json" {
                return Err(unsupported_media_type());
            }
            no_query()?;
            return Ok(Input::Body(body));
        }
        let form_allowed = bridged.rpc == Rpc::PasswordResetConfirm;
        message = body_fields(headers, &body, form_allowed)?;
        for name in &route.field_mask_fields {
            if let Some(Value::String(paths)) = message.get(name) {
                let mask = field_mask(paths);
                message.insert(name.clone(), mask);
            }
        }
        no_query()?;
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| Rejection::bad_request(format!("invalid query string: {e}")))?;
        for (key, value) in pairs {
            let value = match value.as_str() {
                "true" | "false" if route.bool_fields.contains(&key) => {
                    Value::Bool(value == "true")
                }
                _ => Value::String(value),
            };
            message.insert(key, value);
        }
    }
    message.extend(
        params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    Ok(Input::Fields(message))
}

/// The request's media type, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn unsupported_media_type() -> Rejection {
    Rejection {
        http: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: Code::InvalidArgument,
        message: "send the request body as application/json".into(),
    }
}

/// A field mask in its proto3 JSON form, `"firstName,isActive"`, as the message it stands for:
/// its paths, in the proto's `snake_case`.
fn field_mask(paths: &str) -> Value {
    let snake = |path: &str| {
        path.trim().chars().fold(String::new(), |mut out, c| {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
            out
        })
    };
    let paths: Vec<Value> = paths
        .split(',')
        .filter(|path| !path.trim().is_empty())
        .map(|path| Value::String(snake(path)))
        .collect();
    serde_json::json!({ "paths": paths })
}

/// The fields of a request body: a JSON object, or, where `form_allowed` (the built-in reset
/// page posts there), an HTML form.
fn body_fields(
    headers: &HeaderMap,
    body: &Bytes,
    form_allowed: bool,
) -> Result<Map<String, Value>, Rejection> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match media_type(headers).as_str() {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(_) => Err(Rejection::bad_request(
                "the request body must be a JSON object",
            )),
            Err(e) => Err(Rejection::bad_request(format!(
                "the request body is not valid JSON: {e}"
            ))),
        },
        "application/x-www-form-urlencoded" if form_allowed => {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .map(|pairs| {
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect()
                })
                .map_err(|e| Rejection::bad_request(format!("the form is not valid: {e}")))
        }
        _ => Err(unsupported_media_type()),
    }
}

async fn reset_form(State(state): State<BridgeState>, params: RawPathParams) -> Response {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v)
            .to_owned()
    };
    pages::reset_form_page(&param("uidb64"), &param("token"), &state.redirects)
}

async fn not_found() -> Response {
    error::bridge_error(StatusCode::NOT_FOUND, Code::NotFound, "no such path")
}

async fn method_not_allowed(method: Method) -> Response {
    error::bridge_error(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        &format!("{method} is not allowed on this path"),
    )
}
