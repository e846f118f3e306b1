//! Opening the database: the connection pool for the configured backend (connections made
//! lazily, each set up with its timeouts and pragmas, their outages observed), and the
//! embedded migrations.

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

use super::{
    Connection, Pooled, Queries, Store, StoreError, on_backend, reachability::Reachability,
};
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

pub(super) type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

#[derive(Clone)]
pub(super) enum Pool {
    Postgres(bb8::Pool<AsyncPgConnection>),
    Sqlite(bb8::Pool<SqliteConn>),
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
