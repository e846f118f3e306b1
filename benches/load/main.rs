//! Load benchmark of the release binary, each RPC set against the limit it could reach on
//! this machine, measured in the same run.
//!
//! `cargo bench --bench load` starts `identity serve` (release build, embedded SQLite or
//! `BENCH_DATABASE_URL`, rate limits off, `RUST_LOG=warn`) and drives it from one client
//! thread (as a load tool pinned to one core would) with `BENCH_CONCURRENCY` clients
//! (16) for `BENCH_SECONDS` (4) per row: the bridge over keep-alive HTTP/1.1 connections,
//! gRPC over one channel. Beside the RPCs it measures what they are compared with:
//! - the framework floor: a call refused for want of a token, on either protocol;
//! - a primary-key read and the refresh rotation as four hand-written SQL statements in one
//!   transaction, through a pool like the server's;
//! - argon2id hashes per second with the server's parameters on as many threads as the
//!   server hashes with.
//!
//! A sign-in with a TOTP code (`Login`, then `VerifySecondFactor`) is set against the same
//! hashes as a password-only one, on `BENCH_TOTP_ACCOUNTS` accounts with a factor
//! (`BENCH_CONCURRENCY` × 24): each account's time step is accepted once. A sign-in with a
//! passkey that verifies its user (`StartPasskeySignIn`, the signature, `FinishPasskeySignIn`)
//! hashes nothing: it is set against the plain-SQL rotation, one account per client.
//!
//! It then measures refresh and `GetUser` latency while a login storm saturates the hashing
//! threads, and the server's memory: idle, after the run, and its peak.
//!
//! `BENCH_SOAK=<seconds>` runs the soak instead (see `soak`): moderate mixed load, sampled
//! every `BENCH_SOAK_WINDOW` seconds (10), failing on growth.

#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

mod drive;
mod limits;
mod passkeys;
mod server;
mod soak;
mod totp;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use hyper::{Method, StatusCode};
use identity::pb::{
    self, identity_service_client::IdentityServiceClient, token_service_client::TokenServiceClient,
};
use tonic::transport::Channel;

use drive::{Http, Outcome, measure};
use passkeys::PasskeyAccounts;
use server::{PASSWORD, SERVICE_TOKEN, Server, authorized, bench_email};
use totp::TotpAccounts;

/// Clients of each row of the isolation run, beside the login storm.
const ISOLATION_CLIENTS: usize = 4;
/// The row that signs in with a password and a TOTP code.
const TOTP_ROW: &str = "Login + TOTP (argon2id)";
/// The row that signs in with a passkey.
const PASSKEY_ROW: &str = "Passkey sign-in";

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, bench());
}

/// Measures the row `$name` against `$limit` (its name and rate) when `BENCH_ONLY` wants
/// it; `$callers` are only set up then.
macro_rules! row {
    ($rows:ident, $name:expr, against $limit:ident => $callers:expr) => {
        if $rows.only.wanted($name) {
            let (limit, limit_rate) = $limit;
            let outcome = measure($name, $callers, $rows.duration).await;
            $rows.measured.push(Row {
                name: $name,
                outcome,
                limit,
                limit_rate,
            });
        }
    };
}

/// The rows measured so far, and which to measure for how long.
struct Rows<'a> {
    only: &'a Only,
    duration: Duration,
    measured: Vec<Row>,
}

/// One measured row: what was called, how it did, and what it is compared with.
struct Row {
    name: &'static str,
    outcome: Outcome,
    limit: &'static str,
    limit_rate: f64,
}

