//! Who owns an address: whoever proves the mailbox, and the answers never tell who has an
//! account.

use std::time::Duration;

use identity::pb;
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;

use identity::services::accounts::REGISTER_MESSAGE;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused, reason};

const SQUATTER: &str = "the-squatters-passphrase";
const OWNER: &str = "the-owners-own-passphrase";

/// Settings under which one address can be registered twice in a row.
const NO_COOLDOWN: &[(&str, &str)] = &[("OTP_RESEND_COOLDOWN", "0")];

async fn register_answers_alike_whatever_the_address_holds(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_COOLDOWN).await;
    app.verified_user("owner@example.com").await;
    app.register("pending@example.com", PASSWORD).await.unwrap();
    let users_before = app.all_users().await.len();

    let mut answers = Vec::new();
    for email in [
        "fresh@example.com",
        "pending@example.com",
        "owner@example.com",
    ] {
        answers.push(app.register(email, SQUATTER).await.unwrap());
    }
    let mut bodies = Vec::new();
    for email in [
        "fresh2@example.com",
        "pending@example.com",
        "owner@example.com",
    ] {
        bodies.push(
            app.post(
                "/accounts/api/register/",
                json!({"email": email, "password": SQUATTER}),
            )
            .await,
        );
    }

    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert!(answers[0].user.is_none());
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(bodies[0].0, StatusCode::OK);
    assert_eq!(
        app.all_users().await.len(),
        users_before + 2,
        "only the fresh addresses"
    );
    let notices = app
        .smtp
        .nth_with_subject("owner@example.com", "tried to sign up", 2)
        .await;
    assert!(notices.text.contains("sign in with your password"));
    assert!(!notices.text.contains(SQUATTER), "a notice names no secret");
    assert!(app.login("owner@example.com", PASSWORD).await.is_ok());
    assert_refused(
        app.login("owner@example.com", SQUATTER).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
}

/// Proving an address that sign-ups competed for keeps none of their passwords: the mailbox
/// gets a link to choose one, which the owner follows.
async fn choose_password_from_the_mailbox(app: &TestApp, email: &str, password: &str) {
    let (uidb64, token) = app
        .smtp
        .nth_with_subject(email, "choose a password", 1)
        .await
        .link_parts("/password-reset-confirm/");
    app.client
        .clone()
        .password_reset_confirm(pb::PasswordResetConfirmRequest {
            uidb64,
            token,
            new_password: password.into(),
        })
        .await
        .unwrap();
}

