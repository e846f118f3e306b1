//! The database boundary. The backend (Postgres or embedded SQLite) is chosen once, here;
//! every query is written once in [`Queries`] and compiled for both.
//!
//! Services borrow a [`Connection`] for single statements or run a closure in
//! [`Store::transaction`]; both hand out the same [`Queries`].

mod audit;
mod counters;
mod email_changes;
mod imports;
mod linked_identities;
mod models;
mod outbox;
mod reachability;
mod registrations;
mod schema;
mod secrets;
mod sessions;
mod signing_keys;
mod users;
mod values;

use std::{
    future::{Future, ready},
    path::Path,
    time::Duration,
};

use diesel::{ConnectionError, SqliteConnection};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod, bb8,
    },
    sync_connection_wrapper::SyncConnectionWrapper,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::ExposeSecret;
use tokio::sync::watch;

pub use audit::AuditFilter;
pub use counters::CounterPolicy;
pub use models::{
    AuditEventRow, DjangoImportRecord, DjangoLinkRow, EmailChangeRow, ImportedUser, NewAuditEvent,
    NewEmail, NewRegistration, NewUser, OutboxRow, RegistrationRow, RevocationRow, SessionRow,
    SigningKeyRow, SpentRefreshToken, UserRow,
};
pub use users::{UserChanges, UserFilter};

use self::reachability::Reachability;
use crate::config::DatabaseConfig;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Longest wait for a free connection while the database answers.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a connection while the latest attempt to open one failed: long enough
/// for a connection that is being opened to arrive, short enough that callers learn of an
/// outage at once.
const UNREACHABLE_CHECKOUT_WAIT: Duration = Duration::from_millis(250);

/// Serialises `migrate` runs from several pods on one Postgres database.
const MIGRATION_LOCK_KEY: i64 = 0x6964_656e_7469_7479; // "identity"

type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// A failure at the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write.
    #[error("a row with the same unique key exists")]
    UniqueViolation,
    /// The database cannot be reached, or dropped the connection in the middle of a call.
    #[error("the database is unreachable: {0}")]
    Unreachable(String),
    /// Every pooled connection stayed busy for the whole checkout timeout.
    #[error("no database connection came free in time")]
    Saturated,
    /// A statement ran past `DATABASE_STATEMENT_TIMEOUT_MS` (or waited on a lock that long)
    /// and was cancelled.
    #[error("a statement ran past the statement timeout")]
    StatementTimeout,
    /// The database refuses writes: a read-only file system, or a standby.
    #[error("the database is read-only")]
    ReadOnly,
    /// The database's disk is full.
    #[error("the database's disk is full")]
    DiskFull,
    /// The database refused or failed a query.
    #[error("database query failed")]
    Query(#[source] diesel::result::Error),
    /// The database could not be opened or migrated.
    #[error("database set-up failed: {0}")]
    Setup(String),
}

impl StoreError {
    /// Whether the failure is the database's state rather than the call's: it did not
    /// answer, was saturated or too slow, or cannot write now. The call changed nothing
    /// (a transaction's work is rolled back) and may be retried.
    #[must_use]
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_)
                | Self::Saturated
                | Self::StatementTimeout
                | Self::ReadOnly
                | Self::DiskFull
        )
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::UniqueViolation,
            Error::DatabaseError(
                DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
                info,
            ) => Self::Unreachable(info.message().to_owned()),
            Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => Self::ReadOnly,
            Error::DatabaseError(kind, info) => match outage_of(info.message()) {
                Some(outage) => outage,
                None => Self::Query(Error::DatabaseError(kind, info)),
            },
            other => Self::Query(other),
        }
    }
}

/// The outage a database's error message names, where the error carries no kind that says
/// so. These texts are Postgres' and SQLite's own (SQLite's are fixed; Postgres' are those of
/// its default `lc_messages`); any other text stays a query failure.
fn outage_of(message: &str) -> Option<StoreError> {
    const UNREACHABLE: [&str; 4] = [
        "terminating connection",
        "the database system is shutting down",
        "the database system is starting up",
        "server closed the connection",
    ];
    if message.contains("statement timeout") || message.contains("lock timeout") {
        Some(StoreError::StatementTimeout)
    } else if UNREACHABLE.iter().any(|text| message.contains(text)) {
        Some(StoreError::Unreachable(message.to_owned()))
    } else if message.contains("database or disk is full") {
        Some(StoreError::DiskFull)
    } else if message.contains("readonly database") || message.contains("read-only") {
        Some(StoreError::ReadOnly)
    } else if message.contains("database is locked") {
        Some(StoreError::Saturated)
    } else if message.contains("disk I/O error") {
        Some(StoreError::Unreachable(message.to_owned()))
    } else {
        None
    }
}