async fn bench() {
    let concurrency: usize = setting("BENCH_CONCURRENCY", 16);
    let duration = Duration::from_secs(setting("BENCH_SECONDS", 4));
    let only = Only(std::env::var("BENCH_ONLY").ok());
    let database_url = std::env::var("BENCH_DATABASE_URL").ok();
    let database_url = database_url.as_deref();
    let server = Server::start(database_url);
    if let Some(total) = std::env::var("BENCH_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        server.create_accounts(database_url, 0..soak::ACCOUNTS);
        let window = Duration::from_secs(setting("BENCH_SOAK_WINDOW", 10));
        let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let client = IdentityServiceClient::new(channel);
        soak::soak(&server, &client, Duration::from_secs(total), window).await;
        server.stop().await;
        return;
    }
    server.create_accounts(database_url, 0..concurrency);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_mib, _) = server.memory_mib();

    let hash_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = IdentityServiceClient::new(channel.clone());
    let totp_accounts = if only.wanted(TOTP_ROW) {
        let count = setting("BENCH_TOTP_ACCOUNTS", concurrency * 24);
        Some(TotpAccounts::enrol(&server, database_url, &client, count).await)
    } else {
        None
    };
    let passkey_accounts = if only.wanted(PASSKEY_ROW) {
        Some(PasskeyAccounts::register(&server, database_url, &client, concurrency).await)
    } else {
        None
    };
    let mut sessions = Sessions {
        client: client.clone(),
        concurrency,
    };
    let setup = Setup {
        concurrency,
        duration,
        database_url,
        server: &server,
        channel: channel.clone(),
        only: &only,
        hash_threads,
        totp_accounts,
        passkey_accounts,
    };
    let mut rounds = Vec::new();
    for _ in 0..setting("BENCH_ROUNDS", 1_usize).max(1) {
        rounds.push(round(&setup, &mut sessions).await);
    }

    let isolation = if only.wanted("isolation") {
        let signed_in = sessions.start().await;
        Some(isolation(&client, &signed_in, &mut sessions, duration).await)
    } else {
        None
    };
    let (after_mib, peak_mib) = server.memory_mib();
    server.stop().await;

    println!(
        "\nload: {concurrency} clients per row, {duration:?} per row, {} on {hash_threads} cores",
        if database_url.is_some() {
            "Postgres"
        } else {
            "SQLite"
        }
    );
    for (number, round) in rounds.iter().enumerate() {
        if rounds.len() > 1 {
            println!("\n--- round {} of {}", number + 1, rounds.len());
        }
        round.print(hash_threads);
    }
    if rounds.len() > 1 {
        print_medians(&rounds);
    }
    if let Some(isolation) = isolation {
        isolation.print(concurrency);
    }
    println!(
        "\nserver memory: idle {idle_mib:.1} MiB, after the run {after_mib:.1} MiB, peak {peak_mib:.1} MiB"
    );
}

/// What every round measures with.
struct Setup<'a> {
    concurrency: usize,
    duration: Duration,
    database_url: Option<&'a str>,
    server: &'a Server,
    channel: Channel,
    only: &'a Only,
    hash_threads: usize,
    totp_accounts: Option<TotpAccounts>,
    passkey_accounts: Option<PasskeyAccounts>,
}

