//! The verifier: local checks against the cached key set and the streamed revocations,
//! with introspection on request, and the background tasks that keep both current.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock, Weak},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::DecodingKey;
use tokio::task::AbortHandle;
use tonic::{Request, Streaming, service::interceptor::InterceptedService, transport::Channel};

use crate::{
    VerifiedToken,
    claims::{Expectations, access_token_kid},
    credential::ServiceToken,
    keys::{KeyCache, decoding_keys},
    layer::RequireAccessToken,
    pb::{self, token_service_client::TokenServiceClient},
    revocations::Revocations,
};

/// The `TokenService` client, carrying the service token on every call.
pub type TokenServiceChannel = TokenServiceClient<InterceptedService<Channel, ServiceToken>>;

/// The first wait before a dropped revocation stream reconnects; it doubles up to the max.
const RECONNECT_FIRST_WAIT: Duration = Duration::from_millis(100);
const RECONNECT_MAX_WAIT: Duration = Duration::from_secs(10);

/// Why a token was refused. A service should answer every one alike (the layer does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No bearer token came with the request.
    #[error("no access token")]
    Missing,
    /// Not an access token of this issuer's form.
    #[error("malformed access token")]
    Malformed,
    /// Signed by no key the issuer publishes.
    #[error("access token signed by an unknown key")]
    UnknownKey,
    /// The signature does not match.
    #[error("access token signature does not verify")]
    BadSignature,
    /// Another issuer's, or for another audience.
    #[error("access token is for another issuer or audience")]
    NotForUs,
    /// Issued in the future.
    #[error("access token is not valid yet")]
    NotYetValid,
    /// Past its expiry.
    #[error("access token has expired")]
    Expired,
    /// Its session, or every session of its user, has been revoked.
    #[error("access token has been revoked")]
    Revoked,
    /// Introspection says it is not live (for example, its user is disabled).
    #[error("access token is not active")]
    Inactive,
    /// Introspection was asked for and the server could not be reached.
    #[error("the identity service could not be asked")]
    Unavailable,
    /// The revocations known here are staler than the verifier allows, and it was set to
    /// refuse rather than ask the server.
    #[error("the revocations known here are out of date")]
    Stale,
}

/// What a verifier does with a token that verifies while its revocations are staler than
/// [`VerifierBuilder::max_staleness`] (the stream is down, or the server stopped answering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenStale {
    /// Ask the server about the token (introspection, which needs the `introspect` scope),
    /// and refuse it when the server cannot say it is live: fails closed.
    #[default]
    Introspect,
    /// Refuse every token until the revocations are current again.
    Refuse,
}

/// Why a verifier could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The service token cannot travel in a header.
    #[error("the service token is not a valid header value")]
    InvalidServiceToken,
    /// The key set could not be fetched (unreachable, or the service token refused).
    #[error("fetching the key set: {0}")]
    Jwks(#[source] tonic::Status),
    /// The revocation log could not be read (unreachable, too slow, or the service token
    /// lacks the `revocations` scope).
    #[error("reading the revocation log: {0}")]
    Revocations(#[source] tonic::Status),
}

/// Verifies `identity`'s access tokens. Cheap to clone; its background tasks stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
}

struct Shared {
    client: TokenServiceChannel,
    expectations: Expectations,
    keys: KeyCache,
    revocations: RwLock<Revocations>,
    introspect: bool,
    max_staleness: Duration,
    when_stale: WhenStale,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let tasks = self
            .tasks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in tasks.iter() {
            task.abort();
        }
    }
}

