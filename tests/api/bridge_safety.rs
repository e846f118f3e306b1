//! The bridge as browsers, caches and scripts see it: what every answer carries, what a
//! body may be, and waits that can be taken at their word.

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp};

async fn every_json_answer_is_never_cached_nor_sniffed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("cache@example.com").await;
    let base = &app.http_base;
    let token_body = json!({"email": "cache@example.com", "password": PASSWORD});

    let answers = [
        app.http
            .post(format!("{base}/accounts/api/token/"))
            .json(&token_body),
        app.http
            .post(format!("{base}/accounts/api/token/"))
            .json(&json!({"email": "cache@example.com", "password": "wrong-passphrase"})),
        app.http.get(format!("{base}/accounts/api/users/")),
        app.http.get(format!("{base}/no/such/path/")),
        app.http.delete(format!("{base}/accounts/api/token/")),
        app.http.get(format!("{base}/openapi.json")),
    ];
    for request in answers {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{status}"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{status}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{status}");
    }
}

async fn post_bodies_are_json_and_the_query_never_joins_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("victim@example.com").await;
    app.verified_user("caller@example.com").await;
    let url = format!("{}/accounts/api/token/", app.http_base);

    let form = app
        .http
        .post(&url)
        .form(&[("email", "caller@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let smuggled = app
        .http
        .post(format!("{url}?email=victim@example.com"))
        .json(&json!({"email": "caller@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let register = app
        .http
        .post(format!(
            "{}/accounts/api/register/?first_name=Mallory",
            app.http_base
        ))
        .json(&json!({"email": "newcomer@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(smuggled.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = smuggled.json().await.unwrap();
    assert!(body.get("access").is_none(), "no tokens for anyone: {body}");
    assert_eq!(register.status(), StatusCode::BAD_REQUEST);
    assert!(
        app.user("newcomer@example.com").await.is_none(),
        "nothing changed"
    );
}

async fn a_client_that_waits_what_it_was_told_is_not_refused_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("patient@example.com", PASSWORD).await.unwrap();
    app.clock.advance(Duration::from_millis(400));
    let resend = || {
        app.http
            .post(format!("{}/accounts/api/resend-otp/", app.http_base))
            .json(&json!({"email": "patient@example.com"}))
            .send()
    };

    let refused = resend().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: serde_json::Value = refused.json().await.unwrap();
    let delay = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d["retryDelay"].as_str())
        .unwrap()
        .to_owned();

    assert_eq!(retry_after, 60, "59.6 s left, rounded up");
    assert_eq!(delay, "60s");
    app.clock.advance(Duration::from_secs(retry_after));
    assert_eq!(resend().await.unwrap().status(), StatusCode::OK);
}

crate::on_both_backends!(
    every_json_answer_is_never_cached_nor_sniffed,
    post_bodies_are_json_and_the_query_never_joins_them,
    a_client_that_waits_what_it_was_told_is_not_refused_again,
);
