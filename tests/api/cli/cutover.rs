//! The Django cutover through the real binary.

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use crate::{
    binary::{identity, serve},
    helpers::{Backend, TestDatabase},
};

/// The whole Django cutover through the real binary, on each backend: `import-django`
/// beside a live `serve`, then the moved users sign in, follow the links Django mailed and
/// exchange the refresh tokens simplejwt issued (one voided by the reset since).
async fn a_django_cutover_runs_through_the_binary(backend: Backend) {
    let password = "a Django user's passphrase";
    let made = crate::django::django_made_users(password);
    let dump = made.path().join("users.json");
    let read = |name: &str| std::fs::read_to_string(made.path().join(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend).await;
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut settings = vec![
        ("DJANGO_SECRET_KEY", crate::django::DJANGO_SECRET_KEY),
        ("DJANGO_REFRESH_TOKENS_UNTIL", until.as_str()),
    ];
    if matches!(backend, Backend::Postgres) {
        settings.push(("DATABASE_URL", database.url.as_str()));
    }
    let served = serve(&dir, &settings);
    let imported = identity(
        &dir,
        &[
            "import-django",
            "--from-json",
            dump.to_str().unwrap(),
            "--inactive-means-unverified",
        ],
    )
    .envs(settings.iter().copied())
    .output()
    .unwrap();
    let summary = String::from_utf8_lossy(&imported.stdout);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        summary.contains("imported 7, updated 0, unchanged 0, skipped 1"),
        "{summary}"
    );
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();

    // A reset link Django mailed, then a sign-in with the new password.
    let (uidb64, token) = read("reset_links.txt")
        .lines()
        .next()
        .and_then(|line| {
            line.split_once(' ')
                .map(|(u, t)| (u.to_owned(), t.to_owned()))
        })
        .unwrap();
    let reset = pb::PasswordResetConfirmRequest {
        uidb64,
        token,
        new_password: "a new passphrase after the move".into(),
    };
    client.password_reset_confirm(reset).await.unwrap();
    let login = |email: &str, password: &str| pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    };
    client
        .login(login(
            "pbkdf2_sha256@example.com",
            "a new passphrase after the move",
        ))
        .await
        .unwrap();
    // Every other format signs in with the password it had in Django.
    for hasher in ["pbkdf2_sha1", "argon2", "bcrypt_sha256", "bcrypt"] {
        client
            .login(login(&format!("{hasher}@example.com"), password))
            .await
            .unwrap_or_else(|e| panic!("{hasher}: {e:?}"));
    }
    // The activation link Django mailed to the account that never activated.
    let link = read("activation_link.txt");
    let (uidb64, token) = link.trim().split_once(' ').unwrap();
    let activation = pb::ActivateRequest {
        uidb64: uidb64.into(),
        token: token.into(),
    };
    client.activate(activation).await.unwrap();
    client
        .login(login("pending@example.com", password))
        .await
        .unwrap();
    // The refresh token simplejwt issued before that reset opens nothing; another user's
    // becomes a session here.
    let voided = client
        .refresh(pb::RefreshRequest {
            refresh: read("refresh_token.txt"),
        })
        .await
        .unwrap_err();
    assert_eq!(voided.code(), tonic::Code::Unauthenticated, "{voided:?}");
    let exchanged = client
        .refresh(pb::RefreshRequest {
            refresh: read("other_refresh_token.txt"),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .refresh(pb::RefreshRequest {
            refresh: exchanged.refresh,
        })
        .await
        .unwrap();
    let (status, _) = served.terminate().await;
    assert!(status.success());
}

crate::on_both_backends!(a_django_cutover_runs_through_the_binary);
