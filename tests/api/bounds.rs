//! Input and abuse bounds: what a password may hold, and a hashing queue that refuses at once
//! when full and forgets callers who left.

use std::time::Duration;

use identity::pb;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused, retry_delay};

async fn control_characters_are_refused_where_a_password_is_set(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("reset@example.com").await;
    let users_before = app.all_users().await.len();

    for password in [
        "nul\u{0}inside-a-passphrase",
        "escape\u{1b}[31m-passphrase",
        "bell\u{7}-long-passphrase",
    ] {
        let status = app
            .register("control@example.com", password)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "password");
        assert!(violation.description.contains("control characters"));
    }
    app.client
        .clone()
        .password_reset(pb::PasswordResetRequest {
            email: "reset@example.com".into(),
        })
        .await
        .unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("reset@example.com", "Reset", 1)
        .await
        .link_parts("/accounts/password-reset-confirm/");
    let reset = app
        .client
        .clone()
        .password_reset_confirm(pb::PasswordResetConfirmRequest {
            uidb64,
            token,
            new_password: "a-new\u{0}-passphrase".into(),
        })
        .await;

    assert_refused(reset, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(app.all_users().await.len(), users_before, "no account made");
    assert!(
        app.login("reset@example.com", PASSWORD).await.is_ok(),
        "unchanged"
    );
    assert_refused(
        app.login("reset@example.com", "nul\u{0}inside-a-passphrase")
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
}

/// One slow hashing thread and room for one waiting job.
const SATURABLE: &[(&str, &str)] = &[
    ("PASSWORD_HASH_CONCURRENCY", "1"),
    ("PASSWORD_HASH_QUEUE", "1"),
    ("PASSWORD_HASH_ITERATIONS", "12"),
    ("RATE_LIMIT_LOGIN", "0"),
];

fn login(n: usize) -> pb::LoginRequest {
    pb::LoginRequest {
        email: format!("stranger{n}@example.com"),
        password: "a-wrong-passphrase".into(),
    }
}

async fn a_full_hashing_queue_refuses_at_once_with_a_wait(backend: Backend) {
    let app = TestApp::spawn_with(backend, SATURABLE).await;

    let storm: Vec<_> = (0..8)
        .map(|n| {
            let mut client = app.client.clone();
            tokio::spawn(async move { client.login(login(n)).await })
        })
        .collect();
    let mut checked = 0;
    let mut busy = 0;
    for call in storm {
        let status = call.await.unwrap().unwrap_err();
        match status.code() {
            Code::Unauthenticated => checked += 1,
            Code::ResourceExhausted => {
                let info = status
                    .get_error_details()
                    .error_info()
                    .unwrap()
                    .reason
                    .clone();
                assert_eq!(info, "SERVER_BUSY");
                assert!(!retry_delay(&status).is_zero());
                busy += 1;
            }
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }

    assert!(checked >= 1 && busy >= 1, "{checked} checked, {busy} busy");
    assert!(
        app.metrics()
            .await
            .contains("identity_password_hash_skipped_total{reason=\"busy\"}")
    );
}

async fn a_caller_that_gave_up_is_not_hashed_for(backend: Backend) {
    // Hashes slow enough that the first is still running when the second gives up.
    let mut settings = SATURABLE.to_vec();
    settings.push(("PASSWORD_HASH_ITERATIONS", "48"));
    let app = TestApp::spawn_with(backend, &settings).await;
    let mut client = app.client.clone();
    let occupying = tokio::spawn(async move { client.login(login(0)).await });
    // Let the first login take the only thread (the staff account's hash was the first job),
    // then queue one that gives up quickly.
    while !app
        .metrics()
        .await
        .contains("identity_password_hash_queue_wait_seconds_count 2")
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut impatient = Request::new(login(1));
    impatient.set_timeout(Duration::from_millis(30));
    let gave_up = app.client.clone().login(impatient).await.unwrap_err();
    occupying.await.unwrap().unwrap_err();

    // The server's deadline and the client's own timer race to end the call.
    assert!(
        matches!(gave_up.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{gave_up:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app
        .metrics()
        .await
        .contains("identity_password_hash_skipped_total{reason=\"abandoned\"} 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            app.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

crate::on_both_backends!(
    control_characters_are_refused_where_a_password_is_set,
    a_full_hashing_queue_refuses_at_once_with_a_wait,
    a_caller_that_gave_up_is_not_hashed_for,
);
