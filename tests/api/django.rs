//! Moving from Django: `identity import-django` (from a dumpdata file or the Django database)
//! keeps ids, flags and the password hashes as Django stored them; those verify at login and
//! are re-hashed to argon2id on the first success, and the metric counts what is left.

use identity::pb;
use tonic::Code;

use crate::helpers::{Backend, STAFF_EMAIL, STAFF_PASSWORD, TestApp, TestDatabase, assert_refused};

/// The password the hashes below were made for, by Django 5.1's own hashers (with cheap
/// parameters).
const DJANGO_PASSWORD: &str = "correct horse battery staple ünïcode";
const DJANGO_HASHES: [&str; 5] = [
    "pbkdf2_sha256$1000$N3YY7ySvzEuLpyC8kSPGOv$vrS4iYw/dFf6/DAx/cz2Quisw72bthTbFT/kQ0y+Ueo=",
    "pbkdf2_sha1$1000$S9nuxS97MTj2dMtpNJYnar$Q1bnGAK1gHqucZuoAEdPLIgfsW4=",
    "argon2$argon2id$v=19$m=1024,t=1,p=2$SHhpY3dQTEk5RjMxZmcyUVcyUURxNA$vZRzCYTNmVi+yo7bJbYt22pi6nubjMKSSIBDVWE2joY",
    "bcrypt_sha256$$2b$04$fsSDUttWNovygoE34a7UleVB7jiZQ6zu9RUdnF8tvsChCuR5/vfYO",
    "bcrypt$$2b$04$LiMLPvDCcSdbyHiLkWIWLOSAKO6Kblp3yeZQK1pUJI7oNbiUiqCHS",
];

/// Waits (5 s at most) for the gauge of legacy hashes, refreshed on a timer, to read `expected`.
async fn assert_legacy_hashes(app: &TestApp, expected: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let metrics = app.metrics().await;
        let count = metrics
            .lines()
            .find_map(|line| line.strip_prefix("identity_legacy_password_hashes "))
            .unwrap_or_default()
            .to_owned();
        if count == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} legacy hashes, not {expected}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    app.query_texts(&format!(
        "SELECT password_hash AS value FROM users WHERE email = '{email}'"
    ))
    .await
    .remove(0)
}

