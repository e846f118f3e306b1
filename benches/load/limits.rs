//! The limits each RPC is compared with, measured on the same machine in the same run:
//! argon2id on as many threads as the server hashes with, and the database work of a read
//! and of a refresh rotation written by hand as plain SQL, through a pool like the server's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use diesel::{
    QueryableByName, SqliteConnection,
    sql_types::{BigInt, Text, Timestamp},
};
use diesel_async::{
    AsyncConnection, AsyncPgConnection,
    pooled_connection::{AsyncDieselConnectionManager, bb8},
    sync_connection_wrapper::SyncConnectionWrapper,
};

use super::drive::{Outcome, measure};

/// Hashes per second of argon2id with the server's default parameters (m=19 MiB, t=2,
/// p=1) on `threads` threads, each reusing its working memory as the server's do.
pub fn argon2_hashes_per_second(threads: usize, duration: Duration) -> f64 {
    let params = Params::new(19_456, 2, 1, Some(32)).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (params, done, stop) = (params.clone(), Arc::clone(&done), Arc::clone(&stop));
            std::thread::spawn(move || {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut memory = vec![Block::default(); params.block_count()];
                let mut output = [0_u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    argon2
                        .hash_password_into_with_memory(
                            b"a-long-enough-passphrase",
                            b"sixteen byte salt",
                            &mut output,
                            &mut memory,
                        )
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The server's default `DATABASE_POOL_SIZE`.
const POSTGRES_CONNECTIONS: u32 = 10;

/// A pool on the server's database, sized and set up like the server's own.
pub enum Pool {
    Postgres(bb8::Pool<AsyncPgConnection>),
    Sqlite(bb8::Pool<SyncConnectionWrapper<SqliteConnection>>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of either backend.
macro_rules! on_pool {
    ($pool:expr, $conn:ident => $body:expr) => {
        match $pool {
            Pool::Postgres(pool) => {
                use diesel_async::RunQueryDsl;
                let mut $conn = pool.get().await.unwrap();
                $body
            }
            Pool::Sqlite(pool) => {
                use diesel_async::RunQueryDsl;
                let mut $conn = pool.get().await.unwrap();
                $body
            }
        }
    };
}

/// Stores refresh token `$token` of `$session`, issued `$now`.
macro_rules! insert_token {
    ($conn:expr, $token:expr, $session:expr, $now:expr) => {
        diesel::sql_query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind::<Text, _>($token)
        .bind::<Text, _>($session)
        .bind::<Timestamp, _>($now)
        .bind::<Timestamp, _>($now + chrono::Duration::days(1))
        .execute($conn)
        .await?
    };
}

/// The four statements of one rotation, on the transaction `$tx` of either backend.
macro_rules! rotate {
    ($tx:expr, $spent:expr, $next:expr, $session:expr, $now:expr) => {{
        let owner: SessionOf = diesel::sql_query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
             RETURNING session_id",
        )
        .bind::<Timestamp, _>($now)
        .bind::<Text, _>($spent)
        .get_result($tx)
        .await?;
        let _: Bearer = diesel::sql_query(
            "SELECT u.id, u.email FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.revoked_at IS NULL AND u.is_active",
        )
        .bind::<Text, _>(owner.session_id)
        .get_result($tx)
        .await?;
        diesel::sql_query("UPDATE sessions SET last_refreshed_at = $1 WHERE id = $2")
            .bind::<Timestamp, _>($now)
            .bind::<Text, _>($session)
            .execute($tx)
            .await?;
        insert_token!($tx, $next, $session, $now);
        Ok::<_, diesel::result::Error>(())
    }};
}

impl Pool {
    /// Ten connections on Postgres (the server's default `DATABASE_POOL_SIZE`), one on
    /// SQLite, as the server keeps.
    pub async fn open(database_url: Option<&str>, sqlite_path: &std::path::Path) -> Self {
        match database_url {
            Some(url) => Self::Postgres(
                bb8::Pool::builder()
                    .max_size(POSTGRES_CONNECTIONS)
                    .test_on_check_out(false)
                    .build(AsyncDieselConnectionManager::new(url))
                    .await
                    .unwrap(),
            ),
            None => Self::Sqlite(
                bb8::Pool::builder()
                    .max_size(1)
                    .test_on_check_out(false)
                    .build(AsyncDieselConnectionManager::new(
                        sqlite_path.to_string_lossy(),
                    ))
                    .await
                    .unwrap(),
            ),
        }
    }

    /// How many clients a limit row drives: no more than the pool has connections. More
    /// would only queue, and a bb8 caller that returns a connection takes it straight back
    /// before a waiter wakes, so a waiter on a one-thread client can starve until it times out.
    fn clients(&self, wanted: usize) -> usize {
        let connections = match self {
            Self::Postgres(_) => POSTGRES_CONNECTIONS,
            Self::Sqlite(_) => 1,
        };
        wanted.min(connections as usize)
    }

    /// Primary-key reads of one user, from `clients` clients at once (at most one per
    /// connection).
    pub async fn primary_key_reads(
        self: &Arc<Self>,
        clients: usize,
        duration: Duration,
    ) -> Outcome {
        let readers = (0..self.clients(clients))
            .map(|_| {
                let pool = Arc::clone(self);
                async move || {
                    on_pool!(&*pool, conn => diesel::sql_query("SELECT email FROM users WHERE id = $1")
                        .bind::<BigInt, _>(1_i64)
                        .get_result::<Email>(&mut *conn)
                        .await
                        .is_ok())
                }
            })
            .collect();
        measure("primary-key read", readers, duration).await
    }

    /// The refresh rotation as one transaction of four statements: spend the token, read
    /// the session with its user, record the refresh, store the successor. Each client
    /// rotates its own chain on one of `sessions`.
    pub async fn rotations(self: &Arc<Self>, sessions: &[String], duration: Duration) -> Outcome {
        let now = chrono::Utc::now().naive_utc();
        for session in sessions {
            on_pool!(&**self, conn => {
                let inserted: diesel::QueryResult<()> = async {
                    insert_token!(&mut *conn, chain_link(session, 0), session, now);
                    Ok(())
                }
                .await;
                inserted.unwrap();
            });
        }
        let rotators = sessions
            .iter()
            .take(self.clients(sessions.len()))
            .cloned()
            .map(|session| {
                let pool = Arc::clone(self);
                let mut link = 0;
                async move || {
                    let (spent, next) =
                        (chain_link(&session, link), chain_link(&session, link + 1));
                    link += 1;
                    let now = chrono::Utc::now().naive_utc();
                    on_pool!(&*pool, conn => conn
                        .transaction(async |tx| rotate!(tx, &spent, &next, &session, now))
                        .await
                        .is_ok())
                }
            })
            .collect();
        measure("plain-SQL rotation", rotators, duration).await
    }
}

#[derive(QueryableByName)]
struct Email {
    #[diesel(sql_type = Text)]
    #[expect(dead_code, reason = "read to make the database send it")]
    email: String,
}

#[derive(QueryableByName)]
struct SessionOf {
    #[diesel(sql_type = Text)]
    session_id: String,
}

#[derive(QueryableByName)]
struct Bearer {
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read as the access token needs it")]
    id: i64,
    #[diesel(sql_type = Text)]
    #[expect(dead_code, reason = "read as the access token needs it")]
    email: String,
}

/// A token of the chain a client rotates on `session` (new sessions each round, so each
/// round's chains are new too).
fn chain_link(session: &str, link: usize) -> String {
    format!("bench-rotation-{session}-{link}")
}
