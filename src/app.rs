//! Wiring: builds every part from `Config`, binds the listener (port 0 works), and runs the
//! gRPC server and the outbox worker until shut down.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::ExposeSecret;
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};

use crate::{
    auth::{KeyEncryption, PasswordHasher, Sealed, ServerSecret, ServiceCredentials, TokenIssuer},
    clock::Clock,
    config::{Config, JwtAlgorithm},
    email::{Mailer, Templates, Transport, worker},
    google::GoogleClient,
    grpc::{IdentityApi, TokenApi, server},
    http,
    services::{ServiceParts, Services, keys},
    storage::Store,
    telemetry::Metrics,
};

/// The label the HS256 signing key is derived from `SECRET_KEY` under.
pub const HS256_KEY_PURPOSE: &str = "jwt:hs256";

/// Names of the secrets kept in the database when none is configured.
const STORED_SECRET_KEY: &str = "secret_key";
/// How long past `REQUEST_TIMEOUT_MS` a drain waits for connections to close: by then every
/// call has ended, so what is left is a client that stopped answering (it would otherwise
/// hold the exit until keepalive gives up on it).
const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// A built, bound, migrated service, ready to run.
pub struct Application {
    grpc_listener: TcpListener,
    grpc_addr: SocketAddr,
    http_listener: TcpListener,
    http_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    services: Services,
    transport: Transport,
    config: Arc<Config>,
}

