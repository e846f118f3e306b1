//! The binary as an operator starts it: a clean environment, settings, its log read back.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

/// The `identity` binary this test build made.
pub const BINARY: &str = env!("CARGO_BIN_EXE_identity");

/// The binary with a clean environment in its own directory, on a SQLite file there.
pub fn identity(dir: &tempfile::TempDir, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", dir.path().join("identity.sqlite3"))
        .env("LOG_FORMAT", "json")
        .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
        .env("HTTP_LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_LISTEN_ADDR", "127.0.0.1:0");
    command
}

/// Settings of a replica on the Postgres database `database_url` that mails through the
/// SMTP server on `smtp_port`, looking at its outbox every 50 ms.
pub fn replica_settings(database_url: &str, smtp_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("EMAIL_HOST", "127.0.0.1".to_owned()),
        ("EMAIL_PORT", smtp_port.to_string()),
        ("EMAIL_USE_TLS", "false".to_owned()),
        ("EMAIL_POLL_INTERVAL_MS", "50".to_owned()),
    ]
}

/// A running `identity serve` and everything it logged so far.
pub struct Served {
    pub child: Child,
    pub grpc: String,
    pub http: String,
    pub metrics: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// Starts `identity serve` with extra settings and reads its addresses from its log.
pub fn serve<V: AsRef<std::ffi::OsStr>>(dir: &tempfile::TempDir, settings: &[(&str, V)]) -> Served {
    let mut command = identity(dir, &[]);
    command.envs(settings.iter().map(|(name, value)| (name, value)));
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (grpc, http, metrics) = loop {
        let line = lines
            .next()
            .expect("the server logs before exiting")
            .unwrap();
        logs.lock().unwrap().push(line.clone());
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
    // Keep reading so the child never blocks on a full pipe.
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|line| sink.lock().unwrap().push(line))
    });
    Served {
        child,
        grpc,
        http,
        metrics,
        logs,
    }
}

impl Drop for Served {
    /// A test that fails before it terminates the server leaves no process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The reader thread drains what is left once the pipe closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let logs = self.logs.lock().unwrap().clone();
        (status, logs)
    }
}
