//! `TestApp`: the real service on port 0 over a fresh database, with a fake SMTP server.

use std::{collections::HashMap, time::Duration};

use identity::{
    app::Application,
    clock::Clock,
    config::Config,
    domain::{Email, Password},
    pb::{self, identity_service_client::IdentityServiceClient},
};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tonic::{Code, Request, Status, transport::Channel};

use crate::{
    fake_google::{CLIENT_ID, FakeGoogle},
    fake_smtp::FakeSmtp,
};

/// Writes a `SERVICE_TOKENS_FILE` into `dir` with one line per `(name, scopes, token)`, the
/// token stored as its SHA-256 (`client-certificate` is written as it is); returns its path.
pub fn service_tokens_file(dir: &std::path::Path, services: &[(&str, &str, &str)]) -> String {
    use sha2::Digest;
    let mut text = String::from("# name scopes sha256(token)|client-certificate\n");
    for (name, scopes, token) in services {
        let credential: String = if *token == "client-certificate" {
            (*token).to_owned()
        } else {
            sha2::Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        text.push_str(&format!("{name} {scopes} {credential}\n"));
    }
    let path = dir.join("service-tokens");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The database backend a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
    };
}

pub const PASSWORD: &str = "a-long-enough-passphrase";
pub const STAFF_EMAIL: &str = "staff@example.org";
pub const STAFF_PASSWORD: &str = "the-operators-passphrase";

