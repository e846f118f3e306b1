//! The release binary under load: started as an operator would, with rate limits off.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use tonic::transport::Channel;

/// The bench's service token for `TokenService` (its SHA-256 goes in the services file).
pub const SERVICE_TOKEN: &str = "the-load-benchmark-service-token";
/// Every bench account's password.
pub const PASSWORD: &str = "a-long-enough-passphrase";

/// A running `identity serve` and the database it uses.
pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
    /// Where gRPC listens.
    pub grpc_addr: String,
    /// Where the JSON bridge listens.
    pub http_addr: String,
    /// Where the metrics listener listens.
    pub metrics_addr: String,
}

impl Server {
    /// Starts the binary on SQLite in a temporary directory, or on `database_url`.
    pub fn start(database_url: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let services = dir.path().join("services.txt");
        std::fs::write(
            &services,
            format!(
                "bench introspect,jwks,revocations {}\n",
                sha256_hex(SERVICE_TOKEN)
            ),
        )
        .unwrap();
        let mut command = identity(dir.path(), database_url);
        command
            .arg("serve")
            .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
            .env("HTTP_LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_DATABASE_INTERVAL_MS", "1000")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,identity::app=info")
            .env("SERVICE_TOKENS_FILE", &services)
            .env("WEBAUTHN_RP_ID", "localhost")
            .env("WEBAUTHN_ORIGINS", PASSKEY_ORIGIN);
        // Allocator tuning under test, e.g. MALLOC_ARENA_MAX=2.
        if let Ok(arenas) = std::env::var("MALLOC_ARENA_MAX") {
            command.env("MALLOC_ARENA_MAX", arenas);
        }
        for limit in ["LOGIN", "REGISTER", "VERIFY", "EMAIL", "REFRESH"] {
            command.env(format!("RATE_LIMIT_{limit}"), "0");
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (grpc_addr, http_addr, metrics_addr) = loop {
            let line = lines.next().unwrap().unwrap();
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            let address = |name: &str| entry[name].as_str().map(str::to_owned);
            if let (Some(grpc), Some(http), Some(metrics)) = (
                address("grpc.addr"),
                address("http.addr"),
                address("metrics.addr"),
            ) {
                break (grpc, http, metrics);
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            dir,
            grpc_addr,
            http_addr,
            metrics_addr,
        }
    }

    /// Makes verified accounts `bench{first}..bench{first + count}` the way an operator
    /// would, with the CLI beside the live server.
    pub fn create_accounts(&self, database_url: Option<&str>, accounts: std::ops::Range<usize>) {
        for n in accounts {
            let mut admin = identity(self.dir.path(), database_url)
                .args(["create-superuser", "--email", &bench_email(n)])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            admin
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{PASSWORD}\n").as_bytes())
                .unwrap();
            assert!(admin.wait().unwrap().success(), "create-superuser failed");
        }
    }

    /// Makes the accounts `numbers` with the CLI, signs each in over gRPC with its password,
    /// and hands it to `set_up` (a client, its address, its access token), in turn.
    pub async fn accounts_set_up<T>(
        &self,
        database_url: Option<&str>,
        client: &IdentityServiceClient<Channel>,
        numbers: std::ops::Range<usize>,
        mut set_up: impl AsyncFnMut(IdentityServiceClient<Channel>, String, String) -> T,
    ) -> Vec<T> {
        self.create_accounts(database_url, numbers.clone());
        let mut accounts = Vec::with_capacity(numbers.len());
        for n in numbers {
            let email = bench_email(n);
            let login = pb::LoginRequest {
                email: email.clone(),
                password: PASSWORD.into(),
            };
            let access = client
                .clone()
                .login(login)
                .await
                .unwrap()
                .into_inner()
                .access;
            accounts.push(set_up(client.clone(), email, access).await);
        }
        accounts
    }

    /// The server's resident memory now and its peak so far, in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// How many files (sockets included) the server holds open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    /// Stops the server as Kubernetes would, and waits for it without blocking the runtime:
    /// the bench's own connections must answer the server's goodbye for it to exit.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        while matches!(self.child.try_wait(), Ok(None)) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    /// A bench that fails midway takes its server with it.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `message` with the caller's access token.
pub fn authorized<T>(message: T, access: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {access}").parse().unwrap());
    request
}

/// The page origin passkeys are registered and used on.
pub const PASSKEY_ORIGIN: &str = "http://localhost:8080";

/// The account worker `n` signs in as.
pub fn bench_email(n: usize) -> String {
    format!("bench{n}@example.com")
}

fn identity(dir: &Path, database_url: Option<&str>) -> Command {
    // `BENCH_BINARY` measures another build (an earlier commit's) in the same sitting.
    let binary = std::env::var_os("BENCH_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_identity")),
        PathBuf::from,
    );
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .env_clear()
        .env("SQLITE_PATH", sqlite_path(dir));
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

fn sqlite_path(dir: &Path) -> PathBuf {
    dir.join("bench.sqlite3")
}

impl Server {
    /// The SQLite file the server uses when no database URL is given.
    pub fn sqlite_path(&self) -> PathBuf {
        sqlite_path(self.dir.path())
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
