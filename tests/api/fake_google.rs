//! A fake Google on loopback: tokeninfo, userinfo and a JWKS of test RSA keys that sign test
//! ID tokens. Tests decide what each token means, and can make Google fail or stall.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

/// One of the two test signing keys.
#[derive(Clone, Copy)]
pub enum TestKey {
    First,
    Second,
}

impl TestKey {
    pub fn kid(self) -> &'static str {
        match self {
            Self::First => "test-key-1",
            Self::Second => "test-key-2",
        }
    }

    fn pem(self) -> &'static str {
        match self {
            Self::First => include_str!("fixtures/google_key_1.pem"),
            Self::Second => include_str!("fixtures/google_key_2.pem"),
        }
    }

    fn jwk(self) -> Value {
        let modulus = match self {
            Self::First => include_str!("fixtures/google_key_1.n"),
            Self::Second => include_str!("fixtures/google_key_2.n"),
        };
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid(), "n": modulus.trim(), "e": "AQAB"})
    }
}

#[derive(Default)]
struct Shared {
    token_info: Mutex<HashMap<String, Value>>,
    profiles: Mutex<HashMap<String, Value>>,
    keys: Mutex<Vec<Value>>,
    failing: AtomicBool,
    delay_ms: AtomicUsize,
    jwks_fetches: AtomicUsize,
}

/// What Google knows about one account.
#[derive(Clone)]
pub struct GoogleAccount {
    pub sub: String,
    pub email: String,
    pub verified: bool,
    pub hd: Option<String>,
}

impl GoogleAccount {
    pub fn new(sub: &str, email: &str) -> Self {
        Self {
            sub: sub.into(),
            email: email.into(),
            verified: true,
            hd: None,
        }
    }

    pub fn unverified(mut self) -> Self {
        self.verified = false;
        self
    }

    pub fn hosted(mut self, domain: &str) -> Self {
        self.hd = Some(domain.into());
        self
    }
}

#[derive(Clone)]
pub struct FakeGoogle {
    pub base: String,
    shared: Arc<Shared>,
}

/// The client id the service under test is configured with (among others).
pub const CLIENT_ID: &str = "web-client.apps.googleusercontent.com";

impl FakeGoogle {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        shared.keys.lock().unwrap().push(TestKey::First.jwk());
        let router = Router::new()
            .route("/tokeninfo", get(token_info))
            .route("/userinfo", get(user_info))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base, shared }
    }

    /// Makes `token` an access token Google vouches for, issued to `audience`, valid for `expires_in` seconds.
    pub fn grant_access_token(
        &self,
        token: &str,
        account: &GoogleAccount,
        audience: &str,
        expires_in: i64,
    ) {
        let info = json!({
            "aud": audience, "azp": audience, "sub": account.sub, "email": account.email,
            "email_verified": account.verified.to_string(), "expires_in": expires_in.to_string(),
            "scope": "openid email profile",
        });
        let mut profile = json!({
            "sub": account.sub, "email": account.email, "email_verified": account.verified,
            "given_name": "Goo", "family_name": "Gler",
        });
        if let Some(hd) = &account.hd {
            profile["hd"] = json!(hd);
        }
        self.shared
            .token_info
            .lock()
            .unwrap()
            .insert(token.into(), info);
        self.shared
            .profiles
            .lock()
            .unwrap()
            .insert(token.into(), profile);
    }

    /// An ID token for `account`, signed by `key`, with `overrides` applied to the claims.
    pub fn id_token(&self, account: &GoogleAccount, key: TestKey, overrides: Value) -> String {
        self.id_token_naming(account, key, key.kid(), overrides)
    }

    /// As [`FakeGoogle::id_token`], with the header naming `kid` whatever key signs it.
    pub fn id_token_naming(
        &self,
        account: &GoogleAccount,
        key: TestKey,
        kid: &str,
        overrides: Value,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": "https://accounts.google.com", "aud": CLIENT_ID, "sub": account.sub,
            "email": account.email, "email_verified": account.verified, "iat": now, "exp": now + 3600,
            "given_name": "Goo", "family_name": "Gler",
        });
        if let Some(hd) = &account.hd {
            claims["hd"] = json!(hd);
        }
        for (name, value) in overrides.as_object().cloned().unwrap_or_default() {
            claims[name] = value;
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(key.pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &signing).unwrap()
    }

    /// Publishes exactly these keys in the JWKS (a key rotation).
    pub fn publish(&self, keys: &[TestKey]) {
        *self.shared.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    pub fn fail(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    pub fn stall(&self, delay: Duration) {
        self.shared.delay_ms.store(
            usize::try_from(delay.as_millis()).unwrap(),
            Ordering::SeqCst,
        );
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }
}

async fn misbehave(shared: &Shared) -> Option<Response> {
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    shared
        .failing
        .load(Ordering::SeqCst)
        .then(|| (StatusCode::INTERNAL_SERVER_ERROR, "backend error").into_response())
}

async fn token_info(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failure) = misbehave(&shared).await {
        return failure;
    }
    let token = query.get("access_token").cloned().unwrap_or_default();
    match shared.token_info.lock().unwrap().get(&token) {
        Some(info) => Json(info.clone()).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response(),
    }
}

async fn user_info(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(failure) = misbehave(&shared).await {
        return failure;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    match shared.profiles.lock().unwrap().get(&token) {
        Some(profile) => Json(profile.clone()).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response(),
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(failure) = misbehave(&shared).await {
        return failure;
    }
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = shared.keys.lock().unwrap().clone();
    let mut response = Json(json!({"keys": keys})).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