/// A running service and what a test needs to drive and observe it.
pub struct TestApp {
    pub client: IdentityServiceClient<Channel>,
    pub grpc_addr: std::net::SocketAddr,
    /// Base URL of the JSON bridge, e.g. `http://127.0.0.1:41234`.
    pub http_base: String,
    /// Base URL of the metrics listener.
    pub metrics_base: String,
    pub http: reqwest::Client,
    pub smtp: FakeSmtp,
    pub google: FakeGoogle,
    pub clock: Clock,
    /// The test database's URL (`postgres://` or `sqlite://`), for checks no API exposes.
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _database: TestDatabase,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Spawns with extra settings, e.g. `[("OTP_RESEND_COOLDOWN", "0")]`.
    pub async fn spawn_with(backend: Backend, settings: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create(backend).await;
        let smtp = FakeSmtp::start().await;
        let google = FakeGoogle::start().await;
        let mut values: HashMap<String, String> = [
            ("DATABASE_URL", database.url.clone()),
            ("GRPC_LISTEN_ADDR", "127.0.0.1:0".into()),
            ("HTTP_LISTEN_ADDR", "127.0.0.1:0".into()),
            ("METRICS_LISTEN_ADDR", "127.0.0.1:0".into()),
            ("METRICS_DATABASE_INTERVAL_MS", "50".into()),
            ("EMAIL_HOST", "127.0.0.1".into()),
            ("EMAIL_PORT", smtp.port.to_string()),
            ("EMAIL_USE_TLS", "false".into()),
            ("DEFAULT_FROM_EMAIL", "identity@example.org".into()),
            ("PUBLIC_BASE_URL", "http://identity.test".into()),
            ("EMAIL_POLL_INTERVAL_MS", "100".into()),
            ("EMAIL_RETRY_BASE", "0".into()),
            ("LOG_FORMAT", "json".into()),
            (
                "GOOGLE_OAUTH_CLIENT_ID",
                format!("{CLIENT_ID},ios-client.apps.googleusercontent.com"),
            ),
            ("GOOGLE_TOKENINFO_URL", format!("{}/tokeninfo", google.base)),
            ("GOOGLE_USERINFO_URL", format!("{}/userinfo", google.base)),
            ("GOOGLE_JWKS_URL", format!("{}/jwks", google.base)),
            ("GOOGLE_TIMEOUT_MS", "500".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in settings {
            values.insert((*key).to_owned(), (*value).to_owned());
        }
        let config = Config::from_map(&values).expect("test configuration is valid");
        let clock = Clock::default();
        let app = Application::build_with_clock(config, clock.clone())
            .await
            .expect("the app builds");
        let grpc_addr = app.grpc_addr();
        let http_base = format!("http://{}", app.http_addr());
        let metrics_base = format!("http://{}", app.metrics_addr());
        app.services()
            .create_superuser(
                Email::parse(STAFF_EMAIL).unwrap(),
                Password::parse(STAFF_PASSWORD).unwrap(),
            )
            .await
            .expect("the staff account is created");
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        // Lazily, as a server on TLS refuses this plaintext client; its tests dial their own.
        let client = IdentityServiceClient::new(
            Channel::from_shared(format!("http://{grpc_addr}"))
                .unwrap()
                .connect_lazy(),
        );
        Self {
            client,
            grpc_addr,
            http_base,
            metrics_base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            smtp,
            google,
            clock,
            database_url: database.url.clone(),
            stop: Some(stop),
            server: Some(server),
            _database: database,
        }
    }

    /// A fresh channel to the server, for other services' clients.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A plaintext channel that connects on first use.
    pub fn channel_lazy(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect_lazy()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Registers as "Ada Lovelace"; the answer is the same whether or not the address has
    /// an account.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
    ) -> Result<pb::RegisterResponse, Status> {
        let request = pb::RegisterRequest {
            email: email.into(),
            password: password.into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
        };
        Ok(self.client.clone().register(request).await?.into_inner())
    }

    pub async fn verify_otp(&self, email: &str, otp: &str) -> Result<pb::User, Status> {
        let request = pb::VerifyOtpRequest {
            email: email.into(),
            otp: otp.into(),
        };
        Ok(self
            .client
            .clone()
            .verify_otp(request)
            .await?
            .into_inner()
            .user
            .unwrap())
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<pb::LoginResponse, Status> {
        let request = pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        };
        Ok(self.client.clone().login(request).await?.into_inner())
    }

    pub async fn refresh(&self, refresh: &str) -> Result<pb::RefreshResponse, Status> {
        let request = pb::RefreshRequest {
            refresh: refresh.into(),
        };
        Ok(self.client.clone().refresh(request).await?.into_inner())
    }

    /// Ends the session of a refresh token.
    pub async fn logout(&self, refresh: &str) {
        let request = pb::LogoutRequest {
            refresh: refresh.into(),
        };
        self.client.clone().logout(request).await.unwrap();
    }

    /// Ends every session of the bearer.
    pub async fn logout_all(&self, access: &str) {
        let request = Self::authorized(pb::LogoutAllRequest {}, access);
        self.client.clone().logout_all(request).await.unwrap();
    }

    /// Registers, reads the code from the email, and verifies.
    pub async fn verified_user(&self, email: &str) -> pb::User {
        self.register(email, PASSWORD)
            .await
            .expect("registration succeeds");
        let otp = self
            .smtp
            .nth_with_subject(email, "verification code", 1)
            .await
            .otp();
        self.verify_otp(email, &otp)
            .await
            .expect("verification succeeds")
    }

    /// Registers, verifies and logs in.
    pub async fn signed_in_user(&self, email: &str) -> (pb::User, pb::LoginResponse) {
        let user = self.verified_user(email).await;
        let tokens = self.login(email, PASSWORD).await.expect("login succeeds");
        (user, tokens)
    }

    /// A request carrying `authorization: Bearer <access>`.
    pub fn authorized<T>(message: T, access: &str) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {access}").parse().unwrap());
        request
    }

    /// One user, read with a bearer token.
    pub async fn get_user(&self, access: &str, id: i64) -> Result<pb::User, Status> {
        let request = Self::authorized(pb::GetUserRequest { id }, access);
        let reply = self.client.clone().get_user(request).await?;
        Ok(reply.into_inner().user.unwrap())
    }

    /// Every user, as staff sees them (signing staff in afresh, as the clock may have moved).
    pub async fn all_users(&self) -> Vec<pb::User> {
        let staff = self
            .login(STAFF_EMAIL, STAFF_PASSWORD)
            .await
            .expect("staff can log in");
        let request = Self::authorized(
            pb::ListUsersRequest {
                page_size: 100,
                ..Default::default()
            },
            &staff.access,
        );
        self.client
            .clone()
            .list_users(request)
            .await
            .expect("staff can list users")
            .into_inner()
            .users
    }

    /// One user, as staff sees them.
    pub async fn user(&self, email: &str) -> Option<pb::User> {
        self.all_users()
            .await
            .into_iter()
            .find(|u| u.email == email)
    }

    /// Runs one SQL statement on the test's database, as an operator at a console would
    /// (for states no API reaches yet, such as a disabled account).
    pub async fn execute_sql(&self, sql: &str) {
        if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            let (path, sql) = (path.to_owned(), sql.to_owned());
            tokio::task::spawn_blocking(move || {
                use diesel::{Connection, RunQueryDsl};
                let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
                // The service writes on its own connection meanwhile: wait for it.
                diesel::sql_query("PRAGMA busy_timeout = 5000")
                    .execute(&mut conn)
                    .unwrap();
                diesel::sql_query(sql).execute(&mut conn).unwrap();
            })
            .await
            .unwrap();
        } else {
            admin_client(&self.database_url)
                .await
                .batch_execute(sql)
                .await
                .unwrap();
        }
    }