async fn django_hashes_sign_in_once_and_become_argon2id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (n, hash) in DJANGO_HASHES.iter().enumerate() {
        let email = format!("moved{n}@example.com");
        app.verified_user(&email).await;
        app.execute_sql(&format!(
            "UPDATE users SET password_hash = '{hash}' WHERE email = '{email}'"
        ))
        .await;
    }
    // An unusable password (Django's `!…`) signs nobody in and is no legacy hash to upgrade.
    app.verified_user("unusable@example.com").await;
    app.execute_sql(
        "UPDATE users SET password_hash = '!rHkL20CE6D1wFSbA6BCmmoVH0Svc0IYl8iQce63H' \
         WHERE email = 'unusable@example.com'",
    )
    .await;
    let unusable = app.login("unusable@example.com", DJANGO_PASSWORD).await;
    assert_refused(unusable, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_legacy_hashes(&app, "5").await;

    for (n, hash) in DJANGO_HASHES.iter().enumerate() {
        let email = format!("moved{n}@example.com");
        let wrong = app.login(&email, "correct horse battery staple").await;
        assert_refused(wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");
        assert_eq!(stored_hash(&app, &email).await, *hash);

        app.login(&email, DJANGO_PASSWORD).await.unwrap();
        let upgraded = stored_hash(&app, &email).await;
        assert!(upgraded.starts_with("$argon2id$v=19$"), "{upgraded}");
        app.login(&email, DJANGO_PASSWORD).await.unwrap();
    }
    assert_legacy_hashes(&app, "0").await;
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/fixtures/django_users.json"
);
/// The password of every usable account in the fixture.
const FIXTURE_PASSWORD: &str = "correct horse battery staple";

/// Runs `identity import-django` on the app's database, as an operator would beside it.
pub(crate) fn import_django(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_identity"))
        .arg("import-django")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap()
}

pub(crate) fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn a_dumpdata_import_keeps_ids_flags_and_passwords(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let check = stdout(&import_django(&app, &["--from-json", FIXTURE, "--check"]));
    assert!(
        check.contains("pbkdf2_sha256               3  yes"),
        "{check}"
    );
    assert!(
        check.contains("unusable (!)                1  no"),
        "{check}"
    );
    assert!(
        app.user("user0@example.com").await.is_none(),
        "--check wrote nothing"
    );

    let first = stdout(&import_django(&app, &["--from-json", FIXTURE]));
    assert!(
        first.contains("imported 6, updated 0, unchanged 0, skipped 2"),
        "{first}"
    );
    assert!(first.contains("skipped 21: its address differs from account 11's only by case"));
    assert!(first.contains("skipped 22: it has no email address"));

    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let root = app.get_user(&staff.access, 10).await.unwrap();
    assert_eq!(
        (
            root.email.as_str(),
            root.first_name.as_str(),
            root.is_staff,
            root.is_superuser
        ),
        ("user0@example.com", "First0", true, true)
    );
    assert!(root.is_verified && root.is_active);
    assert_eq!(root.date_joined.unwrap().seconds, 1_682_942_400); // 2023-05-01T12:00:00Z
    assert_eq!(root.last_login.unwrap().seconds, 1_717_230_600); // 2024-06-01T08:30:00Z
    let unusable = app.get_user(&staff.access, 20).await.unwrap();
    assert!(!unusable.is_active);
    let refused = app.login("unusable@example.com", FIXTURE_PASSWORD).await;
    assert_refused(refused, Code::Unauthenticated, "INVALID_CREDENTIALS");

    // Every format signs in with the password it had; the first sign-in re-hashes it.
    for n in 0..5 {
        let email = format!("user{n}@example.com");
        app.login(&email, FIXTURE_PASSWORD).await.unwrap();
        assert!(stored_hash(&app, &email).await.starts_with("$argon2id$"));
    }
    let status = stdout(&import_django(&app, &["--status"]));
    assert!(
        status.contains("0 accounts still hold a legacy hash"),
        "{status}"
    );

    // Re-running never duplicates, and keeps passwords re-hashed here.
    let again = stdout(&import_django(&app, &["--from-json", FIXTURE]));
    assert!(
        again.contains("imported 0, updated 0, unchanged 6, skipped 2"),
        "{again}"
    );
    app.login("user3@example.com", FIXTURE_PASSWORD)
        .await
        .unwrap();
    assert_eq!(app.all_users().await.len(), 7);

    // New accounts get ids past the imported ones.
    let fresh = app.verified_user("after-import@example.com").await;
    assert!(fresh.id > 20, "{}", fresh.id);
}

async fn an_unknown_hash_format_stops_the_import_unless_told(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.json");
    let records = serde_json::json!([
        {"model": "auth.user", "pk": 5, "fields": {
            "password": "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99", "email": "old@example.com",
            "is_active": true, "date_joined": "2020-01-01T00:00:00"}},
        {"model": "auth.user", "pk": 6, "fields": {
            "password": DJANGO_HASHES[0], "email": "new@example.com",
            "is_active": true, "date_joined": "2020-01-01T00:00:00"}},
    ]);
    std::fs::write(&path, records.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let stopped = import_django(&app, &["--from-json", path]);
    assert!(!stopped.status.success());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("1 accounts hold a password hash"));
    assert!(
        app.user("new@example.com").await.is_none(),
        "nothing was written"
    );

    let told = stdout(&import_django(
        &app,
        &["--from-json", path, "--unknown-hashes-unusable"],
    ));
    assert!(
        told.contains("imported 2, updated 0, unchanged 0, skipped 0"),
        "{told}"
    );
    let old = app.login("old@example.com", "password").await;
    assert_refused(old, Code::Unauthenticated, "INVALID_CREDENTIALS");
    app.login("new@example.com", DJANGO_PASSWORD).await.unwrap();
}

/// A Django database as `migrate` makes it: `auth_user`, and a custom model's table.
async fn django_database() -> TestDatabase {
    let database = TestDatabase::create(Backend::Postgres).await;
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let mut sql = String::from(
        "CREATE TABLE auth_user (id integer PRIMARY KEY, password varchar(128) NOT NULL,
           last_login timestamptz, is_superuser boolean NOT NULL, username varchar(150) NOT NULL,
           first_name varchar(150) NOT NULL, last_name varchar(150) NOT NULL,
           email varchar(254) NOT NULL, is_staff boolean NOT NULL, is_active boolean NOT NULL,
           date_joined timestamptz NOT NULL);
         CREATE TABLE members_user (id bigint PRIMARY KEY, password varchar(128) NOT NULL,
           email varchar(254) NOT NULL, is_verified boolean NOT NULL,
           is_active boolean NOT NULL, date_joined timestamp NOT NULL);
         CREATE TABLE accounts_user (id bigint PRIMARY KEY, password varchar(128) NOT NULL,
           email_address varchar(254) NOT NULL, email_verified boolean NOT NULL,
           is_active boolean NOT NULL, date_joined timestamp NOT NULL);",
    );
    for record in &records {
        let f = &record["fields"];
        let last_login = f["last_login"]
            .as_str()
            .map_or("NULL".to_owned(), |at| format!("'{at}'"));
        sql.push_str(&format!(
            "INSERT INTO auth_user VALUES ({}, '{}', {last_login}, {}, '{}', '{}', '{}', '{}', {}, {}, '{}');",
            record["pk"], f["password"].as_str().unwrap(), f["is_superuser"], f["username"].as_str().unwrap(),
            f["first_name"].as_str().unwrap(), f["last_name"].as_str().unwrap(), f["email"].as_str().unwrap(),
            f["is_staff"], f["is_active"], f["date_joined"].as_str().unwrap(),
        ));
    }
    sql.push_str(
        "CREATE TABLE token_blacklist_outstandingtoken (id bigint PRIMARY KEY,
           jti varchar(255) NOT NULL, user_id integer);
         CREATE TABLE token_blacklist_blacklistedtoken (id bigint PRIMARY KEY,
           token_id bigint NOT NULL, blacklisted_at timestamptz NOT NULL);
         INSERT INTO token_blacklist_outstandingtoken VALUES (1, 'kept-jti', 10), (2, 'gone-jti', 10);
         INSERT INTO token_blacklist_blacklistedtoken VALUES (1, 2, now());",
    );
    sql.push_str(&format!(
        "INSERT INTO accounts_user VALUES (7, '{}', 'Custom@Example.com', false, true, '2022-02-02 10:00:00');
         INSERT INTO members_user VALUES (8, '{}', 'member@example.com', false, true, '2022-02-02 10:00:00');",
        DJANGO_HASHES[1], DJANGO_HASHES[1]
    ));
    client.batch_execute(&sql).await.unwrap();
    database
}

