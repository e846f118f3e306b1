//! Administration by staff users and by services with `users:write`: creating accounts,
//! changing exactly the fields a field mask names (refusing a stale etag), deleting, and
//! finding accounts with the filters of `ListUsers`. Disabling, demoting and deleting end sessions
//! at once, and no change leaves the deployment without an active superuser.

use identity::pb;
use pbjson_types::FieldMask;
use reqwest::StatusCode;
use serde_json::json;
use tonic::{Code, Status};

use crate::{
    concurrency::all_at_once,
    helpers::{
        Backend, PASSWORD, STAFF_EMAIL, STAFF_PASSWORD, TestApp, assert_refused,
        service_tokens_file,
    },
};

const WRITER: &str = "writer-service-token-0123456789abcdef";
const READER: &str = "reader-service-token-0123456789abcdef";

/// An app with two services: `support` may write accounts, `reports` may only read them.
async fn app_with_services(backend: Backend) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = service_tokens_file(
        dir.path(),
        &[
            ("support", "users:read,users:write,audit:read", WRITER),
            ("reports", "users:read", READER),
        ],
    );
    let app = TestApp::spawn_with(backend, &[("SERVICE_TOKENS_FILE", &path)]).await;
    (app, dir)
}

fn create_request(email: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        email: email.into(),
        password: PASSWORD.into(),
        first_name: "Ada".into(),
        ..Default::default()
    }
}

async fn create(
    app: &TestApp,
    bearer: &str,
    request: pb::CreateUserRequest,
) -> Result<pb::User, Status> {
    let reply = app
        .client
        .clone()
        .create_user(TestApp::authorized(request, bearer))
        .await?;
    Ok(reply.into_inner().user.unwrap())
}

pub(crate) fn update_request(id: i64, paths: &[&str]) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest {
        id,
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        ..Default::default()
    }
}

pub(crate) async fn update(
    app: &TestApp,
    bearer: &str,
    request: pb::UpdateUserRequest,
) -> Result<pb::User, Status> {
    let reply = app
        .client
        .clone()
        .update_user(TestApp::authorized(request, bearer))
        .await?;
    Ok(reply.into_inner().user.unwrap())
}

pub(crate) async fn delete(app: &TestApp, bearer: &str, id: i64) -> Result<(), Status> {
    let request = pb::DeleteUserRequest {
        id,
        etag: String::new(),
    };
    app.client
        .clone()
        .delete_user(TestApp::authorized(request, bearer))
        .await
        .map(drop)
}

