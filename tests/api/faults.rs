//! The world around the binary breaking: Postgres restarting under load, statements that
//! outlive their timeout, a pool held empty.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use tokio::time::Instant;
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::{
    binary::serve,
    fake_smtp::FakeSmtp,
    helpers::{Backend, PASSWORD, TestApp, admin_client, sqlite_texts, wait_for_lock_waiter},
    throwaway_postgres::ThrowawayPostgres,
};

/// Every call of the load carries this deadline: shorter than the pool's checkout timeout,
/// so a call that waited that out fails the test as `DEADLINE_EXCEEDED`.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
const POOL_SIZE: usize = 4;

fn with_deadline<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// What the load saw: the writes that answered OK, and every answer that was neither OK nor
/// `UNAVAILABLE`.
#[derive(Default)]
struct Observed {
    registered: Vec<String>,
    logins: usize,
    refreshes: usize,
    unavailable: usize,
    unexpected: Vec<String>,
}

impl Observed {
    fn refused(&mut self, what: &str, status: &tonic::Status) {
        if status.code() == Code::Unavailable {
            assert_eq!(
                status.get_error_details().error_info().unwrap().reason,
                "DATABASE_UNAVAILABLE"
            );
            self.unavailable += 1;
        } else {
            self.unexpected
                .push(format!("{what}: {:?} {}", status.code(), status.message()));
        }
    }
}

async fn readiness(channel: &Channel) -> Option<ServingStatus> {
    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: "readiness".into(),
    };
    let answer = health.check(with_deadline(request)).await.ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

