//! `identity-client` in a consuming service (the `orders` example, over axum, and a tonic
//! server): live tokens pass, revoked ones stop passing within 2 s, and forged, expired or
//! other-audience tokens never do.

use std::time::{Duration, Instant};

use identity_client::{ConnectError, Refusal, Verifier, WhenStale};
use reqwest::{StatusCode, header};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, service_tokens_file},
    token_service::{BILLING, READER, spawn},
};

#[path = "../../identity-client/examples/orders.rs"]
#[expect(
    dead_code,
    reason = "the example's main is not run here, its router is"
)]
mod orders;

/// A verifier for the app's tokens, over a channel of its own.
async fn connect_verifier(app: &TestApp) -> Verifier {
    Verifier::builder(app.channel().await, BILLING)
        .connect()
        .await
        .unwrap()
}

/// Serves the `orders` example on an ephemeral port; its base URL.
pub(crate) async fn serve_orders(verifier: &Verifier) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = orders::router(verifier);
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// What the orders service answers `token`.
pub(crate) async fn my_orders(base: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(format!("{base}/orders/mine"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// How long until the orders service refuses `token`; panics after 2 s.
async fn refused_within_two_seconds(base: &str, token: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        if my_orders(base, Some(token)).await.0 == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: still accepted after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_service_accepts_live_tokens_and_refuses_revoked_ones_within_two_seconds(
    backend: Backend,
) {
    let (app, _file) = spawn(backend).await;
    let verifier = connect_verifier(&app).await;
    let base = serve_orders(&verifier).await;
    let (user, first) = app.signed_in_user("orders@example.com").await;
    let second = app.login("orders@example.com", PASSWORD).await.unwrap();
    let third = app.login("orders@example.com", PASSWORD).await.unwrap();

    assert_eq!(
        my_orders(&base, Some(&first.access)).await,
        (StatusCode::OK, format!("orders of user {}", user.id))
    );
    let anonymous = reqwest::get(format!("{base}/orders/mine")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "open paths need no token");

    app.logout(&first.refresh).await;
    refused_within_two_seconds(&base, &first.access, "after Logout").await;
    assert_eq!(
        my_orders(&base, Some(&second.access)).await.0,
        StatusCode::OK,
        "a logout ends one session"
    );

    app.logout_all(&second.access).await;
    refused_within_two_seconds(&base, &second.access, "after LogoutAll").await;
    refused_within_two_seconds(&base, &third.access, "another session after LogoutAll").await;
    let after = app.login("orders@example.com", PASSWORD).await.unwrap();
    assert_eq!(
        my_orders(&base, Some(&after.access)).await.0,
        StatusCode::OK,
        "signing in again after LogoutAll works"
    );

    // A verifier started later has read the log before it serves.
    let late = connect_verifier(&app).await;
    assert_eq!(late.verify(&second.access).await, Err(Refusal::Revoked));
    assert!(late.verify(&after.access).await.is_ok());
}

async fn a_verifier_does_not_start_without_the_revocation_log(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let keys_only = Verifier::builder(app.channel().await, READER)
        .connect()
        .await
        .err()
        .expect("a token without the revocations scope cannot start a verifier");
    assert!(
        matches!(&keys_only, ConnectError::Revocations(status) if status.code() == tonic::Code::PermissionDenied),
        "{keys_only:?}"
    );
    let stranger = Verifier::builder(app.channel().await, "not-a-service-token")
        .connect()
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&stranger, ConnectError::Jwks(status) if status.code() == tonic::Code::Unauthenticated),
        "{stranger:?}"
    );
}

/// A JWT part (base64url JSON) with `field` set to `value`.
fn with_field(part: &str, field: &str, value: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut decoded: serde_json::Value =
        serde_json::from_slice(&engine.decode(part).unwrap()).unwrap();
    decoded[field] = value.into();
    engine.encode(serde_json::to_vec(&decoded).unwrap())
}

async fn forged_expired_and_other_audience_tokens_are_refused(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (user, tokens) = app.signed_in_user("forger@example.com").await;
    let verifier = connect_verifier(&app).await;
    let base = serve_orders(&verifier).await;
    assert_eq!(
        verifier.verify(&tokens.access).await.unwrap().user_id,
        user.id
    );

    let [header, claims, signature] = {
        let parts: Vec<&str> = tokens.access.split('.').collect();
        [parts[0], parts[1], parts[2]]
    };
    let other_claims = with_field(claims, "sub", "1");
    let unknown_kid = with_field(header, "kid", "forged");
    for (forged, why) in [
        (
            format!("{header}.{other_claims}.{signature}"),
            Refusal::BadSignature,
        ),
        (
            format!("{unknown_kid}.{claims}.{signature}"),
            Refusal::UnknownKey,
        ),
        (format!("{header}.{claims}."), Refusal::BadSignature),
        (tokens.refresh.clone(), Refusal::Malformed),
    ] {
        assert_eq!(verifier.verify(&forged).await, Err(why), "{forged}");
        assert_eq!(
            my_orders(&base, Some(&forged)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    let billing_only = Verifier::builder(app.channel().await, BILLING)
        .audience("billing")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        billing_only.verify(&tokens.access).await,
        Err(Refusal::NotForUs)
    );

    let clock = app.clock.clone();
    let moving = Verifier::builder(app.channel().await, BILLING)
        .clock(move || clock.now().timestamp())
        .connect()
        .await
        .unwrap();
    app.clock.advance(Duration::from_secs(300 + 30));
    assert_eq!(moving.verify(&tokens.access).await, Err(Refusal::Expired));
}

async fn introspection_sees_what_no_local_check_can(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("disabled@example.com").await;
    let local = connect_verifier(&app).await;
    let asking = Verifier::builder(app.channel().await, BILLING)
        .introspect(true)
        .connect()
        .await
        .unwrap();
    assert!(asking.verify(&tokens.access).await.is_ok());

    app.execute_sql("UPDATE users SET is_active = FALSE WHERE email = 'disabled@example.com'")
        .await;
    assert!(local.verify(&tokens.access).await.is_ok());
    assert_eq!(asking.verify(&tokens.access).await, Err(Refusal::Inactive));
}

async fn a_tonic_service_behind_the_layer_refuses_calls_without_a_live_token(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("grpc@example.com").await;
    let verifier = connect_verifier(&app).await;
    let (_, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(verifier.layer())
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |token: Option<&str>| {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };

    assert!(client.check(check(Some(&tokens.access))).await.is_ok());
    let anonymous = client.check(check(None)).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let forged = client
        .check(check(Some(&format!("{}x", tokens.access))))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);
    assert_eq!(forged.message(), "invalid access token");
}

async fn a_verifier_whose_revocations_are_stale_asks_the_server_or_refuses(backend: Backend) {
    const NO_INTROSPECT: &str = "no-introspection-service-token-of-enough-entropy";
    let dir = tempfile::tempdir().unwrap();
    let path = service_tokens_file(
        dir.path(),
        &[
            ("billing", "introspect,revocations,jwks", BILLING),
            ("follower", "revocations,jwks", NO_INTROSPECT),
        ],
    );
    // The server says "caught up" once, then not for an hour: the stream looks cut off.
    let settings = [
        ("SERVICE_TOKENS_FILE", path.as_str()),
        ("REVOCATION_HEARTBEAT_INTERVAL", "3600"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;
    let (_, tokens) = app.signed_in_user("stale@example.com").await;
    let verifier = async |token: &str, when: WhenStale| {
        Verifier::builder(app.channel().await, token)
            .max_staleness(Duration::from_millis(300))
            .when_stale(when)
            .connect()
            .await
            .unwrap()
    };
    let refusing = verifier(BILLING, WhenStale::Refuse).await;
    let asking = verifier(BILLING, WhenStale::Introspect).await;
    let unable_to_ask = verifier(NO_INTROSPECT, WhenStale::Introspect).await;
    for current in [&refusing, &asking, &unable_to_ask] {
        assert!(current.staleness() < Duration::from_millis(300));
        assert!(current.verify(&tokens.access).await.is_ok(), "fresh");
    }

    tokio::time::sleep(Duration::from_millis(400)).await;

    assert!(refusing.staleness() > Duration::from_millis(300));
    assert_eq!(refusing.verify(&tokens.access).await, Err(Refusal::Stale));
    assert!(
        asking.verify(&tokens.access).await.is_ok(),
        "the server says it is live"
    );
    assert_eq!(
        unable_to_ask.verify(&tokens.access).await,
        Err(Refusal::Unavailable),
        "fails closed"
    );
    app.logout(&tokens.refresh).await;
    let revoked = asking.verify(&tokens.access).await;
    assert!(
        matches!(revoked, Err(Refusal::Inactive | Refusal::Revoked)),
        "asked (or told by the stream), it is revoked: {revoked:?}"
    );
}

crate::on_both_backends!(
    a_verifier_whose_revocations_are_stale_asks_the_server_or_refuses,
    a_service_accepts_live_tokens_and_refuses_revoked_ones_within_two_seconds,
    a_verifier_does_not_start_without_the_revocation_log,
    forged_expired_and_other_audience_tokens_are_refused,
    introspection_sees_what_no_local_check_can,
    a_tonic_service_behind_the_layer_refuses_calls_without_a_live_token,
);
