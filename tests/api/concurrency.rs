//! Rules under bursts: twenty or more requests at once, each rule counted before it is
//! checked, and a password change winning over a sign-in racing it.

use identity::pb;
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_refused, reason, retry_delay};

/// Runs every future at once and collects their outcomes in order.
pub(crate) async fn all_at_once<T: Send + 'static>(
    calls: impl IntoIterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    outcomes
}

async fn a_burst_of_guesses_is_counted_before_any_is_checked(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_LOGIN", "0")]).await;
    app.verified_user("burst@example.com").await;
    let login = |password: &str| {
        let mut client = app.client.clone();
        let request = pb::LoginRequest {
            email: "burst@example.com".into(),
            password: password.into(),
        };
        async move { client.login(request).await }
    };

    let outcomes = all_at_once((0..40).map(|_| login("a-wrong-passphrase"))).await;

    let mut checked = 0;
    for outcome in &outcomes {
        let status = outcome.as_ref().unwrap_err();
        if reason(status) == "INVALID_CREDENTIALS" {
            checked += 1;
        } else {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert_eq!(reason(status), "LOGIN_THROTTLED");
            assert!(!retry_delay(status).is_zero());
        }
    }
    // Five free failures and the one that starts the back-off, at most; a burst that
    // contends harder is refused more, never checked more.
    assert!(checked <= 6, "{checked} of 40 guesses were checked");
    // One at a time, the rest of the allowance (if any) is checked, then the back-off holds,
    // the right password included.
    while checked < 6 {
        assert_refused(
            login("a-wrong-passphrase").await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
        checked += 1;
    }
    assert_refused(
        login(PASSWORD).await,
        Code::ResourceExhausted,
        "LOGIN_THROTTLED",
    );
}

async fn devices_signing_in_at_once_never_leave_the_account_locked(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_LOGIN", "0")]).await;
    app.verified_user("devices@example.com").await;

    let outcomes = all_at_once((0..20).map(|_| {
        let mut client = app.client.clone();
        let request = pb::LoginRequest {
            email: "devices@example.com".into(),
            password: PASSWORD.into(),
        };
        async move { client.login(request).await }
    }))
    .await;

    // Attempts are reserved before any is checked, so a burst past the allowance waits like
    // any other; those checked succeed.
    let signed_in = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(signed_in >= 1, "{outcomes:?}");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(reason(refused), "LOGIN_THROTTLED", "{refused:?}");
    }
    // Each success gave its attempt back: the account is not backing off afterwards.
    assert!(app.login("devices@example.com", PASSWORD).await.is_ok());
    assert_refused(
        app.login("devices@example.com", "a-wrong-passphrase").await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
}

async fn a_password_reset_wins_over_logins_racing_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_LOGIN", "0")]).await;
    app.verified_user("racer@example.com").await;
    app.client
        .clone()
        .password_reset(pb::PasswordResetRequest {
            email: "racer@example.com".into(),
        })
        .await
        .unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("racer@example.com", "Reset", 1)
        .await
        .link_parts("/accounts/password-reset-confirm/");
    let mut client = app.client.clone();
    let reset = async move {
        let request = pb::PasswordResetConfirmRequest {
            uidb64,
            token,
            new_password: "the-owners-new-passphrase".into(),
        };
        client.password_reset_confirm(request).await.map(drop)
    };

    // The reset is queued for hashing first; the logins read the account while it hashes.
    let reset = tokio::spawn(reset);
    let logins = all_at_once((0..4).map(|_| {
        let mut client = app.client.clone();
        let request = pb::LoginRequest {
            email: "racer@example.com".into(),
            password: PASSWORD.into(),
        };
        async move { client.login(request).await }
    }))
    .await;
    reset.await.unwrap().unwrap();

    for login in logins {
        let Ok(tokens) = login else { continue };
        assert!(
            app.refresh(&tokens.into_inner().refresh).await.is_err(),
            "a session signed in with the old password outlived the reset"
        );
    }
    assert!(app.login("racer@example.com", PASSWORD).await.is_err());
    assert!(
        app.login("racer@example.com", "the-owners-new-passphrase")
            .await
            .is_ok()
    );
}

async fn of_twenty_clicks_on_one_activation_link_one_verifies(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_VERIFY", "0")]).await;
    app.register("clicks@example.com", PASSWORD).await.unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("clicks@example.com", "Activate", 1)
        .await
        .link_parts("/activate/");

    let outcomes = all_at_once((0..20).map(|_| {
        let mut client = app.client.clone();
        let request = pb::ActivateRequest {
            uidb64: uidb64.clone(),
            token: token.clone(),
        };
        async move { client.activate(request).await }
    }))
    .await;

    let verified = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(verified, 1, "{outcomes:?}");
    for refused in outcomes.into_iter().filter_map(Result::err) {
        assert_eq!(reason(&refused), "LINK_INVALID", "{refused:?}");
    }
    assert!(app.user("clicks@example.com").await.unwrap().is_verified);
}

async fn of_twenty_uses_of_one_reset_link_one_sets_the_password(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_VERIFY", "0")]).await;
    app.verified_user("twenty@example.com").await;
    app.client
        .clone()
        .password_reset(pb::PasswordResetRequest {
            email: "twenty@example.com".into(),
        })
        .await
        .unwrap();
    let (uidb64, token) = app
        .smtp
        .nth_with_subject("twenty@example.com", "Reset", 1)
        .await
        .link_parts("/accounts/password-reset-confirm/");

    let outcomes = all_at_once((0..20).map(|n| {
        let mut client = app.client.clone();
        let request = pb::PasswordResetConfirmRequest {
            uidb64: uidb64.clone(),
            token: token.clone(),
            new_password: format!("racing-passphrase-number-{n}"),
        };
        async move { client.password_reset_confirm(request).await }
    }))
    .await;

    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(n, outcome)| outcome.is_ok().then_some(n))
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(reason(refused), "LINK_INVALID", "{refused:?}");
    }
    let winner = format!("racing-passphrase-number-{}", winners[0]);
    assert!(app.login("twenty@example.com", &winner).await.is_ok());
    let loser = format!("racing-passphrase-number-{}", (winners[0] + 1) % 20);
    assert!(app.login("twenty@example.com", &loser).await.is_err());
}

async fn twenty_refreshes_with_one_token_at_once_end_in_one_new_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("refresher@example.com").await;
    let client = app.client.clone();

    let outcomes = all_at_once((0..20).map(|_| {
        let (mut client, refresh) = (client.clone(), tokens.refresh.clone());
        async move {
            client
                .refresh(pb::RefreshRequest { refresh })
                .await
                .map(|reply| reply.into_inner())
        }
    }))
    .await;

    let pairs: Vec<pb::RefreshResponse> = outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every retry within the grace is answered"))
        .collect();
    let mut successors: Vec<&str> = pairs.iter().map(|pair| pair.refresh.as_str()).collect();
    successors.dedup();
    assert_eq!(successors.len(), 1, "one new token: {successors:?}");
    assert!(app.get_user(&pairs[19].access, user.id).await.is_ok());
    assert!(
        app.refresh(successors[0]).await.is_ok(),
        "the new token works"
    );
}

crate::on_both_backends!(
    twenty_refreshes_with_one_token_at_once_end_in_one_new_token,
    devices_signing_in_at_once_never_leave_the_account_locked,
    a_burst_of_guesses_is_counted_before_any_is_checked,
    a_password_reset_wins_over_logins_racing_it,
    of_twenty_clicks_on_one_activation_link_one_verifies,
    of_twenty_uses_of_one_reset_link_one_sets_the_password,
);
