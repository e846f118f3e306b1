//! Google sign-in against a fake Google on loopback.

use std::time::{Duration, Instant};

use identity::pb;
use serde_json::json;
use tonic::Code;

use crate::{
    factors::{claims, code_at, verify, with_totp},
    fake_google::{CLIENT_ID, GoogleAccount, TestKey},
    helpers::{Backend, PASSWORD, TestApp, assert_refused},
};

async fn with_access_token(
    app: &TestApp,
    token: &str,
) -> Result<pb::GoogleLoginResponse, tonic::Status> {
    let request = pb::GoogleLoginRequest {
        access_token: token.into(),
        id_token: String::new(),
    };
    Ok(app.client.clone().google_login(request).await?.into_inner())
}

async fn with_id_token(
    app: &TestApp,
    token: &str,
) -> Result<pb::GoogleLoginResponse, tonic::Status> {
    let request = pb::GoogleLoginRequest {
        access_token: String::new(),
        id_token: token.into(),
    };
    Ok(app.client.clone().google_login(request).await?.into_inner())
}

async fn whoami(app: &TestApp, access: &str) -> pb::User {
    let claims = access.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    let id = claims["sub"].as_str().unwrap().parse().unwrap();
    app.get_user(access, id).await.unwrap()
}

/// With an authenticator app added, a Google sign-in answers `mfa_required`, and the code
/// finishes it at `aal2` with `amr` `fed`, `otp`, `mfa`.
async fn a_google_sign_in_asks_for_the_second_factor_of_an_account_that_has_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-200", "two.factors@gmail.com");
    app.google
        .grant_access_token("at-2", &account, CLIENT_ID, 3600);
    let first = with_access_token(&app, "at-2").await.unwrap();
    let (secret, _) = with_totp(&app, &first.access).await;

    let second = with_access_token(&app, "at-2").await.unwrap();
    assert!(second.access.is_empty() && second.refresh.is_empty());
    let challenge = second.mfa_required.expect("a second factor is required");
    let session = verify(&app, &challenge.mfa_token, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    let claims = claims(&session.access);
    assert_eq!(claims["aal"], "aal2");
    assert_eq!(claims["amr"], json!(["fed", "otp", "mfa"]));
}

async fn an_access_token_creates_a_verified_passwordless_account_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-100", "New.Person@gmail.com");
    app.google
        .grant_access_token("at-1", &account, CLIENT_ID, 3600);

    let first = with_access_token(&app, "at-1").await.unwrap();
    let second = with_access_token(&app, "at-1").await.unwrap();

    let (one, two) = (
        whoami(&app, &first.access).await,
        whoami(&app, &second.access).await,
    );
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            first.access.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["aal"].as_str(), &claims["amr"]),
        (Some("aal1"), &serde_json::json!(["fed"]))
    );
    assert_eq!(one.id, two.id);
    assert_eq!(one.email, "new.person@gmail.com");
    assert!(one.is_verified && one.is_active);
    assert_eq!(
        (one.first_name.as_str(), one.last_name.as_str()),
        ("Goo", "Gler")
    );
    assert!(
        app.refresh(&first.refresh).await.is_ok(),
        "the same kind of session as Login"
    );
    assert_refused(
        app.login("new.person@gmail.com", PASSWORD).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
}

async fn an_id_token_signs_in_when_signature_issuer_audience_and_expiry_hold(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-200", "idtoken@gmail.com");

    let mobile = app.google.id_token(
        &account,
        TestKey::First,
        json!({"aud": "ios-client.apps.googleusercontent.com"}),
    );
    assert!(
        with_id_token(&app, &mobile).await.is_ok(),
        "any configured client id"
    );

    let cases = [
        (
            "another app",
            app.google
                .id_token(&account, TestKey::First, json!({"aud": "someone-else"})),
        ),
        (
            "another issuer",
            app.google.id_token(
                &account,
                TestKey::First,
                json!({"iss": "https://evil.example"}),
            ),
        ),
        (
            "expired",
            app.google.id_token(
                &account,
                TestKey::First,
                json!({"exp": chrono::Utc::now().timestamp() - 120}),
            ),
        ),
    ];
    for (case, token) in cases {
        assert_refused(
            with_id_token(&app, &token).await,
            Code::Unauthenticated,
            "GOOGLE_TOKEN_INVALID",
        );
        eprintln!("refused: {case}");
    }
    let mut forged = app.google.id_token(&account, TestKey::First, json!({}));
    let signature_start = forged.rfind('.').unwrap() + 1;
    forged.replace_range(signature_start..signature_start + 4, "AAAA");
    assert_refused(
        with_id_token(&app, &forged).await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );
    assert_refused(
        with_id_token(&app, "not-a-jwt").await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );
}