async fn the_django_database_is_read_directly(backend: Backend) {
    let source = django_database().await;
    let app = TestApp::spawn(backend).await;
    let imported = stdout(&import_django(&app, &["--from-database", &source.url]));
    assert!(
        imported.contains("imported 6, updated 0, unchanged 0, skipped 2"),
        "{imported}"
    );
    assert!(
        imported.contains("; 1 blacklisted refresh tokens"),
        "{imported}"
    );
    let blacklisted = app
        .query_texts("SELECT jti AS value FROM django_blacklisted_refresh")
        .await;
    assert_eq!(blacklisted, ["gone-jti"]);
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let root = app.get_user(&staff.access, 10).await.unwrap();
    assert_eq!(root.date_joined.unwrap().seconds, 1_682_942_400);
    assert!(root.is_superuser);
    app.login("user2@example.com", FIXTURE_PASSWORD)
        .await
        .unwrap();

    // A custom user model, by its own table and column names.
    let custom = stdout(&import_django(
        &app,
        &[
            "--from-database",
            &source.url,
            "--table",
            "accounts_user",
            "--field",
            "email=email_address",
            "--field",
            "is_verified=email_verified",
            "--field",
            "first_name=",
            "--field",
            "last_name=",
            "--field",
            "is_staff=",
            "--field",
            "is_superuser=",
            "--field",
            "last_login=",
        ],
    ));
    assert!(
        custom.contains("imported 1, updated 0, unchanged 0, skipped 0"),
        "{custom}"
    );
    let user = app.get_user(&staff.access, 7).await.unwrap();
    assert_eq!(user.email, "custom@example.com");
    assert!(!user.is_verified);

    // A model with an `is_verified` column: kept without being named.
    let absent = [
        "first_name",
        "last_name",
        "is_staff",
        "is_superuser",
        "last_login",
    ]
    .map(|field| format!("--field={field}="));
    let mut members = vec!["--from-database", &source.url, "--table", "members_user"];
    members.extend(absent.iter().map(String::as_str));
    let members = stdout(&import_django(&app, &members));
    assert!(members.contains("imported 1,"), "{members}");
    let member = app.get_user(&staff.access, 8).await.unwrap();
    assert!(!member.is_verified);

    let wrong = import_django(
        &app,
        &["--from-database", &source.url, "--table", "no_such_table"],
    );
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(message.contains("check --table"), "{message}");
    assert!(!message.contains(&source.url), "the URL leaked: {message}");
}

