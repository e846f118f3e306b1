//! Google as an identity provider: access tokens are checked with Google's tokeninfo before
//! userinfo is trusted; ID tokens are verified locally against Google's JWKS (cached per its
//! `Cache-Control`, refetched on an unknown `kid`). Every call is bounded by a timeout.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::{config::GoogleConfig, domain::PersonName};

/// Issuers Google writes into ID tokens.
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Clock skew tolerated on ID tokens' `exp` and `iat`.
const ID_TOKEN_LEEWAY_SECONDS: i64 = 30;
/// How long keys are kept when Google sends no `max-age`.
const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(3600);

/// Who Google says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleIdentity {
    /// Google's stable account id (`sub`).
    pub subject: String,
    /// The account's email address.
    pub email: String,
    /// Whether Google has verified the address.
    pub email_verified: bool,
    /// The Workspace domain (`hd`), when the account belongs to one.
    pub hosted_domain: Option<String>,
    /// Given name, possibly empty.
    pub given_name: String,
    /// Family name, possibly empty.
    pub family_name: String,
}

/// Why a Google credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// Google refused the credential, or it is not for us.
    #[error("{0}")]
    Rejected(String),
    /// Google could not be asked (timeout, connection, 5xx).
    #[error("Google is unavailable: {0}")]
    Unavailable(String),
}

struct CachedKeys {
    keys: Vec<Value>,
    fetched: Instant,
    ttl: Duration,
}

/// Talks to Google's endpoints with one pooled HTTP client.
pub struct GoogleClient {
    http: reqwest::Client,
    config: GoogleConfig,
    keys: RwLock<Option<CachedKeys>>,
}

