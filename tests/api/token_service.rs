//! The service-facing API: service tokens with scopes, introspection that sees revocations
//! at once, the key set, and a revocation stream that resumes from its cursor.

use std::time::Duration;

use identity::pb::{self, token_service_client::TokenServiceClient};
use tokio_stream::StreamExt;
use tonic::{Code, Request, transport::Channel};

use crate::helpers::{Backend, PASSWORD, TestApp, service_tokens_file};

pub(crate) const BILLING: &str = "billing-service-token-of-enough-entropy";
pub(crate) const READER: &str = "reader-service-token-of-enough-entropy";

/// An app whose services file allows `billing` everything and `reader` only the key set.
pub(crate) async fn spawn(backend: Backend) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = service_tokens_file(
        dir.path(),
        &[
            ("billing", "introspect,revocations,jwks", BILLING),
            ("reader", "jwks", READER),
        ],
    );
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SERVICE_TOKENS_FILE", &path),
            ("REVOCATION_POLL_INTERVAL_MS", "50"),
        ],
    )
    .await;
    (app, dir)
}

/// The next message of a stream, within 10 s.
async fn next_message(
    stream: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
    what: &str,
) -> pb::WatchRevocationsResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap_or_else(|_| panic!("{what} did not arrive"))
        .unwrap()
        .unwrap()
}

/// The next revocation of a stream, past any caught-up message, within 10 s.
async fn next(
    stream: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
    what: &str,
) -> pb::WatchRevocationsResponse {
    loop {
        let message = next_message(stream, what).await;
        if !message.caught_up {
            return message;
        }
    }
}

/// A revocation stream from `cursor`, on `services` (which must outlive it).
async fn watch(
    services: &TokenServiceClient<Channel>,
    cursor: String,
) -> tonic::Streaming<pb::WatchRevocationsResponse> {
    services
        .clone()
        .watch_revocations(as_service(pb::WatchRevocationsRequest { cursor }, BILLING))
        .await
        .unwrap()
        .into_inner()
}

fn as_service<T>(message: T, token: &str) -> Request<T> {
    TestApp::authorized(message, token)
}

async fn client(app: &TestApp) -> TokenServiceClient<Channel> {
    TokenServiceClient::new(app.channel().await)
}