    /// The column `value` of every row a query returns, as text, from the test's database.
    pub async fn query_texts(&self, sql: &str) -> Vec<String> {
        if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            sqlite_texts(path, sql).await
        } else {
            admin_client(&self.database_url)
                .await
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        }
    }

    /// The Prometheus text the metrics listener serves at `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the outbox holds nothing undelivered: the worker has sent (or given up on)
    /// everything queued so far.
    pub async fn settle_outbox(&self) {
        // The database itself, not the gauge, which is refreshed on a timer.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let pending = self
                .query_texts(
                    "SELECT CAST(COUNT(*) AS TEXT) AS value FROM outbox \
                     WHERE sent_at IS NULL AND gave_up_at IS NULL",
                )
                .await
                .remove(0);
            if pending == "0" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox still holds {pending} undelivered emails after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `ErrorInfo` reason of a refusal (empty without one).
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// Asserts a call failed with `code` and the `ErrorInfo` `reason`.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    outcome: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    use tonic_types::StatusExt;
    let status = outcome.expect_err("the call should have been refused");
    assert_eq!(status.code(), code, "unexpected code: {status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason: {status:?}");
    status
}

/// The `RetryInfo` delay of a refusal.
#[track_caller]
pub fn retry_delay(status: &Status) -> Duration {
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    details
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo detail")
}

/// A database for one test, removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("identity.sqlite3");
                std::fs::copy(migrated_sqlite_template().await, &path).unwrap();
                let url = format!("sqlite://{}", path.display());
                Self {
                    url,
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("TEST_DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let client = admin_client(&admin).await;
                let template = migrated_template(&client, &admin).await;
                let name = format!("identity_test_{}", uuid::Uuid::new_v4().simple());
                client
                    .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                    .await
                    .unwrap();
                Self {
                    url: database_url(&admin, &name),
                    postgres: Some((admin, name)),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async context: a small runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = admin_client(&admin).await;
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// The URL of database `name` on the server `admin` points at.
fn database_url(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{name}")
}

/// A database holding every migration, made once per version of `migrations/postgres` and
/// shared by every test process: each test's database is a copy of it, which is much
/// cheaper than migrating. Built under a different name and renamed, so a run killed
/// midway never leaves a half-migrated template behind.
async fn migrated_template(client: &tokio_postgres::Client, admin: &str) -> String {
    const BUILD_LOCK: i64 = 0x0069_645f_746d_706c; // "id_tmpl"
    let name = format!(
        "identity_template_{:016x}",
        migrations_fingerprint("postgres")
    );
    let exists = |name: String| async move {
        client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap()
            .is_some()
    };
    if exists(name.clone()).await {
        return name;
    }
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({BUILD_LOCK})"))
        .await
        .unwrap();
    if !exists(name.clone()).await {
        let partial = format!("{name}_partial");
        for statement in [
            format!("DROP DATABASE IF EXISTS {partial} WITH (FORCE)"),
            format!("CREATE DATABASE {partial}"),
        ] {
            client.batch_execute(&statement).await.unwrap();
        }
        let database = identity::config::DatabaseConfig::Postgres {
            url: database_url(admin, &partial).into(),
        };
        let store = identity::storage::Store::connect(&database, 1, Duration::from_secs(30))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        drop(store);
        // A database can only be renamed once nobody is connected to it.
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&partial],
            )
            .await
            .unwrap();
        client
            .batch_execute(&format!("ALTER DATABASE {partial} RENAME TO {name}"))
            .await
            .unwrap();
    }
    client
        .batch_execute(&format!("SELECT pg_advisory_unlock({BUILD_LOCK})"))
        .await
        .unwrap();
    name
}

/// A migrated SQLite file, made once per version of `migrations/sqlite` under `target/` and
/// copied by every test. Written under a temporary name and renamed into place, so racing
/// test processes each see a whole file or none.
async fn migrated_sqlite_template() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let template = dir.join(format!(
        "identity_template_{:016x}.sqlite3",
        migrations_fingerprint("sqlite")
    ));
    if template.exists() {
        return template;
    }
    std::fs::create_dir_all(dir).unwrap();
    let building = tempfile::Builder::new()
        .prefix("identity_template_")
        .tempdir_in(dir)
        .unwrap();
    let path = building.path().join("identity.sqlite3");
    let database = identity::config::DatabaseConfig::Sqlite { path: path.clone() };
    let store = identity::storage::Store::connect(&database, 1, Duration::from_secs(30))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // Closing the last connection folds the write-ahead log into the file.
    drop(store);
    assert!(
        !path.with_extension("sqlite3-wal").exists(),
        "the template's write-ahead log was not folded in"
    );
    std::fs::rename(&path, &template).unwrap();
    template
}

