//! Register, verify by code or link, and resend.

use std::time::Duration;

use identity::pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused, retry_delay};

async fn registering_makes_an_unverified_user_and_emails_a_code_and_a_link(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let answer = app
        .register("  New.User@Example.COM ", PASSWORD)
        .await
        .unwrap();

    assert!(answer.user.is_none(), "the answer names no account");
    assert!(answer.message.contains("Check your email"), "{answer:?}");
    let user = app.user("new.user@example.com").await.unwrap();
    assert_eq!(user.email, "new.user@example.com");
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert!(!user.is_verified && !user.is_active && !user.is_staff);
    assert!(user.id > 0 && user.date_joined.is_some() && user.last_login.is_none());
    let code = app
        .smtp
        .nth_with_subject("new.user@example.com", "verification code", 1)
        .await;
    assert_eq!(code.otp().len(), 6);
    assert!(code.raw.contains("text/html") && code.raw.contains("From: identity@example.org"));
    let link = app
        .smtp
        .nth_with_subject("new.user@example.com", "Activate", 1)
        .await;
    assert!(
        link.link("/accounts/api/activate/")
            .starts_with("http://identity.test/accounts/api/activate/")
    );
    app.settle_outbox().await;
    assert_eq!(
        app.smtp.to("new.user@example.com").len(),
        1,
        "one message carries the code and the link"
    );
}

async fn the_verification_method_chooses_what_the_one_message_carries(backend: Backend) {
    for (method, code, link) in [("code", true, false), ("link", false, true)] {
        let app = TestApp::spawn_with(backend, &[("VERIFICATION_METHOD", method)]).await;
        app.register("chosen@example.com", PASSWORD).await.unwrap();
        let mail = app.smtp.wait_for("chosen@example.com", 1).await.remove(0);
        assert_eq!(mail.text.contains("verification code is"), code, "{method}");
        assert_eq!(
            mail.text.contains("/accounts/api/activate/"),
            link,
            "{method}"
        );
        app.settle_outbox().await;
        assert_eq!(app.smtp.to("chosen@example.com").len(), 1, "{method}");
    }
}

async fn revealing_refuses_a_duplicate_email_in_any_letter_case_and_changes_nothing(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, &[("REGISTER_REVEALS_EXISTING", "true")]).await;
    app.register("taken@example.com", PASSWORD).await.unwrap();
    app.smtp.wait_for("taken@example.com", 1).await;

    let outcome = app
        .register("TAKEN@example.COM", "another-fine-passphrase")
        .await;

    assert_refused(outcome, Code::AlreadyExists, "EMAIL_TAKEN");
    assert_eq!(
        app.all_users()
            .await
            .iter()
            .filter(|u| u.email == "taken@example.com")
            .count(),
        1
    );
    app.settle_outbox().await;
    assert_eq!(
        app.smtp.to("taken@example.com").len(),
        1,
        "no further email"
    );
    // The original password is kept: the right one gets as far as "verify first".
    let login = app.login("taken@example.com", PASSWORD).await;
    assert_refused(login, Code::FailedPrecondition, "EMAIL_NOT_VERIFIED");
}

async fn bad_emails_and_passwords_are_refused_with_the_field_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        ("not-an-email", PASSWORD, "email"),
        ("a\u{200b}b@example.com", PASSWORD, "email"),
        ("short@example.com", "seven77", "password"),
        ("long@example.com", &"x".repeat(129), "password"),
        ("common@example.com", "password123", "password"),
        ("marguerite@example.com", "Marguerite-2026!", "password"),
    ];
    let before = app.all_users().await.len();

    for (email, password, field) in cases {
        let status = assert_refused(
            app.register(email, password).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        let details = status.get_error_details();
        let violations = &details
            .bad_request()
            .expect("a BadRequest detail")
            .field_violations;
        assert_eq!(violations[0].field, field, "for {email:?}");
    }

    assert_eq!(app.all_users().await.len(), before);
    app.settle_outbox().await;
    assert!(
        app.smtp.all().is_empty(),
        "no email for a refused registration"
    );
}

async fn the_emailed_code_verifies_and_activates_the_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("otp@example.com", PASSWORD).await.unwrap();
    let otp = app
        .smtp
        .nth_with_subject("otp@example.com", "verification code", 1)
        .await
        .otp();

    let user = app.verify_otp("otp@example.com", &otp).await.unwrap();

    assert!(user.is_verified && user.is_active);
    assert!(app.login("otp@example.com", PASSWORD).await.is_ok());
    // The code is single use.
    assert_refused(
        app.verify_otp("otp@example.com", &otp).await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
}