/// Polls readiness until it is `wanted`; how long that took, failing after `bound`.
async fn wait_for_readiness(channel: &Channel, wanted: ServingStatus, bound: Duration) -> Duration {
    let start = Instant::now();
    while readiness(channel).await != Some(wanted) {
        assert!(
            start.elapsed() < bound,
            "readiness did not turn {wanted:?} within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// One client of the load.
#[derive(Clone, Copy)]
enum Work {
    /// Registers a new address each time.
    Register,
    /// Signs in to one account.
    Login,
    /// Rotates one session's refresh token.
    Refresh,
}

/// Repeats `work` until `stop` is set; a `Refresh` client ends with its session's newest
/// refresh token.
async fn load(
    work: Work,
    mut client: IdentityServiceClient<Channel>,
    mut refresh: String,
    stop: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) -> String {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let answered = match work {
            Work::Register => {
                let email = format!("load-{n}@example.com");
                let request = pb::RegisterRequest {
                    email: email.clone(),
                    password: PASSWORD.into(),
                    ..Default::default()
                };
                let answer = client.register(with_deadline(request)).await;
                answer.map(|_| observed.lock().unwrap().registered.push(email))
            }
            Work::Login => {
                let request = pb::LoginRequest {
                    email: "steady@example.com".into(),
                    password: PASSWORD.into(),
                };
                let answer = client.login(with_deadline(request)).await;
                answer.map(|_| observed.lock().unwrap().logins += 1)
            }
            Work::Refresh => {
                // A refresh that was refused is retried with the same token: if its commit
                // went through unseen, the retry grace hands out the same successor.
                let request = pb::RefreshRequest {
                    refresh: refresh.clone(),
                };
                let answer = client.refresh(with_deadline(request)).await;
                answer.map(|answer| {
                    refresh = answer.into_inner().refresh;
                    observed.lock().unwrap().refreshes += 1;
                })
            }
        };
        if let Err(status) = answered {
            observed.lock().unwrap().refused(work.name(), &status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresh
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "Register",
            Self::Login => "Login",
            Self::Refresh => "Refresh",
        }
    }
}

/// The load: one client of each kind, until `stop` is set.
fn start_load(
    client: &IdentityServiceClient<Channel>,
    refresh: String,
    stop: &Arc<AtomicBool>,
    observed: &Arc<Mutex<Observed>>,
) -> Vec<tokio::task::JoinHandle<String>> {
    [Work::Register, Work::Login, Work::Refresh]
        .into_iter()
        .map(|work| {
            tokio::spawn(load(
                work,
                client.clone(),
                refresh.clone(),
                stop.clone(),
                observed.clone(),
            ))
        })
        .collect()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Postgres stopped and started while clients register, sign in and refresh: calls answer
/// `UNAVAILABLE` at once while it is down, readiness follows, everything works again soon
/// after it returns without restarting `identity`, no write that answered OK is lost, and
/// no connection, file or task is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_under_load_loses_no_acknowledged_write() {
    let postgres = ThrowawayPostgres::start();
    let smtp = FakeSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = smtp.port.to_string();
    let pool_size = POOL_SIZE.to_string();
    let served = serve(
        &dir,
        &[
            ("DATABASE_URL", postgres.url.as_str()),
            ("DATABASE_POOL_SIZE", pool_size.as_str()),
            ("EMAIL_HOST", "127.0.0.1"),
            ("EMAIL_PORT", smtp_port.as_str()),
            ("EMAIL_USE_TLS", "false"),
            ("EMAIL_POLL_INTERVAL_MS", "50"),
            ("EMAIL_RETRY_BASE", "0"),
            ("RATE_LIMIT_LOGIN", "0"),
            ("RATE_LIMIT_REGISTER", "0"),
            ("RATE_LIMIT_REFRESH", "0"),
        ],
    );
    let channel = Channel::from_shared(format!("http://{}", served.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = IdentityServiceClient::new(channel.clone());
    let register = pb::RegisterRequest {
        email: "steady@example.com".into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    client.register(register).await.unwrap();
    let otp = smtp
        .nth_with_subject("steady@example.com", "verification code", 1)
        .await
        .otp();
    let verify = pb::VerifyOtpRequest {
        email: "steady@example.com".into(),
        otp,
    };
    client.verify_otp(verify).await.unwrap();
    let login = pb::LoginRequest {
        email: "steady@example.com".into(),
        password: PASSWORD.into(),
    };
    let first = client.login(login).await.unwrap().into_inner();

    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let load = start_load(&client, first.refresh, &stop, &observed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let files_before = open_files(served.child.id());
    let tasks_before = alive_tasks(&served.metrics).await;

    postgres.stop();
    wait_for_readiness(&channel, ServingStatus::NotServing, Duration::from_secs(10)).await;
    let outage = observed.lock().unwrap().unavailable;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        observed.lock().unwrap().unavailable > outage,
        "calls kept answering UNAVAILABLE while Postgres was down"
    );

    postgres.resume();
    let back = wait_for_readiness(&channel, ServingStatus::Serving, Duration::from_secs(5)).await;
    let before_return = observed.lock().unwrap().logins;
    let working = Instant::now();
    while observed.lock().unwrap().logins == before_return {
        assert!(
            back + working.elapsed() < Duration::from_secs(5),
            "no sign-in succeeded within 5 s of Postgres' return"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut tokens = Vec::new();
    for task in load {
        tokens.push(task.await.unwrap());
    }
    let observed = std::mem::take(&mut *observed.lock().unwrap());
    assert!(
        observed.unexpected.is_empty(),
        "answers other than OK and UNAVAILABLE: {:?}",
        observed.unexpected
    );
    assert!(observed.logins > 0 && observed.refreshes > 0 && !observed.registered.is_empty());

    // Every write that answered OK is there.
    let admin = admin_client(&postgres.url).await;
    let emails: HashSet<String> = admin
        .query("SELECT email FROM users", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for email in &observed.registered {
        assert!(emails.contains(email), "{email} answered OK but is gone");
    }
    let sessions: i64 = admin
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        sessions > i64::try_from(observed.logins).unwrap(),
        "{} sign-ins answered OK, {sessions} sessions exist",
        observed.logins
    );
    let rotated = tokens.pop().unwrap();
    let again = pb::RefreshRequest { refresh: rotated };
    client
        .refresh(again)
        .await
        .expect("the session rotated through the outage still refreshes");
    // Each address's code and link are mailed once, however the outbox's rounds met the
    // outage.
    for email in &observed.registered {
        smtp.wait_for(email, 1).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for email in &observed.registered {
        let mut subjects: Vec<String> = smtp.to(email).into_iter().map(|m| m.subject).collect();
        subjects.sort();
        let sent = subjects.len();
        subjects.dedup();
        assert_eq!(
            sent,
            subjects.len(),
            "{email} was mailed twice: {subjects:?}"
        );
    }

    // No connection, file or task is left behind by the calls that failed.
    let connections: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        connections <= i64::try_from(POOL_SIZE).unwrap(),
        "{connections} connections to Postgres from a pool of {POOL_SIZE}"
    );
    let files_after = open_files(served.child.id());
    assert!(
        files_after <= files_before + POOL_SIZE,
        "{files_before} open files before the outage, {files_after} after"
    );
    let tasks_after = alive_tasks(&served.metrics).await;
    assert!(
        tasks_after <= tasks_before + 4.0,
        "{tasks_before} tasks alive before the outage, {tasks_after} after"
    );
    let (status, _) = served.terminate().await;
    assert!(status.success());
}

/// The server's own count of live tasks, from its metrics.
async fn alive_tasks(metrics: &str) -> f64 {
    let metrics = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("identity_runtime_alive_tasks "))
        .expect("the gauge of live tasks")
        .parse()
        .unwrap()
}

/// Locks the users table from an operator's session, until `ROLLBACK` on the client returned.
async fn lock_users(app: &TestApp) -> tokio_postgres::Client {
    let admin = admin_client(&app.database_url).await;
    admin
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    admin
}

/// A statement held up past `DATABASE_STATEMENT_TIMEOUT_MS` (here by a lock an operator's
/// session holds) answers `UNAVAILABLE` within the caller's deadline, changes nothing, and
/// the service works again once the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_timeout_answers_unavailable_and_changes_nothing() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        &[("DATABASE_STATEMENT_TIMEOUT_MS", "300")],
    )
    .await;
    let (user, tokens) = app.signed_in_user("ada@example.com").await;
    let admin = lock_users(&app).await;

    let mut request = TestApp::authorized(pb::GetUserRequest { id: user.id }, &tokens.access);
    request.set_timeout(CALL_DEADLINE);
    let status = app.client.clone().get_user(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "DATABASE_UNAVAILABLE");
    assert!(details.retry_info().is_some());
    let (code, body) = app
        .post(
            "/accounts/api/register/",
            serde_json::json!({"email": "grace@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["details"][0]["reason"], "DATABASE_UNAVAILABLE");

    admin.batch_execute("ROLLBACK").await.unwrap();
    assert!(app.user("grace@example.com").await.is_none());
    app.get_user(&tokens.access, user.id).await.unwrap();
    app.register("grace@example.com", PASSWORD).await.unwrap();
}

/// With every pooled connection held (one, here, by a call waiting on a lock), another call
/// answers within its own deadline, and a call without one answers `UNAVAILABLE` once the
/// checkout gives up, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_held_empty_answers_within_the_deadline() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        &[
            ("DATABASE_POOL_SIZE", "1"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "8000"),
        ],
    )
    .await;
    let (user, tokens) = app.signed_in_user("ada@example.com").await;
    let admin = lock_users(&app).await;
    // This call takes the only connection and waits on the lock.
    let held = {
        let app_client = app.client.clone();
        let access = tokens.access.clone();
        tokio::spawn(async move {
            let request = TestApp::authorized(pb::GetUserRequest { id: user.id }, &access);
            app_client.clone().get_user(request).await
        })
    };
    // Only once it waits on the lock does it hold the connection for sure.
    wait_for_lock_waiter(&app.database_url, "sessions").await;

    let mut request = TestApp::authorized(pb::GetUserRequest { id: user.id }, &tokens.access);
    request.set_timeout(Duration::from_secs(1));
    let status = app.client.clone().get_user(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    let (code, body) = app
        .get_json(
            &format!("/accounts/api/users/{}/", user.id),
            Some(&tokens.access),
        )
        .await;
    assert_eq!(code, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["details"][0]["reason"], "DATABASE_UNAVAILABLE");

    admin.batch_execute("ROLLBACK").await.unwrap();
    held.await
        .unwrap()
        .expect("the held call completes once the lock goes");
    app.get_user(&tokens.access, user.id).await.unwrap();
}

/// A small file system of its own (tmpfs), unmounted when dropped; `None` where this
/// process may not mount (not root, or no `CAP_SYS_ADMIN`).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .ok()?;
        mounted.status.success().then_some(Self { path, _dir: dir })
    }

    fn remount(&self, options: &str) {
        let remounted = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(remounted.success());
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut filler = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        // The last partial chunk may have left a few bytes; a byte at a time takes them.
        while filler.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// SQLite on a full disk: writes answer `UNAVAILABLE` (`STORAGE_FULL`) and change nothing,
/// reads keep working, writes work again once there is room (without a restart), and the
/// database passes SQLite's integrity check. A read-only disk stops start-up with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_or_read_only_disk_refuses_clearly_and_stays_whole() {
    let Some(disk) = SmallDisk::mount("8m") else {
        assert!(
            std::env::var("IDENTITY_TESTS_WITHOUT_ROOT").is_ok_and(|value| value == "1"),
            "this test mounts a small tmpfs, which needs root: run it as root, or opt out \
             with IDENTITY_TESTS_WITHOUT_ROOT=1"
        );
        eprintln!("opted out with IDENTITY_TESTS_WITHOUT_ROOT=1: this test did not run");
        return;
    };
    let database = disk.path.join("identity.sqlite3");
    let dir = tempfile::tempdir().unwrap();
    let database_setting = database.to_str().unwrap().to_owned();
    let settings = [
        ("SQLITE_PATH", database_setting.as_str()),
        ("RATE_LIMIT_REGISTER", "0"),
    ];
    let served = serve(&dir, &settings);
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let register = |email: &str| pb::RegisterRequest {
        email: email.into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    client
        .register(register("before@example.com"))
        .await
        .unwrap();

    let filler = disk.fill();
    let status = client
        .register(register("during@example.com"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "STORAGE_FULL"
    );
    let health = readiness(&client_channel(&served.grpc).await).await;
    assert_eq!(health, Some(ServingStatus::Serving), "reads still work");

    std::fs::remove_file(filler).unwrap();
    client
        .register(register("after@example.com"))
        .await
        .expect("writes work again once there is room");
    let (status, _) = served.terminate().await;
    assert!(status.success());

    let path = database.to_str().unwrap();
    let integrity = sqlite_texts(
        path,
        "SELECT integrity_check AS value FROM pragma_integrity_check",
    )
    .await;
    let emails = sqlite_texts(path, "SELECT email AS value FROM users ORDER BY email").await;
    assert_eq!(integrity, ["ok"]);
    assert_eq!(emails, ["after@example.com", "before@example.com"]);

    disk.remount("ro");
    let started = crate::binary::identity(&dir, &["serve"])
        .env("SQLITE_PATH", &database)
        .output()
        .unwrap();
    assert!(!started.status.success());
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
}

async fn client_channel(grpc: &str) -> Channel {
    Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