impl GoogleClient {
    /// A client for the configured endpoints.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: GoogleConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            config,
            keys: RwLock::new(None),
        })
    }

    /// Whether any client id is configured.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        !self.config.client_ids.is_empty()
    }

    /// Checks an OAuth access token with tokeninfo (audience, expiry, verified email), then
    /// reads the profile from userinfo.
    ///
    /// # Errors
    /// `Rejected` for a token Google refuses or that was minted for another client;
    /// `Unavailable` when Google cannot be reached.
    pub async fn verify_access_token(&self, token: &str) -> Result<GoogleIdentity, GoogleError> {
        let info = self
            .get_json(
                self.http
                    .get(&self.config.tokeninfo_url)
                    .query(&[("access_token", token)]),
            )
            .await?;
        let audience_ok = ["aud", "azp"]
            .iter()
            .filter_map(|claim| info[claim].as_str())
            .any(|aud| self.config.client_ids.iter().any(|id| id == aud));
        if !audience_ok {
            return Err(GoogleError::Rejected(
                "the Google token was issued to another application".into(),
            ));
        }
        let expires_in = number(&info["expires_in"]).unwrap_or(0);
        if expires_in <= 0 {
            return Err(GoogleError::Rejected("the Google token has expired".into()));
        }
        let profile = self
            .get_json(self.http.get(&self.config.userinfo_url).bearer_auth(token))
            .await?;
        let subject = text(&profile["sub"]);
        if subject.is_empty() || info["sub"].as_str().is_some_and(|sub| sub != subject) {
            return Err(GoogleError::Rejected(
                "Google's token and profile disagree".into(),
            ));
        }
        let email_verified = truthy(&info["email_verified"]) && truthy(&profile["email_verified"]);
        Ok(identity(&profile, subject, email_verified))
    }

    /// Verifies an ID token locally: signature against Google's keys, issuer, audience, expiry.
    ///
    /// # Errors
    /// `Rejected` for a token that fails any check; `Unavailable` when the keys cannot be fetched.
    pub async fn verify_id_token(&self, token: &str) -> Result<GoogleIdentity, GoogleError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| GoogleError::Rejected("the Google ID token is malformed".into()))?;
        if header.alg != Algorithm::RS256 {
            return Err(GoogleError::Rejected(
                "the Google ID token uses an unexpected algorithm".into(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| GoogleError::Rejected("the Google ID token names no key".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&ISSUERS);
        validation.set_audience(&self.config.client_ids);
        validation.leeway = ID_TOKEN_LEEWAY_SECONDS.unsigned_abs();
        validation.required_spec_claims =
            HashSet::from(["exp", "iat", "iss", "aud", "sub"].map(String::from));
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| GoogleError::Rejected(format!("the Google ID token is invalid: {e}")))?
            .claims;
        let issued_at = number(&claims["iat"]).unwrap_or(i64::MAX);
        if issued_at > chrono::Utc::now().timestamp() + ID_TOKEN_LEEWAY_SECONDS {
            return Err(GoogleError::Rejected(
                "the Google ID token was issued in the future".into(),
            ));
        }
        let subject = text(&claims["sub"]);
        let email_verified = truthy(&claims["email_verified"]);
        Ok(identity(&claims, subject, email_verified))
    }

    /// The decoding key `kid`, from the cache or a fresh fetch (keys rotate). An unknown
    /// `kid` refetches at most once per `jwks_refetch_interval`, and calls that miss at once
    /// share the one fetch.
    async fn key(&self, kid: &str) -> Result<DecodingKey, GoogleError> {
        let asked = Instant::now();
        let unknown = || {
            Err(GoogleError::Rejected(
                "the Google ID token is signed with an unknown key".into(),
            ))
        };
        let settled = |cache: &CachedKeys| {
            // Fetched while this call waited, or too recently to fetch again.
            cache.fetched >= asked
                || (cache.fetched.elapsed() < cache.ttl
                    && cache.fetched.elapsed() < self.config.jwks_refetch_interval)
        };
        {
            let cached = self.keys.read().await;
            if let Some(cache) = cached.as_ref().filter(|c| c.fetched.elapsed() < c.ttl) {
                if let Some(key) = find_key(&cache.keys, kid) {
                    return key;
                }
                if settled(cache) {
                    return unknown();
                }
            }
        }
        let mut cached = self.keys.write().await;
        if let Some(cache) = cached.as_ref().filter(|c| settled(c)) {
            return find_key(&cache.keys, kid).unwrap_or_else(unknown);
        }
        let response = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .map_err(|e| GoogleError::Unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(GoogleError::Unavailable(format!(
                "JWKS answered {}",
                response.status()
            )));
        }
        let ttl = max_age(response.headers()).unwrap_or(DEFAULT_JWKS_TTL);
        let body: Value = response.json().await.map_err(|e| {
            GoogleError::Unavailable(format!("JWKS is not JSON: {}", e.without_url()))
        })?;
        let keys = body["keys"].as_array().cloned().unwrap_or_default();
        let key = find_key(&keys, kid);
        *cached = Some(CachedKeys {
            keys,
            fetched: Instant::now(),
            ttl,
        });
        key.unwrap_or_else(unknown)
    }

    async fn get_json(&self, request: reqwest::RequestBuilder) -> Result<Value, GoogleError> {
        // reqwest's errors name the URL, and tokeninfo's carries the access token.
        let response = request
            .send()
            .await
            .map_err(|e| GoogleError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(GoogleError::Unavailable(format!(
                "Google answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(GoogleError::Rejected(
                "Google did not accept the token".into(),
            ));
        }
        response.json().await.map_err(|e| {
            GoogleError::Unavailable(format!("Google's answer is not JSON: {}", e.without_url()))
        })
    }
}

fn find_key(keys: &[Value], kid: &str) -> Option<Result<DecodingKey, GoogleError>> {
    let jwk = keys.iter().find(|k| k["kid"] == kid)?;
    let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
        return Some(Err(GoogleError::Unavailable(
            "a Google key has no RSA components".into(),
        )));
    };
    Some(
        DecodingKey::from_rsa_components(n, e)
            .map_err(|e| GoogleError::Unavailable(format!("a Google key is malformed: {e}"))),
    )
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let cache_control = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    cache_control
        .split(',')
        .find_map(|directive| directive.trim().strip_prefix("max-age="))
        .and_then(|seconds| seconds.parse().ok())
        .map(Duration::from_secs)
}

fn identity(claims: &Value, subject: String, email_verified: bool) -> GoogleIdentity {
    GoogleIdentity {
        subject,
        email: text(&claims["email"]),
        email_verified,
        hosted_domain: claims["hd"]
            .as_str()
            .filter(|hd| !hd.is_empty())
            .map(str::to_owned),
        given_name: name(&claims["given_name"]),
        family_name: name(&claims["family_name"]),
    }
}

/// A name as Google gives it, held to the rules of ours; one that breaks them is dropped.
fn name(value: &Value) -> String {
    PersonName::parse(value.as_str().unwrap_or_default())
        .map(PersonName::into_inner)
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Google writes booleans as `true` or as `"true"`, depending on the endpoint.
fn truthy(value: &Value) -> bool {
    value.as_bool().unwrap_or(false) || value.as_str() == Some("true")
}

fn number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str()?.parse().ok())
}
