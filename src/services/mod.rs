//! The service layer: every rule and every transaction of `identity`, written once.
//! Adapters (gRPC today) parse the wire into domain types, call one method, and convert back.
//!
//! - [`accounts`]: register, verify by code or link, resend.
//! - [`sessions`]: login, refresh rotation, logout.
//! - [`password_reset`]: reset links and new passwords.
//! - [`google_login`]: signing in with Google, creating or linking accounts.
//! - [`users`]: reading accounts.
//! - [`account_changes`]: a user's own password, address and deletion.
//! - [`admin`]: staff and services creating, changing and deleting accounts.
//! - [`audit`]: the trail of security-relevant events.
//! - [`django_import`]: moving a Django deployment's users in.
//! - [`limits`]: per-IP budgets, email cooldowns and login back-off, all in the database.
//! - [`keys`]: the signing key set that rotates by time.
//! - [`token_service`]: for backend services: key set, introspection, revocation log.

pub mod account_changes;
pub mod accounts;
pub mod admin;
pub mod audit;
pub mod devices;
pub mod django_import;
pub mod google_login;
pub mod keys;
pub mod limits;
pub mod password_reset;
pub mod sessions;
pub mod token_service;
pub mod users;

use std::{net::IpAddr, sync::Arc};

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::sync::Notify;

use crate::{
    auth::{
        DjangoRefreshTokens, DjangoTokens, HashError, KeyEncryption, LinkPurpose, LinkTokens,
        PasswordHasher, ServerSecret, ServiceCredentials, TokenIssuer, UserState,
    },
    clock::Clock,
    config::Config,
    domain::{DeviceName, Email, Uidb64, User, UserId},
    email::{EmailedLink, Mailer},
    error::{ServiceError, ServiceResult},
    google::GoogleClient,
    storage::{Connection, NewUser, Queries, RegistrationRow, Store, StoreError, UserRow},
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

    /// Borrows a database connection for statements outside a transaction.
    pub(crate) async fn connection(&self) -> ServiceResult<Connection<'_>> {
        Ok(self
            .store
            .connection()
            .await
            .context("borrowing a connection")?)
    }

    pub(crate) async fn user_by_email(&self, email: &Email) -> ServiceResult<Option<UserRow>> {
        let mut conn = self.connection().await?;
        Ok(conn
            .queries()
            .user_by_email(email)
            .await
            .context("loading a user by email")?)
    }

    pub(crate) async fn user_by_id(&self, id: UserId) -> ServiceResult<Option<UserRow>> {
        let mut conn = self.connection().await?;
        Ok(conn
            .queries()
            .user_by_id(id)
            .await
            .context("loading a user by id")?)
    }

    /// The public view of a stored account. An account waiting for verification is shown
    /// inactive when verification is required: it cannot sign in yet.
    pub(crate) fn to_user(&self, row: &UserRow) -> User {
        User {
            id: row.id,
            email: row.email.clone(),
            first_name: row.first_name.clone(),
            last_name: row.last_name.clone(),
            is_active: row.is_active && (row.is_verified || !self.config.verification.required),
            is_verified: row.is_verified,
            is_staff: row.is_staff,
            is_superuser: row.is_superuser,
            date_joined: utc(row.date_joined),
            last_login: row.last_login.map(utc),
        }
    }

    /// Writes a new account inside the caller's transaction: the one place an account is
    /// inserted and a taken address becomes `EmailTaken`.
    pub(crate) async fn insert_account(
        &self,
        tx: &mut Queries<'_>,
        account: NewAccount,
    ) -> ServiceResult<UserRow> {
        let now = self.clock.now_naive();
        let (is_verified, is_staff) = match account.standing {
            Standing::Unverified => (false, false),
            Standing::Verified => (true, false),
            Standing::Superuser => (true, true),
        };
        let new_user = NewUser {
            email: account.email,
            password_hash: account.password_hash,
            first_name: account.first_name,
            last_name: account.last_name,
            is_active: true,
            is_verified,
            is_staff,
            is_superuser: is_staff,
            date_joined: now,
            password_changed_at: now,
        };
        tx.insert_user(&new_user)
            .await
            .context("inserting the user")?
            .ok_or(ServiceError::EmailTaken)
    }
}

impl Services {
    /// Frees `email` for an account whose claim to it is proven (a code sent there, a trusted
    /// caller's word): an unverified account holding it is removed with its sessions.
    ///
    /// # Errors
    /// `EmailTaken` when a verified account holds it.
    pub(crate) async fn claim_address(
        &self,
        tx: &mut Queries<'_>,
        email: &Email,
    ) -> ServiceResult<()> {
        let holder = tx
            .user_by_email(email)
            .await
            .context("finding the address's account")?;
        match holder {
            Some(holder) if holder.is_verified => Err(ServiceError::EmailTaken),
            Some(squatter) => {
                tx.revoke_user_sessions(squatter.id, self.clock.now_naive())
                    .await
                    .context("ending an unproven account's sessions")?;
                tx.delete_user(squatter.id)
                    .await
                    .context("removing an unproven account")?;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Why an account is mailed a link to choose its password.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PasswordLink {
    /// An administrator made the account.
    Welcome,
    /// Sign-ups competed for the address, so none of their passwords was kept.
    AfterCompetingSignUps,
}

impl Services {
    /// Queues a link to choose the account's password (a reset link, void once any password
    /// is set), inside the caller's transaction.
    pub(crate) async fn queue_password_link(
        &self,
        tx: &mut Queries<'_>,
        row: &UserRow,
        why: PasswordLink,
        now: DateTime<Utc>,
    ) -> ServiceResult<()> {
        let token = self
            .links
            .make(LinkPurpose::PasswordReset, &link_state(row), now);
        let uidb64 = Uidb64::encode(row.id);
        let link = EmailedLink {
            uidb64: &uidb64,
            token: &token,
            lifetime: self.config.password_reset_lifetime,
            now: now.naive_utc(),
        };
        let mail = match why {
            PasswordLink::Welcome => self.mailer.welcome(&row.email, &row.first_name, &link),
            PasswordLink::AfterCompetingSignUps => {
                self.mailer
                    .choose_password(&row.email, &row.first_name, &link)
            }
        };
        tx.enqueue_email(&mail)
            .await
            .context("queueing a link to choose a password")?;
        Ok(())
    }
}

/// An account about to be written by [`Services::insert_account`].
pub(crate) struct NewAccount {
    pub(crate) email: Email,
    pub(crate) password_hash: Option<String>,
    pub(crate) first_name: String,
    pub(crate) last_name: String,
    pub(crate) standing: Standing,
}

/// What a new account has proved and may do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Standing {
    /// Registered, waiting for its owner to prove the address.
    Unverified,
    /// The address is proven by a trusted party (Google).
    Verified,
    /// Made by an operator: verified, staff and superuser.
    Superuser,
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

pub(crate) fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    naive.and_utc()
}

/// The state an emailed link is bound to.
pub(crate) fn link_state(row: &UserRow) -> UserState<'_> {
    UserState {
        id: row.id,
        email: &row.email,
        password_hash: row.password_hash.as_deref(),
        password_changed_at: utc(row.password_changed_at),
        is_verified: row.is_verified,
        registration: None,
    }
}

/// The state an activation link for one sign-up is bound to: its password, not the account's.
pub(crate) fn registration_link_state<'a>(
    row: &'a UserRow,
    registration: &'a RegistrationRow,
) -> UserState<'a> {
    UserState {
        password_hash: registration.password_hash.as_deref(),
        registration: Some(registration.id),
        ..link_state(row)
    }
}
