//! The tower layer: a request passes with its [`VerifiedToken`] in its extensions, or is
//! answered `UNAUTHENTICATED` (gRPC) or `401` (HTTP) without reaching the service.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::{Verifier, verifier::Refusal};

/// Lets through only requests whose `authorization: Bearer` token verifies.
#[derive(Clone)]
pub struct RequireAccessToken {
    verifier: Verifier,
    /// Path prefixes served without a token (health checks, say).
    open_paths: Arc<[String]>,
}

impl RequireAccessToken {
    pub(crate) fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            open_paths: Arc::new([]),
        }
    }

    /// Also serves requests without a token whose path is `prefix`, or lies below it at a
    /// `/` boundary: `/healthz` opens `/healthz` and `/healthz/live`, never
    /// `/healthz-anything`; `/grpc.health.v1.Health/` opens every method of that service.
    #[must_use]
    pub fn allow_without_token(mut self, prefix: impl Into<String>) -> Self {
        let mut open = self.open_paths.to_vec();
        open.push(prefix.into());
        self.open_paths = open.into();
        self
    }
}

impl<S> Layer<S> for RequireAccessToken {
    type Service = RequireAccessTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAccessTokenService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireAccessToken`] wraps around another.
#[derive(Clone)]
pub struct RequireAccessTokenService<S> {
    inner: S,
    layer: RequireAccessToken,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireAccessTokenService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let path = request.uri().path();
        if self.layer.open_paths.iter().any(|open| opens(open, path)) {
            return Box::pin(inner.call(request));
        }
        let verifier = self.layer.verifier.clone();
        let token = bearer_token(request.headers()).map(str::to_owned);
        let grpc = is_grpc(request.headers());
        Box::pin(async move {
            let outcome = match token {
                Some(token) => verifier.verify(&token).await,
                None => Err(Refusal::Missing),
            };
            match outcome {
                Ok(verified) => {
                    request.extensions_mut().insert(verified);
                    inner.call(request).await
                }
                Err(refusal) => {
                    tracing::debug!(%refusal, "access token refused");
                    Ok(refused(grpc, refusal))
                }
            }
        })
    }
}

/// Whether the open path `open` covers `path`: the same path, or one below it.
fn opens(open: &str, path: &str) -> bool {
    path.strip_prefix(open)
        .is_some_and(|rest| rest.is_empty() || open.ends_with('/') || rest.starts_with('/'))
}

fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The one answer to every refusal, which does not say why: a trailers-only gRPC status, or
/// RFC 6750's `401` with `WWW-Authenticate`.
fn refused<B: Default>(grpc: bool, refusal: Refusal) -> Response<B> {
    let mut response = Response::new(B::default());
    if !grpc {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let headers = response.headers_mut();
    if grpc {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("invalid%20access%20token"),
        );
    } else {
        let challenge = if refusal == Refusal::Missing {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        };
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, opens, refused};
    use crate::Refusal;
    use http::{HeaderMap, HeaderValue, StatusCode, header};

    #[test]
    fn only_a_bearer_scheme_with_a_token_is_read() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_token(&headers), expected, "{value}");
        }
    }

    #[test]
    fn open_paths_match_whole_segments_only() {
        assert!(opens("/healthz", "/healthz"));
        assert!(opens("/healthz", "/healthz/live"));
        assert!(!opens("/healthz", "/healthz-anything"));
        assert!(!opens("/healthz", "/healthzz"));
        assert!(!opens("/healthz", "/"));
        assert!(opens(
            "/grpc.health.v1.Health/",
            "/grpc.health.v1.Health/Check"
        ));
        assert!(!opens(
            "/grpc.health.v1.Health/",
            "/grpc.health.v1.HealthX/Check"
        ));
    }

    #[test]
    fn refusals_answer_as_the_protocol_expects() {
        let grpc = refused::<String>(true, Refusal::Expired);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "16");
        let http = refused::<String>(false, Refusal::Expired);
        assert_eq!(http.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let missing = refused::<String>(false, Refusal::Missing);
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
