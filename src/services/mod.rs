//! The service layer: every rule and every transaction of `identity`, written once.
//! Adapters (gRPC today) parse the wire into domain types, call one method, and convert back.
//!
//! What the features share is in [`core`] (access, account transitions, sign-in, the
//! transaction with its effects, limits); each feature file below uses it and storage, and
//! never a sibling.
//!
//! - [`accounts`]: register, verify by code or link, resend.
//! - [`sessions`]: login, refresh rotation, logout.
//! - [`password_reset`]: reset links and new passwords.
//! - [`google_login`]: signing in with Google, creating or linking accounts.
//! - [`email_sign_in`]: signing in without a password, by an emailed code or link.
//! - [`passkey_sign_in`]: signing in with a passkey, username-first or usernameless.
//! - [`users`]: reading accounts.
//! - [`account_changes`]: a user's own password, address and deletion.
//! - [`admin`]: staff and services creating, changing and deleting accounts.
//! - [`audit`]: reading the trail of security-relevant events.
//! - [`devices`]: a user's own sessions, listed and ended.
//! - [`factors`]: second factors (authenticator apps, passkeys) and recovery codes.
//! - [`django_import`]: moving a Django deployment's users in.
//! - [`keys`]: the signing key set that rotates by time.
//! - [`token_service`]: for backend services: key set, introspection, revocation log.

pub mod account_changes;
pub mod accounts;
pub mod admin;
pub mod audit;
pub mod core;
pub mod devices;
pub mod django_import;
pub mod email_sign_in;
pub mod factors;
pub mod google_login;
pub mod keys;
pub mod passkey_sign_in;
pub mod password_reset;
pub mod sessions;
pub mod token_service;
pub mod users;

use std::{net::IpAddr, sync::Arc};

use tokio::sync::Notify;

pub use self::core::{
    access::{Access, Authenticated, Credentials, Principal},
    ceremonies::StartedCeremony,
    second_factor::SecondFactorProof,
    sign_in::{GoogleCredential, SecondFactorChallenge, SignInOutcome, TokenPair},
};
use crate::{
    auth::{
        DjangoRefreshTokens, DjangoTokens, HashError, KeyEncryption, LinkTokens, PasswordHasher,
        RelyingParty, ServerSecret, ServiceCredentials, TokenIssuer,
    },
    clock::Clock,
    config::Config,
    domain::DeviceName,
    email::Mailer,
    error::ServiceError,
    google::GoogleClient,
    storage::{Store, StoreError},
    telemetry::Metrics,
};

/// Who is calling, as far as the transport can tell.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The client's address (the peer, or a trusted proxy's forwarded address).
    pub ip: Option<IpAddr>,
    /// The client's device as it described itself, for the sessions it starts.
    pub device: DeviceName,
}

/// The dependencies every service call needs, shared by all adapters. A clone is one
/// reference count: the bridge's state is cloned for every request.
#[derive(Clone)]
pub struct Services(Arc<Dependencies>);

/// What [`Services`] holds.
pub struct Dependencies {
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) hasher: PasswordHasher,
    pub(crate) tokens: TokenIssuer,
    pub(crate) key_encryption: KeyEncryption,
    pub(crate) links: LinkTokens,
    pub(crate) django_links: DjangoTokens,
    pub(crate) django_refresh: DjangoRefreshTokens,
    pub(crate) secret: ServerSecret,
    pub(crate) service_credentials: ServiceCredentials,
    pub(crate) mailer: Mailer,
    pub(crate) google: Arc<GoogleClient>,
    pub(crate) relying_party: Option<RelyingParty>,
    pub(crate) metrics: Metrics,
    pub(crate) outbox_wake: Arc<Notify>,
    pub(crate) config: Arc<Config>,
}

