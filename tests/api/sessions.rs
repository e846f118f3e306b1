//! Login, refresh rotation, logout, and bearer tokens.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use identity::pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused, retry_delay};

fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn login_returns_an_eddsa_access_token_with_the_documented_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("claims@example.com").await;

    let header = jwt_part(&tokens.access, 0);
    let claims = jwt_part(&tokens.access, 1);

    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["email"], "claims@example.com");
    assert_eq!(claims["token_type"], "access");
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("identity"), Some("identity"))
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(claims["jti"].is_string() && claims["sid"].is_string());
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&tokens.refresh).unwrap().len(),
        32,
        "opaque 256-bit refresh token"
    );
    let me = app.get_user(&tokens.access, user.id).await.unwrap();
    assert!(me.last_login.is_some());
}

/// A password sign-in is `aal1` with `amr` `["pwd"]`, and a refresh keeps the session's level
/// and `auth_time` while `iat` moves on.
async fn a_session_keeps_its_assurance_through_refreshes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("aal@example.com").await;
    let signed_in = jwt_part(&tokens.access, 1);
    assert_eq!(signed_in["aal"], "aal1");
    assert_eq!(signed_in["amr"], serde_json::json!(["pwd"]));
    assert_eq!(signed_in["auth_time"], signed_in["iat"]);

    app.clock.advance(Duration::from_secs(120));
    let refreshed = app.refresh(&tokens.refresh).await.unwrap();
    let claims = jwt_part(&refreshed.access, 1);
    assert_eq!(claims["aal"], "aal1");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["auth_time"], signed_in["auth_time"]);
    assert!(claims["iat"].as_i64() > signed_in["iat"].as_i64());
}