/// A fingerprint of one backend's migrations, so a changed migration gets a new template.
fn migrations_fingerprint(backend: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|entry| std::fs::read_dir(entry.unwrap().path()).unwrap())
        .map(|file| file.unwrap().path())
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        file.strip_prefix(&dir).unwrap().hash(&mut hasher);
        std::fs::read(&file).unwrap().hash(&mut hasher);
    }
    hasher.finish()
}

/// The column `value` of every row `sql` returns from the SQLite file at `path`, as text;
/// waits out the service's writes on its own connection.
pub async fn sqlite_texts(path: &str, sql: &str) -> Vec<String> {
    let (path, sql) = (path.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
        diesel::sql_query("PRAGMA busy_timeout = 5000")
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query(sql)
            .load::<Text>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|row| row.value)
            .collect()
    })
    .await
    .unwrap()
}

/// What a test needs from outside the build: the tool `variable` names (scripts/test sets
/// it, installing what it can). Without it the test fails and says why, unless whoever runs
/// the suite opted out of such tests by name (`opt_out=1`): then it does not run, and
/// scripts/test's summary lists what did not.
pub fn required_tool(variable: &str, opt_out: &str) -> Option<String> {
    if let Ok(path) = std::env::var(variable) {
        return Some(path);
    }
    if std::env::var(opt_out).is_ok_and(|value| value == "1") {
        eprintln!("opted out with {opt_out}=1: this test did not run");
        return None;
    }
    panic!(
        "this test needs {variable}, which names no tool here: run scripts/test, which \
         installs it where it can, or opt out with {opt_out}=1"
    );
}

/// A plain client on a Postgres database, for what no API exposes.
/// Waits until a statement of the server's that mentions `table` waits on a lock in the
/// database at `url`; fails after 10 s.
pub async fn wait_for_lock_waiter(url: &str, table: &str) {
    let probe = admin_client(url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pattern = format!("%{table}%");
    loop {
        let waiting: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE $1",
                &[&pattern],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no statement on {table} ever waited on a lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!("Postgres is required for the tests: cannot reach {url} ({e}); run scripts/test, which starts one")
    });
    tokio::spawn(connection);
    client
}

/// The JSON bridge, as browsers and apps call it.
impl TestApp {
    /// An emailed link, pointed at this app's bridge.
    pub fn local(&self, link: &str) -> String {
        link.replace("http://identity.test", &self.http_base)
    }

    /// POSTs JSON to the bridge; returns the status and the JSON body (null if none).
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.http_base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// GETs from the bridge with an optional bearer token.
    pub async fn get_json(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.http_base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}
