//! The Django cutover never joins two people's accounts: a simplejwt token opens only the
//! account imported from its own Django user, native accounts never take a Django id, a
//! re-run touches only what it created and never reverts what changed here, a token issued
//! before the account's sessions were ended here is refused, and the operator's shell (with
//! `DJANGO_DATABASE_URL` exported) runs every mode. All with users a real Django made.

use identity::pb;
use tonic::Code;

use crate::{
    admin::{delete, update, update_request},
    django::{DJANGO_SECRET_KEY, django_made_users, import_django, run_django_script, stdout},
    helpers::{Backend, STAFF_EMAIL, STAFF_PASSWORD, TestApp, assert_refused},
};

const PASSWORD: &str = "a Django user's passphrase";

/// An app that exchanges simplejwt refresh tokens for the next hour.
async fn app_exchanging_django_tokens(backend: Backend) -> TestApp {
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    TestApp::spawn_with(
        backend,
        &[
            ("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY),
            ("DJANGO_REFRESH_TOKENS_UNTIL", &until),
        ],
    )
    .await
}

fn read(dir: &tempfile::TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.path().join(name))
        .unwrap()
        .trim()
        .to_owned()
}

fn dump(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

async fn sessions_of(app: &TestApp, user_id: i64) -> usize {
    app.query_texts(&format!(
        "SELECT id AS value FROM sessions WHERE user_id = {user_id}"
    ))
    .await
    .len()
}

/// A native account written with a chosen id, as an older version handed them out.
async fn native_account_with_id(app: &TestApp, id: i64, email: &str) {
    app.execute_sql(&format!(
        "INSERT INTO users (id, email, password_hash, first_name, last_name, is_active, \
         is_verified, is_staff, is_superuser, date_joined, password_changed_at) VALUES \
         ({id}, '{email}', NULL, 'Native', '', TRUE, TRUE, FALSE, FALSE, \
         '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
    ))
    .await;
}

/// The bearer's password, changed here from the one Django knew.
async fn change_password(app: &TestApp, access: &str, new_password: &str) {
    let change = pb::ChangePasswordRequest {
        current_password: PASSWORD.into(),
        new_password: new_password.into(),
        ..Default::default()
    };
    app.client
        .clone()
        .change_password(TestApp::authorized(change, access))
        .await
        .unwrap();
}

async fn a_django_token_opens_only_the_account_imported_from_its_user(backend: Backend) {
    let dir = django_made_users(PASSWORD);
    let app = app_exchanging_django_tokens(backend).await;
    let imported = stdout(&import_django(
        &app,
        &["--from-json", &dump(&dir, "users.json")],
    ));
    assert!(imported.contains("skipped 120: first_name"), "{imported}");

    // Accounts made here never take a Django id, imported or skipped, nor one Django is
    // about to give while both run.
    let newcomer = app.verified_user("newcomer@example.com").await;
    assert!(newcomer.id > 1_000_200, "{}", newcomer.id);

    // An account that holds the skipped user's id all the same (an older version handed ids
    // out that way): the skipped user's token does not open it.
    native_account_with_id(&app, 120, "holder@example.com").await;
    let skipped = read(&dir, "skipped_refresh_token.txt");
    assert_refused(
        app.refresh(&skipped).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_eq!(sessions_of(&app, 120).await, 0);

    // The imported user's own token still opens its own account.
    let pair = app.refresh(&read(&dir, "refresh_token.txt")).await.unwrap();
    let me = app.get_user(&pair.access, 100).await.unwrap();
    assert_eq!(me.email, "pbkdf2_sha256@example.com");
}

async fn a_django_token_issued_before_sessions_ended_here_is_refused(backend: Backend) {
    let dir = django_made_users(PASSWORD);
    let token = read(&dir, "refresh_token.txt");
    let dump = dump(&dir, "users.json");

    // Signed out everywhere here after the token was issued.
    let app = app_exchanging_django_tokens(backend).await;
    stdout(&import_django(&app, &["--from-json", &dump]));
    let signed_in = app
        .login("pbkdf2_sha256@example.com", PASSWORD)
        .await
        .unwrap();
    app.logout_all(&signed_in.access).await;
    assert_refused(
        app.refresh(&token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_eq!(sessions_of(&app, 100).await, 1, "only the signed-out one");

    // The password changed here.
    let app = app_exchanging_django_tokens(backend).await;
    stdout(&import_django(&app, &["--from-json", &dump]));
    let signed_in = app
        .login("pbkdf2_sha256@example.com", PASSWORD)
        .await
        .unwrap();
    change_password(
        &app,
        &signed_in.access,
        "a passphrase chosen after the move",
    )
    .await;
    assert_refused(
        app.refresh(&token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );

    // Disabled by staff, then enabled again: the token stays refused.
    let app = app_exchanging_django_tokens(backend).await;
    stdout(&import_django(&app, &["--from-json", &dump]));
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    for active in [false, true] {
        let mut request = update_request(100, &["is_active"]);
        request.is_active = active;
        update(&app, &staff.access, request).await.unwrap();
    }
    assert_refused(
        app.refresh(&token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_eq!(sessions_of(&app, 100).await, 0);
}

async fn a_rerun_touches_only_what_it_created_and_never_reverts_changes_here(backend: Backend) {
    let dir = django_made_users(PASSWORD);
    let app = TestApp::spawn(backend).await;
    stdout(&import_django(
        &app,
        &["--from-json", &dump(&dir, "users.json")],
    ));
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();

    // Here, after the first run: 101 chooses a new password, 102 is disabled, 103 deleted,
    // 100 and 104 sign in, and an older version gave a native account the id 160.
    let here_password = "a passphrase chosen here";
    let pbkdf2_sha1 = app
        .login("pbkdf2_sha1@example.com", PASSWORD)
        .await
        .unwrap();
    change_password(&app, &pbkdf2_sha1.access, here_password).await;
    let mut disable = update_request(102, &["is_active"]);
    disable.is_active = false;
    update(&app, &staff.access, disable).await.unwrap();
    delete(&app, &staff.access, 103).await.unwrap();
    let moved_session = app
        .login("pbkdf2_sha256@example.com", PASSWORD)
        .await
        .unwrap();
    let bcrypt_session = app.login("bcrypt@example.com", PASSWORD).await.unwrap();
    native_account_with_id(&app, 160, "native160@example.com").await;

    // Meanwhile in Django: 100 moves, 101 and 102 and 103 change, 160 and 161 sign up.
    let django_password = "a passphrase chosen in Django";
    run_django_script(
        "make_users.py",
        &[
            dir.path().to_str().unwrap(),
            PASSWORD,
            "--changes",
            django_password,
        ],
    );
    let again = stdout(&import_django(
        &app,
        &["--from-json", &dump(&dir, "users_changed.json")],
    ));
    assert!(
        again.contains("imported 1, updated 2, unchanged 4, skipped 3"),
        "{again}"
    );
    assert!(
        again.contains("skipped 103: its account here was deleted"),
        "{again}"
    );
    assert!(
        again.contains("skipped 160: id 160 belongs to an account here"),
        "{again}"
    );

    // 100 moved: its sessions end, and its owner is told at the address it had.
    let moved = app.get_user(&staff.access, 100).await.unwrap();
    assert_eq!(moved.email, "moved@example.com");
    assert_refused(
        app.refresh(&moved_session.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    let notice = app.smtp.wait_for("pbkdf2_sha256@example.com", 1).await;
    assert!(
        notice[0]
            .subject
            .contains("updated from our previous system"),
        "{}",
        notice[0].subject
    );
    // 101's password chosen here stands; Django's newer one does not sign in.
    app.login("pbkdf2_sha1@example.com", here_password)
        .await
        .unwrap();
    let django_one = app.login("pbkdf2_sha1@example.com", django_password).await;
    assert_refused(django_one, Code::Unauthenticated, "INVALID_CREDENTIALS");
    // 102 takes Django's new name and stays disabled.
    let renamed = app.get_user(&staff.access, 102).await.unwrap();
    assert_eq!(renamed.first_name, "Renamed");
    assert!(!renamed.is_active);
    // 103 stays deleted; the native 160 is untouched; 161 is new.
    assert!(app.user("bcrypt_sha256@example.com").await.is_none());
    let native = app.get_user(&staff.access, 160).await.unwrap();
    assert_eq!(
        (native.email.as_str(), native.first_name.as_str()),
        ("native160@example.com", "Native")
    );
    assert!(app.user("late@example.com").await.is_none());
    app.login("later@example.com", PASSWORD).await.unwrap();
    // 104 did not change in Django: its session lives on.
    app.refresh(&bcrypt_session.refresh).await.unwrap();
    assert!(app.smtp.to("bcrypt@example.com").is_empty());

    // A third run with nothing new changes nothing.
    let third = stdout(&import_django(
        &app,
        &["--from-json", &dump(&dir, "users_changed.json")],
    ));
    assert!(
        third.contains("imported 0, updated 0, unchanged 7, skipped 3"),
        "{third}"
    );
}

async fn every_mode_runs_in_the_shell_the_readme_sets_up(backend: Backend) {
    let dir = django_made_users(PASSWORD);
    let app = TestApp::spawn(backend).await;
    let with_env = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_identity"))
            .arg("import-django")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &app.database_url)
            .env(
                "DJANGO_DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/django",
            )
            .env("LOG_FORMAT", "json")
            .output()
            .unwrap()
    };
    let users = dump(&dir, "users.json");
    let check = stdout(&with_env(&["--from-json", &users, "--check"]));
    assert!(check.contains("pbkdf2_sha256"), "{check}");
    let imported = stdout(&with_env(&["--from-json", &users]));
    assert!(imported.contains("imported 7,"), "{imported}");
    let status = stdout(&with_env(&["--status"]));
    assert!(
        status.contains("accounts still hold a legacy hash"),
        "{status}"
    );
}

async fn a_verified_flag_in_the_django_model_is_kept(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    run_django_script(
        "make_custom_users.py",
        &[dir.path().to_str().unwrap(), PASSWORD],
    );
    let app = TestApp::spawn(backend).await;
    let imported = stdout(&import_django(
        &app,
        &[
            "--from-json",
            &dump(&dir, "users.json"),
            "--model",
            "accounts.user",
        ],
    ));
    assert!(imported.contains("imported 2,"), "{imported}");
    let verified = app.user("proven@example.com").await.unwrap();
    assert!(verified.is_verified);
    let unverified = app.user("unproven@example.com").await.unwrap();
    assert!(!unverified.is_verified);
    let waiting = app.login("unproven@example.com", PASSWORD).await;
    assert_refused(waiting, Code::FailedPrecondition, "EMAIL_NOT_VERIFIED");
    app.login("proven@example.com", PASSWORD).await.unwrap();
}

crate::on_both_backends!(
    a_django_token_opens_only_the_account_imported_from_its_user,
    a_django_token_issued_before_sessions_ended_here_is_refused,
    a_rerun_touches_only_what_it_created_and_never_reverts_changes_here,
    every_mode_runs_in_the_shell_the_readme_sets_up,
    a_verified_flag_in_the_django_model_is_kept,
);
