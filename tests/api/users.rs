//! Reading users: yourself, or anyone as staff.

use identity::pb;
use tonic::Code;

use crate::helpers::{Backend, STAFF_EMAIL, STAFF_PASSWORD, TestApp, assert_refused};

async fn list(
    app: &TestApp,
    access: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListUsersResponse, tonic::Status> {
    let request = TestApp::authorized(
        pb::ListUsersRequest {
            page_size,
            page_token: page_token.into(),
            ..Default::default()
        },
        access,
    );
    Ok(app.client.clone().list_users(request).await?.into_inner())
}

async fn staff_pages_through_every_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 0..4 {
        app.register(&format!("user{n}@example.com"), "a-long-enough-passphrase")
            .await
            .unwrap();
    }
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();

    let first = list(&app, &staff.access, 2, "").await.unwrap();
    let second = list(&app, &staff.access, 2, &first.next_page_token)
        .await
        .unwrap();
    let third = list(&app, &staff.access, 2, &second.next_page_token)
        .await
        .unwrap();

    let emails: Vec<String> = [first.users, second.users, third.users]
        .concat()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(
        emails,
        [
            STAFF_EMAIL,
            "user0@example.com",
            "user1@example.com",
            "user2@example.com",
            "user3@example.com"
        ]
    );
    assert!(third.next_page_token.is_empty());
    let bad_token = list(&app, &staff.access, 2, "not-a-token").await;
    assert_refused(bad_token, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_refused(
        list(&app, &staff.access, -1, "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

async fn a_regular_user_may_not_list_users(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("plain@example.com").await;

    assert_refused(
        list(&app, &tokens.access, 10, "").await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let anonymous = app
        .client
        .clone()
        .list_users(pb::ListUsersRequest::default())
        .await;
    assert_refused(anonymous, Code::Unauthenticated, "UNAUTHENTICATED");
}

async fn a_user_reads_themselves_but_not_others_while_staff_reads_anyone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (me, my_tokens) = app.signed_in_user("me@example.com").await;
    let (other, _) = app.signed_in_user("them@example.com").await;
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();

    assert_eq!(
        app.get_user(&my_tokens.access, me.id).await.unwrap().email,
        "me@example.com"
    );
    assert_refused(
        app.get_user(&my_tokens.access, other.id).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(
        app.get_user(&staff.access, other.id).await.unwrap().email,
        "them@example.com"
    );
    assert_refused(
        app.get_user(&staff.access, 999_999).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_refused(
        app.get_user(&staff.access, 0).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

crate::on_both_backends!(
    staff_pages_through_every_user,
    a_regular_user_may_not_list_users,
    a_user_reads_themselves_but_not_others_while_staff_reads_anyone,
);
