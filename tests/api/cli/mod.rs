//! The binary as an operator runs it, one file per topic: settings that stop start-up, the operator
//! commands, shutdown, logs and traces, replicas, the Django cutover, key rotation and a consuming
//! service. The helpers here run the binary as a person or `kubectl` would.

mod commands;
mod consumers;
mod cutover;
mod keys;
mod logs;
mod replicas;
mod settings;
mod shutdown;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use crate::binary::identity;

pub(super) fn create_superuser(
    dir: &tempfile::TempDir,
    email: &str,
    password: &str,
) -> std::process::Output {
    run_with_stdin(
        identity(dir, &["create-superuser", "--email", email]),
        &format!("{password}\n"),
    )
}

pub(super) async fn register_on(
    client: &IdentityServiceClient<tonic::transport::Channel>,
    email: &str,
) {
    let request = pb::RegisterRequest {
        email: email.into(),
        password: "a-long-enough-passphrase".into(),
        ..Default::default()
    };
    client.clone().register(request).await.unwrap();
}

pub(super) async fn futures_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

/// A loopback address no one listens on, for settings that must name a fixed port.
pub(super) fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

pub(super) fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `command` with `input` on standard input; bounded, so a command that hangs fails.
pub(super) fn run_with_stdin(mut command: Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let output = child.wait_with_output().unwrap();
    drop(watchdog);
    output
}

/// Runs `command` in a pseudo-terminal (util-linux `script`), answering each `Password`
/// prompt with the next of `answers` as a person types; returns the exit code and
/// everything the terminal showed. A command that hangs is killed after 30 s.
pub(super) fn run_in_terminal(command: Command, answers: &[&str]) -> (Option<i32>, String) {
    let program = command.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut terminal = Command::new("script");
    terminal.args(["--quiet", "--return", "--command"]);
    terminal.arg(format!("{program} {}", args.join(" ")));
    terminal.arg("/dev/null");
    terminal.env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            terminal.env(key, value);
        }
    }
    terminal.current_dir(command.get_current_dir().unwrap());
    let mut child = terminal
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (shown_tx, shown_rx) = std::sync::mpsc::channel::<u8>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
            if shown_tx.send(byte[0]).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut shown = Vec::new();
    let mut answered = 0;
    let mut prompts_seen = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match shown_rx.recv_timeout(left) {
            Ok(byte) => shown.push(byte),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "the command hung in the terminal; it showed: {}",
                    String::from_utf8_lossy(&shown)
                );
            }
        }
        let prompts = String::from_utf8_lossy(&shown).matches("Password").count();
        if prompts > prompts_seen && shown.ends_with(b": ") {
            prompts_seen = prompts;
            if let Some(answer) = answers.get(answered) {
                stdin.write_all(format!("{answer}\r").as_bytes()).unwrap();
                stdin.flush().unwrap();
                answered += 1;
            }
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    (status.code(), String::from_utf8_lossy(&shown).into_owned())
}
