//! Second factors: adding an authenticator app, confirming it with a code, the recovery codes
//! that come with the first factor, and listing them, over gRPC and the bridge.

use std::collections::HashSet;

use identity::pb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused};

/// A code for `secret` (base32) at the app's clock, as pyotp (a TOTP implementation
/// independent of the server's) makes it.
fn pyotp_code(app: &TestApp, secret: &str) -> String {
    let python = std::env::var("DJANGO_PYTHON")
        .expect("DJANGO_PYTHON is not set: run scripts/test, which installs pyotp into .venv");
    let made = std::process::Command::new(python)
        .args([
            "-c",
            "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &app.clock.now().timestamp().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    String::from_utf8(made.stdout).unwrap().trim().to_owned()
}

/// A code for `secret` (base32) `steps` time steps from the app's clock.
pub(crate) fn code_at(app: &TestApp, secret: &str, steps: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let at = app.clock.now().timestamp() + steps * 30;
    totp.generate(u64::try_from(at).unwrap()).to_string()
}

async fn start(app: &TestApp, access: &str) -> pb::StartTotpEnrollmentResponse {
    let request = pb::StartTotpEnrollmentRequest {
        name: "phone".into(),
    };
    app.client
        .clone()
        .start_totp_enrollment(TestApp::authorized(request, access))
        .await
        .unwrap()
        .into_inner()
}

async fn confirm(
    app: &TestApp,
    access: &str,
    factor_id: &str,
    code: &str,
) -> Result<pb::ConfirmTotpEnrollmentResponse, tonic::Status> {
    let request = pb::ConfirmTotpEnrollmentRequest {
        factor_id: factor_id.into(),
        code: code.into(),
    };
    Ok(app
        .client
        .clone()
        .confirm_totp_enrollment(TestApp::authorized(request, access))
        .await?
        .into_inner())
}

pub(crate) async fn factors(app: &TestApp, access: &str) -> pb::ListFactorsResponse {
    app.client
        .clone()
        .list_factors(TestApp::authorized(pb::ListFactorsRequest {}, access))
        .await
        .unwrap()
        .into_inner()
}

async fn an_authenticator_app_is_added_with_a_code_an_independent_implementation_makes(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("ada@example.com").await;
    let started = start(&app, &tokens.access).await;
    assert_eq!(started.secret.len(), 32, "160 bits of base32");
    assert!(
        started
            .otpauth_uri
            .starts_with("otpauth://totp/identity:ada%40example.com?"),
        "{}",
        started.otpauth_uri
    );
    assert!(
        started
            .otpauth_uri
            .contains(&format!("secret={}", started.secret))
    );
    // Pending: it does not count yet.
    assert!(factors(&app, &tokens.access).await.factors.is_empty());

    let code = pyotp_code(&app, &started.secret);
    let confirmed = confirm(&app, &tokens.access, &started.factor_id, &code)
        .await
        .unwrap();
    let factor = confirmed.factor.unwrap();
    assert_eq!(
        (factor.kind.as_str(), factor.name.as_str()),
        ("totp", "phone")
    );
    let codes: HashSet<&String> = confirmed.recovery_codes.iter().collect();
    assert_eq!(codes.len(), 10, "ten distinct recovery codes");
    assert!(confirmed.recovery_codes.iter().all(|code| code.len() == 29));

    let listed = factors(&app, &tokens.access).await;
    assert_eq!(listed.factors.len(), 1);
    assert_eq!(listed.factors[0].id, started.factor_id);
    assert_eq!(listed.recovery_codes_left, 10);
    let told = app
        .smtp
        .nth_with_subject("ada@example.com", "second factor was added", 1)
        .await;
    assert!(
        told.text.contains("an authenticator app was added"),
        "{}",
        told.text
    );

    // The trail records it, and holds neither the secret nor a code.
    let trail = app
        .query_texts(&format!(
            "SELECT detail AS value FROM audit_events WHERE kind = 'factor_add' AND subject_user_id = {}",
            user.id
        ))
        .await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert!(!trail[0].contains(&started.secret) && !trail[0].contains(&code));
    // Recovery codes are kept only as keyed hashes.
    let stored = app
        .query_texts("SELECT code_hash AS value FROM recovery_codes")
        .await;
    assert_eq!(stored.len(), 10);
    for shown in &confirmed.recovery_codes {
        let bare = shown.replace('-', "");
        assert!(stored.iter().all(|hash| !hash.contains(&bare)));
    }
    // A second app needs the first one proven in this session (a step-up) ...
    let request = pb::StartTotpEnrollmentRequest::default();
    assert_refused(
        app.client
            .clone()
            .start_totp_enrollment(TestApp::authorized(request, &tokens.access))
            .await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    let raised = step_up(&app, &tokens.access, &code_at(&app, &started.secret, 1), "")
        .await
        .unwrap();
    assert_eq!(claims(&raised.access)["aal"], "aal2");
    // ... and then comes without new recovery codes.
    let tokens = pb::LoginResponse {
        access: raised.access,
        ..tokens
    };
    let second = start(&app, &tokens.access).await;
    let code = code_at(&app, &second.secret, 0);
    let again = confirm(&app, &tokens.access, &second.factor_id, &code)
        .await
        .unwrap();
    assert!(again.recovery_codes.is_empty());
    let listed = factors(&app, &tokens.access).await;
    assert_eq!((listed.factors.len(), listed.recovery_codes_left), (2, 10));
}

async fn wrong_lapsed_or_foreign_codes_confirm_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (_, other) = app.signed_in_user("grace@example.com").await;
    let started = start(&app, &tokens.access).await;
    let right = code_at(&app, &started.secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };

    assert_refused(
        confirm(&app, &tokens.access, &started.factor_id, wrong).await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    // A code three steps away is outside the one step of skew.
    assert_refused(
        confirm(
            &app,
            &tokens.access,
            &started.factor_id,
            &code_at(&app, &started.secret, 3),
        )
        .await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    // Another user cannot confirm it, even with its code.
    assert_refused(
        confirm(&app, &other.access, &started.factor_id, &right).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let unknown = confirm(
        &app,
        &tokens.access,
        "0b0e1b0c-4d3a-4c9e-9a53-1f8f0c2d3e4f",
        &right,
    );
    assert_refused(unknown.await, Code::NotFound, "NOT_FOUND");
    assert!(factors(&app, &tokens.access).await.factors.is_empty());

    // Ten minutes later the pending factor has lapsed.
    app.clock.advance(std::time::Duration::from_secs(601));
    let tokens = app.login("ada@example.com", PASSWORD).await.unwrap();
    let late = code_at(&app, &started.secret, 0);
    assert_refused(
        confirm(&app, &tokens.access, &started.factor_id, &late).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let listed = factors(&app, &tokens.access).await;
    assert_eq!((listed.factors.len(), listed.recovery_codes_left), (0, 0));
}

async fn guesses_are_counted_before_they_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let started = start(&app, &tokens.access).await;
    let right = code_at(&app, &started.secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert_refused(
            confirm(&app, &tokens.access, &started.factor_id, wrong).await,
            Code::InvalidArgument,
            "OTP_INVALID",
        );
    }
    // The sixth guess is refused before it is checked: even the right code.
    assert_refused(
        confirm(&app, &tokens.access, &started.factor_id, &right).await,
        Code::ResourceExhausted,
        "OTP_ATTEMPTS_EXCEEDED",
    );
    assert!(factors(&app, &tokens.access).await.factors.is_empty());
}

async fn twenty_confirmations_at_once_confirm_once_with_one_set_of_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let started = start(&app, &tokens.access).await;
    let code = code_at(&app, &started.secret, 0);
    let mut calls = Vec::new();
    for _ in 0..20 {
        let (client, access, id, code) = (
            app.client.clone(),
            tokens.access.clone(),
            started.factor_id.clone(),
            code.clone(),
        );
        calls.push(tokio::spawn(async move {
            let request = pb::ConfirmTotpEnrollmentRequest {
                factor_id: id,
                code,
            };
            client
                .clone()
                .confirm_totp_enrollment(TestApp::authorized(request, &access))
                .await
        }));
    }
    let mut confirmed = Vec::new();
    for call in calls {
        if let Ok(reply) = call.await.unwrap() {
            confirmed.push(reply.into_inner());
        }
    }
    assert_eq!(confirmed.len(), 1, "one confirmation wins");
    assert_eq!(confirmed[0].recovery_codes.len(), 10);
    let listed = factors(&app, &tokens.access).await;
    assert_eq!((listed.factors.len(), listed.recovery_codes_left), (1, 10));
    let stored = app
        .query_texts("SELECT code_hash AS value FROM recovery_codes")
        .await;
    assert_eq!(stored.len(), 10, "one set of codes");
}

/// POSTs JSON to the bridge as a signed-in user.
pub(crate) async fn bridge_post(
    app: &TestApp,
    path: &str,
    access: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.http_base))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn the_bridge_adds_and_lists_factors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;

    let (status, started) =
        bridge_post(&app, "/accounts/api/mfa/totp/", &tokens.access, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert!(
        started["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let secret = started["secret"].as_str().unwrap();
    let id = started["factor_id"].as_str().unwrap();

    let path = format!("/accounts/api/mfa/totp/{id}/confirm/");
    let (status, refused) =
        bridge_post(&app, &path, &tokens.access, json!({"code": "12345"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["details"][1]["fieldViolations"][0]["field"], "code");

    let code = code_at(&app, secret, 0);
    let (status, confirmed) = bridge_post(&app, &path, &tokens.access, json!({"code": code})).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["factor"]["name"], "authenticator app");
    assert_eq!(confirmed["recovery_codes"].as_array().unwrap().len(), 10);

    let (status, listed) = app
        .get_json("/accounts/api/mfa/factors/", Some(&tokens.access))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["factors"].as_array().unwrap().len(), 1);
    assert_eq!(listed["recovery_codes_left"], 10);

    let (status, _) = app.get_json("/accounts/api/mfa/factors/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Adds an authenticator app to the signed-in user; its secret and the recovery codes.
pub(crate) async fn with_totp(app: &TestApp, access: &str) -> (String, Vec<String>) {
    let started = start(app, access).await;
    let code = code_at(app, &started.secret, 0);
    let confirmed = confirm(app, access, &started.factor_id, &code)
        .await
        .unwrap();
    (started.secret, confirmed.recovery_codes)
}

pub(crate) async fn step_up(
    app: &TestApp,
    access: &str,
    totp_code: &str,
    recovery_code: &str,
) -> Result<pb::StepUpResponse, tonic::Status> {
    let request = pb::StepUpRequest {
        totp_code: totp_code.into(),
        recovery_code: recovery_code.into(),
        ..Default::default()
    };
    Ok(app
        .client
        .clone()
        .step_up(TestApp::authorized(request, access))
        .await?
        .into_inner())
}

async fn change_password(
    app: &TestApp,
    access: &str,
    new_password: &str,
) -> Result<pb::ChangePasswordResponse, tonic::Status> {
    let request = pb::ChangePasswordRequest {
        current_password: PASSWORD.into(),
        new_password: new_password.into(),
        ..Default::default()
    };
    Ok(app
        .client
        .clone()
        .change_password(TestApp::authorized(request, access))
        .await?
        .into_inner())
}

/// `ChangePassword`, `ChangeEmail`, `DeleteAccount` and adding a factor need, for an account
/// with a factor, a second factor proven in the session within `STEP_UP_MAX_AGE`; a `StepUp`
/// gives it.
async fn changing_an_account_with_a_factor_needs_a_fresh_second_factor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, recovery) = with_totp(&app, &tokens.access).await;

    // The password session that added the factor is aal1: it may not change the account.
    assert_refused(
        change_password(&app, &tokens.access, "a brand new passphrase").await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    let delete = pb::DeleteAccountRequest {
        password: PASSWORD.into(),
        ..Default::default()
    };
    assert_refused(
        app.client
            .clone()
            .delete_account(TestApp::authorized(delete.clone(), &tokens.access))
            .await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    // Nothing changed: the old password still passes the first factor.
    challenged(&app, "ada@example.com").await;

    // A wrong code raises nothing; a recovery code does, as a TOTP code would.
    assert_refused(
        step_up(&app, &tokens.access, "", "aaaa-aaaa-aaaa-aaaa-aaaa-aaaa").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    let raised = step_up(&app, &tokens.access, "", &recovery[0])
        .await
        .unwrap();
    let raised_claims = claims(&raised.access);
    assert_eq!(raised_claims["aal"], "aal2");
    assert_eq!(raised_claims["amr"], json!(["pwd", "otp", "mfa"]));
    // The session is raised, so even the older token of it may change the password now.
    change_password(&app, &tokens.access, "a brand new passphrase")
        .await
        .unwrap();

    // Past STEP_UP_MAX_AGE the session must prove a factor again.
    app.clock.advance(std::time::Duration::from_secs(601));
    let refreshed = app.refresh(&tokens.refresh).await.unwrap();
    assert_eq!(claims(&refreshed.access)["aal"], "aal2");
    let delete = pb::DeleteAccountRequest {
        password: "a brand new passphrase".into(),
        ..Default::default()
    };
    assert_refused(
        app.client
            .clone()
            .delete_account(TestApp::authorized(delete.clone(), &refreshed.access))
            .await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    step_up(&app, &refreshed.access, &code_at(&app, &secret, 0), "")
        .await
        .unwrap();
    app.client
        .clone()
        .delete_account(TestApp::authorized(delete, &refreshed.access))
        .await
        .unwrap();
}

async fn managing_factors_needs_a_step_up_and_tells_the_owner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, old_codes) = with_totp(&app, &tokens.access).await;
    let listed = factors(&app, &tokens.access).await;
    let factor_id = listed.factors[0].id.clone();
    let regenerate = |access: String| {
        let client = app.client.clone();
        async move {
            client
                .clone()
                .regenerate_recovery_codes(TestApp::authorized(
                    pb::RegenerateRecoveryCodesRequest {},
                    &access,
                ))
                .await
        }
    };
    let remove = |access: String, id: String| {
        let client = app.client.clone();
        async move {
            client
                .clone()
                .remove_factor(TestApp::authorized(
                    pb::RemoveFactorRequest { factor_id: id },
                    &access,
                ))
                .await
        }
    };
    assert_refused(
        regenerate(tokens.access.clone()).await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    assert_refused(
        remove(tokens.access.clone(), factor_id.clone()).await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );

    step_up(&app, &tokens.access, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    let new_codes = regenerate(tokens.access.clone())
        .await
        .unwrap()
        .into_inner()
        .recovery_codes;
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|code| !old_codes.contains(code)));
    app.smtp
        .nth_with_subject("ada@example.com", "New recovery codes", 1)
        .await;
    // The old set is void; the new one works.
    let challenge = challenged(&app, "ada@example.com").await;
    assert_refused(
        verify(&app, &challenge.mfa_token, "", &old_codes[0]).await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    verify(&app, &challenge.mfa_token, "", &new_codes[0])
        .await
        .unwrap();

    // Someone else's factor is no one's to remove.
    let (_, other) = app.signed_in_user("grace@example.com").await;
    assert_refused(
        remove(other.access.clone(), factor_id.clone()).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    remove(tokens.access.clone(), factor_id).await.unwrap();
    let told = app
        .smtp
        .nth_with_subject("ada@example.com", "second factor was removed", 1)
        .await;
    assert!(
        told.text.contains("an authenticator app was removed"),
        "{}",
        told.text
    );
    let listed = factors(&app, &tokens.access).await;
    assert_eq!((listed.factors.len(), listed.recovery_codes_left), (0, 0));
    // Without a factor the password signs in alone again.
    let answer = app.login("ada@example.com", PASSWORD).await.unwrap();
    assert!(answer.mfa_required.is_none() && !answer.access.is_empty());
}

/// Lapsed enrollments and challenges are purged by the worker's rounds.
async fn lapsed_enrollments_and_challenges_are_purged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    with_totp(&app, &tokens.access).await;
    challenged(&app, "ada@example.com").await;
    let (_, other) = app.signed_in_user("grace@example.com").await;
    start(&app, &other.access).await;
    let pending = "SELECT id AS value FROM factors WHERE confirmed_at IS NULL";
    let challenges = "SELECT token_hash AS value FROM mfa_challenges";
    assert_eq!(app.query_texts(pending).await.len(), 1);
    assert_eq!(app.query_texts(challenges).await.len(), 1);

    app.clock
        .advance(std::time::Duration::from_secs(3 * 86_400));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(app.query_texts(challenges).await.is_empty()
        && app.query_texts(pending).await.is_empty())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a lapsed enrollment or challenge was not purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The confirmed factor stays.
    let factors = app.query_texts("SELECT id AS value FROM factors").await;
    assert_eq!(factors.len(), 1);
}

/// Signs in with the password; the challenge it answers.
async fn challenged(app: &TestApp, email: &str) -> pb::MfaRequired {
    let answer = app.login(email, PASSWORD).await.unwrap();
    assert!(
        answer.access.is_empty() && answer.refresh.is_empty(),
        "no tokens before the second factor"
    );
    answer.mfa_required.expect("a second factor is required")
}

pub(crate) async fn verify(
    app: &TestApp,
    mfa_token: &str,
    totp_code: &str,
    recovery_code: &str,
) -> Result<pb::VerifySecondFactorResponse, tonic::Status> {
    let request = pb::VerifySecondFactorRequest {
        mfa_token: mfa_token.into(),
        totp_code: totp_code.into(),
        recovery_code: recovery_code.into(),
        ..Default::default()
    };
    Ok(app
        .client
        .clone()
        .verify_second_factor(request)
        .await?
        .into_inner())
}

pub(crate) fn claims(access: &str) -> Value {
    use base64::Engine;
    let part = access.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn a_password_sign_in_with_a_factor_needs_a_fresh_code_and_is_aal2(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;

    let challenge = challenged(&app, "ada@example.com").await;
    assert_eq!(challenge.factors, ["totp"]);
    // The code that confirmed the app is spent: its time step was accepted once.
    let spent = code_at(&app, &secret, 0);
    assert_refused(
        verify(&app, &challenge.mfa_token, &spent, "").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    app.clock.advance(std::time::Duration::from_secs(30));
    let code = code_at(&app, &secret, 0);
    let session = verify(&app, &challenge.mfa_token, &code, "").await.unwrap();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["aal"], "aal2");
    assert_eq!(signed_in["amr"], json!(["pwd", "otp", "mfa"]));
    // A refresh keeps the level.
    let refreshed = app.refresh(&session.refresh).await.unwrap();
    assert_eq!(claims(&refreshed.access)["aal"], "aal2");

    // The token finished its sign-in; the code's step is spent for any other.
    assert_refused(
        verify(&app, &challenge.mfa_token, &code, "").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    let again = challenged(&app, "ada@example.com").await;
    assert_refused(
        verify(&app, &again.mfa_token, &code, "").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    // Neither a code nor a token of someone else's gets in.
    assert_refused(
        verify(&app, "not-a-token", &code_at(&app, &secret, 1), "").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}

async fn a_recovery_code_signs_in_once_and_the_owner_is_told(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (_, recovery) = with_totp(&app, &tokens.access).await;

    let challenge = challenged(&app, "ada@example.com").await;
    let typed = recovery[0].to_uppercase().replace('-', " ");
    let session = verify(&app, &challenge.mfa_token, "", &typed)
        .await
        .unwrap();
    assert_eq!(claims(&session.access)["aal"], "aal2");
    let told = app
        .smtp
        .nth_with_subject("ada@example.com", "recovery code", 1)
        .await;
    assert!(told.text.contains("9 are left"), "{}", told.text);
    assert!(!told.text.contains(&recovery[0]));

    let again = challenged(&app, "ada@example.com").await;
    assert_refused(
        verify(&app, &again.mfa_token, "", &recovery[0]).await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    assert_eq!(factors(&app, &session.access).await.recovery_codes_left, 9);
    // Both factors at once, or none, is refused before anything is checked.
    assert_refused(
        verify(&app, &again.mfa_token, "123456", &recovery[1]).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // The refusal spent nothing: that recovery code still finishes the sign-in.
    assert_eq!(factors(&app, &session.access).await.recovery_codes_left, 9);
    verify(&app, &again.mfa_token, "", &recovery[1])
        .await
        .unwrap();
}

async fn an_mfa_token_is_short_lived_and_bound_to_the_password_it_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, recovery) = with_totp(&app, &tokens.access).await;

    let checked = challenged(&app, "ada@example.com").await;
    // The password changes (in a session stepped up) after the first factor checked it.
    step_up(&app, &tokens.access, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    let change = pb::ChangePasswordRequest {
        current_password: PASSWORD.into(),
        new_password: "a brand new passphrase".into(),
        ..Default::default()
    };
    app.client
        .clone()
        .change_password(TestApp::authorized(change, &tokens.access))
        .await
        .unwrap();
    assert_refused(
        verify(&app, &checked.mfa_token, "", &recovery[0]).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );

    let (_, other) = app.signed_in_user("grace@example.com").await;
    let (other_secret, _) = with_totp(&app, &other.access).await;
    let stale = challenged(&app, "grace@example.com").await;
    app.clock.advance(std::time::Duration::from_secs(301));
    assert_refused(
        verify(&app, &stale.mfa_token, &code_at(&app, &other_secret, 0), "").await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

async fn twenty_second_factors_at_once_open_one_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;
    let challenge = challenged(&app, "ada@example.com").await;
    let code = code_at(&app, &secret, 1);
    let mut calls = Vec::new();
    for _ in 0..20 {
        let (client, token, code) = (
            app.client.clone(),
            challenge.mfa_token.clone(),
            code.clone(),
        );
        calls.push(tokio::spawn(async move {
            let request = pb::VerifySecondFactorRequest {
                mfa_token: token,
                totp_code: code,
                ..Default::default()
            };
            client.clone().verify_second_factor(request).await
        }));
    }
    let mut sessions = 0;
    for call in calls {
        if call.await.unwrap().is_ok() {
            sessions += 1;
        }
    }
    assert_eq!(sessions, 1, "one sign-in, one session");
}

async fn second_factor_guesses_are_counted_before_they_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;
    let challenge = challenged(&app, "ada@example.com").await;
    let right = code_at(&app, &secret, 1);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert_refused(
            verify(&app, &challenge.mfa_token, wrong, "").await,
            Code::InvalidArgument,
            "OTP_INVALID",
        );
    }
    assert_refused(
        verify(&app, &challenge.mfa_token, &right, "").await,
        Code::ResourceExhausted,
        "OTP_ATTEMPTS_EXCEEDED",
    );
}

async fn someone_who_signs_in_often_is_not_locked_out_by_their_own_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;
    // Twelve sign-ins within the hour, more than its ten guesses: the right ones give theirs back.
    for _ in 0..12 {
        app.clock.advance(std::time::Duration::from_secs(30));
        let challenge = challenged(&app, "ada@example.com").await;
        verify(&app, &challenge.mfa_token, &code_at(&app, &secret, 0), "")
            .await
            .unwrap();
    }
    // Wrong guesses keep their count: ten across two challenges, and the account waits out
    // the hour even with the right code.
    app.clock.advance(std::time::Duration::from_secs(30));
    let right = code_at(&app, &secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..2 {
        let challenge = challenged(&app, "ada@example.com").await;
        for _ in 0..5 {
            assert_refused(
                verify(&app, &challenge.mfa_token, wrong, "").await,
                Code::InvalidArgument,
                "OTP_INVALID",
            );
        }
    }
    let challenge = challenged(&app, "ada@example.com").await;
    assert_refused(
        verify(&app, &challenge.mfa_token, &right, "").await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
}

async fn the_bridge_signs_in_with_a_second_factor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;
    let (status, answer) = app
        .post(
            "/accounts/api/token/",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.get("access").is_none_or(|a| a == ""), "{answer}");
    let token = answer["mfa_required"]["mfa_token"].as_str().unwrap();
    assert_eq!(answer["mfa_required"]["factors"], json!(["totp"]));
    let (status, session) = app
        .post(
            "/accounts/api/mfa/verify/",
            json!({"mfa_token": token, "totp_code": code_at(&app, &secret, 1)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(claims(session["access"].as_str().unwrap())["aal"], "aal2");
}

crate::on_both_backends!(
    an_authenticator_app_is_added_with_a_code_an_independent_implementation_makes,
    wrong_lapsed_or_foreign_codes_confirm_nothing,
    guesses_are_counted_before_they_are_checked,
    twenty_confirmations_at_once_confirm_once_with_one_set_of_codes,
    the_bridge_adds_and_lists_factors,
    a_password_sign_in_with_a_factor_needs_a_fresh_code_and_is_aal2,
    a_recovery_code_signs_in_once_and_the_owner_is_told,
    an_mfa_token_is_short_lived_and_bound_to_the_password_it_checked,
    twenty_second_factors_at_once_open_one_session,
    second_factor_guesses_are_counted_before_they_are_checked,
    someone_who_signs_in_often_is_not_locked_out_by_their_own_codes,
    the_bridge_signs_in_with_a_second_factor,
    changing_an_account_with_a_factor_needs_a_fresh_second_factor,
    managing_factors_needs_a_step_up_and_tells_the_owner,
    lapsed_enrollments_and_challenges_are_purged,
);
