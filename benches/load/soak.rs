//! The soak: moderate mixed load for `BENCH_SOAK` seconds, sampling the server's resident
//! memory, open files, pooled connections and outbox depth after every window, and failing
//! when any of them grows past what the first quarter of the run saw.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use hyper::Method;
use identity::pb::{self, identity_service_client::IdentityServiceClient};
use tonic::transport::Channel;

use super::{Sessions, get_users, logins, refreshes};
use crate::{
    drive::{Http, measure},
    server::{PASSWORD, Server},
};

/// Accounts the soak signs in to.
pub const ACCOUNTS: usize = 2;
/// Largest pool the server opens (`DATABASE_POOL_SIZE`'s default).
const POOL_SIZE: f64 = 10.0;
/// Resident memory may exceed the first quarter's peak by this share, plus `RSS_SLACK_MIB`.
const RSS_GROWTH: f64 = 0.25;
const RSS_SLACK_MIB: f64 = 8.0;
/// Open files may exceed the first quarter's peak by this many.
const FD_SLACK: f64 = 4.0;
/// Undelivered emails may exceed the first quarter's peak by this many.
const OUTBOX_SLACK: f64 = 100.0;

/// What one sample read off the server.
#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_mib: f64,
    open_files: f64,
    pool_connections: f64,
    outbox_pending: f64,
    calls_per_second: f64,
}

/// Runs the soak for `total` in windows of `window`; panics on growth.
pub async fn soak(
    server: &Server,
    client: &IdentityServiceClient<Channel>,
    total: Duration,
    window: Duration,
) {
    let mut sessions = Sessions {
        client: client.clone(),
        concurrency: ACCOUNTS,
    };
    let mut samples = Vec::new();
    let started = std::time::Instant::now();
    println!(
        "soak: {total:?} in windows of {window:?}: GetUser ×2, Refresh ×2, Login ×1, Register ×1 (its mail through the outbox)"
    );
    println!(
        "{:>8} {:>9} {:>6} {:>5} {:>7} {:>9}",
        "at s", "RSS MiB", "files", "pool", "outbox", "calls/s"
    );
    while started.elapsed() < total {
        // New sessions each window: access tokens live five minutes.
        let reading = sessions.start_n(2).await;
        let rotating = sessions.start_n(2).await;
        let (reads, rotations, signs_in, sign_ups) = tokio::join!(
            measure("soak GetUser", get_users(client, &reading), window),
            measure("soak Refresh", refreshes(client, &rotating), window),
            measure("soak Login", logins(client, 1), window),
            measure("soak Register", vec![sign_up(client)], window),
        );
        // A new connection each time: the server closes one idle for a window.
        let mut metrics = Http::connect(&server.metrics_addr).await;
        let (_, body) = metrics.call(Method::GET, "/metrics", None, None).await;
        let text = String::from_utf8_lossy(&body);
        let gauge = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let sample = Sample {
            at: started.elapsed(),
            rss_mib: server.memory_mib().0,
            open_files: server.open_files() as f64,
            pool_connections: gauge("identity_db_pool_connections "),
            outbox_pending: gauge("identity_outbox_pending_emails "),
            calls_per_second: reads.rate + rotations.rate + signs_in.rate + sign_ups.rate,
        };
        println!(
            "{:>8.0} {:>9.1} {:>6} {:>5} {:>7} {:>9.0}",
            sample.at.as_secs_f64(),
            sample.rss_mib,
            sample.open_files,
            sample.pool_connections,
            sample.outbox_pending,
            sample.calls_per_second
        );
        samples.push(sample);
    }
    check_growth(&samples);
}

/// Registers a new address on every call, for the whole soak (a repeated one would meet
/// its resend cooldown).
fn sign_up(client: &IdentityServiceClient<Channel>) -> impl AsyncFnMut() -> bool + 'static {
    static SIGN_UPS: AtomicU64 = AtomicU64::new(0);
    let mut client = client.clone();
    async move || {
        let n = SIGN_UPS.fetch_add(1, Ordering::Relaxed);
        let register = pb::RegisterRequest {
            email: format!("soak-{n}@example.com"),
            password: PASSWORD.into(),
            ..Default::default()
        };
        client.register(register).await.is_ok()
    }
}

/// Compares the last quarter of the run with the first: each reading's lowest value there
/// must stay within the first quarter's highest plus its slack.
fn check_growth(samples: &[Sample]) {
    let quarter = (samples.len() / 4).max(1);
    let (first, last) = (&samples[..quarter], &samples[samples.len() - quarter..]);
    let peak = |of: fn(&Sample) -> f64| first.iter().map(of).fold(f64::MIN, f64::max);
    let floor = |of: fn(&Sample) -> f64| last.iter().map(of).fold(f64::MAX, f64::min);
    let mut grew = Vec::new();
    let rss_bound = peak(|s| s.rss_mib) * (1.0 + RSS_GROWTH) + RSS_SLACK_MIB;
    if floor(|s| s.rss_mib) > rss_bound {
        grew.push(format!("resident memory past {rss_bound:.1} MiB"));
    }
    let files_bound = peak(|s| s.open_files) + FD_SLACK;
    if floor(|s| s.open_files) > files_bound {
        grew.push(format!("open files past {files_bound}"));
    }
    let outbox_bound = peak(|s| s.outbox_pending) + OUTBOX_SLACK;
    if floor(|s| s.outbox_pending) > outbox_bound {
        grew.push(format!("undelivered emails past {outbox_bound}"));
    }
    if samples.iter().any(|s| s.pool_connections > POOL_SIZE) {
        grew.push(format!("more than {POOL_SIZE} pooled connections"));
    }
    assert!(grew.is_empty(), "the soak grew: {}", grew.join("; "));
    println!(
        "soak: no growth (memory, open files, pool and outbox held over {} samples)",
        samples.len()
    );
}