async fn a_wrong_password_and_an_unknown_email_answer_alike(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("known@example.com").await;

    let wrong = assert_refused(
        app.login("known@example.com", "not-the-passphrase").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let unknown = assert_refused(
        app.login("unknown@example.com", "not-the-passphrase").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );

    assert_eq!(wrong.message(), unknown.message());
}

async fn an_unverified_user_cannot_log_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("pending@example.com", PASSWORD).await.unwrap();

    assert_refused(
        app.login("pending@example.com", PASSWORD).await,
        Code::FailedPrecondition,
        "EMAIL_NOT_VERIFIED",
    );
    // The wrong password says nothing about verification.
    assert_refused(
        app.login("pending@example.com", "wrong-passphrase").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
}

async fn refresh_rotates_and_reusing_a_spent_token_revokes_the_whole_family(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, first) = app.signed_in_user("rotate@example.com").await;

    let second = app.refresh(&first.refresh).await.unwrap();
    assert_ne!(second.refresh, first.refresh);
    assert!(app.get_user(&second.access, user.id).await.is_ok());

    // Past REFRESH_REUSE_GRACE a spent token is a stolen copy.
    app.clock.advance(std::time::Duration::from_secs(11));
    let reuse = app.refresh(&first.refresh).await;
    assert_refused(reuse, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");

    // The thief's copy and the rightful holder's newer token are both dead now.
    assert_refused(
        app.refresh(&second.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_refused(
        app.get_user(&second.access, user.id).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    // Other sessions are untouched.
    let other = app.login("rotate@example.com", PASSWORD).await.unwrap();
    assert!(app.refresh(&other.refresh).await.is_ok());
}

async fn a_retried_refresh_gets_the_same_new_token_until_that_one_is_used(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, first) = app.signed_in_user("retry@example.com").await;

    let second = app.refresh(&first.refresh).await.unwrap();
    let retried = app.refresh(&first.refresh).await.unwrap();
    assert_eq!(
        retried.refresh, second.refresh,
        "the answer that was lost, again"
    );
    assert!(app.get_user(&retried.access, user.id).await.is_ok());

    // Once the new token has been used, the old one is a stolen copy again.
    let third = app.refresh(&second.refresh).await.unwrap();
    assert_refused(
        app.refresh(&first.refresh).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_REUSED",
    );
    assert_refused(
        app.refresh(&third.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn with_no_grace_a_retried_refresh_revokes_the_session(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REFRESH_REUSE_GRACE", "0")]).await;
    let (_, first) = app.signed_in_user("strict@example.com").await;
    let second = app.refresh(&first.refresh).await.unwrap();

    assert_refused(
        app.refresh(&first.refresh).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_REUSED",
    );
    assert_refused(
        app.refresh(&second.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn an_access_token_is_no_refresh_token_and_a_refresh_token_is_no_bearer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("kinds@example.com").await;

    assert_refused(
        app.refresh(&tokens.access).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_refused(
        app.get_user(&tokens.refresh, user.id).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // No token at all is a malformed request, named as such (the seed: "This field is
    // required").
    let missing = app.refresh("").await;
    assert_refused(missing, Code::InvalidArgument, "INVALID_ARGUMENT");
}

async fn expired_and_tampered_access_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("expiry@example.com").await;
    let mut tampered = tokens.access.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let mut claims = tokens
        .access
        .split('.')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    claims[1] = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({"sub": "1", "email": "staff@example.org"})).unwrap(),
    );
    let forged = claims.join(".");

    assert_refused(
        app.get_user(&tampered, user.id).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_refused(
        app.get_user(&forged, 1).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_refused(
        app.get_user("not.a.jwt", 1).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );

    app.clock.advance(Duration::from_secs(300 + 31));
    assert_refused(
        app.get_user(&tokens.access, user.id).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    // The refresh token outlives the access token.
    let renewed = app.refresh(&tokens.refresh).await.unwrap();
    assert!(app.get_user(&renewed.access, user.id).await.is_ok());
}

async fn a_refresh_token_expires(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REFRESH_TOKEN_LIFETIME", "600")]).await;
    let (_, tokens) = app.signed_in_user("stale@example.com").await;

    app.clock.advance(Duration::from_secs(601));

    assert_refused(
        app.refresh(&tokens.refresh).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

async fn logout_revokes_the_session_so_refresh_fails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("bye@example.com").await;

    app.client
        .clone()
        .logout(pb::LogoutRequest {
            refresh: tokens.refresh.clone(),
        })
        .await
        .unwrap();

    assert_refused(
        app.refresh(&tokens.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_refused(
        app.get_user(&tokens.access, user.id).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    // RFC 7009: unknown, malformed and already revoked tokens answer alike, with success.
    let logout = async |refresh: &str| {
        app.client
            .clone()
            .logout(pb::LogoutRequest {
                refresh: refresh.into(),
            })
            .await
    };
    for refresh in ["made-up", "\u{0}\u{7f}", tokens.refresh.as_str()] {
        let outcome = logout(refresh).await;
        assert!(outcome.is_ok(), "{refresh:?}: {outcome:?}");
    }
    // A missing token is no token: the field is named, over gRPC and the bridge.
    for missing in ["", "  "] {
        let refused = logout(missing).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{missing:?}");
        let details = refused.get_error_details();
        let violations = details.bad_request().unwrap().field_violations.clone();
        assert_eq!(violations[0].field, "refresh");
    }
    let (status, body) = app
        .post("/accounts/api/logout/", serde_json::json!({}))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("refresh"),
        "{body}"
    );
}

async fn logout_all_revokes_every_session_of_the_user_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, phone) = app.signed_in_user("many@example.com").await;
    let laptop = app.login("many@example.com", PASSWORD).await.unwrap();
    let (_, bystander) = app.signed_in_user("other@example.com").await;

    let request = TestApp::authorized(pb::LogoutAllRequest {}, &laptop.access);
    let reply = app
        .client
        .clone()
        .logout_all(request)
        .await
        .unwrap()
        .into_inner();

    assert_eq!(reply.revoked_sessions, 2);
    assert_refused(
        app.refresh(&phone.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_refused(
        app.refresh(&laptop.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert!(app.refresh(&bystander.refresh).await.is_ok());
    let unauthenticated = app.client.clone().logout_all(pb::LogoutAllRequest {}).await;
    assert_refused(unauthenticated, Code::Unauthenticated, "UNAUTHENTICATED");
}

async fn five_failed_logins_then_back_off_with_retry_info(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("target@example.com").await;

    for _ in 0..6 {
        assert_refused(
            app.login("target@example.com", "wrong-passphrase").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    let blocked = app.login("target@example.com", PASSWORD).await;

    let status = assert_refused(blocked, Code::ResourceExhausted, "LOGIN_THROTTLED");
    let retry = retry_delay(&status);
    assert!(
        retry <= Duration::from_secs(30) && retry > Duration::ZERO,
        "{retry:?}"
    );
    app.clock.advance(Duration::from_secs(31));
    assert!(app.login("target@example.com", PASSWORD).await.is_ok());
}

async fn the_per_ip_login_budget_is_enforced(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_LOGIN", "3")]).await;

    for _ in 0..3 {
        assert_refused(
            app.login("x@example.com", "wrong-passphrase").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    let status = assert_refused(
        app.login("x@example.com", "wrong-passphrase").await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );

    assert!(status.get_error_details().retry_info().is_some());
    app.clock.advance(Duration::from_secs(301));
    assert_refused(
        app.login("x@example.com", "wrong-passphrase").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
}

async fn with_no_grace_of_concurrent_refreshes_with_one_token_exactly_one_wins(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REFRESH_REUSE_GRACE", "0")]).await;
    let (_, tokens) = app.signed_in_user("twins@example.com").await;

    let racers: Vec<_> = (0..20)
        .map(|_| {
            let mut client = app.client.clone();
            let request = pb::RefreshRequest {
                refresh: tokens.refresh.clone(),
            };
            tokio::spawn(async move { client.refresh(request).await })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => winners += 1,
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        }
    }

    assert_eq!(winners, 1);
}

async fn oversized_messages_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let huge = pb::RegisterRequest {
        email: "big@example.com".into(),
        password: PASSWORD.into(),
        first_name: "x".repeat(100 * 1024),
        last_name: String::new(),
    };
    let status = app.client.clone().register(huge).await.unwrap_err();

    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert!(app.user("big@example.com").await.is_none());
}

async fn hs256_over_secret_key_works_for_seed_compatibility(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("JWT_ALGORITHM", "HS256"),
            ("SECRET_KEY", "a-shared-secret-of-at-least-32-characters"),
        ],
    )
    .await;
    let (user, tokens) = app.signed_in_user("seed@example.com").await;

    assert_eq!(jwt_part(&tokens.access, 0)["alg"], "HS256");
    assert!(app.get_user(&tokens.access, user.id).await.is_ok());
    // Signed with HMAC-SHA256(SECRET_KEY, "jwt:hs256"), never with the raw secret.
    let derived = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(
            b"a-shared-secret-of-at-least-32-characters",
        )
        .unwrap();
        mac.update(identity::app::HS256_KEY_PURPOSE.as_bytes());
        mac.finalize().into_bytes()
    };
    let verify = |key: &[u8]| {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(
            &tokens.access,
            &jsonwebtoken::DecodingKey::from_secret(key),
            &validation,
        )
    };
    assert!(verify(&derived).is_ok());
    assert!(verify(b"a-shared-secret-of-at-least-32-characters").is_err());
    let (_, jwks) = app.get_json("/.well-known/jwks.json", None).await;
    assert_eq!(
        jwks["keys"],
        serde_json::json!([]),
        "a shared secret is never published"
    );
}

crate::on_both_backends!(
    hs256_over_secret_key_works_for_seed_compatibility,
    with_no_grace_of_concurrent_refreshes_with_one_token_exactly_one_wins,
    a_retried_refresh_gets_the_same_new_token_until_that_one_is_used,
    with_no_grace_a_retried_refresh_revokes_the_session,
    oversized_messages_are_refused,
    login_returns_an_eddsa_access_token_with_the_documented_claims,
    a_session_keeps_its_assurance_through_refreshes,
    a_wrong_password_and_an_unknown_email_answer_alike,
    an_unverified_user_cannot_log_in,
    refresh_rotates_and_reusing_a_spent_token_revokes_the_whole_family,
    an_access_token_is_no_refresh_token_and_a_refresh_token_is_no_bearer,
    expired_and_tampered_access_tokens_are_refused,
    a_refresh_token_expires,
    logout_revokes_the_session_so_refresh_fails,
    logout_all_revokes_every_session_of_the_user_only,
    five_failed_logins_then_back_off_with_retry_info,
    the_per_ip_login_budget_is_enforced,
);