async fn a_token_minted_for_another_app_or_expired_is_refused_and_creates_nothing(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-300", "other@gmail.com");
    app.google.grant_access_token(
        "for-someone-else",
        &account,
        "another-app.apps.googleusercontent.com",
        3600,
    );
    app.google
        .grant_access_token("stale", &account, CLIENT_ID, 0);
    let before = app.all_users().await.len();

    assert_refused(
        with_access_token(&app, "for-someone-else").await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );
    assert_refused(
        with_access_token(&app, "stale").await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );
    assert_refused(
        with_access_token(&app, "unknown-to-google").await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );

    assert_eq!(app.all_users().await.len(), before);
}

async fn an_unverified_google_email_never_takes_over_an_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (victim, session) = app.signed_in_user("victim@gmail.com").await;
    let attacker = GoogleAccount::new("g-evil", "victim@gmail.com").unverified();
    app.google
        .grant_access_token("evil-at", &attacker, CLIENT_ID, 3600);
    let evil_id_token = app.google.id_token(&attacker, TestKey::First, json!({}));

    assert_refused(
        with_access_token(&app, "evil-at").await,
        Code::Unauthenticated,
        "GOOGLE_EMAIL_UNVERIFIED",
    );
    assert_refused(
        with_id_token(&app, &evil_id_token).await,
        Code::Unauthenticated,
        "GOOGLE_EMAIL_UNVERIFIED",
    );

    assert!(
        app.login("victim@gmail.com", PASSWORD).await.is_ok(),
        "the victim's password still works"
    );
    assert!(
        app.refresh(&session.refresh).await.is_ok(),
        "the victim's session lives"
    );
    assert_eq!(app.user("victim@gmail.com").await.unwrap().id, victim.id);
}

async fn a_verified_gmail_address_links_to_the_existing_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // The password has signed in since the address was proven: its owner's.
    let (existing, _) = app.signed_in_user("linked@gmail.com").await;
    app.google.grant_access_token(
        "link-at",
        &GoogleAccount::new("g-400", "linked@gmail.com"),
        CLIENT_ID,
        3600,
    );

    let tokens = with_access_token(&app, "link-at").await.unwrap();

    assert_eq!(
        whoami(&app, &tokens.access).await.id,
        existing.id,
        "linked, not duplicated"
    );
    assert!(
        app.login("linked@gmail.com", PASSWORD).await.is_ok(),
        "a verified password is kept"
    );
}

async fn a_hosted_domain_links_but_a_domain_google_does_not_own_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let corp = app.verified_user("dev@corp.example").await;
    let other = app.verified_user("dev@elsewhere.example").await;
    let corp_token = app.google.id_token(
        &GoogleAccount::new("g-500", "dev@corp.example").hosted("corp.example"),
        TestKey::First,
        json!({}),
    );
    let other_token = app.google.id_token(
        &GoogleAccount::new("g-501", "dev@elsewhere.example"),
        TestKey::First,
        json!({}),
    );

    let linked = with_id_token(&app, &corp_token).await.unwrap();
    let refused = with_id_token(&app, &other_token).await;

    assert_eq!(whoami(&app, &linked.access).await.id, corp.id);
    let status = assert_refused(refused, Code::FailedPrecondition, "GOOGLE_LINK_REFUSED");
    assert!(
        status
            .message()
            .contains("sign in with your password first")
    );
    assert!(app.login("dev@elsewhere.example", PASSWORD).await.is_ok());
    assert_eq!(
        app.all_users()
            .await
            .iter()
            .filter(|u| u.email == "dev@elsewhere.example")
            .count(),
        1
    );
    assert_eq!(
        app.user("dev@elsewhere.example").await.unwrap().id,
        other.id
    );
}

async fn the_same_google_subject_finds_the_same_user_after_an_email_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = GoogleAccount::new("g-600", "old.name@gmail.com");
    let after = GoogleAccount::new("g-600", "new.name@gmail.com");

    let first = with_id_token(
        &app,
        &app.google.id_token(&before, TestKey::First, json!({})),
    )
    .await
    .unwrap();
    let second = with_id_token(
        &app,
        &app.google.id_token(&after, TestKey::First, json!({})),
    )
    .await
    .unwrap();

    assert_eq!(
        whoami(&app, &first.access).await.id,
        whoami(&app, &second.access).await.id
    );
    assert!(
        app.user("new.name@gmail.com").await.is_none(),
        "no second account"
    );
}

