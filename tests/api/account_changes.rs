//! A user's own changes: a new password (other sessions end, a notice is mailed), a new
//! address (confirmed by a code sent there; the old one is told), and deleting the account.
//! Each needs the password, or a Google sign-in for an account without one.

use identity::pb;
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;

use crate::{
    concurrency::all_at_once,
    fake_google::{CLIENT_ID, GoogleAccount},
    helpers::{Backend, PASSWORD, STAFF_EMAIL, STAFF_PASSWORD, TestApp, assert_refused},
};

const NEW_PASSWORD: &str = "a-brand-new-passphrase";

async fn change_password(
    app: &TestApp,
    access: &str,
    current: &str,
    new: &str,
) -> Result<pb::ChangePasswordResponse, tonic::Status> {
    let request = pb::ChangePasswordRequest {
        current_password: current.into(),
        new_password: new.into(),
        ..Default::default()
    };
    let reply = app
        .client
        .clone()
        .change_password(TestApp::authorized(request, access))
        .await?;
    Ok(reply.into_inner())
}

async fn change_email(
    app: &TestApp,
    access: &str,
    new_email: &str,
    password: &str,
) -> Result<String, tonic::Status> {
    let request = pb::ChangeEmailRequest {
        new_email: new_email.into(),
        password: password.into(),
        ..Default::default()
    };
    let reply = app
        .client
        .clone()
        .change_email(TestApp::authorized(request, access))
        .await?;
    Ok(reply.into_inner().message)
}

async fn confirm_email(app: &TestApp, access: &str, otp: &str) -> Result<pb::User, tonic::Status> {
    let request = pb::ConfirmEmailChangeRequest { otp: otp.into() };
    let reply = app
        .client
        .clone()
        .confirm_email_change(TestApp::authorized(request, access))
        .await?;
    Ok(reply.into_inner().user.unwrap())
}

async fn delete_account(app: &TestApp, access: &str, password: &str) -> Result<(), tonic::Status> {
    let request = pb::DeleteAccountRequest {
        password: password.into(),
        ..Default::default()
    };
    app.client
        .clone()
        .delete_account(TestApp::authorized(request, access))
        .await
        .map(drop)
}

async fn changing_the_password_ends_the_other_sessions_and_mails_a_notice(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, here) = app.signed_in_user("mover@example.com").await;
    let elsewhere = app.login("mover@example.com", PASSWORD).await.unwrap();

    // Refusals change nothing: a wrong current password, a weak or address-based new one,
    // no token.
    let wrong = change_password(&app, &here.access, "not-the-passphrase", NEW_PASSWORD).await;
    let status = assert_refused(wrong, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(status.message().starts_with("current_password"));
    let weak = change_password(&app, &here.access, PASSWORD, "mover@example.com").await;
    assert_refused(weak, Code::InvalidArgument, "INVALID_ARGUMENT");
    let request = pb::ChangePasswordRequest {
        current_password: PASSWORD.into(),
        new_password: NEW_PASSWORD.into(),
        ..Default::default()
    };
    let anonymous = app.client.clone().change_password(request).await;
    assert_refused(anonymous, Code::Unauthenticated, "UNAUTHENTICATED");
    assert!(app.get_user(&elsewhere.access, user.id).await.is_ok());
    assert!(app.login("mover@example.com", PASSWORD).await.is_ok());

    let changed = change_password(&app, &here.access, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    // The other two sessions (the one above and the check's login) ended; this one did not.
    assert_eq!(changed.revoked_sessions, 2);
    assert!(app.get_user(&here.access, user.id).await.is_ok());
    let ended = app.get_user(&elsewhere.access, user.id).await;
    assert_refused(ended, Code::Unauthenticated, "SESSION_REVOKED");
    let old = app.login("mover@example.com", PASSWORD).await;
    assert_refused(old, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert!(app.login("mover@example.com", NEW_PASSWORD).await.is_ok());
    app.smtp
        .nth_with_subject("mover@example.com", "password was changed", 1)
        .await;
}

async fn twenty_password_changes_at_once_leave_one_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("racer@example.com").await;
    let calls = (0..20).map(|n| {
        let client = app.client.clone();
        let access = tokens.access.clone();
        async move {
            let request = pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: format!("{NEW_PASSWORD}-{n}"),
                ..Default::default()
            };
            client
                .clone()
                .change_password(TestApp::authorized(request, &access))
                .await
                .map(|_| n)
        }
    });
    let outcomes = all_at_once(calls).await;
    let winners: Vec<i32> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .copied()
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    // The others lost the race, met the back-off, or read the password after it changed.
    for status in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            matches!(
                status.code(),
                Code::Aborted | Code::ResourceExhausted | Code::InvalidArgument
            ),
            "{status:?}"
        );
    }
    let winner = format!("{NEW_PASSWORD}-{}", winners[0]);
    assert!(app.login("racer@example.com", &winner).await.is_ok());
    let loser = format!("{NEW_PASSWORD}-{}", (winners[0] + 1) % 20);
    assert!(app.login("racer@example.com", &loser).await.is_err());
}