async fn the_mailbox_owner_gets_the_account_by_code_not_the_squatter(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_COOLDOWN).await;
    app.register("victim@example.com", SQUATTER).await.unwrap();
    app.register("victim@example.com", OWNER).await.unwrap();
    let squatters_code = app
        .smtp
        .nth_with_subject("victim@example.com", "verification code", 1)
        .await
        .otp();
    let owners_code = app
        .smtp
        .nth_with_subject("victim@example.com", "verification code", 2)
        .await
        .otp();

    let verified = app.verify_otp("victim@example.com", &owners_code).await;

    assert!(verified.unwrap().is_verified);
    for password in [OWNER, SQUATTER] {
        assert_refused(
            app.login("victim@example.com", password).await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    assert_refused(
        app.verify_otp("victim@example.com", &squatters_code).await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    choose_password_from_the_mailbox(&app, "victim@example.com", OWNER).await;
    assert!(app.login("victim@example.com", OWNER).await.is_ok());
    assert_eq!(app.all_users().await.len(), 2, "one account, and staff");
}

async fn the_mailbox_owner_gets_the_account_by_link_not_the_squatter(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_COOLDOWN).await;
    app.register("linked@example.com", OWNER).await.unwrap();
    app.register("linked@example.com", SQUATTER).await.unwrap();
    let smtp = &app.smtp;
    let link = |nth| async move {
        smtp.nth_with_subject("linked@example.com", "Activate", nth)
            .await
            .link_parts("/activate/")
    };
    let (owners, squatters) = (link(1).await, link(2).await);
    let activate = |(uidb64, token): (String, String)| {
        let mut client = app.client.clone();
        async move { client.activate(pb::ActivateRequest { uidb64, token }).await }
    };

    assert!(activate(owners).await.is_ok());
    assert_refused(
        activate(squatters).await,
        Code::InvalidArgument,
        "LINK_INVALID",
    );
    assert!(app.login("linked@example.com", SQUATTER).await.is_err());
    choose_password_from_the_mailbox(&app, "linked@example.com", OWNER).await;
    assert!(app.login("linked@example.com", OWNER).await.is_ok());
    assert!(app.login("linked@example.com", SQUATTER).await.is_err());
}

async fn the_owner_using_the_squatters_newer_mail_never_gets_the_squatters_password(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, NO_COOLDOWN).await;
    app.register("newest@example.com", OWNER).await.unwrap();
    app.register("newest@example.com", SQUATTER).await.unwrap();
    // The newest mail in the mailbox is the squatter's sign-up; the owner follows it.
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("newest@example.com", "Activate", 2)
        .await
        .link_parts("/activate/");
    app.client
        .clone()
        .activate(pb::ActivateRequest { uidb64, token })
        .await
        .unwrap();

    assert_refused(
        app.login("newest@example.com", SQUATTER).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    choose_password_from_the_mailbox(&app, "newest@example.com", OWNER).await;
    assert!(app.login("newest@example.com", OWNER).await.is_ok());
    assert!(app.login("newest@example.com", SQUATTER).await.is_err());
}

async fn when_sign_in_waits_for_nothing_proving_the_address_ends_the_squatters_session(
    backend: Backend,
) {
    let settings = [
        ("OTP_RESEND_COOLDOWN", "0"),
        ("VERIFICATION_REQUIRED", "false"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;
    app.register("early@example.com", SQUATTER).await.unwrap();
    let squatter = app.login("early@example.com", SQUATTER).await.unwrap();
    app.register("early@example.com", OWNER).await.unwrap();
    let owners_code = app
        .smtp
        .nth_with_subject("early@example.com", "verification code", 2)
        .await
        .otp();

    app.verify_otp("early@example.com", &owners_code)
        .await
        .unwrap();

    assert_refused(
        app.refresh(&squatter.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert!(app.login("early@example.com", SQUATTER).await.is_err());
    choose_password_from_the_mailbox(&app, "early@example.com", OWNER).await;
    assert!(app.login("early@example.com", OWNER).await.is_ok());
}

async fn a_sign_up_inside_the_email_cooldown_is_recorded_and_its_mail_waits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("patient@example.com", SQUATTER).await.unwrap();
    app.smtp.wait_for("patient@example.com", 1).await;

    // Inside the cooldown the answer is the same as ever, and the sign-up is recorded.
    let again = app.register("patient@example.com", OWNER).await.unwrap();
    assert_eq!(again.message, REGISTER_MESSAGE);
    let registrations = app
        .query_texts("SELECT CAST(id AS TEXT) AS value FROM registrations")
        .await;
    assert_eq!(registrations.len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.smtp.to("patient@example.com").len(),
        1,
        "its mail waits"
    );

    // Once the cooldown is over, it goes out; the owner proves the address with it.
    app.clock.advance(std::time::Duration::from_secs(61));
    let owners_code = app
        .smtp
        .nth_with_subject("patient@example.com", "verification code", 2)
        .await
        .otp();
    app.verify_otp("patient@example.com", &owners_code)
        .await
        .unwrap();
    assert!(app.login("patient@example.com", SQUATTER).await.is_err());
    choose_password_from_the_mailbox(&app, "patient@example.com", OWNER).await;
    assert!(app.login("patient@example.com", OWNER).await.is_ok());
}

async fn past_the_hourly_budget_sign_ups_are_recorded_and_their_mail_dropped(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_COOLDOWN).await;
    let outcomes = crate::concurrency::all_at_once((0..8).map(|n| {
        let mut client = app.client.clone();
        async move {
            client
                .register(pb::RegisterRequest {
                    email: "popular@example.com".into(),
                    password: format!("{SQUATTER}-{n}"),
                    ..Default::default()
                })
                .await
                .map(|reply| reply.into_inner().message)
        }
    }))
    .await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_deref().is_ok_and(|m| m == REGISTER_MESSAGE)),
        "{outcomes:?}"
    );
    let registrations = app
        .query_texts("SELECT CAST(id AS TEXT) AS value FROM registrations")
        .await;
    assert_eq!(registrations.len(), 8);
    app.smtp.wait_for("popular@example.com", 5).await;
    app.settle_outbox().await;
    assert_eq!(app.smtp.to("popular@example.com").len(), 5, "five an hour");
}

async fn codes_answer_alike_for_unknown_verified_and_unverified_addresses(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_VERIFY", "0")]).await;
    app.verified_user("known@example.com").await;
    app.register("waiting@example.com", PASSWORD).await.unwrap();
    let real = app
        .smtp
        .nth_with_subject("waiting@example.com", "verification code", 1)
        .await
        .otp();
    let wrong = if real == "000000" { "111111" } else { "000000" };

    let mut answers = Vec::new();
    for email in [
        "nobody@example.com",
        "known@example.com",
        "waiting@example.com",
    ] {
        let mut reasons = Vec::new();
        for _ in 0..6 {
            let status = app.verify_otp(email, wrong).await.unwrap_err();
            reasons.push((status.code(), status.message().to_owned(), reason(&status)));
        }
        answers.push(reasons);
    }

    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0][4].2, "OTP_INVALID");
    assert_eq!(answers[0][5].2, "OTP_ATTEMPTS_EXCEEDED");
    assert!(!app.user("waiting@example.com").await.unwrap().is_verified);
}

