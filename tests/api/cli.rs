//! The binary as an operator runs it: settings errors, `migrate`, `create-superuser`, SIGTERM.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::Duration,
};

use identity::pb::{self, identity_service_client::IdentityServiceClient};

const BINARY: &str = env!("CARGO_BIN_EXE_identity");

/// The binary with a clean environment in its own directory, on a SQLite file there.
fn identity(dir: &tempfile::TempDir, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", dir.path().join("identity.sqlite3"))
        .env("LOG_FORMAT", "json")
        .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
        .env("HTTP_LISTEN_ADDR", "127.0.0.1:0");
    command
}

fn create_superuser(dir: &tempfile::TempDir, email: &str, password: &str) -> std::process::Output {
    let mut child = identity(dir, &["create-superuser", "--email", email])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Starts `identity serve` and returns it with its gRPC address, read from its first log lines.
fn serve(dir: &tempfile::TempDir) -> (Child, String) {
    let mut child = identity(dir, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs before exiting")
            .unwrap();
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(addr) = entry["grpc.addr"].as_str() {
            break addr.to_owned();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();

    let output = identity(&dir, &["serve"])
        .env("OTP_EXPIRATION_TIME", "ten minutes")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("OTP_EXPIRATION_TIME"), "{stderr}");
}

#[test]
fn migrate_then_create_superuser_with_the_password_on_stdin() {
    let dir = tempfile::tempdir().unwrap();

    assert!(
        identity(&dir, &["migrate"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let weak = create_superuser(&dir, "root@example.com", "short");
    let created = create_superuser(&dir, "root@example.com", "a-sturdy-admin-passphrase");
    let again = create_superuser(&dir, "ROOT@example.com", "a-sturdy-admin-passphrase");

    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        !again.status.success(),
        "a second account with the same email"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_superuser_signs_in_to_the_served_binary_which_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        create_superuser(&dir, "root@example.com", "a-sturdy-admin-passphrase")
            .status
            .success()
    );
    let (mut child, addr) = serve(&dir);

    let mut client = IdentityServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let login = pb::LoginRequest {
        email: "root@example.com".into(),
        password: "a-sturdy-admin-passphrase".into(),
    };
    let tokens = client.login(login).await.unwrap().into_inner();
    assert!(!tokens.access.is_empty());

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