impl Application {
    /// Connects and migrates the database, loads keys and templates, and binds the listener.
    ///
    /// # Errors
    /// Any failure to do so, with its cause.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::default()).await
    }

    /// As [`Application::build`], with a given clock (tests move it to expire things).
    ///
    /// # Errors
    /// Any failure to build.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let services = services(config, clock).await?;
        let config = Arc::clone(&services.config);
        let transport = Transport::new(config.smtp.as_ref(), &config.from_email)
            .context("setting up email delivery")?;
        if let Some(tls) = &config.grpc_tls {
            server::check_tls(tls)?;
        }
        let grpc_listener = TcpListener::bind(config.grpc_listen_addr)
            .await
            .with_context(|| format!("binding GRPC_LISTEN_ADDR {}", config.grpc_listen_addr))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_listener = TcpListener::bind(config.http_listen_addr)
            .await
            .with_context(|| format!("binding HTTP_LISTEN_ADDR {}", config.http_listen_addr))?;
        let http_addr = http_listener.local_addr()?;
        let metrics_listener = TcpListener::bind(config.metrics_listen_addr)
            .await
            .with_context(|| {
                format!("binding METRICS_LISTEN_ADDR {}", config.metrics_listen_addr)
            })?;
        let metrics_addr = metrics_listener.local_addr()?;
        Ok(Self {
            grpc_listener,
            grpc_addr,
            http_listener,
            http_addr,
            metrics_listener,
            metrics_addr,
            services,
            transport,
            config,
        })
    }

    /// The bound gRPC address (with the real port when 0 was asked for).
    #[must_use]
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address of the bridge.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound address of the metrics listener.
    #[must_use]
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The services, for callers in the same process (the CLI, tests).
    #[must_use]
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` resolves; then stops accepting, finishes in-flight calls and
    /// the email in hand, and returns.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let services = self.services.clone();
        let worker_config = worker::WorkerConfig {
            max_attempts: self.config.email_max_attempts,
            retry_base: self.config.email_retry_base,
            poll_interval: self.config.email_poll_interval,
            unverified_retention: self.config.unverified_retention,
            audit_retention: self.config.audit_retention,
            lease: self.config.email_lease,
        };
        let worker = tokio::spawn(worker::run(
            services.store.clone(),
            self.transport,
            services.clock.clone(),
            worker_config,
            services.metrics.clone(),
            Arc::clone(&services.outbox_wake),
            stop_rx,
        ));
        let key_maintenance = tokio::spawn(maintain_keys(services.clone(), stop_tx.subscribe()));
        let gauges = tokio::spawn(maintain_database_gauges(
            services.clone(),
            stop_tx.subscribe(),
        ));
        let api = IdentityApi::new(services.clone(), &self.config.trusted_proxies);
        let redirects = http::PageRedirects {
            activation: self.config.activation_redirect_url.clone(),
            password_reset: self.config.password_reset_url.clone(),
            email_sign_in: self.config.email_sign_in_redirect_url.clone(),
        };
        // One signal stops both listeners and the worker.
        let stopping = stop_tx.subscribe();
        let token_api = TokenApi::new(services.clone(), stopping.clone());
        let apis = http::Apis {
            identity: api.clone(),
            tokens: token_api.clone(),
        };
        let bridge = http::router(apis, services.clone(), redirects)?;
        let metrics = http::metrics_router(services.clone());
        let bounds = http::server::Bounds {
            header_read_timeout: self.config.http_header_read_timeout,
            request_timeout: self.config.request_timeout,
            max_connections: self.config.max_connections,
        };
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        tracing::info!(
            grpc.addr = %self.grpc_addr,
            http.addr = %self.http_addr,
            metrics.addr = %self.metrics_addr,
            "identity is serving"
        );
        let draining = stopped(stopping.clone());
        let drain_limit = self.config.request_timeout + DRAIN_MARGIN;
        let servers = async {
            tokio::join!(
                server::serve(
                    self.grpc_listener,
                    api,
                    token_api,
                    services,
                    stopped(stopping.clone()),
                ),
                http::server::serve(
                    self.http_listener,
                    bridge,
                    bounds,
                    stopped(stopping.clone()),
                ),
                http::server::serve(self.metrics_listener, metrics, bounds, stopped(stopping),),
            )
        };
        let (grpc, bridge, metrics) = tokio::select! {
            served = servers => served,
            () = async { draining.await; tokio::time::sleep(drain_limit).await } => {
                tracing::warn!("connections still open {drain_limit:?} after the drain began are closed");
                (Ok(()), Ok(()), Ok(()))
            }
        };
        worker.await.context("the outbox worker panicked")?;
        key_maintenance
            .await
            .context("the key maintenance panicked")?;
        gauges.await.context("the gauge refresh panicked")?;
        tracing::info!("identity stopped");
        grpc.and(bridge).and(metrics)
    }
}

/// The services alone, over a connected and migrated database: what a command run beside
/// a live server needs (`create-superuser`). Binds no listener and starts no worker; mail
/// it queues is delivered by the servers' workers.
///
/// # Errors
/// Any failure to connect, migrate, or load keys and templates.
pub async fn services(config: Config, clock: Clock) -> anyhow::Result<Services> {
    let store = Store::connect(
        &config.database,
        config.database_pool_size,
        config.statement_timeout,
    )
    .await
    .context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let key_encryption = KeyEncryption::new(config.jwt.key_encryption_key.as_ref())
        .context("reading KEY_ENCRYPTION_KEY")?;
    let secret = server_secret(&config, &store, &clock, &key_encryption).await?;
    let tokens = token_issuer(&config, &store, &clock, &key_encryption).await?;
    let templates =
        Templates::load(config.templates_dir.as_deref()).context("loading email templates")?;
    let service_credentials = match &config.service_tokens_file {
        Some(path) => {
            ServiceCredentials::load(path).context("invalid setting SERVICE_TOKENS_FILE")?
        }
        None => ServiceCredentials::default(),
    };
    let config = Arc::new(config);
    let metrics = Metrics::new()?;
    Ok(Services::new(ServiceParts {
        store,
        clock,
        hasher: PasswordHasher::new(&config.hashing, metrics.clone())?,
        tokens,
        key_encryption,
        secret,
        service_credentials,
        mailer: Mailer::new(templates, config.public_base_url.clone()),
        google: GoogleClient::new(config.google.clone()).context("setting up the Google client")?,
        outbox_wake: Arc::new(Notify::new()),
        metrics,
        config,
    }))
}

/// Reloads the signing key set on a timer (scheduling and removing keys when due) until
/// stopped; a failure waits for the next round.
async fn maintain_keys(services: Services, stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(keys::refresh_interval(&services.config.jwt));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = stopped(stop);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stopping => return,
        }
        if let Err(error) = services.maintain_signing_keys().await {
            tracing::warn!(error = %error, "maintaining the signing keys failed; will retry");
        }
    }
}

/// Brings the gauges read from the database up to date on a timer until stopped.
async fn maintain_database_gauges(services: Services, stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(services.config.metrics_database_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = stopped(stop);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = ticks.tick() => services.refresh_database_gauges().await,
            () = &mut stopping => return,
        }
    }
}

/// Resolves once the stop flag turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The configured `SECRET_KEY`, or one generated once and shared through the database,
/// sealed there with `KEY_ENCRYPTION_KEY` when one is set (one stored plain by a version
/// or a start without it is sealed now).
async fn server_secret(
    config: &Config,
    store: &Store,
    clock: &Clock,
    encryption: &KeyEncryption,
) -> anyhow::Result<ServerSecret> {
    if let Some(key) = &config.secret_key {
        return Ok(ServerSecret::new(key.expose_secret().as_bytes().to_vec()));
    }
    let mut candidate = [0u8; 32];
    getrandom::fill(&mut candidate).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let candidate = encryption.seal(Sealed::InstanceSecret, &STANDARD.encode(candidate))?;
    let stored = stored_secret(store, clock, STORED_SECRET_KEY, &candidate).await?;
    let plain = encryption
        .open(Sealed::InstanceSecret, &stored)
        .context("opening the stored secret key")?;
    if encryption.seals() && !KeyEncryption::is_sealed(&stored) {
        let sealed = encryption.seal(Sealed::InstanceSecret, &plain)?;
        let mut conn = store.connection().await?;
        conn.queries()
            .replace_secret(STORED_SECRET_KEY, &stored, &sealed)
            .await
            .context("sealing the stored secret key")?;
    }
    let bytes = STANDARD
        .decode(plain)
        .context("decoding the stored secret key")?;
    tracing::warn!("SECRET_KEY is not set; using a generated key kept in the database");
    Ok(ServerSecret::new(bytes))
}

/// The configured signing key (HS256, or a pinned `JWT_PRIVATE_KEY_FILE`), or the key set
/// kept in the database, which rotates.
async fn token_issuer(
    config: &Config,
    store: &Store,
    clock: &Clock,
    encryption: &KeyEncryption,
) -> anyhow::Result<TokenIssuer> {
    if config.jwt.algorithm == JwtAlgorithm::Hs256 {
        // Config refuses HS256 without SECRET_KEY, so this is only a second line of defence.
        let key = config
            .secret_key
            .as_ref()
            .context("SECRET_KEY is required for HS256")?;
        // Never the raw secret, which also keys codes and links: a key of its own.
        let secret = ServerSecret::new(key.expose_secret().as_bytes().to_vec());
        return Ok(TokenIssuer::hs256(
            &secret.derive_key(HS256_KEY_PURPOSE),
            &config.jwt,
        ));
    }
    if let Some(path) = &config.jwt.private_key_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading JWT_PRIVATE_KEY_FILE {}", path.display()))?;
        return TokenIssuer::ed25519(&pem, &config.jwt).context("loading the JWT signing key");
    }
    if !encryption.seals() {
        tracing::warn!(
            "KEY_ENCRYPTION_KEY is not set; signing keys are kept unsealed in the database"
        );
    }
    let keys = keys::initial_key_set(store, encryption, clock)
        .await
        .context("loading the signing keys")?;
    TokenIssuer::ed25519_set(&keys, &config.jwt).context("loading the signing keys")
}

async fn stored_secret(
    store: &Store,
    clock: &Clock,
    name: &str,
    candidate: &str,
) -> anyhow::Result<String> {
    let mut conn = store.connection().await?;
    conn.queries()
        .secret_or_insert(name, candidate, clock.now_naive())
        .await
        .with_context(|| format!("loading the stored {name}"))
}
