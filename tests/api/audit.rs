//! The audit trail: security-relevant events written with the change they record, with who,
//! from where and how it ended, never a secret; listed newest first by staff and services
//! with `audit:read`, filtered and paged; purged after `AUDIT_RETENTION`.

use std::time::Duration;

use identity::pb;
use pbjson_types::{FieldMask, Timestamp};
use reqwest::StatusCode;
use tonic::{Code, Request, Status};

use crate::helpers::{
    Backend, PASSWORD, STAFF_EMAIL, STAFF_PASSWORD, TestApp, assert_refused, service_tokens_file,
};

const AUDITOR: &str = "auditor-service-token-0123456789abcdef";
const READER: &str = "reader-service-token-0123456789abcdef";

async fn app_with_auditor(
    backend: Backend,
    settings: &[(&str, &str)],
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = service_tokens_file(
        dir.path(),
        &[
            ("support", "users:write,audit:read", AUDITOR),
            ("reports", "users:read", READER),
        ],
    );
    let mut all = vec![("SERVICE_TOKENS_FILE", path.as_str())];
    all.extend_from_slice(settings);
    let app = TestApp::spawn_with(backend, &all).await;
    (app, dir)
}

async fn events(
    app: &TestApp,
    bearer: &str,
    request: pb::ListAuditEventsRequest,
) -> Result<pb::ListAuditEventsResponse, Status> {
    let reply = app
        .client
        .clone()
        .list_audit_events(TestApp::authorized(request, bearer))
        .await?;
    Ok(reply.into_inner())
}

async fn of_user(app: &TestApp, id: i64) -> Vec<pb::AuditEvent> {
    let request = pb::ListAuditEventsRequest {
        user_id: id,
        page_size: 100,
        ..Default::default()
    };
    events(app, AUDITOR, request).await.unwrap().events
}

async fn security_events_are_recorded_with_who_and_where(backend: Backend) {
    let (app, _dir) = app_with_auditor(backend, &[("REFRESH_REUSE_GRACE", "0")]).await;
    let user = app.verified_user("watched@example.com").await;
    let mut login = Request::new(pb::LoginRequest {
        email: "watched@example.com".into(),
        password: PASSWORD.into(),
    });
    login
        .metadata_mut()
        .insert("x-device-name", "Pixel 8".parse().unwrap());
    let tokens = app.client.clone().login(login).await.unwrap().into_inner();
    let rotated = app.refresh(&tokens.refresh).await.unwrap();
    assert!(app.refresh(&tokens.refresh).await.is_err());
    let again = app.login("watched@example.com", PASSWORD).await.unwrap();
    let request = pb::ChangePasswordRequest {
        current_password: PASSWORD.into(),
        new_password: "a-brand-new-passphrase".into(),
        ..Default::default()
    };
    app.client
        .clone()
        .change_password(TestApp::authorized(request, &again.access))
        .await
        .unwrap();
    let rename = pb::UpdateUserRequest {
        id: user.id,
        first_name: "Watched".into(),
        update_mask: Some(FieldMask {
            paths: vec!["first_name".into()],
        }),
        ..Default::default()
    };
    app.client
        .clone()
        .update_user(TestApp::authorized(rename, AUDITOR))
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(
            app.login("watched@example.com", "wrong-guess-here")
                .await
                .is_err()
        );
    }

    let trail = of_user(&app, user.id).await;
    let kinds: Vec<&str> = trail.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "sign_in_throttled",
            "user_update",
            "password_change",
            "sign_in",
            "refresh_reuse",
            "sign_in"
        ]
    );
    assert!(trail.windows(2).all(|w| w[0].id > w[1].id));
    let by_kind = |kind: &str| trail.iter().find(|e| e.kind == kind).unwrap();
    let first_sign_in = trail.last().unwrap();
    assert_eq!(
        (
            first_sign_in.actor.as_str(),
            first_sign_in.user_agent.as_str()
        ),
        (format!("user:{}", user.id).as_str(), "Pixel 8")
    );
    assert_eq!(first_sign_in.ip, "127.0.0.1");
    assert!(first_sign_in.detail.contains("method=password"));
    assert_eq!(by_kind("user_update").actor, "service:support");
    assert_eq!(by_kind("refresh_reuse").outcome, "failure");
    assert_eq!(by_kind("sign_in_throttled").outcome, "failure");
    assert!(
        by_kind("password_change")
            .detail
            .contains("sessions_revoked=0")
    );
    assert!(trail.iter().all(|e| e.occurred_at.is_some()));

    // Never a secret, whatever the event.
    let everything = format!("{trail:?}");
    for secret in [
        PASSWORD,
        "a-brand-new-passphrase",
        "wrong-guess-here",
        tokens.access.as_str(),
        tokens.refresh.as_str(),
        rotated.refresh.as_str(),
    ] {
        assert!(!everything.contains(secret), "the trail holds a secret");
    }
}

