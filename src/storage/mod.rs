//! The database boundary. The backend (Postgres or embedded SQLite) is chosen once, here;
//! every query is written once in [`Queries`] and compiled for both.
//!
//! Services borrow a [`Connection`] for single statements or run a closure in
//! [`Store::transaction`]; both hand out the same [`Queries`]. Opening the pool and
//! migrating are in `pool`, the error type and its outage classification in `error`, and
//! the queries by table in the other files.

mod audit;
mod ceremonies;
mod counters;
mod email_changes;
mod email_sign_ins;
mod error;
mod factors;
mod imports;
mod linked_identities;
mod models;
mod outbox;
mod pool;
mod reachability;
mod registrations;
mod schema;
mod secrets;
mod sessions;
mod signing_keys;
mod users;
mod values;

use std::future::Future;

use diesel_async::{
    AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, pooled_connection::bb8,
};

pub use audit::AuditFilter;
pub use counters::CounterPolicy;
pub use error::StoreError;
pub use models::{
    AuditEventRow, CeremonyRow, DjangoImportRecord, DjangoLinkRow, EmailChangeRow, EmailSignInRow,
    FactorRow, ImportedUser, MfaChallengeRow, NewAuditEvent, NewEmail, NewRecoveryCode,
    NewRegistration, NewUser, OutboxRow, RegistrationRow, RevocationRow, SessionRow, SigningKeyRow,
    SpentRefreshToken, UserRow,
};
pub use users::{UserChanges, UserFilter};

use self::{
    pool::{Pool, SqliteConn},
    reachability::Reachability,
};

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
/// and, inside a transaction, what it wrote that matters at its commit (`None` outside one:
/// a revocation or an email is written only in a transaction).
pub struct Queries<'c>(Backend<'c>, Option<Written>);

/// What a transaction wrote that matters when it commits.
#[derive(Default)]
struct Written {
    /// Revocations logged, which get their place in the feed at commit.
    revocations: Vec<i64>,
    /// Whether an email was queued, so the outbox is woken once it commits.
    mail: bool,
}

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
                    let mut queries = Queries(Backend::Postgres(&*tx), Some(Written::default()));
                    let done = work(&mut queries).await.map_err(TxError::Caller)?;
                    queries.place_revocations().await?;
                    Ok(done)
                })
                .await
            }
            Pooled::Sqlite(conn) => {
                conn.transaction(async |tx| {
                    let mut queries = Queries(Backend::Sqlite(tx), Some(Written::default()));
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
}

impl Queries<'_> {
    /// Notes a revocation logged in this transaction, to be placed in the feed at commit.
    ///
    /// # Errors
    /// Outside a transaction: the feed could not keep it in commit order.
    fn awaiting_feed_position(&mut self, id: i64) -> Result<(), StoreError> {
        self.written("a revocation is logged only inside a transaction")?
            .revocations
            .push(id);
        Ok(())
    }

    /// Notes an email queued in this transaction.
    ///
    /// # Errors
    /// Outside a transaction: nothing would wake the outbox when it is written.
    fn queueing_mail(&mut self) -> Result<(), StoreError> {
        self.written("an email is queued only inside a transaction")?
            .mail = true;
        Ok(())
    }

    /// Whether this transaction queued an email: the outbox is woken when it commits.
    #[must_use]
    pub fn queued_mail(&self) -> bool {
        self.1.as_ref().is_some_and(|written| written.mail)
    }

    fn written(&mut self, refusal: &'static str) -> Result<&mut Written, StoreError> {
        self.1.as_mut().ok_or_else(|| {
            StoreError::Query(diesel::result::Error::QueryBuilderError(refusal.into()))
        })
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
        let (Backend::Postgres(conn), Some(Written { revocations, .. })) = (&mut self.0, &self.1)
        else {
            return Ok(());
        };
        if revocations.is_empty() {
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
        .bind::<Array<BigInt>, _>(revocations)
        .execute(conn)
        .await
        .map(drop)
    }
}