#[derive(Clone)]
enum Pool {
    Postgres(bb8::Pool<AsyncPgConnection>),
    Sqlite(bb8::Pool<SqliteConn>),
}

/// The database: a connection pool for the configured backend.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    reachability: Reachability,
}

/// A pooled connection, returned to the pool on drop.
pub struct Connection<'p>(Pooled<'p>);

#[expect(
    clippy::large_enum_variant,
    reason = "short-lived, one per call; boxing would allocate per query"
)]
enum Pooled<'p> {
    Postgres(bb8::PooledConnection<'p, AsyncPgConnection>),
    Sqlite(bb8::PooledConnection<'p, SqliteConn>),
}

impl Connection<'_> {
    /// The queries, run on this connection outside any transaction.
    pub fn queries(&mut self) -> Queries<'_> {
        let backend = match &mut self.0 {
            Pooled::Postgres(conn) => Backend::Postgres(conn),
            Pooled::Sqlite(conn) => Backend::Sqlite(conn),
        };
        Queries(backend, None)
    }
}

/// Every query of the service, on one borrowed connection (possibly inside a transaction),
/// and, inside a transaction, the revocations it logged that get their place in the feed
/// when it commits (`None` outside one: a revocation is logged only in a transaction).
pub struct Queries<'c>(Backend<'c>, Option<Vec<i64>>);

/// Serialises the last moment of transactions that logged revocations: see
/// [`Queries::place_revocations`].
const REVOCATION_FEED_LOCK_KEY: i64 = 0x7265_766f_6b65_6421; // "revoked!"