async fn the_trail_is_for_staff_and_services_filtered_and_paged(backend: Backend) {
    let (app, _dir) = app_with_auditor(backend, &[]).await;
    let (user, plain) = app.signed_in_user("plain@example.com").await;
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();

    let all = pb::ListAuditEventsRequest::default;
    let not_staff = events(&app, &plain.access, all()).await;
    assert_refused(not_staff, Code::PermissionDenied, "PERMISSION_DENIED");
    let reader = events(&app, READER, all()).await;
    assert_refused(reader, Code::PermissionDenied, "PERMISSION_DENIED");
    let anonymous = app.client.clone().list_audit_events(all()).await;
    assert_refused(anonymous, Code::Unauthenticated, "UNAUTHENTICATED");
    let bad_kind = events(
        &app,
        &staff.access,
        pb::ListAuditEventsRequest {
            kind: "everything".into(),
            ..all()
        },
    )
    .await;
    assert_refused(bad_kind, Code::InvalidArgument, "INVALID_ARGUMENT");
    let bad_token = events(
        &app,
        &staff.access,
        pb::ListAuditEventsRequest {
            page_token: "garbage!".into(),
            ..all()
        },
    )
    .await;
    assert_refused(bad_token, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(events(&app, &staff.access, all()).await.is_ok());

    app.clock.advance(Duration::from_secs(3600));
    let later = chrono::Utc::now() + chrono::Duration::seconds(3600 - 60);
    for _ in 0..3 {
        app.login("plain@example.com", PASSWORD).await.unwrap();
    }
    let since = Timestamp {
        seconds: later.timestamp(),
        nanos: 0,
    };
    let recent = events(
        &app,
        AUDITOR,
        pb::ListAuditEventsRequest {
            user_id: user.id,
            kind: "sign_in".into(),
            since: Some(since),
            ..all()
        },
    )
    .await
    .unwrap();
    assert_eq!(recent.events.len(), 3);
    let before = events(
        &app,
        AUDITOR,
        pb::ListAuditEventsRequest {
            user_id: user.id,
            kind: "sign_in".into(),
            until: Some(since),
            ..all()
        },
    )
    .await
    .unwrap();
    assert_eq!(before.events.len(), 1);

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = events(
            &app,
            AUDITOR,
            pb::ListAuditEventsRequest {
                kind: "sign_in".into(),
                page_size: 2,
                page_token: token.clone(),
                ..all()
            },
        )
        .await
        .unwrap();
        assert!(page.events.iter().all(|e| e.kind == "sign_in"));
        seen.extend(page.events.iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // The user's four sign-ins and staff's one, each once, newest first.
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
    let first = events(
        &app,
        AUDITOR,
        pb::ListAuditEventsRequest {
            kind: "sign_in".into(),
            page_size: 1,
            ..all()
        },
    )
    .await
    .unwrap();
    let switched = events(
        &app,
        AUDITOR,
        pb::ListAuditEventsRequest {
            kind: "logout_all".into(),
            page_token: first.next_page_token,
            ..all()
        },
    )
    .await;
    assert_refused(switched, Code::InvalidArgument, "INVALID_ARGUMENT");

    let (status, body) = app
        .get_json(
            &format!(
                "/accounts/api/audit-events/?kind=sign_in&user_id={}",
                user.id
            ),
            Some(AUDITOR),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().unwrap().len(), 4);
    assert_eq!(body["events"][0]["kind"], "sign_in");
    let fresh = app.login("plain@example.com", PASSWORD).await.unwrap();
    let (status, _) = app
        .get_json("/accounts/api/audit-events/", Some(&fresh.access))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn events_older_than_the_retention_are_purged(backend: Backend) {
    let (app, _dir) = app_with_auditor(backend, &[("AUDIT_RETENTION", "3600")]).await;
    let (user, _) = app.signed_in_user("forgotten@example.com").await;
    assert_eq!(of_user(&app, user.id).await.len(), 1);
    // Past the retention and the purge interval, the worker's next round deletes it.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !of_user(&app, user.id).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event was not purged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.login("forgotten@example.com", PASSWORD).await.unwrap();
    assert_eq!(of_user(&app, user.id).await.len(), 1);
}

crate::on_both_backends!(
    security_events_are_recorded_with_who_and_where,
    the_trail_is_for_staff_and_services_filtered_and_paged,
    events_older_than_the_retention_are_purged,
);