/// One round: the limits, then each RPC row right after them, so that a noisy neighbour
/// slows a limit and the rows compared with it alike.
struct Round {
    limits: Vec<(&'static str, Outcome)>,
    hashes: f64,
    rows: Vec<Row>,
}

async fn round(setup: &Setup<'_>, sessions: &mut Sessions) -> Round {
    let Setup {
        concurrency,
        duration,
        database_url,
        server,
        hash_threads,
        ..
    } = *setup;
    let channel = setup.channel.clone();
    let client = IdentityServiceClient::new(channel.clone());
    let hashes = limits::argon2_hashes_per_second(hash_threads, duration);
    let pool = Arc::new(limits::Pool::open(database_url, &server.sqlite_path()).await);
    let primary_key = pool.primary_key_reads(concurrency, duration).await;
    let rotation_sessions = sessions
        .start()
        .await
        .iter()
        .map(|tokens| claims(&tokens.access).1)
        .collect::<Vec<_>>();
    let rotation = pool.rotations(&rotation_sessions, duration).await;
    drop(pool);

    let http_addr = server.http_addr.clone();
    let http_floor = measure(
        "bridge floor",
        clients(concurrency, async |_| {
            let mut http = Http::connect(&http_addr).await;
            async move || {
                let (status, _) = http
                    .call(Method::GET, "/accounts/api/users/1/", None, None)
                    .await;
                status == StatusCode::UNAUTHORIZED
            }
        })
        .await,
        duration,
    )
    .await;
    let grpc_floor = measure(
        "gRPC floor",
        clients(concurrency, async |_| {
            let mut client = client.clone();
            async move || {
                client
                    .get_user(pb::GetUserRequest { id: 1 })
                    .await
                    .is_err_and(|status| status.code() == tonic::Code::Unauthenticated)
            }
        })
        .await,
        duration,
    )
    .await;

    let signed_in = sessions.start().await;
    let bridge_floor = ("bridge floor", http_floor.rate);
    let grpc_floor_limit = ("gRPC floor", grpc_floor.rate);
    let rotation_limit = ("plain-SQL rotation", rotation.rate);
    let hash_limit = ("argon2id hashes", hashes);
    let mut rows = Rows {
        only: setup.only,
        duration,
        measured: Vec::new(),
    };
    row! { rows, "GetUser, bridge", against bridge_floor =>
        clients(concurrency, async |n| {
            let mut http = Http::connect(&http_addr).await;
            let access = signed_in[n].access.clone();
            let path = format!("/accounts/api/users/{}/", claims(&access).0);
            async move || {
                let (status, _) = http.call(Method::GET, &path, Some(&access), None).await;
                status == StatusCode::OK
            }
        })
        .await
    }
    row! { rows, "GetUser, gRPC", against grpc_floor_limit =>
        get_users(&client, &signed_in)
    }
    let bridge_chains = sessions.start().await;
    row! { rows, "Refresh, bridge", against rotation_limit =>
        clients(concurrency, async |n| {
            let mut http = Http::connect(&http_addr).await;
            let mut refresh = bridge_chains[n].refresh.clone();
            async move || {
                let body = serde_json::json!({ "refresh": refresh }).to_string();
                let (status, reply) = http
                    .call(
                        Method::POST,
                        "/accounts/api/token/refresh/",
                        None,
                        Some(body),
                    )
                    .await;
                let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
                refresh = reply["refresh"].as_str().unwrap_or_default().to_owned();
                status == StatusCode::OK
            }
        })
        .await
    }
    row! { rows, "Refresh, gRPC", against rotation_limit =>
        refreshes(&client, &sessions.start().await)
    }
    row! { rows, "Login (argon2id)", against hash_limit =>
        logins(&client, concurrency)
    }
    if let Some(accounts) = &setup.totp_accounts {
        row! { rows, TOTP_ROW, against hash_limit =>
            totp::sign_ins(&client, accounts, concurrency)
        }
    }
    if let Some(accounts) = &setup.passkey_accounts {
        row! { rows, PASSKEY_ROW, against rotation_limit =>
            passkeys::sign_ins(&client, accounts)
        }
    }
    row! { rows, "Login, unknown email", against hash_limit =>
        unknown_addresses(&client, concurrency, "nobody", async |client, email| {
            let login = pb::LoginRequest {
                email,
                password: PASSWORD.into(),
            };
            client
                .login(login)
                .await
                .is_err_and(|status| status.code() == tonic::Code::Unauthenticated)
        })
    }
    row! { rows, "ResendOtp, unknown email", against grpc_floor_limit =>
        unknown_addresses(&client, concurrency, "ghost", async |client, email| {
            client.resend_otp(pb::ResendOtpRequest { email }).await.is_ok()
        })
    }
    let introspected = signed_in[0].access.clone();
    row! { rows, "IntrospectToken", against grpc_floor_limit =>
        clients(concurrency, async |_| {
            let mut tokens = TokenServiceClient::new(channel.clone());
            let token = introspected.clone();
            async move || {
                let mut request = tonic::Request::new(pb::IntrospectTokenRequest {
                    token: token.clone(),
                });
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {SERVICE_TOKEN}").parse().unwrap(),
                );
                tokens
                    .introspect_token(request)
                    .await
                    .is_ok_and(|reply| reply.into_inner().active)
            }
        })
        .await
    }
    // What a consuming service pays per request with `identity-client`: no call at all.
    let verifier = identity_client::Verifier::builder(channel.clone(), SERVICE_TOKEN)
        .connect()
        .await
        .unwrap();
    row! { rows, "identity-client verify", against grpc_floor_limit =>
        clients(concurrency, async |_| {
            let (verifier, token) = (verifier.clone(), introspected.clone());
            async move || verifier.verify(&token).await.is_ok()
        })
        .await
    }

    Round {
        limits: vec![
            ("bridge floor (401, no token)", http_floor),
            ("gRPC floor (UNAUTHENTICATED)", grpc_floor),
            ("primary-key read, plain SQL", primary_key),
            ("plain-SQL rotation (4 statements)", rotation),
        ],
        hashes,
        rows: rows.measured,
    }
}

