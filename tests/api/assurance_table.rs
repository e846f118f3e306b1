//! The README's table of sign-in paths and the level each gives: every row is walked here, as
//! a user would sign in that way, and the access token's `aal` and `amr` are read back.

use identity::pb;

use crate::{
    django::{DJANGO_SECRET_KEY, django_made_users, import_django},
    factors::{claims, code_at, step_up, verify, with_totp},
    fake_google::{CLIENT_ID, GoogleAccount},
    helpers::{Backend, PASSWORD, TestApp},
};

/// The rows of the README's table: how the session signed in, `aal`, `amr`.
fn readme_rows() -> Vec<(String, String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
    readme
        .lines()
        .skip_while(|line| !line.starts_with("| how the session signed in |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            let amr = cells[2].split(',').map(unquote).collect();
            (cells[0].trim().to_owned(), unquote(cells[1]), amr)
        })
        .collect()
}

/// The `aal` and `amr` of an access token.
fn level(access: &str) -> (String, Vec<String>) {
    let claims = claims(access);
    let amr = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap().to_owned())
        .collect();
    (claims["aal"].as_str().unwrap().to_owned(), amr)
}

async fn google(app: &TestApp, token: &str) -> pb::GoogleLoginResponse {
    let request = pb::GoogleLoginRequest {
        access_token: token.into(),
        id_token: String::new(),
    };
    app.client
        .clone()
        .google_login(request)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_readmes_assurance_table_holds() {
    let django_password = "a Django user's passphrase";
    let dir = django_made_users(django_password);
    let dump = dir.path().join("users.json");
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY),
            ("DJANGO_REFRESH_TOKENS_UNTIL", &until),
        ],
    )
    .await;
    import_django(&app, &["--from-json", dump.to_str().unwrap()]);
    let mut walked = Vec::new();
    let mut row = |path: &str, access: &str| {
        let (aal, amr) = level(access);
        walked.push((path.to_owned(), aal, amr));
    };

    // Without a second factor.
    let (_, password) = app.signed_in_user("ada@example.com").await;
    row("password", &password.access);
    let account = GoogleAccount::new("g-300", "table@gmail.com");
    app.google
        .grant_access_token("at-3", &account, CLIENT_ID, 3600);
    let by_google = google(&app, "at-3").await;
    row("Google", &by_google.access);
    let other = std::fs::read_to_string(dir.path().join("other_refresh_token.txt")).unwrap();
    let by_django = app.refresh(&other).await.unwrap();
    row("a Django refresh token", &by_django.access);

    // With one: each first factor, then a code.
    let (secret, _) = with_totp(&app, &password.access).await;
    let stepped = step_up(&app, &password.access, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    row(
        "password, then StepUp with a TOTP or recovery code",
        &stepped.access,
    );
    let answer = app.login("ada@example.com", PASSWORD).await.unwrap();
    let challenge = answer.mfa_required.unwrap();
    app.clock.advance(std::time::Duration::from_secs(60));
    let session = verify(&app, &challenge.mfa_token, &code_at(&app, &secret, 0), "")
        .await
        .unwrap();
    row("password + TOTP or recovery code", &session.access);

    let (google_secret, _) = with_totp(&app, &by_google.access).await;
    let challenge = google(&app, "at-3").await.mfa_required.unwrap();
    let session = verify(
        &app,
        &challenge.mfa_token,
        &code_at(&app, &google_secret, 1),
        "",
    )
    .await
    .unwrap();
    row("Google + TOTP or recovery code", &session.access);

    let signed_in = app
        .login("pbkdf2_sha256@example.com", django_password)
        .await
        .unwrap();
    let (django_secret, _) = with_totp(&app, &signed_in.access).await;
    let token = std::fs::read_to_string(dir.path().join("refresh_token.txt")).unwrap();
    let challenge = app.refresh(&token).await.unwrap().mfa_required.unwrap();
    let session = verify(
        &app,
        &challenge.mfa_token,
        &code_at(&app, &django_secret, 1),
        "",
    )
    .await
    .unwrap();
    row(
        "a Django refresh token + TOTP or recovery code",
        &session.access,
    );

    let mut documented = readme_rows();
    documented.sort();
    walked.sort();
    assert_eq!(
        walked, documented,
        "the README's table and the service disagree"
    );
}
