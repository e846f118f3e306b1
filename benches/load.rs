//! Load benchmark against the release binary, as a client fleet would use it.
//!
//! `cargo bench --bench load` starts `identity serve` (release build, embedded SQLite or
//! `BENCH_DATABASE_URL`, rate limits off), drives it over gRPC from concurrent clients, and
//! prints each RPC's throughput as a ratio to the health check measured in the same run (so
//! numbers compare across machines), with p50/p99 latency and the server's peak memory. The
//! `identity-client verify` row is a consuming service's local check of an access token.

#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use identity::pb::{
    self, identity_service_client::IdentityServiceClient, token_service_client::TokenServiceClient,
};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const CONCURRENCY: usize = 16;
const DURATION: Duration = Duration::from_secs(4);
const PASSWORD: &str = "a-long-enough-passphrase";
/// The bench's service token for `TokenService` (its SHA-256 goes in the services file).
const SERVICE_TOKEN: &str = "the-load-benchmark-service-token";

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_identity"));
    command
        .current_dir(dir.path())
        .env_clear()
        .env("SQLITE_PATH", dir.path().join("bench.sqlite3"))
        .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
        .env("HTTP_LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,identity::app=info");
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        command.env("DATABASE_URL", url);
    }
    // Allocator tuning under test, e.g. MALLOC_ARENA_MAX=2.
    if let Ok(arenas) = std::env::var("MALLOC_ARENA_MAX") {
        command.env("MALLOC_ARENA_MAX", arenas);
    }
    for limit in ["LOGIN", "REGISTER", "VERIFY", "EMAIL", "REFRESH"] {
        command.env(format!("RATE_LIMIT_{limit}"), "0");
    }
    let services = dir.path().join("services.txt");
    std::fs::write(
        &services,
        format!(
            "bench introspect,jwks,revocations {}\n",
            sha256_hex(SERVICE_TOKEN)
        ),
    )
    .unwrap();
    command.env("SERVICE_TOKENS_FILE", &services);
    let mut server = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(addr) = entry["grpc.addr"].as_str() {
            break addr.to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Verified accounts to sign in as, made the way an operator would: one per client, as
    // sign-in attempts of one address are counted before they are checked.
    for worker in 0..CONCURRENCY {
        let admin = Command::new(env!("CARGO_BIN_EXE_identity"))
            .args(["create-superuser", "--email", &bench_email(worker)])
            .current_dir(dir.path())
            .env_clear()
            .env("SQLITE_PATH", dir.path().join("bench.sqlite3"))
            .envs(std::env::var("BENCH_DATABASE_URL").map(|u| ("DATABASE_URL", u)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        write_line(admin, PASSWORD);
    }

    let baseline = run("Health.Check", &channel, |channel, _| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
    })
    .await;
    let client = IdentityServiceClient::new(channel.clone());
    let login = pb::LoginRequest {
        email: bench_email(0),
        password: PASSWORD.into(),
    };
    let tokens = client.clone().login(login).await.unwrap().into_inner();
    let access = tokens.access.clone();
    let introspected = tokens.access.clone();

    let mut results = vec![baseline.clone()];
    results.push(
        run("GetUser", &channel, move |channel, _| {
            let access = access.clone();
            async move {
                let mut request = tonic::Request::new(pb::GetUserRequest { id: 1 });
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {access}").parse().unwrap());
                IdentityServiceClient::new(channel)
                    .get_user(request)
                    .await
                    .is_ok()
            }
        })
        .await,
    );
    results.push(
        run("IntrospectToken", &channel, move |channel, _| {
            let token = introspected.clone();
            async move {
                let mut request = tonic::Request::new(pb::IntrospectTokenRequest { token });
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {SERVICE_TOKEN}").parse().unwrap(),
                );
                TokenServiceClient::new(channel)
                    .introspect_token(request)
                    .await
                    .is_ok_and(|reply| reply.into_inner().active)
            }
        })
        .await,
    );
    // What a consuming service pays per request with `identity-client`: no call at all.
    let verifier = identity_client::Verifier::builder(channel.clone(), SERVICE_TOKEN)
        .connect()
        .await
        .unwrap();
    let verified = tokens.access.clone();
    results.push(
        run("identity-client verify", &channel, move |_, _| {
            let (verifier, token) = (verifier.clone(), verified.clone());
            async move { verifier.verify(&token).await.is_ok() }
        })
        .await,
    );
    results.push(
        run("Login (argon2id)", &channel, |channel, n| async move {
            let login = pb::LoginRequest {
                email: bench_email(n / 1_000_000),
                password: PASSWORD.into(),
            };
            IdentityServiceClient::new(channel)
                .login(login)
                .await
                .is_ok()
        })
        .await,
    );
    results.push(
        run("Login, unknown email", &channel, |channel, n| async move {
            let login = pb::LoginRequest {
                email: format!("nobody{n}@example.com"),
                password: PASSWORD.into(),
            };
            IdentityServiceClient::new(channel)
                .login(login)
                .await
                .is_err()
        })
        .await,
    );
    results.push(
        run(
            "ResendOtp, unknown email",
            &channel,
            |channel, n| async move {
                let request = pb::ResendOtpRequest {
                    email: format!("ghost{n}@example.com"),
                };
                IdentityServiceClient::new(channel)
                    .resend_otp(request)
                    .await
                    .is_ok()
            },
        )
        .await,
    );

    let peak_kib = peak_memory_kib(server.id());
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    println!(
        "\nload: {CONCURRENCY} concurrent clients, {DURATION:?} per RPC, baseline = Health.Check"
    );
    println!(
        "{:<26} {:>10} {:>12} {:>10} {:>10}",
        "rpc", "calls/s", "vs baseline", "p50 ms", "p99 ms"
    );
    for result in &results {
        println!(
            "{:<26} {:>10.0} {:>12.3} {:>10.2} {:>10.2}",
            result.name,
            result.rate,
            result.rate / baseline.rate,
            result.p50_ms,
            result.p99_ms
        );
    }
    println!(
        "server peak memory (VmHWM): {:.1} MiB",
        f64::from(peak_kib) / 1024.0
    );
}

#[derive(Clone)]
struct Outcome {
    name: &'static str,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Calls `call` from `CONCURRENCY` tasks for `DURATION`; every call must succeed.
async fn run<F, Fut>(name: &'static str, channel: &Channel, call: F) -> Outcome
where
    F: Fn(Channel, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let (channel, call) = (channel.clone(), call.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = worker * 1_000_000;
                while started.elapsed() < DURATION {
                    let begun = Instant::now();
                    assert!(call(channel.clone(), n).await, "{name} failed");
                    latencies.push(begun.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    Outcome {
        name,
        rate: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

fn write_line(mut child: std::process::Child, line: &str) {
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "create-superuser failed");
}

/// The account worker `n` signs in as.
fn bench_email(n: usize) -> String {
    format!("bench{n}@example.com")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn peak_memory_kib(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