async fn a_sign_up_stops_taking_codes_after_its_lifetime_cap(backend: Backend) {
    let settings = [
        ("RATE_LIMIT_VERIFY", "0"),
        ("RATE_LIMIT_EMAIL", "0"),
        ("OTP_RESEND_COOLDOWN", "0"),
        ("RESEND_PER_HOUR", "100"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;
    app.register("capped@example.com", PASSWORD).await.unwrap();
    let resend = || {
        let mut client = app.client.clone();
        async move {
            client
                .resend_otp(pb::ResendOtpRequest {
                    email: "capped@example.com".into(),
                })
                .await
                .unwrap();
        }
    };
    // Ten hours of ten wrong codes each, the most the hourly budget lets through.
    for _ in 0..10 {
        for _ in 0..2 {
            for _ in 0..5 {
                let outcome = app.verify_otp("capped@example.com", "000000").await;
                assert!(outcome.is_err());
            }
            resend().await;
        }
        app.clock.advance(Duration::from_secs(3601));
    }
    let sent = app.smtp.to("capped@example.com").len();
    let latest = app
        .smtp
        .nth_with_subject("capped@example.com", "verification code", sent / 2 + 1)
        .await
        .otp();

    assert_refused(
        app.verify_otp("capped@example.com", &latest).await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    assert!(!app.user("capped@example.com").await.unwrap().is_verified);
}

async fn verifying_never_re_enables_a_disabled_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("banned@example.com", PASSWORD).await.unwrap();
    let code = app
        .smtp
        .nth_with_subject("banned@example.com", "verification code", 1)
        .await
        .otp();
    app.execute_sql("UPDATE users SET is_active = FALSE WHERE email = 'banned@example.com'")
        .await;

    let verified = app.verify_otp("banned@example.com", &code).await.unwrap();

    assert!(verified.is_verified && !verified.is_active);
    assert_refused(
        app.login("banned@example.com", PASSWORD).await,
        Code::FailedPrecondition,
        "ACCOUNT_DISABLED",
    );
}

async fn unproven_accounts_are_purged_after_their_retention(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("UNVERIFIED_ACCOUNT_RETENTION", "3600")]).await;
    app.register("forgotten@example.com", PASSWORD)
        .await
        .unwrap();
    app.verified_user("kept@example.com").await;

    app.clock.advance(Duration::from_secs(2 * 3600));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.user("forgotten@example.com").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.user("kept@example.com").await.is_some());
}