enum Backend<'c> {
    /// Shared, not exclusive: diesel-async runs statements on `&AsyncPgConnection` too,
    /// and statements sent from one task at once on it are pipelined.
    Postgres(&'c AsyncPgConnection),
    Sqlite(&'c mut SqliteConn),
}

/// What [`Store::transaction`] takes: an async closure over the transaction's queries whose
/// future can move between threads. `AsyncFnOnce` alone cannot say so on stable Rust, as
/// its future type has no name there; this names it (diesel-async does the same).
pub trait TransactionBody<Args, Output>:
    AsyncFnOnce(Args) -> Output + FnOnce(Args) -> <Self as TransactionBody<Args, Output>>::Future
{
    /// The future the closure returns.
    type Future: Future<Output = Output>;
}

impl<F, Args, Fut, Output> TransactionBody<Args, Output> for F
where
    F: AsyncFnOnce(Args) -> Output + FnOnce(Args) -> Fut,
    Fut: Future<Output = Output>,
{
    type Future = Fut;
}

/// Runs one diesel query body, written once, on whichever backend `queries` holds:
/// `on_backend!(self, conn => query.get_result(conn).await)`. Diesel's error becomes a
/// [`StoreError`].
macro_rules! on_backend {
    ($queries:expr, $conn:ident => $body:expr) => {
        Ok::<_, $crate::storage::StoreError>(match &mut $queries.0 {
            $crate::storage::Backend::Postgres($conn) => $body,
            $crate::storage::Backend::Sqlite($conn) => $body,
        }?)
    };
}
pub(crate) use on_backend;

/// Either the caller's own error or a failure of the transaction itself.
enum TxError<E> {
    Database(diesel::result::Error),
    Caller(E),
}

impl<E> From<diesel::result::Error> for TxError<E> {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}

impl Store {
    /// Opens the pool for the configured backend. Connections are made lazily.
    ///
    /// # Errors
    /// When the pool cannot be built.
    pub async fn connect(
        config: &DatabaseConfig,
        max_size: u32,
        statement_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let reachability = Reachability::new();
        let pool = match config {
            DatabaseConfig::Postgres { url } => {
                let mut manager_config = ManagerConfig::default();
                manager_config.recycling_method =
                    RecyclingMethod::CustomFunction(Box::new(|conn: &mut AsyncPgConnection| {
                        Box::pin(ready(usable(conn)))
                    }));
                let timeout_ms = statement_timeout.as_millis();
                let opened = reachability.clone();
                manager_config.custom_setup = Box::new(move |url| {
                    Box::pin(observed(
                        opened.clone(),
                        open_postgres(url.to_owned(), timeout_ms),
                    ))
                });
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                    url.expose_secret().to_owned(),
                    manager_config,
                );
                Pool::Postgres(
                    bb8::Pool::builder()
                        .max_size(max_size.max(1))
                        .connection_timeout(CHECKOUT_TIMEOUT)
                        .build(manager)
                        .await
                        .map_err(|e| StoreError::Setup(e.to_string()))?,
                )
            }
            DatabaseConfig::Sqlite { path } => {
                prepare_sqlite_file(path)?;
                let mut manager_config = ManagerConfig::default();
                manager_config.recycling_method =
                    RecyclingMethod::CustomFunction(Box::new(|conn: &mut SqliteConn| {
                        Box::pin(ready(usable(conn)))
                    }));
                let opened = reachability.clone();
                manager_config.custom_setup = Box::new(move |url| {
                    Box::pin(observed(opened.clone(), open_sqlite(url.to_owned())))
                });
                let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(
                    path.to_string_lossy(),
                    manager_config,
                );
                // One writer at a time is SQLite's nature; one connection avoids lock upgrades failing with BUSY.
                Pool::Sqlite(
                    bb8::Pool::builder()
                        .max_size(1)
                        .connection_timeout(CHECKOUT_TIMEOUT)
                        .build(manager)
                        .await
                        .map_err(|e| StoreError::Setup(e.to_string()))?,
                )
            }
        };
        Ok(Self { pool, reachability })
    }

    /// Applies pending migrations; safe to run from several processes at once.
    ///
    /// # Errors
    /// When the database is unreachable or a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut conn = pool
                    .dedicated_connection()
                    .await
                    .map_err(|e| StoreError::Setup(e.to_string()))?;
                conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .await?;
                let mut conn = run_migrations(conn, POSTGRES_MIGRATIONS).await?;
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .await?;
                Ok(())
            }
            Pool::Sqlite(pool) => {
                let conn = pool
                    .dedicated_connection()
                    .await
                    .map_err(|e| StoreError::Setup(e.to_string()))?;
                run_migrations(conn, SQLITE_MIGRATIONS).await.map(drop)
            }
        }
    }

    /// Borrows a connection from the pool.
    ///
    /// # Errors
    /// `Saturated` when none comes free within the checkout timeout; `Unreachable` as soon
    /// as an attempt to open one fails, and at once (after a short wait for a connection
    /// being opened) while the latest attempt failed.
    pub async fn connection(&self) -> Result<Connection<'_>, StoreError> {
        let checkout = async {
            match &self.pool {
                Pool::Postgres(pool) => pool.get().await.map(Pooled::Postgres),
                Pool::Sqlite(pool) => pool.get().await.map(Pooled::Sqlite),
            }
        };
        let reachable = self.reachability.is_reachable();
        let wait = if reachable {
            CHECKOUT_TIMEOUT
        } else {
            UNREACHABLE_CHECKOUT_WAIT
        };
        let unreachable = || StoreError::Unreachable("the latest connection attempt failed".into());
        tokio::select! {
            biased;
            checked_out = tokio::time::timeout(wait, checkout) => match checked_out {
                Ok(Ok(pooled)) => Ok(Connection(pooled)),
                Ok(Err(bb8::RunError::User(error))) => Err(StoreError::Unreachable(error.to_string())),
                Ok(Err(bb8::RunError::TimedOut)) | Err(_) if reachable && self.reachability.is_reachable() => {
                    Err(StoreError::Saturated)
                }
                Ok(Err(bb8::RunError::TimedOut)) | Err(_) => Err(unreachable()),
            },
            () = self.reachability.lost(), if reachable => Err(unreachable()),
        }
    }

    /// Every change of the database's reachability (`true` once a connection opens again).
    #[must_use]
    pub fn reachability_changes(&self) -> watch::Receiver<bool> {
        self.reachability.changes()
    }

    /// Runs `work` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    /// `work` is an async closure that borrows the transaction's queries, and may borrow
    /// anything of the caller's (`&self` included): `store.transaction(async |tx| { .. })`.
    ///
    /// # Errors
    /// The error of `work`, or a storage failure converted into `E`.
    pub async fn transaction<R, E, F>(&self, work: F) -> Result<R, E>
    where
        for<'q, 'c> F: AsyncFnOnce(&'q mut Queries<'c>) -> Result<R, E>
            + TransactionBody<&'q mut Queries<'c>, Result<R, E>, Future: Send>
            + Send,
        R: Send,
        E: From<StoreError> + Send,
    {
        let mut conn = self.connection().await?;
        let outcome = match &mut conn.0 {
            Pooled::Postgres(conn) => {
                conn.transaction(async |tx| {
                    let mut queries = Queries(Backend::Postgres(&*tx), Some(Vec::new()));
                    let done = work(&mut queries).await.map_err(TxError::Caller)?;
                    queries.place_revocations().await?;
                    Ok(done)
                })
                .await
            }
            Pooled::Sqlite(conn) => {
                conn.transaction(async |tx| {
                    let mut queries = Queries(Backend::Sqlite(tx), Some(Vec::new()));
                    work(&mut queries).await.map_err(TxError::Caller)
                })
                .await
            }
        };
        outcome.map_err(|e| match e {
            TxError::Database(e) => E::from(StoreError::from(e)),
            TxError::Caller(e) => e,
        })
    }

    /// Open and idle connections of the pool.
    #[must_use]
    pub fn pool_state(&self) -> (u32, u32) {
        let state = match &self.pool {
            Pool::Postgres(pool) => pool.state(),
            Pool::Sqlite(pool) => pool.state(),
        };
        (state.connections, state.idle_connections)
    }

    /// Whether the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        match self.connection().await {
            Ok(mut conn) => conn.queries().ping().await.is_ok(),
            Err(_) => false,
        }
    }
}