async fn a_reset_link_django_mailed_works_once_after_the_cutover(backend: Backend) {
    let dir = django_made_users("a Django user's passphrase");
    let dump = dir.path().join("users.json");
    let links = std::fs::read_to_string(dir.path().join("reset_links.txt")).unwrap();
    let links: Vec<(&str, &str)> = links
        .lines()
        .map(|line| line.split_once(' ').unwrap())
        .collect();
    let confirm = async |app: &TestApp, (uidb64, token): (&str, &str)| {
        app.client
            .clone()
            .password_reset_confirm(pb::PasswordResetConfirmRequest {
                uidb64: uidb64.into(),
                token: token.into(),
                new_password: "a new passphrase after the move".into(),
            })
            .await
    };

    // Without Django's key, its links are just invalid.
    let unkeyed = TestApp::spawn(backend).await;
    stdout(&import_django(
        &unkeyed,
        &["--from-json", dump.to_str().unwrap()],
    ));
    let refused = confirm(&unkeyed, links[0]).await;
    assert_refused(refused, Code::InvalidArgument, "LINK_INVALID");

    let app = TestApp::spawn_with(backend, &[("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY)]).await;
    stdout(&import_django(
        &app,
        &["--from-json", dump.to_str().unwrap()],
    ));
    let stale = confirm(&app, links[1]).await;
    assert_refused(stale, Code::InvalidArgument, "LINK_EXPIRED");
    let forged = confirm(
        &app,
        (links[0].0, "c7yw00-e8a5024374d4f253ed4482b9c4c1d5e5"),
    )
    .await;
    assert_refused(forged, Code::InvalidArgument, "LINK_INVALID");
    confirm(&app, links[0]).await.unwrap();
    app.login(
        "pbkdf2_sha256@example.com",
        "a new passphrase after the move",
    )
    .await
    .unwrap();
    let again = confirm(&app, links[0]).await;
    assert_refused(again, Code::InvalidArgument, "LINK_INVALID");
}

/// Users a real Django made (with `password`), imported into an app that exchanges simplejwt
/// refresh tokens for the next hour: the app, what Django wrote, and what the import printed.
async fn imported_exchanging_tokens(
    backend: Backend,
    password: &str,
) -> (TestApp, tempfile::TempDir, String) {
    let dir = django_made_users(password);
    let dump = dir.path().join("users.json");
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let app = TestApp::spawn_with(
        backend,
        &[
            ("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY),
            ("DJANGO_REFRESH_TOKENS_UNTIL", &until),
        ],
    )
    .await;
    let imported = stdout(&import_django(
        &app,
        &["--from-json", dump.to_str().unwrap()],
    ));
    (app, dir, imported)
}

/// The exchange is a first factor like any other: an account with an authenticator app answers
/// `mfa_required`, and the code finishes it at `aal2` with `amr` `fed`, `otp`, `mfa`.
async fn a_django_token_of_an_account_with_a_second_factor_asks_for_it(backend: Backend) {
    let password = "a Django user's passphrase";
    let (app, dir, _) = imported_exchanging_tokens(backend, password).await;
    let token = std::fs::read_to_string(dir.path().join("refresh_token.txt")).unwrap();
    let signed_in = app
        .login("pbkdf2_sha256@example.com", password)
        .await
        .unwrap();
    let (secret, _) = crate::factors::with_totp(&app, &signed_in.access).await;

    let exchanged = app.refresh(&token).await.unwrap();
    assert!(exchanged.access.is_empty() && exchanged.refresh.is_empty());
    let challenge = exchanged.mfa_required.expect("a second factor is required");
    let code = crate::factors::code_at(&app, &secret, 1);
    let session = crate::factors::verify(&app, &challenge.mfa_token, &code, "")
        .await
        .unwrap();
    let claims = crate::factors::claims(&session.access);
    assert_eq!(claims["aal"], "aal2");
    assert_eq!(claims["amr"], serde_json::json!(["fed", "otp", "mfa"]));
}

async fn a_refresh_token_django_issued_is_exchanged_once_within_the_window(backend: Backend) {
    let (app, dir, imported) =
        imported_exchanging_tokens(backend, "a Django user's passphrase").await;
    let token = std::fs::read_to_string(dir.path().join("refresh_token.txt")).unwrap();
    assert!(
        imported.contains("; 1 blacklisted refresh tokens"),
        "{imported}"
    );

    // Twenty exchanges of the one token at once: one session.
    let calls = (0..20).map(|_| {
        let client = app.client.clone();
        let token = token.clone();
        async move {
            client
                .clone()
                .refresh(pb::RefreshRequest { refresh: token })
                .await
                .map(tonic::Response::into_inner)
        }
    });
    let outcomes = crate::concurrency::all_at_once(calls).await;
    let pairs: Vec<&pb::RefreshResponse> =
        outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(pairs.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|status| status.code() == Code::Unauthenticated)
    );
    let me = app.get_user(&pairs[0].access, 100).await.unwrap();
    assert_eq!(me.email, "pbkdf2_sha256@example.com");
    // The session it opened is an ordinary one: its own refresh token rotates.
    app.refresh(&pairs[0].refresh).await.unwrap();

    // One that was blacklisted in Django (a logout there) is never exchanged.
    let blacklisted = std::fs::read_to_string(dir.path().join("blacklisted_token.txt")).unwrap();
    assert_refused(
        app.refresh(&blacklisted).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    let forged = format!("{}x", token.trim_end());
    assert_refused(
        app.refresh(&forged).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // After the window closes, none is exchanged.
    let dump = dir.path().join("users.json");
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let closed = TestApp::spawn_with(
        backend,
        &[
            ("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY),
            ("DJANGO_REFRESH_TOKENS_UNTIL", &until),
        ],
    )
    .await;
    stdout(&import_django(
        &closed,
        &["--from-json", dump.to_str().unwrap()],
    ));
    closed
        .clock
        .advance(std::time::Duration::from_secs(2 * 3600));
    assert_refused(
        closed.refresh(&token).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}

async fn an_activation_link_django_mailed_activates_once(backend: Backend) {
    let password = "a Django user's passphrase";
    let dir = django_made_users(password);
    let dump = dir.path().join("users.json");
    let link = std::fs::read_to_string(dir.path().join("activation_link.txt")).unwrap();
    let (uidb64, token) = link.trim().split_once(' ').unwrap();
    let app = TestApp::spawn_with(backend, &[("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY)]).await;
    let args = [
        "--from-json",
        dump.to_str().unwrap(),
        "--inactive-means-unverified",
    ];
    stdout(&import_django(&app, &args));
    let waiting = app.login("pending@example.com", password).await;
    assert_refused(waiting, Code::FailedPrecondition, "EMAIL_NOT_VERIFIED");
    let activate = async || {
        app.client
            .clone()
            .activate(pb::ActivateRequest {
                uidb64: uidb64.into(),
                token: token.into(),
            })
            .await
    };
    let activated = activate().await.unwrap().into_inner().user.unwrap();
    assert!(activated.is_verified && activated.is_active);
    app.login("pending@example.com", password).await.unwrap();
    assert_refused(activate().await, Code::InvalidArgument, "LINK_INVALID");
}

async fn hashes_passlib_writes_in_django_formats_sign_in(backend: Backend) {
    let password = "a passlib passphrase";
    let lines = run_django_script("passlib_hashes.py", &[password]);
    let app = TestApp::spawn(backend).await;
    for (n, line) in lines.lines().enumerate() {
        let (name, hash) = line.split_once(' ').unwrap();
        let email = format!("passlib{n}@example.com");
        app.verified_user(&email).await;
        app.execute_sql(&format!(
            "UPDATE users SET password_hash = '{hash}' WHERE email = '{email}'"
        ))
        .await;
        app.login(&email, password)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(
            stored_hash(&app, &email).await.starts_with("$argon2id$"),
            "{name}"
        );
    }
    assert_eq!(lines.lines().count(), 3);
}

crate::on_both_backends!(
    a_django_token_of_an_account_with_a_second_factor_asks_for_it,
    django_hashes_sign_in_once_and_become_argon2id,
    hashes_passlib_writes_in_django_formats_sign_in,
    an_activation_link_django_mailed_activates_once,
    a_refresh_token_django_issued_is_exchanged_once_within_the_window,
    a_reset_link_django_mailed_works_once_after_the_cutover,
    a_dumpdata_import_keeps_ids_flags_and_passwords,
    an_unknown_hash_format_stops_the_import_unless_told,
    the_django_database_is_read_directly,
    users_a_real_django_made_sign_in_after_the_import,
);

/// The Python of a venv with Django in it (scripts/test makes one).
fn django_python() -> String {
    std::env::var("DJANGO_PYTHON").unwrap_or_else(|_| {
        panic!("DJANGO_PYTHON is not set: run scripts/test, which installs Django into .venv")
    })
}

/// The Django key `tests/django/make_users.py` signs its links with.
pub(crate) const DJANGO_SECRET_KEY: &str = "django-insecure-import-test-key";

/// Runs the script `tests/django/<name>` with the real Django; what it printed.
pub(crate) fn run_django_script(name: &str, args: &[&str]) -> String {
    let script = format!("{}/tests/django/{name}", env!("CARGO_MANIFEST_DIR"));
    let made = std::process::Command::new(django_python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    String::from_utf8(made.stdout).unwrap()
}

/// Runs `tests/django/make_users.py` into a new directory.
pub(crate) fn django_made_users(password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_django_script("make_users.py", &[dir.path().to_str().unwrap(), password]);
    dir
}

async fn users_a_real_django_made_sign_in_after_the_import(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let password = "a Django user's passphrase";
    let dir = django_made_users(password);
    let dump = dir.path().join("users.json");
    let imported = stdout(&import_django(
        &app,
        &["--from-json", dump.to_str().unwrap()],
    ));
    assert!(
        imported.contains("imported 7, updated 0, unchanged 0, skipped 1"),
        "{imported}"
    );
    for hasher in [
        "pbkdf2_sha256",
        "pbkdf2_sha1",
        "argon2",
        "bcrypt_sha256",
        "bcrypt",
    ] {
        let email = format!("{hasher}@example.com");
        let wrong = app.login(&email, "not the passphrase").await;
        assert_refused(wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");
        app.login(&email, password)
            .await
            .unwrap_or_else(|e| panic!("{hasher}: {e:?}"));
        assert!(stored_hash(&app, &email).await.starts_with("$argon2id$"));
    }
    let nobody = app.login("nobody@example.com", password).await;
    assert_refused(nobody, Code::Unauthenticated, "INVALID_CREDENTIALS");
}
