//! A user's own devices: listing live sessions with what the client called itself, ending
//! one (only one's own, once however many ask at once), and ending all but the current.

use identity::pb;
use reqwest::StatusCode;
use tonic::{Code, Request};

use crate::{
    concurrency::all_at_once,
    helpers::{Backend, PASSWORD, TestApp},
};

/// Signs in as `email` from a client that calls itself `device`.
async fn login_from(app: &TestApp, email: &str, device: &str) -> pb::LoginResponse {
    let mut request = Request::new(pb::LoginRequest {
        email: email.into(),
        password: PASSWORD.into(),
    });
    request
        .metadata_mut()
        .insert("x-device-name", device.parse().unwrap());
    app.client
        .clone()
        .login(request)
        .await
        .unwrap()
        .into_inner()
}

async fn sessions(app: &TestApp, access: &str) -> Result<Vec<pb::Session>, Code> {
    app.client
        .clone()
        .list_sessions(TestApp::authorized(pb::ListSessionsRequest {}, access))
        .await
        .map(|reply| reply.into_inner().sessions)
        .map_err(|status| status.code())
}

async fn revoke(app: &TestApp, access: &str, session_id: &str) -> Result<(), Code> {
    let request = pb::RevokeSessionRequest {
        session_id: session_id.into(),
    };
    app.client
        .clone()
        .revoke_session(TestApp::authorized(request, access))
        .await
        .map(drop)
        .map_err(|status| status.code())
}

async fn a_user_sees_their_devices_and_ends_one_of_their_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("owner@example.com").await;
    let (_, stranger) = app.signed_in_user("stranger@example.com").await;
    let laptop = login_from(&app, "owner@example.com", "  Work\tlaptop  ").await;
    let phone = login_from(&app, "owner@example.com", "Pixel 8").await;
    let refreshed = app.refresh(&phone.refresh).await.unwrap();

    let listed = sessions(&app, &laptop.access).await.unwrap();
    assert_eq!(listed.len(), 2);
    let [newest, oldest] = [&listed[0], &listed[1]];
    assert_eq!((newest.device.as_str(), newest.current), ("Pixel 8", false));
    assert_eq!(
        (oldest.device.as_str(), oldest.current),
        ("Work laptop", true)
    );
    assert_eq!(oldest.ip, "127.0.0.1");
    assert!(newest.last_refreshed_at.is_some() && oldest.last_refreshed_at.is_none());
    assert!(newest.created_at.is_some() && newest.expires_at.is_some());

    // Someone else's session, an unknown one and a malformed id change nothing.
    let strangers = sessions(&app, &stranger.access).await.unwrap()[0]
        .id
        .clone();
    assert_eq!(
        revoke(&app, &laptop.access, &strangers).await,
        Err(Code::NotFound)
    );
    assert_eq!(
        revoke(&app, &laptop.access, "00000000-0000-4000-8000-000000000000").await,
        Err(Code::NotFound)
    );
    assert_eq!(
        revoke(&app, &laptop.access, "nope").await,
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        revoke(&app, "", &newest.id).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(sessions(&app, &stranger.access).await.unwrap().len(), 1);
    assert_eq!(sessions(&app, &laptop.access).await.unwrap().len(), 2);

    assert_eq!(revoke(&app, &laptop.access, &newest.id).await, Ok(()));
    assert!(
        app.refresh(&refreshed.refresh).await.is_err(),
        "the phone is signed out"
    );
    assert_eq!(
        sessions(&app, &phone.access).await,
        Err(Code::Unauthenticated),
        "its access token is dead at once"
    );
    assert_eq!(sessions(&app, &laptop.access).await.unwrap().len(), 1);
    assert_eq!(
        revoke(&app, &laptop.access, &newest.id).await,
        Err(Code::NotFound),
        "an ended session is not found again"
    );
}

async fn twenty_revocations_of_one_session_at_once_end_it_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("racer@example.com").await;
    let keeper = login_from(&app, "racer@example.com", "keeper").await;
    let target = login_from(&app, "racer@example.com", "target").await;
    let target_id = sessions(&app, &keeper.access).await.unwrap()[0].id.clone();

    let client = app.client.clone();
    let outcomes = all_at_once((0..20).map(|_| {
        let (mut client, access, id) = (client.clone(), keeper.access.clone(), target_id.clone());
        async move {
            client
                .revoke_session(TestApp::authorized(
                    pb::RevokeSessionRequest { session_id: id },
                    &access,
                ))
                .await
                .map(drop)
                .map_err(|status| status.code())
        }
    }))
    .await;

    let ended = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(ended, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || *o == Err(Code::NotFound)),
        "{outcomes:?}"
    );
    assert!(app.refresh(&target.refresh).await.is_err());
    let logged = app
        .query_texts(&format!(
            "SELECT session_id AS value FROM revocations WHERE session_id = '{target_id}'"
        ))
        .await;
    assert_eq!(logged.len(), 1, "one revocation is logged");
}

async fn logout_others_keeps_only_the_current_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, _) = app.signed_in_user("many@example.com").await;
    let other = login_from(&app, "many@example.com", "other").await;
    let current = login_from(&app, "many@example.com", "current").await;

    let ended = app
        .client
        .clone()
        .logout_others(TestApp::authorized(
            pb::LogoutOthersRequest {},
            &current.access,
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(ended.revoked_sessions, 2);
    let left = sessions(&app, &current.access).await.unwrap();
    assert_eq!((left.len(), left[0].current), (1, true));
    assert!(app.get_user(&current.access, user.id).await.is_ok());
    assert!(app.refresh(&current.refresh).await.is_ok());
    assert!(app.refresh(&other.refresh).await.is_err());
    let user_wide = app
        .query_texts(
            "SELECT CAST(user_id AS TEXT) AS value FROM revocations WHERE user_id IS NOT NULL",
        )
        .await;
    assert!(
        user_wide.is_empty(),
        "no user-wide revocation voids the current session"
    );
}

async fn devices_have_bridge_paths(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, first) = app.signed_in_user("bridge-devices@example.com").await;
    let second = app
        .login("bridge-devices@example.com", PASSWORD)
        .await
        .unwrap();
    let list = |access: String| {
        let (http, base) = (app.http.clone(), app.http_base.clone());
        async move {
            let response = http
                .get(format!("{base}/accounts/api/sessions/"))
                .bearer_auth(access)
                .header("user-agent", "Firefox/140.0")
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };

    let (status, listed) = list(second.access.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let other_id = sessions
        .iter()
        .find(|session| session["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let deleted = app
        .http
        .delete(format!(
            "{}/accounts/api/sessions/{other_id}/",
            app.http_base
        ))
        .bearer_auth(&second.access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(list(first.access.clone()).await.0, StatusCode::UNAUTHORIZED);

    let third = app
        .login("bridge-devices@example.com", PASSWORD)
        .await
        .unwrap();
    let (status, ended) = app
        .http
        .post(format!("{}/accounts/api/logout_others/", app.http_base))
        .bearer_auth(&third.access)
        .json(&serde_json::json!({}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let ended: serde_json::Value = ended.json().await.unwrap();
    assert_eq!(ended["revoked_sessions"], "1");
    let (_, anonymous) = app.get_json("/accounts/api/sessions/", None).await;
    assert_eq!(anonymous["code"], 16);
}

crate::on_both_backends!(
    a_user_sees_their_devices_and_ends_one_of_their_own,
    twenty_revocations_of_one_session_at_once_end_it_once,
    logout_others_keeps_only_the_current_session,
    devices_have_bridge_paths,
);