impl Queries<'_> {
    async fn ping(&mut self) -> Result<(), StoreError> {
        on_backend!(self, conn => conn.batch_execute("SELECT 1").await)
    }

    /// Notes a revocation logged in this transaction, to be placed in the feed at commit.
    ///
    /// # Errors
    /// Outside a transaction: the feed could not keep it in commit order.
    fn awaiting_feed_position(&mut self, id: i64) -> Result<(), StoreError> {
        let pending = self.1.as_mut().ok_or_else(|| {
            StoreError::Query(diesel::result::Error::QueryBuilderError(
                "a revocation is logged only inside a transaction".into(),
            ))
        })?;
        pending.push(id);
        Ok(())
    }

    /// Gives the revocations this transaction logged their feed positions, as its last
    /// statement. The lock it takes is held until the commit is visible, so a transaction
    /// placed later commits later: a follower that read position p has seen every smaller
    /// one. Nothing is awaited while the lock is held but the commit, so it cannot deadlock,
    /// and a transaction waiting on a row lock holds up no other revocation. (SQLite's
    /// positions are its ids, given under its one writer lock.)
    async fn place_revocations(&mut self) -> diesel::QueryResult<()> {
        use diesel::sql_types::{Array, BigInt};
        use diesel_async::RunQueryDsl;
        let (Backend::Postgres(conn), Some(pending)) = (&mut self.0, &self.1) else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        conn.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({REVOCATION_FEED_LOCK_KEY})"
        ))
        .await?;
        diesel::sql_query(
            "UPDATE revocations SET position = nextval('revocation_positions') \
             WHERE id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(pending)
        .execute(conn)
        .await
        .map(drop)
    }
}

/// Whether a pooled connection can be handed out, decided without a round trip: a
/// `SELECT 1` on every checkout would add one to every call. A connection whose server
/// went away is closed by then and is replaced instead.
fn usable<C: PoolableConnection>(conn: &mut C) -> diesel::QueryResult<()> {
    if conn.is_broken() {
        Err(diesel::result::Error::BrokenTransactionManager)
    } else {
        Ok(())
    }
}

/// Tells `reachability` whether opening a connection worked, and logs each change.
async fn observed<C>(
    reachability: Reachability,
    open: impl Future<Output = Result<C, ConnectionError>>,
) -> Result<C, ConnectionError> {
    let opened = open.await;
    match &opened {
        Ok(_) => {
            if reachability.connected() {
                tracing::info!("the database answers again");
            }
        }
        Err(error) => {
            if reachability.failed() {
                tracing::error!(error = %error, "the database is unreachable; calls answer UNAVAILABLE until it answers");
            }
        }
    }
    opened
}

/// A Postgres connection whose statements cannot outlive the calls that made them.
async fn open_postgres(
    url: String,
    statement_timeout_ms: u128,
) -> Result<AsyncPgConnection, ConnectionError> {
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.batch_execute(&format!("SET statement_timeout = {statement_timeout_ms}"))
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

async fn open_sqlite(url: String) -> Result<SqliteConn, ConnectionError> {
    let mut conn = SqliteConn::establish(&url).await?;
    conn.batch_execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    )
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// Makes the database file's directory, and checks the file can be written there, so a
/// read-only or missing volume stops start-up saying so instead of as "unable to open".
fn prepare_sqlite_file(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Setup(format!("creating {}: {e}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
        .map_err(|e| {
            StoreError::Setup(format!(
                "the SQLite database {} cannot be written: {e}",
                path.display()
            ))
        })
}

async fn run_migrations<C>(conn: C, migrations: EmbeddedMigrations) -> Result<C, StoreError>
where
    C: AsyncConnection + 'static,
    AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
{
    // The harness drives the async connection with `block_in_place`: this needs the multi-thread runtime.
    let mut harness = AsyncMigrationHarness::new(conn);
    harness
        .run_pending_migrations(migrations)
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    Ok(harness.into_inner())
}
