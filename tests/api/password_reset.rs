//! Password reset by emailed link.

use std::time::Duration;

use identity::pb;
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused};

const NEW_PASSWORD: &str = "a-brand-new-passphrase";

async fn request_reset(app: &TestApp, email: &str) -> String {
    let reply = app
        .client
        .clone()
        .password_reset(pb::PasswordResetRequest {
            email: email.into(),
        })
        .await
        .unwrap();
    reply.into_inner().message
}

async fn confirm(
    app: &TestApp,
    uidb64: &str,
    token: &str,
    password: &str,
) -> Result<String, tonic::Status> {
    let request = pb::PasswordResetConfirmRequest {
        uidb64: uidb64.into(),
        token: token.into(),
        new_password: password.into(),
    };
    Ok(app
        .client
        .clone()
        .password_reset_confirm(request)
        .await?
        .into_inner()
        .message)
}

async fn a_reset_link_sets_the_new_password_and_revokes_every_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, session) = app.signed_in_user("forgot@example.com").await;

    request_reset(&app, "forgot@example.com").await;
    let mail = app
        .smtp
        .nth_with_subject("forgot@example.com", "Reset", 1)
        .await;
    let (uidb64, token) = mail.link_parts("/accounts/password-reset-confirm/");
    confirm(&app, &uidb64, &token, NEW_PASSWORD).await.unwrap();

    assert_refused(
        app.login("forgot@example.com", PASSWORD).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert!(app.login("forgot@example.com", NEW_PASSWORD).await.is_ok());
    assert_refused(
        app.refresh(&session.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    // Single use: the same link now fails.
    let reused = confirm(&app, &uidb64, &token, "yet-another-passphrase").await;
    assert_refused(reused, Code::InvalidArgument, "LINK_INVALID");
}

async fn unknown_emails_get_the_same_answer_and_no_mail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("real@example.com").await;

    let known = request_reset(&app, "real@example.com").await;
    let unknown = request_reset(&app, "imaginary@example.com").await;

    assert_eq!(known, unknown);
    app.smtp
        .nth_with_subject("real@example.com", "Reset", 1)
        .await;
    app.settle_outbox().await;
    assert!(app.smtp.to("imaginary@example.com").is_empty());
}

async fn an_older_link_dies_when_the_password_changes(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("OTP_RESEND_COOLDOWN", "0")]).await;
    app.verified_user("twice@example.com").await;
    request_reset(&app, "twice@example.com").await;
    request_reset(&app, "twice@example.com").await;
    let first = app
        .smtp
        .nth_with_subject("twice@example.com", "Reset", 1)
        .await
        .link_parts("/password-reset-confirm/");
    let second = app
        .smtp
        .nth_with_subject("twice@example.com", "Reset", 2)
        .await
        .link_parts("/password-reset-confirm/");

    confirm(&app, &second.0, &second.1, NEW_PASSWORD)
        .await
        .unwrap();
    let stale = confirm(&app, &first.0, &first.1, "yet-another-passphrase").await;

    assert_refused(stale, Code::InvalidArgument, "LINK_INVALID");
    assert!(app.login("twice@example.com", NEW_PASSWORD).await.is_ok());
}

async fn an_expired_or_tampered_link_and_a_weak_password_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("careful@example.com").await;
    request_reset(&app, "careful@example.com").await;
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("careful@example.com", "Reset", 1)
        .await
        .link_parts("/password-reset-confirm/");

    assert_refused(
        confirm(&app, &uidb64, &token, "short").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_refused(
        confirm(&app, &uidb64, &token, "careful-careful").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_refused(
        confirm(&app, &uidb64, "1-AAAA", NEW_PASSWORD).await,
        Code::InvalidArgument,
        "LINK_INVALID",
    );
    app.clock.advance(Duration::from_secs(3601));
    assert_refused(
        confirm(&app, &uidb64, &token, NEW_PASSWORD).await,
        Code::InvalidArgument,
        "LINK_EXPIRED",
    );

    assert!(
        app.login("careful@example.com", PASSWORD).await.is_ok(),
        "the old password still works"
    );
}

async fn reset_requests_share_one_cooldown_per_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("spam@example.com").await;
    request_reset(&app, "spam@example.com").await;

    let again = app
        .client
        .clone()
        .password_reset(pb::PasswordResetRequest {
            email: "spam@example.com".into(),
        })
        .await;

    assert_refused(again, Code::ResourceExhausted, "RESEND_COOLDOWN");
    app.settle_outbox().await;
    let resets = app
        .smtp
        .to("spam@example.com")
        .into_iter()
        .filter(|m| m.subject.contains("Reset"))
        .count();
    assert_eq!(resets, 1);
}

crate::on_both_backends!(
    a_reset_link_sets_the_new_password_and_revokes_every_session,
    unknown_emails_get_the_same_answer_and_no_mail,
    an_older_link_dies_when_the_password_changes,
    an_expired_or_tampered_link_and_a_weak_password_change_nothing,
    reset_requests_share_one_cooldown_per_address,
);