/// The parts of [`Services`], for [`Services::new`].
pub struct ServiceParts {
    /// Database.
    pub store: Store,
    /// Time source.
    pub clock: Clock,
    /// Password hashing.
    pub hasher: PasswordHasher,
    /// Access tokens.
    pub tokens: TokenIssuer,
    /// Seals signing keys written to the database.
    pub key_encryption: KeyEncryption,
    /// Server secret for codes and links.
    pub secret: ServerSecret,
    /// The services allowed to call `TokenService` and administer, and what for.
    pub service_credentials: ServiceCredentials,
    /// Email rendering.
    pub mailer: Mailer,
    /// Google sign-in.
    pub google: GoogleClient,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Wakes the outbox worker after a commit that queued mail.
    pub outbox_wake: Arc<Notify>,
    /// Settings.
    pub config: Arc<Config>,
}

impl std::ops::Deref for Services {
    type Target = Dependencies;

    fn deref(&self) -> &Dependencies {
        &self.0
    }
}

impl Services {
    /// Assembles the services.
    #[must_use]
    pub fn new(parts: ServiceParts) -> Self {
        Self(Arc::new(Dependencies {
            links: LinkTokens::new(parts.secret.clone()),
            django_links: DjangoTokens::new(parts.config.django.secret_keys.clone()),
            django_refresh: DjangoRefreshTokens::new(
                parts.config.django.simplejwt_signing_key.as_ref(),
                parts.config.django.refresh_tokens_until,
            ),
            store: parts.store,
            clock: parts.clock,
            hasher: parts.hasher,
            tokens: parts.tokens,
            key_encryption: parts.key_encryption,
            secret: parts.secret,
            service_credentials: parts.service_credentials,
            mailer: parts.mailer,
            google: Arc::new(parts.google),
            relying_party: parts
                .config
                .webauthn
                .as_ref()
                .and_then(|relying_party| RelyingParty::new(relying_party, "identity").ok()),
            metrics: parts.metrics,
            outbox_wake: parts.outbox_wake,
            config: parts.config,
        }))
    }

    /// The metrics registry, with the in-process gauges brought up to date. The gauges read
    /// from the database are kept by [`Services::refresh_database_gauges`] on a timer, so a
    /// scrape costs no query.
    #[must_use]
    pub fn metrics_snapshot(&self) -> String {
        let (connections, idle) = self.store.pool_state();
        self.metrics
            .gauge("identity_db_pool_connections", f64::from(connections));
        self.metrics
            .gauge("identity_db_pool_idle_connections", f64::from(idle));
        #[expect(
            clippy::cast_precision_loss,
            reason = "a count of tasks fits an f64 exactly"
        )]
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as f64;
        self.metrics.gauge("identity_runtime_alive_tasks", tasks);
        self.metrics.render()
    }

    /// Brings the gauges read from the database up to date: the outbox's depth and oldest
    /// message, and the legacy password hashes left. A failure keeps the last values.
    pub async fn refresh_database_gauges(&self) {
        let Ok(mut conn) = self.store.connection().await else {
            return;
        };
        let mut queries = conn.queries();
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts of rows fit an f64 exactly"
        )]
        if let Ok((pending, oldest)) = queries.pending_emails().await {
            self.metrics
                .gauge("identity_outbox_pending_emails", pending as f64);
            let age = oldest.map_or(0.0, |queued| {
                (self.clock.now_naive() - queued)
                    .to_std()
                    .unwrap_or_default()
                    .as_secs_f64()
            });
            self.metrics
                .gauge("identity_outbox_oldest_pending_seconds", age);
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts of rows fit an f64 exactly"
        )]
        if let Ok(legacy) = queries.count_legacy_password_hashes().await {
            self.metrics
                .gauge("identity_legacy_password_hashes", legacy as f64);
        }
    }

    /// Whether the database answers (readiness).
    pub async fn is_ready(&self) -> bool {
        self.store.is_reachable().await
    }

    /// Every change of the database's reachability, so readiness follows it at once.
    #[must_use]
    pub fn readiness_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.store.reachability_changes()
    }
}

impl From<HashError> for ServiceError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy { retry_after } => Self::Busy { retry_after },
            HashError::Failed(cause) => Self::Unexpected(cause),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        Self::from(anyhow::Error::new(error))
    }
}