/// A support desk (a service with `users:write`) removes the second factors of a user who lost
/// them; a user or a reading service may not; the owner is told and signs in with the password.
async fn support_resets_the_factors_of_a_user_who_lost_them(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    let (user, tokens) = app.signed_in_user("lost@example.com").await;
    crate::factors::with_totp(&app, &tokens.access).await;
    let reset = |bearer: &str| {
        let request = TestApp::authorized(pb::ResetUserFactorsRequest { id: user.id }, bearer);
        let client = app.client.clone();
        async move { client.clone().reset_user_factors(request).await }
    };
    assert_refused(
        reset(&tokens.access).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_refused(
        reset(READER).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert!(
        app.login("lost@example.com", PASSWORD)
            .await
            .unwrap()
            .mfa_required
            .is_some()
    );

    reset(WRITER).await.unwrap();
    let answer = app.login("lost@example.com", PASSWORD).await.unwrap();
    assert!(answer.mfa_required.is_none() && !answer.access.is_empty());
    app.smtp
        .nth_with_subject(
            "lost@example.com",
            "second factors of your account were removed",
            1,
        )
        .await;
    let trail = app
        .query_texts(&format!(
            "SELECT actor AS value FROM audit_events WHERE kind = 'factors_reset' \
             AND subject_user_id = {}",
            user.id
        ))
        .await;
    assert_eq!(trail, ["service:support"]);
}

async fn staff_and_trusted_services_create_verified_accounts(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let (_, user) = app.signed_in_user("plain@example.com").await;

    let made = create(&app, &staff.access, create_request("made@example.com"))
        .await
        .unwrap();
    assert!(made.is_verified && made.is_active && !made.is_staff);
    assert_eq!(made.first_name, "Ada");
    assert!(app.login("made@example.com", PASSWORD).await.is_ok());

    let by_service = create(
        &app,
        WRITER,
        pb::CreateUserRequest {
            is_staff: true,
            ..create_request("agent@example.com")
        },
    )
    .await
    .unwrap();
    assert!(by_service.is_staff);

    // Refusals create nothing.
    let taken = create(&app, &staff.access, create_request("MADE@example.com")).await;
    assert_refused(taken, Code::AlreadyExists, "EMAIL_TAKEN");
    let not_staff = create(&app, &user.access, create_request("nope1@example.com")).await;
    assert_refused(not_staff, Code::PermissionDenied, "PERMISSION_DENIED");
    let reader = create(&app, READER, create_request("nope2@example.com")).await;
    assert_refused(reader, Code::PermissionDenied, "PERMISSION_DENIED");
    let forged = create(&app, "not-a-token", create_request("nope3@example.com")).await;
    assert_refused(forged, Code::Unauthenticated, "TOKEN_INVALID");
    let anonymous = app
        .client
        .clone()
        .create_user(create_request("nope4@example.com"))
        .await;
    assert_refused(anonymous, Code::Unauthenticated, "UNAUTHENTICATED");
    let weak = create(
        &app,
        &staff.access,
        pb::CreateUserRequest {
            password: "short".into(),
            ..create_request("nope5@example.com")
        },
    )
    .await;
    assert_refused(weak, Code::InvalidArgument, "INVALID_ARGUMENT");
    for n in 1..=5 {
        assert!(app.user(&format!("nope{n}@example.com")).await.is_none());
    }
}

async fn a_created_account_can_be_sent_a_link_to_choose_its_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // An unproven sign-up on the address is replaced: the administrator vouches for it.
    app.register("invited@example.com", "the-squatters-passphrase")
        .await
        .unwrap();
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let request = pb::CreateUserRequest {
        email: "invited@example.com".into(),
        send_password_link: true,
        ..Default::default()
    };
    create(&app, &staff.access, request).await.unwrap();
    let squatter = app
        .login("invited@example.com", "the-squatters-passphrase")
        .await;
    assert_refused(squatter, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let mail = app
        .smtp
        .nth_with_subject("invited@example.com", "choose a password", 1)
        .await;
    let (uidb64, token) = mail.link_parts("/accounts/password-reset-confirm/");
    app.client
        .clone()
        .password_reset_confirm(pb::PasswordResetConfirmRequest {
            uidb64,
            token,
            new_password: PASSWORD.into(),
        })
        .await
        .unwrap();
    assert!(app.login("invited@example.com", PASSWORD).await.is_ok());
}

async fn an_update_writes_only_what_its_mask_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let (user, _) = app.signed_in_user("masked@example.com").await;

    let renamed = update(
        &app,
        &staff.access,
        pb::UpdateUserRequest {
            first_name: "  Grace ".into(),
            is_staff: true,
            ..update_request(user.id, &["first_name"])
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (renamed.first_name.as_str(), renamed.is_staff),
        ("Grace", false)
    );

    let empty = update(&app, &staff.access, update_request(user.id, &[])).await;
    assert_refused(empty, Code::InvalidArgument, "INVALID_ARGUMENT");
    let unknown = update(&app, &staff.access, update_request(user.id, &["email"])).await;
    let status = assert_refused(unknown, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(status.message().contains("update_mask"));
    let missing = update(&app, &staff.access, update_request(987_654, &["is_staff"])).await;
    assert_refused(missing, Code::NotFound, "NOT_FOUND");

    // An etag read before the rename is stale; the current one works.
    let stale = update(
        &app,
        &staff.access,
        pb::UpdateUserRequest {
            etag: user.etag.clone(),
            is_staff: true,
            ..update_request(user.id, &["is_staff"])
        },
    )
    .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");
    let promoted = update(
        &app,
        &staff.access,
        pb::UpdateUserRequest {
            etag: renamed.etag.clone(),
            is_staff: true,
            ..update_request(user.id, &["is_staff"])
        },
    )
    .await
    .unwrap();
    assert!(promoted.is_staff && promoted.first_name == "Grace");
    let read = app.get_user(&staff.access, user.id).await.unwrap();
    assert_eq!(read.etag, promoted.etag);
}

async fn disabling_or_demoting_ends_the_sessions_at_once(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let (user, tokens) = app.signed_in_user("disabled@example.com").await;
    let (helper, helper_tokens) = app.signed_in_user("helper@example.com").await;

    update(
        &app,
        WRITER,
        pb::UpdateUserRequest {
            is_active: false,
            ..update_request(user.id, &["is_active"])
        },
    )
    .await
    .unwrap();
    let ended = app.get_user(&tokens.access, user.id).await;
    assert_refused(ended, Code::Unauthenticated, "SESSION_REVOKED");
    assert!(app.refresh(&tokens.refresh).await.is_err());
    let login = app.login("disabled@example.com", PASSWORD).await;
    assert_refused(login, Code::FailedPrecondition, "ACCOUNT_DISABLED");
    let logged = app
        .query_texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) AS value FROM revocations WHERE user_id = {}",
            user.id
        ))
        .await;
    assert_eq!(logged, ["1"]);

    update(
        &app,
        &staff.access,
        pb::UpdateUserRequest {
            is_staff: true,
            ..update_request(helper.id, &["is_staff"])
        },
    )
    .await
    .unwrap();
    // Promotion keeps the session; demotion ends it.
    assert!(app.get_user(&helper_tokens.access, user.id).await.is_ok());
    update(
        &app,
        &staff.access,
        update_request(helper.id, &["is_staff"]),
    )
    .await
    .unwrap();
    let demoted = app.get_user(&helper_tokens.access, helper.id).await;
    assert_refused(demoted, Code::Unauthenticated, "SESSION_REVOKED");

    update(
        &app,
        &staff.access,
        pb::UpdateUserRequest {
            is_active: true,
            ..update_request(user.id, &["is_active"])
        },
    )
    .await
    .unwrap();
    assert!(app.login("disabled@example.com", PASSWORD).await.is_ok());
}