async fn the_owner_takes_back_an_address_a_squatter_pre_registered(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("VERIFICATION_REQUIRED", "false")]).await;
    app.register("owner@gmail.com", "the-squatters-passphrase")
        .await
        .unwrap();
    let squatter = app
        .login("owner@gmail.com", "the-squatters-passphrase")
        .await
        .unwrap();
    app.google.grant_access_token(
        "owner-at",
        &GoogleAccount::new("g-700", "owner@gmail.com"),
        CLIENT_ID,
        3600,
    );

    let owner = with_access_token(&app, "owner-at").await.unwrap();

    assert!(whoami(&app, &owner.access).await.is_verified);
    assert_refused(
        app.login("owner@gmail.com", "the-squatters-passphrase")
            .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert_refused(
        app.refresh(&squatter.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn a_password_unused_since_a_link_proved_the_address_is_removed_at_the_google_link(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    // A squatter signs up with the owner's address; something that asks for JSON (as a
    // careless link checker might) opens the activation link before the owner reads the mail.
    let squatters = "the-squatters-passphrase";
    app.register("scanned@gmail.com", squatters).await.unwrap();
    let link = app
        .smtp
        .nth_with_subject("scanned@gmail.com", "Activate", 1)
        .await
        .link("/activate/");
    let opened = app
        .http
        .get(app.local(&link))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(opened.status().is_success());
    assert!(app.user("scanned@gmail.com").await.unwrap().is_verified);
    app.google.grant_access_token(
        "scanned-at",
        &GoogleAccount::new("g-scanned", "scanned@gmail.com"),
        CLIENT_ID,
        3600,
    );

    let owner = with_access_token(&app, "scanned-at").await.unwrap();

    assert!(whoami(&app, &owner.access).await.is_verified);
    assert_refused(
        app.login("scanned@gmail.com", squatters).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let notice = app
        .smtp
        .nth_with_subject("scanned@gmail.com", "Google account was linked", 1)
        .await;
    assert!(notice.text.contains("was removed"), "{}", notice.text);
}

async fn keys_are_cached_and_refetched_when_google_rotates(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("GOOGLE_JWKS_REFETCH_INTERVAL", "0")]).await;
    let account = GoogleAccount::new("g-800", "rotate@gmail.com");

    with_id_token(
        &app,
        &app.google.id_token(&account, TestKey::First, json!({})),
    )
    .await
    .unwrap();
    with_id_token(
        &app,
        &app.google.id_token(&account, TestKey::First, json!({})),
    )
    .await
    .unwrap();
    assert_eq!(app.google.jwks_fetches(), 1, "cached per Cache-Control");

    let rotated = app.google.id_token(&account, TestKey::Second, json!({}));
    assert_refused(
        with_id_token(&app, &rotated).await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );
    app.google.publish(&[TestKey::First, TestKey::Second]);
    assert!(
        with_id_token(&app, &rotated).await.is_ok(),
        "an unknown kid triggers a refetch"
    );
    assert_eq!(app.google.jwks_fetches(), 3);
}

async fn google_failing_or_stalling_answers_unavailable_in_bounded_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.google.grant_access_token(
        "at-down",
        &GoogleAccount::new("g-900", "down@gmail.com"),
        CLIENT_ID,
        3600,
    );

    app.google.fail(true);
    assert_refused(
        with_access_token(&app, "at-down").await,
        Code::Unavailable,
        "GOOGLE_UNAVAILABLE",
    );
    app.google.fail(false);

    app.google.stall(Duration::from_secs(5));
    let started = Instant::now();
    let stalled = with_access_token(&app, "at-down").await;
    assert_refused(stalled, Code::Unavailable, "GOOGLE_UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by GOOGLE_TIMEOUT_MS, took {:?}",
        started.elapsed()
    );
    assert!(app.user("down@gmail.com").await.is_none());
}

async fn requests_must_carry_exactly_one_credential_and_a_configured_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let neither = app
        .client
        .clone()
        .google_login(pb::GoogleLoginRequest::default())
        .await;
    let both = app
        .client
        .clone()
        .google_login(pb::GoogleLoginRequest {
            access_token: "a".into(),
            id_token: "b".into(),
        })
        .await;
    assert_refused(neither, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_refused(both, Code::InvalidArgument, "INVALID_ARGUMENT");

    let unconfigured = TestApp::spawn_with(backend, &[("GOOGLE_OAUTH_CLIENT_ID", "")]).await;
    let status = assert_refused(
        with_access_token(&unconfigured, "x").await,
        Code::FailedPrecondition,
        "GOOGLE_NOT_CONFIGURED",
    );
    assert!(status.message().contains("GOOGLE_OAUTH_CLIENT_ID"));
}

async fn the_seed_path_takes_an_access_token_over_http(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.google.grant_access_token(
        "http-at",
        &GoogleAccount::new("g-1000", "web@gmail.com"),
        CLIENT_ID,
        3600,
    );

    let response = app
        .http
        .post(format!("{}/accounts/api/google/", app.http_base))
        .json(&json!({"access_token": "http-at"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["access"].is_string() && body["refresh"].is_string());
}

async fn a_recycled_gmail_address_never_hands_a_linked_account_to_another_google_account(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let first = GoogleAccount::new("g-first", "recycled@gmail.com");
    let second = GoogleAccount::new("g-second", "recycled@gmail.com");
    let original = with_id_token(
        &app,
        &app.google.id_token(&first, TestKey::First, json!({})),
    )
    .await
    .unwrap();

    let taken = with_id_token(
        &app,
        &app.google.id_token(&second, TestKey::First, json!({})),
    )
    .await;

    assert_refused(taken, Code::FailedPrecondition, "GOOGLE_LINK_REFUSED");
    let again = with_id_token(
        &app,
        &app.google.id_token(&first, TestKey::First, json!({})),
    )
    .await
    .unwrap();
    assert_eq!(
        whoami(&app, &again.access).await.id,
        whoami(&app, &original.access).await.id
    );
}

async fn an_id_token_issued_in_the_future_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-future", "future@gmail.com");
    let now = chrono::Utc::now().timestamp();
    let early = app
        .google
        .id_token(&account, TestKey::First, json!({"iat": now + 120}));
    let skewed = app
        .google
        .id_token(&account, TestKey::First, json!({"iat": now + 10}));

    assert_refused(
        with_id_token(&app, &early).await,
        Code::Unauthenticated,
        "GOOGLE_TOKEN_INVALID",
    );
    assert!(app.user("future@gmail.com").await.is_none());
    assert!(
        with_id_token(&app, &skewed).await.is_ok(),
        "within the leeway"
    );
}

async fn a_flood_of_unknown_key_ids_shares_one_fetch_and_stalls_no_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-flood", "flood@gmail.com");
    with_id_token(
        &app,
        &app.google.id_token(&account, TestKey::First, json!({})),
    )
    .await
    .unwrap();
    let fetched = app.google.jwks_fetches();

    let floods: Vec<_> = (0..20)
        .map(|n| {
            let token = app.google.id_token_naming(
                &account,
                TestKey::First,
                &format!("made-up-{n}"),
                json!({}),
            );
            let mut client = app.client.clone();
            tokio::spawn(async move {
                client
                    .google_login(pb::GoogleLoginRequest {
                        access_token: String::new(),
                        id_token: token,
                    })
                    .await
            })
        })
        .collect();
    for flood in floods {
        let status = flood.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }

    assert!(
        app.google.jwks_fetches() <= fetched + 1,
        "{} fetches for 20 unknown key ids",
        app.google.jwks_fetches() - fetched
    );
    let genuine = app.google.id_token(&account, TestKey::First, json!({}));
    assert!(with_id_token(&app, &genuine).await.is_ok());
}

async fn names_from_google_follow_our_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let account = GoogleAccount::new("g-names", "names@gmail.com");
    let token = app.google.id_token(
        &account,
        TestKey::First,
        json!({"given_name": "Eve\u{0}\u{202e}", "family_name": "x".repeat(500)}),
    );

    let signed_in = with_id_token(&app, &token).await.unwrap();

    let user = whoami(&app, &signed_in.access).await;
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("", "")
    );
}