impl Round {
    fn print(&self, hash_threads: usize) {
        println!("\nlimits, measured in this run");
        println!(
            "{:<36} {:>10} {:>9} {:>9}",
            "limit", "per s", "p50 ms", "p99 ms"
        );
        for (name, outcome) in &self.limits {
            println!(
                "{name:<36} {:>10.0} {:>9.2} {:>9.2}",
                outcome.rate, outcome.p50_ms, outcome.p99_ms
            );
        }
        println!(
            "{:<36} {:>10.0}",
            format!("argon2id hashes ({hash_threads} threads)"),
            self.hashes
        );
        println!(
            "\n{:<26} {:>9} {:>8} {:>8}  {:<20} {:>8}",
            "rpc", "calls/s", "p50 ms", "p99 ms", "limit", "of limit"
        );
        for row in &self.rows {
            println!(
                "{:<26} {:>9.0} {:>8.2} {:>8.2}  {:<20} {:>7.1}%",
                row.name,
                row.outcome.rate,
                row.outcome.p50_ms,
                row.outcome.p99_ms,
                row.limit,
                100.0 * row.ratio()
            );
        }
    }
}

impl Row {
    /// The row's rate as a share of its limit's, both from the same round.
    fn ratio(&self) -> f64 {
        self.outcome.rate / self.limit_rate
    }
}

/// Each row's median share of its limit over the rounds, and the lowest and highest.
fn print_medians(rounds: &[Round]) {
    println!(
        "\nover {} rounds: each row's share of its limit",
        rounds.len()
    );
    println!(
        "{:<26} {:>8} {:>8} {:>8}",
        "rpc", "median", "lowest", "highest"
    );
    for (index, row) in rounds[0].rows.iter().enumerate() {
        let mut ratios: Vec<f64> = rounds
            .iter()
            .map(|round| round.rows[index].ratio())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = if ratios.len() % 2 == 1 {
            ratios[ratios.len() / 2]
        } else {
            (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0
        };
        println!(
            "{:<26} {:>7.1}% {:>7.1}% {:>7.1}%",
            row.name,
            100.0 * median,
            100.0 * ratios[0],
            100.0 * ratios[ratios.len() - 1]
        );
    }
}

/// Refresh and `GetUser` latency, alone and while a login storm saturates the hashing.
struct Isolation {
    idle_reads: Outcome,
    idle_refreshes: Outcome,
    storm_reads: Outcome,
    storm_refreshes: Outcome,
    storm: Outcome,
}

/// The same few readers and refreshers, alone and beside as many clients logging in as
/// every other row has.
async fn isolation(
    client: &IdentityServiceClient<Channel>,
    signed_in: &[pb::LoginResponse],
    sessions: &mut Sessions,
    duration: Duration,
) -> Isolation {
    let few = &signed_in[..ISOLATION_CLIENTS];
    let (idle_reads, idle_refreshes) = tokio::join!(
        measure("GetUser, idle", get_users(client, few), duration),
        measure(
            "Refresh, idle",
            refreshes(client, &sessions.start_n(ISOLATION_CLIENTS).await),
            duration
        ),
    );
    let storm_chains = sessions.start_n(ISOLATION_CLIENTS).await;
    let (storm_reads, storm_refreshes, storm) = tokio::join!(
        measure("GetUser, in a storm", get_users(client, few), duration),
        measure(
            "Refresh, in a storm",
            refreshes(client, &storm_chains),
            duration
        ),
        measure(
            "Login storm",
            logins(client, sessions.concurrency),
            duration
        ),
    );
    Isolation {
        idle_reads,
        idle_refreshes,
        storm_reads,
        storm_refreshes,
        storm,
    }
}

impl Isolation {
    fn print(&self, concurrency: usize) {
        println!(
            "\nisolation: {ISOLATION_CLIENTS} clients each, alone and beside {concurrency} logging in ({:.0} logins/s)",
            self.storm.rate
        );
        println!(
            "{:<26} {:>12} {:>14} {:>10}",
            "rpc", "idle p99 ms", "storm p99 ms", "storm/idle"
        );
        for (name, idle, stormy) in [
            ("GetUser, gRPC", &self.idle_reads, &self.storm_reads),
            ("Refresh, gRPC", &self.idle_refreshes, &self.storm_refreshes),
        ] {
            println!(
                "{name:<26} {:>12.2} {:>14.2} {:>9.2}x",
                idle.p99_ms,
                stormy.p99_ms,
                stormy.p99_ms / idle.p99_ms
            );
        }
    }
}

/// `BENCH_ONLY`: the rows whose names contain it, for a profile of one; every row without.
struct Only(Option<String>);

impl Only {
    fn wanted(&self, row: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|only| row.contains(only.as_str()))
    }
}