async fn staff_cannot_touch_superusers_and_one_superuser_always_remains(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let superuser = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let root = app.user(STAFF_EMAIL).await.unwrap();
    create(
        &app,
        &superuser.access,
        pb::CreateUserRequest {
            is_staff: true,
            ..create_request("desk@example.com")
        },
    )
    .await
    .unwrap();
    let desk = app.login("desk@example.com", PASSWORD).await.unwrap();
    let (user, _) = app.signed_in_user("someone@example.com").await;

    let on_superuser = update(&app, &desk.access, update_request(root.id, &["first_name"])).await;
    assert_refused(on_superuser, Code::PermissionDenied, "PERMISSION_DENIED");
    let grant = update(
        &app,
        &desk.access,
        pb::UpdateUserRequest {
            is_superuser: true,
            ..update_request(user.id, &["is_superuser"])
        },
    )
    .await;
    assert_refused(grant, Code::PermissionDenied, "PERMISSION_DENIED");
    let delete_root = delete(&app, &desk.access, root.id).await;
    assert_refused(delete_root, Code::PermissionDenied, "PERMISSION_DENIED");

    for paths in [["is_superuser"], ["is_active"]] {
        let last = update(&app, &superuser.access, update_request(root.id, &paths)).await;
        assert_refused(last, Code::FailedPrecondition, "LAST_SUPERUSER");
    }
    let last = delete(&app, &superuser.access, root.id).await;
    assert_refused(last, Code::FailedPrecondition, "LAST_SUPERUSER");
    let root_now = app.get_user(&superuser.access, root.id).await.unwrap();
    assert!(root_now.is_superuser && root_now.is_active);
    assert_eq!(root_now.etag, root.etag);
}

