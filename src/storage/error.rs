//! How the storage boundary fails: one error type, with the database's outages (gone, too
//! slow, saturated, read-only, full) told apart once, here, so no call site handles them.

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