async fn an_email_change_waits_for_the_code_sent_to_the_new_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("old@example.com").await;

    let same = change_email(&app, &tokens.access, "OLD@example.com", PASSWORD).await;
    assert_refused(same, Code::InvalidArgument, "INVALID_ARGUMENT");
    let wrong = change_email(
        &app,
        &tokens.access,
        "new@example.com",
        "not-the-passphrase",
    )
    .await;
    assert_refused(wrong, Code::InvalidArgument, "INVALID_ARGUMENT");
    let malformed = change_email(&app, &tokens.access, "not an address", PASSWORD).await;
    assert_refused(malformed, Code::InvalidArgument, "INVALID_ARGUMENT");
    let nothing_pending = confirm_email(&app, &tokens.access, "123456").await;
    assert_refused(nothing_pending, Code::InvalidArgument, "OTP_INVALID");

    let message = change_email(&app, &tokens.access, "New@Example.com", PASSWORD)
        .await
        .unwrap();
    assert!(message.contains("If the new address can be used"));
    let code = app
        .smtp
        .nth_with_subject("new@example.com", "Confirm your new email", 1)
        .await
        .otp();
    // Until the code comes back, the account keeps its address.
    let unchanged = app.get_user(&tokens.access, user.id).await.unwrap();
    assert_eq!(unchanged.email, "old@example.com");
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let refused = confirm_email(&app, &tokens.access, wrong_code).await;
    assert_refused(refused, Code::InvalidArgument, "OTP_INVALID");

    let moved = confirm_email(&app, &tokens.access, &code).await.unwrap();
    assert_eq!(moved.email, "new@example.com");
    assert_ne!(moved.etag, unchanged.etag);
    app.smtp
        .nth_with_subject("old@example.com", "email address was changed", 1)
        .await;
    let again = confirm_email(&app, &tokens.access, &code).await;
    assert_refused(again, Code::InvalidArgument, "OTP_INVALID");
    assert!(app.login("new@example.com", PASSWORD).await.is_ok());
    let old = app.login("old@example.com", PASSWORD).await;
    assert_refused(old, Code::Unauthenticated, "INVALID_CREDENTIALS");
}

async fn an_email_change_to_a_taken_address_answers_alike_and_tells_its_owner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("owner@example.com").await;
    let (_, tokens) = app.signed_in_user("taker@example.com").await;
    let answer = change_email(&app, &tokens.access, "owner@example.com", PASSWORD)
        .await
        .unwrap();
    let free = change_email(&app, &tokens.access, "free@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(answer, free);
    app.smtp.wait_for("free@example.com", 1).await;
    let owner_mail = app.smtp.wait_for("owner@example.com", 2).await;
    assert!(
        owner_mail
            .iter()
            .all(|mail| !mail.subject.contains("Confirm your new email")),
        "{owner_mail:?}"
    );
    assert!(
        owner_mail
            .iter()
            .any(|mail| mail.subject.contains("sign up"))
    );

    let revealing = TestApp::spawn_with(backend, &[("REGISTER_REVEALS_EXISTING", "true")]).await;
    revealing.verified_user("owner@example.com").await;
    let (_, tokens) = revealing.signed_in_user("taker@example.com").await;
    let taken = change_email(&revealing, &tokens.access, "owner@example.com", PASSWORD).await;
    assert_refused(taken, Code::AlreadyExists, "EMAIL_TAKEN");
}

async fn a_change_to_a_taken_address_replaces_the_pending_one_as_any_change_does(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("holder@example.com").await;
    let (me, tokens) = app.signed_in_user("mover@example.com").await;
    change_email(&app, &tokens.access, "free@example.com", PASSWORD)
        .await
        .unwrap();
    let earlier_code = app
        .smtp
        .nth_with_subject("free@example.com", "Confirm your new email", 1)
        .await
        .otp();

    // A second change, to an address with a verified account, answers alike…
    change_email(&app, &tokens.access, "holder@example.com", PASSWORD)
        .await
        .unwrap();

    // …and, as a change to a free address would, voids the earlier one: its code no longer
    // confirms anything, so it cannot tell that the second address is taken.
    let request = pb::ConfirmEmailChangeRequest {
        otp: earlier_code.clone(),
    };
    let confirmed = app
        .client
        .clone()
        .confirm_email_change(TestApp::authorized(request, &tokens.access))
        .await;
    assert_refused(confirmed, Code::InvalidArgument, "OTP_INVALID");
    assert_eq!(
        app.get_user(&tokens.access, me.id).await.unwrap().email,
        "mover@example.com"
    );
    let pending = app
        .query_texts("SELECT new_email AS value FROM email_changes")
        .await;
    assert_eq!(
        pending,
        ["holder@example.com"],
        "the same state as a free address leaves"
    );
}