/// Sessions started by logging in, one per client.
struct Sessions {
    client: IdentityServiceClient<Channel>,
    concurrency: usize,
}

impl Sessions {
    async fn start(&mut self) -> Vec<pb::LoginResponse> {
        self.start_n(self.concurrency).await
    }

    async fn start_n(&mut self, count: usize) -> Vec<pb::LoginResponse> {
        let mut pairs = Vec::new();
        for n in 0..count {
            let login = pb::LoginRequest {
                email: bench_email(n % self.concurrency),
                password: PASSWORD.into(),
            };
            pairs.push(self.client.login(login).await.unwrap().into_inner());
        }
        pairs
    }
}

/// `count` clients, each made by `make` from its index.
async fn clients<F>(count: usize, make: impl AsyncFn(usize) -> F) -> Vec<F> {
    let mut made = Vec::new();
    for n in 0..count {
        made.push(make(n).await);
    }
    made
}

/// `count` callers that each make up a new address (`{prefix}{caller}-{n}@example.com`)
/// for every `call`, so no account or counter row is met twice.
fn unknown_addresses<C>(
    client: &IdentityServiceClient<Channel>,
    count: usize,
    prefix: &'static str,
    call: C,
) -> Vec<impl AsyncFnMut() -> bool + 'static>
where
    C: AsyncFn(&mut IdentityServiceClient<Channel>, String) -> bool + Clone + 'static,
{
    // Each set of callers its own addresses: a later round's must not meet the cooldowns
    // and back-offs an earlier round's left.
    static SETS: AtomicUsize = AtomicUsize::new(0);
    let set = SETS.fetch_add(1, Ordering::Relaxed);
    (0..count)
        .map(|caller| {
            let (mut client, call) = (client.clone(), call.clone());
            let mut n = 0;
            async move || {
                n += 1;
                let email = format!("{prefix}{set}-{caller}-{n}@example.com");
                call(&mut client, email).await
            }
        })
        .collect()
}

fn get_users(
    client: &IdentityServiceClient<Channel>,
    sessions: &[pb::LoginResponse],
) -> Vec<impl AsyncFnMut() -> bool + 'static> {
    sessions
        .iter()
        .map(|tokens| {
            let mut client = client.clone();
            let (access, id) = (tokens.access.clone(), claims(&tokens.access).0);
            async move || {
                let request = authorized(pb::GetUserRequest { id }, &access);
                client.get_user(request).await.is_ok()
            }
        })
        .collect()
}

fn refreshes(
    client: &IdentityServiceClient<Channel>,
    sessions: &[pb::LoginResponse],
) -> Vec<impl AsyncFnMut() -> bool + 'static> {
    sessions
        .iter()
        .map(|tokens| {
            let mut client = client.clone();
            let mut refresh = tokens.refresh.clone();
            async move || {
                let request = pb::RefreshRequest {
                    refresh: refresh.clone(),
                };
                match client.refresh(request).await {
                    Ok(reply) => {
                        refresh = reply.into_inner().refresh;
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .collect()
}

fn logins(
    client: &IdentityServiceClient<Channel>,
    concurrency: usize,
) -> Vec<impl AsyncFnMut() -> bool + 'static> {
    (0..concurrency)
        .map(|n| {
            let mut client = client.clone();
            async move || {
                let login = pb::LoginRequest {
                    email: bench_email(n),
                    password: PASSWORD.into(),
                };
                client.login(login).await.is_ok()
            }
        })
        .collect()
}

/// The user id and session id an access token names (read, not verified).
fn claims(access: &str) -> (i64, String) {
    let payload = access.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    (
        claims["sub"].as_str().unwrap().parse().unwrap(),
        claims["sid"].as_str().unwrap().to_owned(),
    )
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