async fn linking_an_existing_account_tells_its_owner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("notified@gmail.com").await;
    let account = GoogleAccount::new("g-notice", "notified@gmail.com");

    with_id_token(
        &app,
        &app.google.id_token(&account, TestKey::First, json!({})),
    )
    .await
    .unwrap();

    let notice = app
        .smtp
        .nth_with_subject("notified@gmail.com", "Google account was linked", 1)
        .await;
    assert!(notice.text.contains("UTC"), "{}", notice.text);
}

crate::on_both_backends!(
    a_google_sign_in_asks_for_the_second_factor_of_an_account_that_has_one,
    a_recycled_gmail_address_never_hands_a_linked_account_to_another_google_account,
    an_id_token_issued_in_the_future_is_refused,
    a_flood_of_unknown_key_ids_shares_one_fetch_and_stalls_no_one,
    names_from_google_follow_our_rules,
    linking_an_existing_account_tells_its_owner,
    an_access_token_creates_a_verified_passwordless_account_once,
    an_id_token_signs_in_when_signature_issuer_audience_and_expiry_hold,
    a_token_minted_for_another_app_or_expired_is_refused_and_creates_nothing,
    an_unverified_google_email_never_takes_over_an_account,
    a_verified_gmail_address_links_to_the_existing_account,
    a_hosted_domain_links_but_a_domain_google_does_not_own_is_refused,
    the_same_google_subject_finds_the_same_user_after_an_email_change,
    the_owner_takes_back_an_address_a_squatter_pre_registered,
    a_password_unused_since_a_link_proved_the_address_is_removed_at_the_google_link,
    keys_are_cached_and_refetched_when_google_rotates,
    google_failing_or_stalling_answers_unavailable_in_bounded_time,
    requests_must_carry_exactly_one_credential_and_a_configured_client,
    the_seed_path_takes_an_access_token_over_http,
);