async fn twenty_codes_at_once_get_five_tries(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_VERIFY", "0")]).await;
    let (_, tokens) = app.signed_in_user("guessed@example.com").await;
    change_email(&app, &tokens.access, "target@example.com", PASSWORD)
        .await
        .unwrap();
    let code = app
        .smtp
        .nth_with_subject("target@example.com", "Confirm your new email", 1)
        .await
        .otp();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let calls = (0..20).map(|_| {
        let client = app.client.clone();
        let access = tokens.access.clone();
        async move {
            let request = pb::ConfirmEmailChangeRequest { otp: wrong.into() };
            client
                .clone()
                .confirm_email_change(TestApp::authorized(request, &access))
                .await
                .map(drop)
        }
    });
    let outcomes = all_at_once(calls).await;
    let counted = outcomes
        .iter()
        .filter(|o| o.as_ref().is_err_and(|s| s.code() == Code::InvalidArgument))
        .count();
    assert_eq!(counted, 5, "{outcomes:?}");
    let locked = confirm_email(&app, &tokens.access, &code).await;
    assert_refused(locked, Code::ResourceExhausted, "OTP_ATTEMPTS_EXCEEDED");
}

async fn twenty_confirmations_at_once_move_the_account_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_VERIFY", "0")]).await;
    let (user, tokens) = app.signed_in_user("once@example.com").await;
    change_email(&app, &tokens.access, "twice@example.com", PASSWORD)
        .await
        .unwrap();
    let code = app
        .smtp
        .nth_with_subject("twice@example.com", "Confirm your new email", 1)
        .await
        .otp();
    let calls = (0..20).map(|_| {
        let client = app.client.clone();
        let access = tokens.access.clone();
        let code = code.clone();
        async move {
            let request = pb::ConfirmEmailChangeRequest { otp: code };
            client
                .clone()
                .confirm_email_change(TestApp::authorized(request, &access))
                .await
                .map(drop)
                .map_err(|status| status.code())
        }
    });
    let outcomes = all_at_once(calls).await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Ok(()) | Err(Code::InvalidArgument | Code::ResourceExhausted)
        )),
        "{outcomes:?}"
    );
    let moved = app.get_user(&tokens.access, user.id).await.unwrap();
    assert_eq!(moved.email, "twice@example.com");
    // One move, one notice to the old address.
    app.settle_outbox().await;
    let notices = app
        .smtp
        .to("once@example.com")
        .into_iter()
        .filter(|mail| mail.subject.contains("email address was changed"))
        .count();
    assert_eq!(notices, 1);
}

async fn a_squatted_address_goes_to_the_account_that_proves_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("wanted@example.com", "the-squatters-passphrase")
        .await
        .unwrap();
    let (user, tokens) = app.signed_in_user("rightful@example.com").await;
    change_email(&app, &tokens.access, "wanted@example.com", PASSWORD)
        .await
        .unwrap();
    let code = app
        .smtp
        .nth_with_subject("wanted@example.com", "Confirm your new email", 1)
        .await
        .otp();
    let moved = confirm_email(&app, &tokens.access, &code).await.unwrap();
    assert_eq!(
        (moved.id, moved.email.as_str()),
        (user.id, "wanted@example.com")
    );
    let squatter = app
        .login("wanted@example.com", "the-squatters-passphrase")
        .await;
    assert_refused(squatter, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(
        app.user("wanted@example.com").await.map(|u| u.id),
        Some(user.id)
    );
}