async fn five_wrong_codes_lock_the_code_so_the_sixth_try_fails_even_when_right(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("guess@example.com", PASSWORD).await.unwrap();
    let otp = app
        .smtp
        .nth_with_subject("guess@example.com", "verification code", 1)
        .await
        .otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };

    for _ in 0..5 {
        assert_refused(
            app.verify_otp("guess@example.com", wrong).await,
            Code::InvalidArgument,
            "OTP_INVALID",
        );
    }
    let sixth = app.verify_otp("guess@example.com", &otp).await;

    assert_refused(sixth, Code::ResourceExhausted, "OTP_ATTEMPTS_EXCEEDED");
    assert!(!app.user("guess@example.com").await.unwrap().is_verified);
}

async fn an_expired_code_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("late@example.com", PASSWORD).await.unwrap();
    let otp = app
        .smtp
        .nth_with_subject("late@example.com", "verification code", 1)
        .await
        .otp();

    app.clock.advance(Duration::from_secs(601));
    let outcome = app.verify_otp("late@example.com", &otp).await;

    assert_refused(outcome, Code::InvalidArgument, "OTP_EXPIRED");
    assert!(!app.user("late@example.com").await.unwrap().is_verified);
}

async fn unknown_emails_and_malformed_codes_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    assert_refused(
        app.verify_otp("nobody@example.com", "123456").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    assert_refused(
        app.verify_otp("nobody@example.com", "12345").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_refused(
        app.verify_otp("nobody@example.com", "abcdef").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

async fn resending_inside_the_cooldown_is_refused_alike_for_known_and_unknown_emails(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    app.register("wait@example.com", PASSWORD).await.unwrap();
    app.smtp.wait_for("wait@example.com", 1).await;
    let mut client = app.client.clone();

    let known = client
        .resend_otp(pb::ResendOtpRequest {
            email: "wait@example.com".into(),
        })
        .await;
    let first_unknown = client
        .resend_otp(pb::ResendOtpRequest {
            email: "ghost@example.com".into(),
        })
        .await;
    let second_unknown = client
        .resend_otp(pb::ResendOtpRequest {
            email: "ghost@example.com".into(),
        })
        .await;

    let status = assert_refused(known, Code::ResourceExhausted, "RESEND_COOLDOWN");
    let retry = retry_delay(&status);
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    assert!(
        first_unknown.is_ok(),
        "the first request for an unknown address looks like success"
    );
    assert_refused(second_unknown, Code::ResourceExhausted, "RESEND_COOLDOWN");
    app.settle_outbox().await;
    assert_eq!(
        app.smtp.to("wait@example.com").len(),
        1,
        "no email inside the cooldown"
    );
    assert!(
        app.smtp.to("ghost@example.com").is_empty(),
        "unknown addresses never get mail"
    );
}

async fn a_resent_code_voids_the_old_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("again@example.com", PASSWORD).await.unwrap();
    let first = app
        .smtp
        .nth_with_subject("again@example.com", "verification code", 1)
        .await
        .otp();

    app.clock.advance(Duration::from_secs(61));
    let reply = app
        .client
        .clone()
        .resend_otp(pb::ResendOtpRequest {
            email: "again@example.com".into(),
        })
        .await
        .unwrap();
    let second = app
        .smtp
        .nth_with_subject("again@example.com", "verification code", 2)
        .await
        .otp();

    assert!(
        reply
            .into_inner()
            .message
            .contains("If an unverified account")
    );
    if first != second {
        assert_refused(
            app.verify_otp("again@example.com", &first).await,
            Code::InvalidArgument,
            "OTP_INVALID",
        );
    }
    assert!(
        app.verify_otp("again@example.com", &second)
            .await
            .unwrap()
            .is_verified
    );
}

async fn the_activation_link_verifies_once_and_refuses_tampering(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("link@example.com", PASSWORD).await.unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("link@example.com", "Activate", 1)
        .await
        .link_parts("/activate/");
    let mut client = app.client.clone();
    let activate = |uidb64: &str, token: &str| pb::ActivateRequest {
        uidb64: uidb64.into(),
        token: token.into(),
    };

    let tampered = client
        .activate(activate(&uidb64, &format!("{token}x")))
        .await;
    let garbage_uid = client.activate(activate("!!", &token)).await;
    let other_uid = client.activate(activate("OTk5OTk", &token)).await;
    assert_refused(tampered, Code::InvalidArgument, "LINK_INVALID");
    assert_refused(garbage_uid, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_refused(other_uid, Code::InvalidArgument, "LINK_INVALID");
    assert!(!app.user("link@example.com").await.unwrap().is_verified);

    let user = client
        .activate(activate(&uidb64, &token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(user.is_verified && user.is_active);

    let reused = client.activate(activate(&uidb64, &token)).await;
    assert_refused(reused, Code::InvalidArgument, "LINK_INVALID");
}

async fn an_expired_activation_link_is_refused_and_a_new_one_can_be_requested(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("slow@example.com", PASSWORD).await.unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("slow@example.com", "Activate", 1)
        .await
        .link_parts("/activate/");
    let mut client = app.client.clone();

    app.clock.advance(Duration::from_secs(86_401));
    let expired = client
        .activate(pb::ActivateRequest {
            uidb64: uidb64.clone(),
            token,
        })
        .await;
    assert_refused(expired, Code::InvalidArgument, "LINK_EXPIRED");

    client
        .resend_activation_email(pb::ResendActivationEmailRequest {
            email: "slow@example.com".into(),
        })
        .await
        .unwrap();
    let (_, fresh) = app
        .smtp
        .nth_with_subject("slow@example.com", "Activate", 2)
        .await
        .link_parts("/activate/");
    let user = client
        .activate(pb::ActivateRequest {
            uidb64,
            token: fresh,
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(user.is_verified);
}

async fn concurrent_wrong_codes_never_get_more_than_five_tries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("race@example.com", PASSWORD).await.unwrap();
    let otp = app
        .smtp
        .nth_with_subject("race@example.com", "verification code", 1)
        .await
        .otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };

    let attempts = (0..8).map(|_| {
        let mut client = app.client.clone();
        let request = pb::VerifyOtpRequest {
            email: "race@example.com".into(),
            otp: wrong.into(),
        };
        tokio::spawn(async move { client.verify_otp(request).await })
    });
    let outcomes = futures_join(attempts).await;

    let judged = outcomes
        .iter()
        .filter(|o| matches!(o, Err(s) if s.code() == Code::InvalidArgument))
        .count();
    assert_eq!(
        judged, 5,
        "exactly five wrong codes were compared: {outcomes:?}"
    );
    assert_refused(
        app.verify_otp("race@example.com", &otp).await,
        Code::ResourceExhausted,
        "OTP_ATTEMPTS_EXCEEDED",
    );
}

async fn a_resend_does_not_reset_the_hourly_attempt_budget(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("budget@example.com", PASSWORD).await.unwrap();
    app.smtp
        .nth_with_subject("budget@example.com", "verification code", 1)
        .await;
    let mut client = app.client.clone();

    for round in 1..=2 {
        if round == 2 {
            app.clock.advance(Duration::from_secs(61));
            client
                .resend_otp(pb::ResendOtpRequest {
                    email: "budget@example.com".into(),
                })
                .await
                .unwrap();
        }
        let otp = app
            .smtp
            .nth_with_subject("budget@example.com", "verification code", round)
            .await
            .otp();
        let wrong = if otp == "000000" { "111111" } else { "000000" };
        for _ in 0..5 {
            assert_refused(
                app.verify_otp("budget@example.com", wrong).await,
                Code::InvalidArgument,
                "OTP_INVALID",
            );
        }
    }
    let otp = app
        .smtp
        .nth_with_subject("budget@example.com", "verification code", 2)
        .await
        .otp();

    let status = assert_refused(
        app.verify_otp("budget@example.com", &otp).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert!(status.get_error_details().retry_info().is_some());
    assert!(!app.user("budget@example.com").await.unwrap().is_verified);
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await.unwrap());
    }
    results
}

crate::on_both_backends!(
    concurrent_wrong_codes_never_get_more_than_five_tries,
    a_resend_does_not_reset_the_hourly_attempt_budget,
    registering_makes_an_unverified_user_and_emails_a_code_and_a_link,
    the_verification_method_chooses_what_the_one_message_carries,
    revealing_refuses_a_duplicate_email_in_any_letter_case_and_changes_nothing,
    bad_emails_and_passwords_are_refused_with_the_field_named,
    the_emailed_code_verifies_and_activates_the_account,
    five_wrong_codes_lock_the_code_so_the_sixth_try_fails_even_when_right,
    an_expired_code_is_refused_and_changes_nothing,
    unknown_emails_and_malformed_codes_are_refused,
    resending_inside_the_cooldown_is_refused_alike_for_known_and_unknown_emails,
    a_resent_code_voids_the_old_one,
    the_activation_link_verifies_once_and_refuses_tampering,
    an_expired_activation_link_is_refused_and_a_new_one_can_be_requested,
);