async fn introspect(app: &TestApp, token: &str) -> pb::IntrospectTokenResponse {
    client(app)
        .await
        .introspect_token(as_service(
            pb::IntrospectTokenRequest {
                token: token.into(),
            },
            BILLING,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn only_services_with_the_scope_may_call(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (_, user_tokens) = app.signed_in_user("caller@example.com").await;
    let mut client = client(&app).await;
    let ask = || pb::IntrospectTokenRequest {
        token: user_tokens.access.clone(),
    };

    let anonymous = client.introspect_token(ask()).await.unwrap_err();
    let end_user = client
        .introspect_token(as_service(ask(), &user_tokens.access))
        .await
        .unwrap_err();
    let reader = client
        .introspect_token(as_service(ask(), READER))
        .await
        .unwrap_err();
    let keys = client
        .get_jwks(as_service(pb::GetJwksRequest {}, READER))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(
        end_user.code(),
        Code::Unauthenticated,
        "end-user tokens are refused"
    );
    assert_eq!(reader.code(), Code::PermissionDenied);
    let (_, jwks) = app.get_json("/.well-known/jwks.json", None).await;
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].kid, jwks["keys"][0]["kid"].as_str().unwrap());
    assert_eq!(
        (keys.keys[0].kty.as_str(), keys.keys[0].alg.as_str()),
        ("OKP", "EdDSA")
    );
}

async fn introspection_sees_every_revocation_at_once(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (user, tokens) = app.signed_in_user("live@example.com").await;

    let live = introspect(&app, &tokens.access).await;
    assert!(live.active);
    assert_eq!(live.sub, user.id.to_string());
    assert_eq!(
        (live.aal.as_str(), live.amr.as_slice()),
        ("aal1", &["pwd".to_owned()][..])
    );
    assert!(live.auth_time > 0 && live.auth_time <= live.iat);
    assert_eq!(live.user.unwrap().email, "live@example.com");
    for garbage in [
        "",
        "not-a-token",
        &format!("{}x", tokens.access),
        &tokens.refresh,
    ] {
        assert_eq!(
            introspect(&app, garbage).await,
            pb::IntrospectTokenResponse::default()
        );
    }

    app.logout(&tokens.refresh).await;
    assert!(!introspect(&app, &tokens.access).await.active, "logout");

    let other = app.login("live@example.com", PASSWORD).await.unwrap();
    assert!(introspect(&app, &other.access).await.active);
    app.logout_all(&other.access).await;
    assert!(!introspect(&app, &other.access).await.active, "logout-all");

    let third = app.login("live@example.com", PASSWORD).await.unwrap();
    app.execute_sql("UPDATE users SET is_active = FALSE WHERE email = 'live@example.com'")
        .await;
    let disabled = introspect(&app, &third.access).await;
    assert_eq!(
        disabled,
        pb::IntrospectTokenResponse::default(),
        "disabled user"
    );

    let (_, expiring) = app.signed_in_user("expiring@example.com").await;
    app.clock.advance(Duration::from_secs(300 + 31));
    assert!(!introspect(&app, &expiring.access).await.active, "expired");
}

/// The session id (`sid`) an access token names.
fn sid_of(access: &str) -> String {
    use base64::Engine;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(access.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&claims).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn revocations_stream_to_services_and_resume_from_their_cursor(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (user, tokens) = app.signed_in_user("watched@example.com").await;
    let sid = sid_of(&tokens.access);
    // The client (and its connection) must outlive the streams it opens.
    let services = client(&app).await;
    let mut stream = watch(&services, String::new()).await;
    let opening = next_message(&mut stream, "the caught-up message").await;
    assert!(
        opening.caught_up && opening.revoked.is_none(),
        "{opening:?}"
    );
    assert_eq!(opening.cursor, "", "nothing is logged yet");

    app.logout(&tokens.refresh).await;
    let first = next(&mut stream, "the logout").await;
    let second_login = app.login("watched@example.com", PASSWORD).await.unwrap();
    app.logout_all(&second_login.access).await;
    let second_session = next(&mut stream, "the logout-all's session").await;
    let second = next(&mut stream, "the logout-all").await;
    let mut resumed = watch(&services, first.cursor.clone()).await;
    let replayed = next_message(&mut resumed, "the replay").await;
    let replayed_user = next_message(&mut resumed, "the rest of the replay").await;
    let caught_up = next_message(&mut resumed, "the caught-up message").await;

    use pb::watch_revocations_response::Revoked;
    assert_eq!(first.revoked, Some(Revoked::SessionId(sid)));
    assert_eq!(
        second_session.revoked,
        Some(Revoked::SessionId(sid_of(&second_login.access))),
        "each session a logout-all ends is named"
    );
    let Some(Revoked::User(everything)) = &second.revoked else {
        panic!("{second:?}")
    };
    assert_eq!(everything.user_id, user.id);
    assert!(everything.not_valid_before > 0);
    assert_eq!(
        replayed, second_session,
        "resuming after the first gives the next"
    );
    assert_eq!(replayed_user, second);
    assert!(
        caught_up.caught_up && caught_up.cursor == second.cursor,
        "the replay ends with a caught-up message at its cursor: {caught_up:?}"
    );
    let refused = client(&app)
        .await
        .watch_revocations(as_service(
            pb::WatchRevocationsRequest {
                cursor: "garbage".into(),
            },
            BILLING,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}

/// POSTs an introspection to the bridge as `bearer`.
async fn introspect_over_http(
    app: &TestApp,
    bearer: Option<&str>,
    token: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = app
        .http
        .post(format!("{}/accounts/api/token/introspect/", app.http_base))
        .json(&serde_json::json!({ "token": token }));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn introspection_has_a_bridge_path_for_services(backend: Backend) {
    let (app, _file) = spawn(backend).await;
    let (user, tokens) = app.signed_in_user("bridged@example.com").await;

    let (status, live) = introspect_over_http(&app, Some(BILLING), &tokens.access).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(live["active"], true);
    assert_eq!(live["sub"], user.id.to_string());
    assert_eq!(live["user"]["email"], "bridged@example.com");
    let (status, dead) = introspect_over_http(&app, Some(BILLING), "garbage").await;
    assert_eq!(
        (status, &dead["active"]),
        (reqwest::StatusCode::OK, &false.into())
    );
    assert_eq!(dead["sub"], "", "an inactive answer says nothing else");

    for (bearer, http, code) in [
        (None, reqwest::StatusCode::UNAUTHORIZED, 16),
        (
            Some(tokens.access.as_str()),
            reqwest::StatusCode::UNAUTHORIZED,
            16,
        ),
        (Some(READER), reqwest::StatusCode::FORBIDDEN, 7),
    ] {
        let (status, error) = introspect_over_http(&app, bearer, &tokens.access).await;
        assert_eq!((status, &error["code"]), (http, &code.into()), "{bearer:?}");
        assert!(error.get("active").is_none());
    }
    let (_, openapi) = app.get_json("/openapi.json", None).await;
    assert_eq!(
        openapi["paths"]["/accounts/api/token/introspect/"]["post"]["security"][0]["serviceToken"],
        serde_json::json!([])
    );
}

async fn an_idle_stream_says_it_is_caught_up_on_each_heartbeat(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = service_tokens_file(dir.path(), &[("billing", "revocations", BILLING)]);
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SERVICE_TOKENS_FILE", &path),
            ("REVOCATION_POLL_INTERVAL_MS", "50"),
            ("REVOCATION_HEARTBEAT_INTERVAL", "1"),
        ],
    )
    .await;
    let mut stream = client(&app)
        .await
        .watch_revocations(as_service(pb::WatchRevocationsRequest::default(), BILLING))
        .await
        .unwrap()
        .into_inner();
    let opening = next_message(&mut stream, "the caught-up message").await;
    let heartbeat = next_message(&mut stream, "a heartbeat").await;
    assert!(opening.caught_up && heartbeat.caught_up);
    assert_eq!(heartbeat.revoked, None, "a heartbeat revokes nothing");
}

/// Every revocation a stream delivers until it is caught up, as (cursor, session id).
async fn drain(
    stream: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
) -> Vec<(String, String)> {
    use pb::watch_revocations_response::Revoked;
    let mut seen = Vec::new();
    loop {
        let message = next_message(stream, "the replay").await;
        if message.caught_up {
            return seen;
        }
        if let Some(Revoked::SessionId(sid)) = message.revoked {
            seen.push((message.cursor, sid));
        }
    }
}

/// On Postgres, a revoking transaction held up by a row lock commits after one that started
/// later. The feed delivers both all the same, to a watcher and to one resuming from any
/// cursor it was given. (SQLite has one writer: its commits cannot overtake each other.)
#[tokio::test(flavor = "multi_thread")]
async fn the_feed_delivers_revocations_that_commit_out_of_order() {
    let (app, _file) = spawn(Backend::Postgres).await;
    let (user, kept) = app.signed_in_user("many@example.com").await;
    for _ in 0..2 {
        app.login("many@example.com", PASSWORD).await.unwrap();
    }
    let (_, later) = app.signed_in_user("later@example.com").await;
    let services = client(&app).await;
    let mut stream = watch(&services, String::new()).await;
    assert!(
        next_message(&mut stream, "the caught-up message")
            .await
            .caught_up
    );

    // Lock the session LogoutOthers reaches last, in the order its own query finds them, so
    // it logs the first revocation and then waits.
    let admin = crate::helpers::admin_client(&app.database_url).await;
    let kept_sid = sid_of(&kept.access);
    let others: Vec<String> = admin
        .query(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > now() AT TIME ZONE 'UTC'",
            &[&user.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|sid| *sid != kept_sid)
        .collect();
    assert_eq!(others.len(), 2);
    admin.batch_execute("BEGIN").await.unwrap();
    admin
        .execute(
            "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
            &[&others[1]],
        )
        .await
        .unwrap();
    let mut logout_others = app.client.clone();
    let held = tokio::spawn(async move {
        logout_others
            .logout_others(TestApp::authorized(
                pb::LogoutOthersRequest {},
                &kept.access,
            ))
            .await
    });
    crate::helpers::wait_for_lock_waiter(&app.database_url, "sessions").await;

    // A later Logout commits first and is delivered.
    app.logout(&later.refresh).await;
    use pb::watch_revocations_response::Revoked;
    let first = next(&mut stream, "the later logout").await;
    assert_eq!(
        first.revoked,
        Some(Revoked::SessionId(sid_of(&later.access)))
    );
    // Then the held one commits, and both of its revocations follow.
    admin.batch_execute("COMMIT").await.unwrap();
    held.await.unwrap().unwrap();
    let mut delivered = vec![(first.cursor.clone(), sid_of(&later.access))];
    for _ in 0..2 {
        let message = next(&mut stream, "a revocation of LogoutOthers").await;
        let Some(Revoked::SessionId(sid)) = message.revoked else {
            panic!("{message:?}")
        };
        delivered.push((message.cursor, sid));
    }
    let mut revoked: Vec<&String> = delivered[1..].iter().map(|(_, sid)| sid).collect();
    revoked.sort();
    let mut expected: Vec<&String> = others.iter().collect();
    expected.sort();
    assert_eq!(revoked, expected);

    // Resuming from any cursor it was given (or from the start) gives exactly the rest.
    let all = drain(&mut watch(&services, String::new()).await).await;
    assert_eq!(all, delivered);
    for (n, (cursor, _)) in delivered.iter().enumerate() {
        let rest = drain(&mut watch(&services, cursor.clone()).await).await;
        assert_eq!(rest, delivered[n + 1..], "resumed after {cursor}");
    }
}

crate::on_both_backends!(
    an_idle_stream_says_it_is_caught_up_on_each_heartbeat,
    introspection_has_a_bridge_path_for_services,
    only_services_with_the_scope_may_call,
    introspection_sees_every_revocation_at_once,
    revocations_stream_to_services_and_resume_from_their_cursor,
);