async fn deleting_the_account_needs_the_password_and_ends_every_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("leaver@example.com").await;
    let wrong = delete_account(&app, &tokens.access, "not-the-passphrase").await;
    assert_refused(wrong, Code::InvalidArgument, "INVALID_ARGUMENT");
    let missing = delete_account(&app, &tokens.access, "").await;
    assert_refused(missing, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(app.get_user(&tokens.access, user.id).await.is_ok());

    delete_account(&app, &tokens.access, PASSWORD)
        .await
        .unwrap();
    let gone = app.get_user(&tokens.access, user.id).await;
    assert_refused(gone, Code::Unauthenticated, "SESSION_REVOKED");
    assert!(app.refresh(&tokens.refresh).await.is_err());
    assert!(app.user("leaver@example.com").await.is_none());
    let revoked = app
        .query_texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) AS value FROM revocations WHERE user_id = {}",
            user.id
        ))
        .await;
    assert_eq!(revoked, ["1"]);
    // The address is free again (once its resend cooldown has passed).
    app.clock.advance(std::time::Duration::from_secs(61));
    app.register("leaver@example.com", PASSWORD).await.unwrap();
    let code = app
        .smtp
        .nth_with_subject("leaver@example.com", "verification code", 2)
        .await
        .otp();
    let again = app.verify_otp("leaver@example.com", &code).await.unwrap();
    assert_ne!(again.id, user.id);
}

async fn the_last_superuser_cannot_delete_their_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let last = delete_account(&app, &staff.access, STAFF_PASSWORD).await;
    assert_refused(last, Code::FailedPrecondition, "LAST_SUPERUSER");
    assert!(app.login(STAFF_EMAIL, STAFF_PASSWORD).await.is_ok());
}

async fn an_account_without_a_password_proves_itself_with_google(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("google-sub-1", "googler@gmail.com");
    app.google
        .grant_access_token("at-1", &account, CLIENT_ID, 3600);
    let signed_in = app
        .client
        .clone()
        .google_login(pb::GoogleLoginRequest {
            access_token: "at-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // No password to give: a stranger's Google account does not do, the linked one does.
    let stranger = GoogleAccount::new("google-sub-2", "stranger@gmail.com");
    app.google
        .grant_access_token("at-2", &stranger, CLIENT_ID, 3600);
    let with_google = |token: &str| pb::ChangePasswordRequest {
        new_password: NEW_PASSWORD.into(),
        google_access_token: token.into(),
        ..Default::default()
    };
    let refused = app
        .client
        .clone()
        .change_password(TestApp::authorized(with_google("at-2"), &signed_in.access))
        .await;
    assert_refused(refused, Code::Unauthenticated, "GOOGLE_TOKEN_INVALID");
    let guessed = change_password(&app, &signed_in.access, "any-guess-at-all", NEW_PASSWORD).await;
    assert_refused(guessed, Code::InvalidArgument, "INVALID_ARGUMENT");
    app.client
        .clone()
        .change_password(TestApp::authorized(with_google("at-1"), &signed_in.access))
        .await
        .unwrap();
    assert!(app.login("googler@gmail.com", NEW_PASSWORD).await.is_ok());
}

async fn account_changes_have_bridge_paths(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("bridged@example.com").await;
    let post = |path: &'static str, body: serde_json::Value| {
        app.http
            .post(format!("{}{path}", app.http_base))
            .bearer_auth(&tokens.access)
            .json(&body)
            .send()
    };
    let changed = post(
        "/accounts/api/password/change/",
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let body: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(body["revoked_sessions"], "0");

    let asked = post(
        "/accounts/api/email/change",
        json!({"new_email": "bridged-new@example.com", "password": NEW_PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    let code = app
        .smtp
        .nth_with_subject("bridged-new@example.com", "Confirm your new email", 1)
        .await
        .otp();
    let confirmed = post("/accounts/api/email/confirm/", json!({"otp": code}))
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    let body: serde_json::Value = confirmed.json().await.unwrap();
    assert_eq!(body["user"]["email"], "bridged-new@example.com");

    let refused = post(
        "/accounts/api/account/delete/",
        json!({"password": PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let deleted = post(
        "/accounts/api/account/delete/",
        json!({"password": NEW_PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(app.user("bridged-new@example.com").await.is_none());
}

crate::on_both_backends!(
    changing_the_password_ends_the_other_sessions_and_mails_a_notice,
    twenty_password_changes_at_once_leave_one_password,
    an_email_change_waits_for_the_code_sent_to_the_new_address,
    an_email_change_to_a_taken_address_answers_alike_and_tells_its_owner,
    a_change_to_a_taken_address_replaces_the_pending_one_as_any_change_does,
    twenty_codes_at_once_get_five_tries,
    twenty_confirmations_at_once_move_the_account_once,
    a_squatted_address_goes_to_the_account_that_proves_it,
    deleting_the_account_needs_the_password_and_ends_every_session,
    the_last_superuser_cannot_delete_their_account,
    an_account_without_a_password_proves_itself_with_google,
    account_changes_have_bridge_paths,
);