async fn wrong_spent_and_orphan_links_answer_alike(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_VERIFY", "0")]).await;
    app.register("clicked@example.com", PASSWORD).await.unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("clicked@example.com", "Activate", 1)
        .await
        .link_parts("/activate/");
    let mut client = app.client.clone();
    client
        .activate(pb::ActivateRequest {
            uidb64: uidb64.clone(),
            token: token.clone(),
        })
        .await
        .unwrap();
    let (stamp, mac) = token.split_once('-').unwrap();
    let forged = format!("{stamp}-{}", mac.chars().rev().collect::<String>());

    let mut answers = Vec::new();
    for (uidb64, token) in [
        (uidb64.clone(), forged),
        (uidb64.clone(), token.clone()),
        ("OTk5OTk".to_owned(), token.clone()),
    ] {
        let activated = client
            .activate(pb::ActivateRequest {
                uidb64: uidb64.clone(),
                token: token.clone(),
            })
            .await
            .unwrap_err();
        let reset = client
            .password_reset_confirm(pb::PasswordResetConfirmRequest {
                uidb64,
                token,
                new_password: "an-attempted-new-passphrase".into(),
            })
            .await
            .unwrap_err();
        answers.push([
            (activated.code(), activated.message().to_owned()),
            (reset.code(), reset.message().to_owned()),
        ]);
    }

    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0][0].0, Code::InvalidArgument);
    assert!(app.login("clicked@example.com", PASSWORD).await.is_ok());
}

async fn owners_are_told_of_password_changes_and_of_sessions_ended_by_a_reused_token(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("told@example.com").await;
    app.refresh(&tokens.refresh).await.unwrap();
    app.clock.advance(std::time::Duration::from_secs(11));

    let reused = app.refresh(&tokens.refresh).await;
    assert_refused(reused, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    let signed_out = app
        .smtp
        .nth_with_subject("told@example.com", "signed out one of your devices", 1)
        .await;
    app.client
        .clone()
        .password_reset(pb::PasswordResetRequest {
            email: "told@example.com".into(),
        })
        .await
        .unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("told@example.com", "Reset", 1)
        .await
        .link_parts("/accounts/password-reset-confirm/");
    app.client
        .clone()
        .password_reset_confirm(pb::PasswordResetConfirmRequest {
            uidb64,
            token,
            new_password: OWNER.into(),
        })
        .await
        .unwrap();
    let changed = app
        .smtp
        .nth_with_subject("told@example.com", "password was changed", 1)
        .await;

    for notice in [&signed_out, &changed] {
        assert!(
            notice.text.contains(" UTC"),
            "it names when: {}",
            notice.text
        );
        assert!(!notice.text.contains(&tokens.refresh) && !notice.text.contains(OWNER));
    }
}

crate::on_both_backends!(
    owners_are_told_of_password_changes_and_of_sessions_ended_by_a_reused_token,
    register_answers_alike_whatever_the_address_holds,
    the_mailbox_owner_gets_the_account_by_code_not_the_squatter,
    the_mailbox_owner_gets_the_account_by_link_not_the_squatter,
    when_sign_in_waits_for_nothing_proving_the_address_ends_the_squatters_session,
    the_owner_using_the_squatters_newer_mail_never_gets_the_squatters_password,
    a_sign_up_inside_the_email_cooldown_is_recorded_and_its_mail_waits,
    past_the_hourly_budget_sign_ups_are_recorded_and_their_mail_dropped,
    codes_answer_alike_for_unknown_verified_and_unverified_addresses,
    a_sign_up_stops_taking_codes_after_its_lifetime_cap,
    verifying_never_re_enables_a_disabled_account,
    unproven_accounts_are_purged_after_their_retention,
    wrong_spent_and_orphan_links_answer_alike,
);