/// Settings of a [`Verifier`]; every one has the server's default.
#[must_use]
pub struct VerifierBuilder {
    channel: Channel,
    service_token: String,
    issuer: String,
    audience: String,
    leeway: Duration,
    jwks_refresh_interval: Duration,
    min_refetch_interval: Duration,
    revocation_retention: Duration,
    catch_up_timeout: Duration,
    silent_stream_limit: Duration,
    introspect: bool,
    max_staleness: Duration,
    when_stale: WhenStale,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl VerifierBuilder {
    /// The issuer tokens must name (`JWT_ISSUER`; default `identity`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The audience tokens must name (`JWT_AUDIENCE`; default `identity`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock skew tolerated on expiry and issue time (default 30 s, as the server).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How often the key set is fetched anew (default 300 s, the server's `JWKS_MAX_AGE`,
    /// which publishes a next key at least that long before it signs).
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.jwks_refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by tokens naming an unknown key (default
    /// 10 s), so forged `kid`s cannot make this service flood the server.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long a revocation is remembered (default 1 hour); at least the server's
    /// `ACCESS_TOKEN_LIFETIME` plus the leeway, after which no token it voids is live.
    pub fn revocation_retention(mut self, retention: Duration) -> Self {
        self.revocation_retention = retention;
        self
    }

    /// How long `connect` may take to read the revocation log (default 10 s).
    pub fn catch_up_timeout(mut self, timeout: Duration) -> Self {
        self.catch_up_timeout = timeout;
        self
    }

    /// How long the revocation stream may stay silent before it is taken for dead and
    /// reconnected (default 45 s: three of the server's `REVOCATION_HEARTBEAT_INTERVAL`).
    pub fn silent_stream_limit(mut self, limit: Duration) -> Self {
        self.silent_stream_limit = limit;
        self
    }

    /// Also ask the server about every token that verifies locally (default off). This sees
    /// what no local check can (a disabled user) at the cost of a call per request.
    pub fn introspect(mut self, introspect: bool) -> Self {
        self.introspect = introspect;
        self
    }

    /// How old the revocations known here may be, counted from the server's last word that
    /// the stream was caught up (default 60 s: four of its heartbeats). Past it, a token
    /// that verifies is handled as [`Self::when_stale`] says, so a verifier cut off from the
    /// server does not pass revoked tokens for as long as they live.
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    /// What to do with tokens while the revocations are stale (default
    /// [`WhenStale::Introspect`]).
    pub fn when_stale(mut self, when: WhenStale) -> Self {
        self.when_stale = when;
        self
    }

    /// The clock expiry is checked against, in seconds since the epoch (default: the
    /// system clock).
    pub fn clock(mut self, now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(now);
        self
    }

    /// Fetches the key set, reads the revocation log, and goes on following it.
    ///
    /// # Errors
    /// When the service token is not a header value, or the key set or the revocation log
    /// cannot be read.
    pub async fn connect(self) -> Result<Verifier, ConnectError> {
        let token = ServiceToken::new(&self.service_token)
            .map_err(|_| ConnectError::InvalidServiceToken)?;
        let client = TokenServiceClient::with_interceptor(self.channel, token);
        let keys = fetch_keys(&client).await.map_err(ConnectError::Jwks)?;
        // Not serving before the log is read: a fresh verifier must not pass revoked tokens.
        let mut revocations = Revocations::new(self.revocation_retention);
        let mut stream = watch_revocations(&client, String::new())
            .await
            .map_err(ConnectError::Revocations)?;
        tokio::time::timeout(
            self.catch_up_timeout,
            catch_up(&mut stream, &mut revocations),
        )
        .await
        .map_err(|_| {
            ConnectError::Revocations(tonic::Status::deadline_exceeded(
                "the revocation log was not read in time",
            ))
        })?
        .map_err(ConnectError::Revocations)?;
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let (refresh, silent_stream_limit) = (self.jwks_refresh_interval, self.silent_stream_limit);
        let shared = Arc::new(Shared {
            client: client.clone(),
            expectations: Expectations {
                issuer: self.issuer,
                audience: self.audience,
                leeway,
            },
            keys: KeyCache::new(keys, self.min_refetch_interval),
            revocations: RwLock::new(revocations),
            introspect: self.introspect,
            max_staleness: self.max_staleness,
            when_stale: self.when_stale,
            clock: self.clock,
            tasks: Mutex::new(Vec::new()),
        });
        // Spawned once the verifier exists, so their first upgrade of it succeeds.
        let weak = Arc::downgrade(&shared);
        let tasks = [
            tokio::spawn(follow_revocations(
                weak.clone(),
                client.clone(),
                Some(stream),
                silent_stream_limit,
            ))
            .abort_handle(),
            tokio::spawn(refresh_keys(weak, client, refresh)).abort_handle(),
        ];
        shared
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(tasks);
        Ok(Verifier { shared })
    }
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

impl Verifier {
    /// A verifier that asks the server on `channel`, authenticating with `service_token`
    /// (which needs the `jwks` and `revocations` scopes, and `introspect` for
    /// [`VerifierBuilder::introspect`]).
    pub fn builder(channel: Channel, service_token: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            channel,
            service_token: service_token.into(),
            issuer: "identity".into(),
            audience: "identity".into(),
            leeway: Duration::from_secs(30),
            jwks_refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            revocation_retention: Duration::from_secs(3600),
            catch_up_timeout: Duration::from_secs(10),
            silent_stream_limit: Duration::from_secs(45),
            introspect: false,
            max_staleness: Duration::from_secs(60),
            when_stale: WhenStale::Introspect,
            clock: Arc::new(system_now),
        }
    }

    /// Checks `token` and says whose it is.
    ///
    /// # Errors
    /// Why it was refused; see [`Refusal`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, Refusal> {
        let shared = &self.shared;
        let kid = access_token_kid(token)?;
        let key = shared
            .keys
            .find(&kid, || async {
                fetch_keys(&shared.client)
                    .await
                    .inspect_err(|status| {
                        tracing::warn!(code = ?status.code(), "identity key set fetch failed");
                    })
                    .ok()
            })
            .await
            .ok_or(Refusal::UnknownKey)?;
        let verified = shared.expectations.check(token, &key, (shared.clock)())?;
        let stale = {
            let revocations = self.revocations();
            if revocations.voids(&verified) {
                return Err(Refusal::Revoked);
            }
            revocations.staleness() > shared.max_staleness
        };
        match (stale, shared.when_stale) {
            (true, WhenStale::Refuse) => return Err(Refusal::Stale),
            (true, WhenStale::Introspect) => self.introspect(token).await?,
            (false, _) if shared.introspect => self.introspect(token).await?,
            (false, _) => {}
        }
        Ok(verified)
    }

    /// How long ago the server last said this verifier had every revocation: while the
    /// stream is healthy, at most the server's heartbeat interval.
    #[must_use]
    pub fn staleness(&self) -> Duration {
        self.revocations().staleness()
    }

    /// Asks the server whether `token` is live now.
    async fn introspect(&self, token: &str) -> Result<(), Refusal> {
        let answer = self
            .shared
            .client
            .clone()
            .introspect_token(Request::new(pb::IntrospectTokenRequest {
                token: token.to_owned(),
            }))
            .await
            .map_err(|status| {
                tracing::warn!(code = ?status.code(), "identity introspection failed");
                Refusal::Unavailable
            })?;
        if answer.into_inner().active {
            Ok(())
        } else {
            Err(Refusal::Inactive)
        }
    }

    /// The tower layer that lets only requests with a verified bearer token through.
    #[must_use]
    pub fn layer(&self) -> RequireAccessToken {
        RequireAccessToken::new(self.clone())
    }

    /// The `TokenService` client this verifier uses, with the service token attached.
    #[must_use]
    pub fn client(&self) -> TokenServiceChannel {
        self.shared.client.clone()
    }

    fn revocations(&self) -> std::sync::RwLockReadGuard<'_, Revocations> {
        self.shared
            .revocations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn fetch_keys(
    client: &TokenServiceChannel,
) -> Result<HashMap<String, DecodingKey>, tonic::Status> {
    let jwks = client
        .clone()
        .get_jwks(Request::new(pb::GetJwksRequest {}))
        .await?
        .into_inner();
    Ok(decoding_keys(&jwks))
}

/// Replaces the key set on a timer, so next keys are known before they sign and removed
/// ones are dropped.
async fn refresh_keys(shared: Weak<Shared>, client: TokenServiceChannel, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let fetched = fetch_keys(&client).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match fetched {
            Ok(keys) => shared.keys.replace(keys),
            Err(status) => tracing::warn!(code = ?status.code(), "identity key set fetch failed"),
        }
    }
}

/// Opens `WatchRevocations` from `cursor`.
async fn watch_revocations(
    client: &TokenServiceChannel,
    cursor: String,
) -> Result<Streaming<pb::WatchRevocationsResponse>, tonic::Status> {
    let request = Request::new(pb::WatchRevocationsRequest { cursor });
    Ok(client
        .clone()
        .watch_revocations(request)
        .await?
        .into_inner())
}

/// Reads `stream` into `revocations` until the server says it is caught up.
async fn catch_up(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
    revocations: &mut Revocations,
) -> Result<(), tonic::Status> {
    loop {
        let Some(message) = stream.message().await? else {
            return Err(tonic::Status::unavailable("the revocation stream ended"));
        };
        let caught_up = message.caught_up;
        revocations.apply(message);
        if caught_up {
            return Ok(());
        }
    }
}

/// Follows `WatchRevocations` from the stream `connect` opened, then reconnects with a
/// growing wait, resuming from the last cursor applied, until the verifier is dropped. A
/// stream silent for longer than the server's heartbeats allow is taken for dead.
async fn follow_revocations(
    shared: Weak<Shared>,
    client: TokenServiceChannel,
    mut stream: Option<Streaming<pb::WatchRevocationsResponse>>,
    silent_stream_limit: Duration,
) {
    let mut wait = RECONNECT_FIRST_WAIT;
    loop {
        if let Some(open) = stream.as_mut() {
            loop {
                match tokio::time::timeout(silent_stream_limit, open.message()).await {
                    Ok(Ok(Some(message))) => {
                        let Some(shared) = shared.upgrade() else {
                            return;
                        };
                        shared
                            .revocations
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .apply(message);
                        wait = RECONNECT_FIRST_WAIT;
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(status)) => {
                        tracing::warn!(code = ?status.code(), "identity revocation stream broke");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!("identity revocation stream went silent; reconnecting");
                        break;
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RECONNECT_MAX_WAIT);
        }
        let Some(cursor) = shared.upgrade().map(|shared| {
            shared
                .revocations
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .cursor()
        }) else {
            return;
        };
        stream = match watch_revocations(&client, cursor).await {
            Ok(opened) => Some(opened),
            Err(status) => {
                tracing::warn!(code = ?status.code(), "identity revocation stream refused");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECONNECT_MAX_WAIT);
                None
            }
        };
    }
}