async fn two_superusers_removed_at_once_leave_one(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    let root = app.user(STAFF_EMAIL).await.unwrap();
    let second = create(&app, WRITER, create_request("second-root@example.com"))
        .await
        .unwrap();
    update(
        &app,
        WRITER,
        pb::UpdateUserRequest {
            is_superuser: true,
            ..update_request(second.id, &["is_superuser"])
        },
    )
    .await
    .unwrap();
    let calls = (0..20).map(|n| {
        let client = app.client.clone();
        let target = if n % 2 == 0 { root.id } else { second.id };
        async move {
            let request = update_request(target, &["is_superuser"]);
            client
                .clone()
                .update_user(TestApp::authorized(request, WRITER))
                .await
                .map(|_| target)
        }
    });
    let outcomes = all_at_once(calls).await;
    let demoted: std::collections::HashSet<i64> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .copied()
        .collect();
    assert_eq!(demoted.len(), 1, "{outcomes:?}");
    for status in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }
    let superusers = app
        .query_texts("SELECT email AS value FROM users WHERE is_superuser AND is_active")
        .await;
    assert_eq!(superusers.len(), 1, "{superusers:?}");
}

async fn deleting_a_user_ends_their_sessions_once_however_many_ask(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    let (user, tokens) = app.signed_in_user("deleted@example.com").await;
    let (_, plain) = app.signed_in_user("plain@example.com").await;
    let not_staff = delete(&app, &plain.access, user.id).await;
    assert_refused(not_staff, Code::PermissionDenied, "PERMISSION_DENIED");
    let reader = delete(&app, READER, user.id).await;
    assert_refused(reader, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(app.get_user(&tokens.access, user.id).await.is_ok());

    let calls = (0..20).map(|_| {
        let client = app.client.clone();
        async move {
            let request = pb::DeleteUserRequest {
                id: user.id,
                etag: String::new(),
            };
            client
                .clone()
                .delete_user(TestApp::authorized(request, WRITER))
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
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(()) | Err(Code::NotFound)))
    );
    let gone = app.get_user(&tokens.access, user.id).await;
    assert_refused(gone, Code::Unauthenticated, "SESSION_REVOKED");
    assert!(app.user("deleted@example.com").await.is_none());
}

async fn list(
    app: &TestApp,
    bearer: &str,
    request: pb::ListUsersRequest,
) -> Result<pb::ListUsersResponse, Status> {
    let reply = app
        .client
        .clone()
        .list_users(TestApp::authorized(request, bearer))
        .await?;
    Ok(reply.into_inner())
}

fn emails(page: &pb::ListUsersResponse) -> Vec<&str> {
    page.users.iter().map(|u| u.email.as_str()).collect()
}

async fn support_finds_accounts_with_filters_and_stable_pages(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    for name in ["ann_1", "ann%2", "annabel", "bob"] {
        app.verified_user(&format!("{name}@example.com")).await;
    }
    app.register("annex@example.com", PASSWORD).await.unwrap();

    let by_prefix = list(
        &app,
        READER,
        pb::ListUsersRequest {
            email_prefix: " ANN".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        emails(&by_prefix),
        [
            "ann_1@example.com",
            "ann%2@example.com",
            "annabel@example.com",
            "annex@example.com"
        ]
    );
    // `_` and `%` match only themselves.
    let literal = list(
        &app,
        READER,
        pb::ListUsersRequest {
            email_prefix: "ann_".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(emails(&literal), ["ann_1@example.com"]);
    let unverified = list(
        &app,
        READER,
        pb::ListUsersRequest {
            email_prefix: "ann".into(),
            is_verified: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(emails(&unverified), ["annex@example.com"]);
    let active_staff = list(
        &app,
        READER,
        pb::ListUsersRequest {
            is_staff: Some(true),
            is_active: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(emails(&active_staff), [STAFF_EMAIL]);

    // Pages of a filtered list follow the id order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &app,
            READER,
            pb::ListUsersRequest {
                email_prefix: "ann".into(),
                is_verified: Some(true),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        seen.extend(page.users.iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // A page token continues only the listing it came from.
    let first = list(
        &app,
        READER,
        pb::ListUsersRequest {
            email_prefix: "ann".into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let switched = list(
        &app,
        READER,
        pb::ListUsersRequest {
            email_prefix: "bob".into(),
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await;
    let status = assert_refused(switched, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(status.message().starts_with("page_token"));

    let bad = list(
        &app,
        READER,
        pb::ListUsersRequest {
            email_prefix: "a\u{200B}".into(),
            ..Default::default()
        },
    )
    .await;
    assert_refused(bad, Code::InvalidArgument, "INVALID_ARGUMENT");

    let (status, body) = app
        .get_json(
            "/accounts/api/users/?is_staff=true&email_prefix=staff",
            Some(READER),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["users"][0]["email"], STAFF_EMAIL);
    assert_eq!(body["users"].as_array().unwrap().len(), 1);
    let (status, _) = app
        .get_json("/accounts/api/users/?is_staff=maybe", Some(READER))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn administration_has_bridge_paths(backend: Backend) {
    let (app, _dir) = app_with_services(backend).await;
    let (_, plain) = app.signed_in_user("plain@example.com").await;
    let refused = app
        .http
        .post(format!("{}/accounts/api/users/", app.http_base))
        .bearer_auth(&plain.access)
        .json(&json!({"email": "not-made@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (status, _) = app
        .get_json("/accounts/api/users/", Some(&plain.access))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app.user("not-made@example.com").await.is_none());
    let created = app
        .http
        .post(format!("{}/accounts/api/users/", app.http_base))
        .bearer_auth(WRITER)
        .json(&json!({"email": "bridge-admin@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let created: serde_json::Value = created.json().await.unwrap();
    let id = created["user"]["id"].as_str().unwrap().to_owned();

    let patched = app
        .http
        .patch(format!("{}/accounts/api/users/{id}/", app.http_base))
        .bearer_auth(WRITER)
        .json(&json!({"last_name": "Lovelace", "is_staff": true, "update_mask": "lastName"}))
        .send()
        .await
        .unwrap();
    let status = patched.status();
    let patched: serde_json::Value = patched.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["user"]["last_name"], "Lovelace");
    assert_eq!(patched["user"]["is_staff"], false);
    let unmasked = app
        .http
        .patch(format!("{}/accounts/api/users/{id}", app.http_base))
        .bearer_auth(WRITER)
        .json(&json!({"last_name": "Byron"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unmasked.status(), StatusCode::BAD_REQUEST);
    let last = app
        .http
        .patch(format!("{}/accounts/api/users/1/", app.http_base))
        .bearer_auth(WRITER)
        .json(&json!({"is_superuser": false, "update_mask": "isSuperuser"}))
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), StatusCode::BAD_REQUEST);
    let last: serde_json::Value = last.json().await.unwrap();
    assert_eq!(last["details"][0]["reason"], "LAST_SUPERUSER");

    let stale = app
        .http
        .delete(format!(
            "{}/accounts/api/users/{id}?etag=stale",
            app.http_base
        ))
        .bearer_auth(WRITER)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let deleted = app
        .http
        .delete(format!("{}/accounts/api/users/{id}/", app.http_base))
        .bearer_auth(WRITER)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let again = app
        .http
        .delete(format!("{}/accounts/api/users/{id}/", app.http_base))
        .bearer_auth(WRITER)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

crate::on_both_backends!(
    support_resets_the_factors_of_a_user_who_lost_them,
    staff_and_trusted_services_create_verified_accounts,
    a_created_account_can_be_sent_a_link_to_choose_its_password,
    an_update_writes_only_what_its_mask_names,
    disabling_or_demoting_ends_the_sessions_at_once,
    staff_cannot_touch_superusers_and_one_superuser_always_remains,
    two_superusers_removed_at_once_leave_one,
    deleting_a_user_ends_their_sessions_once_however_many_ask,
    support_finds_accounts_with_filters_and_stable_pages,
    administration_has_bridge_paths,
);
