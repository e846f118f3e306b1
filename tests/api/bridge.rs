//! The JSON bridge as browsers and mobile apps use it: the seed's paths and field names,
//! grpc-gateway errors, and the pages behind emailed links.

use identity::http::routes::{annotated_routes, descriptor_pool};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, STAFF_EMAIL, STAFF_PASSWORD, TestApp};

/// The `ErrorInfo.reason` of a gateway error body.
fn reason(body: &Value) -> &str {
    body["details"]
        .as_array()
        .and_then(|details| {
            details
                .iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        })
        .and_then(|info| info["reason"].as_str())
        .unwrap_or("")
}

async fn the_whole_flow_works_over_http_with_the_seed_field_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let (status, body) = app
        .post("/accounts/api/register/", json!({"email": "web@example.com", "password": PASSWORD, "first_name": "Grace", "last_name": "Hopper"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["user"].is_null(),
        "the answer names no account: {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Check your email"))
    );

    let otp = app
        .smtp
        .nth_with_subject("web@example.com", "verification code", 1)
        .await
        .otp();
    let (status, body) = app
        .post(
            "/accounts/api/verify-otp/",
            json!({"email": "web@example.com", "otp": otp}),
        )
        .await;
    assert_eq!(
        (status, body["user"]["is_verified"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(body["user"]["first_name"], "Grace");

    let (status, tokens) = app
        .post(
            "/accounts/api/token/",
            json!({"email": "web@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (access, refresh) = (
        tokens["access"].as_str().unwrap(),
        tokens["refresh"].as_str().unwrap(),
    );

    let id = body["user"]["id"].as_str().unwrap().to_owned();
    let (status, me) = app
        .get_json(&format!("/accounts/api/users/{id}/"), Some(access))
        .await;
    assert_eq!(
        (status, me["user"]["email"].as_str()),
        (StatusCode::OK, Some("web@example.com"))
    );

    let (status, rotated) = app
        .post("/accounts/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let newest = rotated["refresh"].as_str().unwrap();

    let (status, _) = app
        .post("/accounts/api/logout/", json!({"refresh": newest}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post("/accounts/api/token/refresh", json!({"refresh": newest}))
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "SESSION_REVOKED")
    );
}

async fn every_annotated_route_answers_with_and_without_the_slash_and_nothing_else_does(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let routes = annotated_routes(&descriptor_pool().unwrap()).unwrap();

    for route in &routes {
        let concrete = route
            .template
            .replace("{uidb64}", "MQ")
            .replace("{token}", "x-y")
            .replace("{id}", "1");
        for path in [concrete.clone(), format!("{concrete}/")] {
            let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
            let response = app
                .http
                .request(method.clone(), format!("{}{path}", app.http_base))
                .header(header::CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(
                status != StatusCode::NOT_FOUND || route.rpc == "GetUser",
                "{method} {path}: {status}"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!status.is_server_error(), "{method} {path}: {status}");
            // A method no RPC on this path answers to.
            let served: Vec<&str> = routes
                .iter()
                .filter(|r| r.template == route.template)
                .map(|r| r.method.as_str())
                .collect();
            let other = [Method::GET, Method::DELETE, Method::PUT]
                .into_iter()
                .find(|m| !served.contains(&m.as_str()))
                .unwrap();
            let wrong = app
                .http
                .request(other.clone(), format!("{}{path}", app.http_base))
                .send()
                .await
                .unwrap();
            if !(other == Method::GET && route.rpc == "PasswordResetConfirm") {
                assert_eq!(
                    wrong.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path}"
                );
                assert!(wrong.headers().contains_key(header::ALLOW));
            }
        }
    }
    for path in [
        "/accounts/api/google-login/",
        "/api/register/",
        "/accounts/api/users/1/extra",
        "/",
    ] {
        let response = app
            .http
            .post(format!("{}{path}", app.http_base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    let (_, openapi) = app.get_json("/openapi.json", None).await;
    let mut documented: Vec<String> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut annotated: Vec<String> = routes.iter().map(|r| r.slashed()).collect();
    documented.sort();
    annotated.sort();
    annotated.dedup();
    assert_eq!(
        documented, annotated,
        "OpenAPI and the annotations list the same paths"
    );
    // The emailed link answers a GET that does not ask for JSON with its page.
    let activation = &openapi["paths"]["/accounts/api/activate/{uidb64}/{token}/"]["get"];
    let answers = &activation["responses"]["200"]["content"];
    assert!(
        answers.get("text/html").is_some() && answers.get("application/json").is_some(),
        "{activation}"
    );
}

async fn refusals_carry_the_grpc_gateway_status_and_body(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REGISTER_REVEALS_EXISTING", "true")]).await;
    let (_, plain) = app.signed_in_user("plain@example.com").await;
    app.register("pending@example.com", PASSWORD).await.unwrap();
    let users_before = app.all_users().await.len();

    let (status, body) = app
        .post(
            "/accounts/api/register/",
            json!({"email": "PLAIN@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, reason(&body), body["code"].as_i64()),
        (StatusCode::CONFLICT, "EMAIL_TAKEN", Some(6))
    );

    let (status, body) = app
        .post(
            "/accounts/api/register/",
            json!({"email": "new@example.com", "password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let violations = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["fieldViolations"].is_array())
        .unwrap();
    assert_eq!(violations["fieldViolations"][0]["field"], "password");

    let (status, body) = app
        .post(
            "/accounts/api/token/",
            json!({"email": "plain@example.com", "password": "wrong-passphrase"}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS")
    );
    let (status, body) = app
        .post(
            "/accounts/api/token/",
            json!({"email": "pending@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "EMAIL_NOT_VERIFIED")
    );

    let response = app
        .http
        .post(format!("{}/accounts/api/resend-otp/", app.http_base))
        .json(&json!({"email": "pending@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (reason(&body), body["code"].as_i64()),
        ("RESEND_COOLDOWN", Some(8))
    );

    let (status, body) = app
        .get_json("/accounts/api/users/", Some(plain.access.as_str()))
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED")
    );
    let (status, body) = app.get_json("/accounts/api/users/", None).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    let staff = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let (status, body) = app
        .get_json("/accounts/api/users/999999/", Some(staff.access.as_str()))
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let (status, body) = app
        .get_json(
            "/accounts/api/users/?page_size=2",
            Some(staff.access.as_str()),
        )
        .await;
    assert_eq!(
        (status, body["users"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );

    assert_eq!(
        app.all_users().await.len(),
        users_before,
        "no refusal created a user"
    );
}

async fn malformed_requests_get_a_clear_4xx_never_a_5xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = format!("{}/accounts/api/register/", app.http_base);
    let send = |body: Vec<u8>, content_type: &'static str| {
        let request = app
            .http
            .post(url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let cases: Vec<(Vec<u8>, &str, StatusCode)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"[1, 2]".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"email": 5, "password": true}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"email": "a@example.com", "password": "long-enough-pass", "admin": true}"#
                .to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"email": "a@example.com"}"#.to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            vec![b' '; 70 * 1024],
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, content_type, expected) in cases {
        let (status, json) = send(body, content_type).await;
        assert_eq!(status, expected, "{json}");
        assert!(
            json["code"].is_i64() && json["message"].is_string() && json["details"].is_array(),
            "{json}"
        );
    }
    assert!(
        app.all_users()
            .await
            .iter()
            .all(|u| u.email != "a@example.com")
    );
}

async fn the_activation_link_answers_a_browser_with_a_button_that_confirms(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("browser@example.com", PASSWORD).await.unwrap();
    let link = app
        .smtp
        .nth_with_subject("browser@example.com", "Activate", 1)
        .await
        .link("/activate/");
    let local = app.local(&link);
    let html = "text/html,application/xhtml+xml";

    // What mail scanners do: open the link, as a browser or with `*/*` or no Accept at
    // all, or ask only for its headers.
    let opened = app
        .http
        .get(&local)
        .header(header::ACCEPT, html)
        .send()
        .await
        .unwrap();
    for accept in ["*/*", "application/*", ""] {
        let mut scan = app.http.get(&local);
        if !accept.is_empty() {
            scan = scan.header(header::ACCEPT, accept);
        }
        let scanned = scan.send().await.unwrap();
        assert_eq!(scanned.status(), StatusCode::OK, "{accept}");
        assert!(
            scanned.text().await.unwrap().contains("method=\"post\""),
            "{accept}"
        );
    }
    let headed = app.http.head(&local).send().await.unwrap();

    assert_eq!(opened.status(), StatusCode::OK);
    assert!(
        opened.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = opened.text().await.unwrap();
    assert!(page.contains("Activate your account") && page.contains("method=\"post\""));
    assert_eq!(headed.status(), StatusCode::OK);
    assert!(
        !app.user("browser@example.com").await.unwrap().is_verified,
        "opening the link changes nothing"
    );

    // What a person does: press the button.
    let confirm = || {
        app.http
            .post(&local)
            .header(header::ACCEPT, html)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .send()
    };
    let first = confirm().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.text().await.unwrap().contains("Account activated"));
    assert!(app.user("browser@example.com").await.unwrap().is_verified);

    let again = confirm().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("invalid or has already been used")
    );
}

async fn configured_front_ends_receive_redirects(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("ACTIVATION_REDIRECT_URL", "https://app.example/activated"),
            ("PASSWORD_RESET_URL", "https://app.example/reset"),
        ],
    )
    .await;
    app.register("spa@example.com", PASSWORD).await.unwrap();
    let link = app
        .smtp
        .nth_with_subject("spa@example.com", "Activate", 1)
        .await
        .link("/activate/");

    let response = app
        .http
        .post(app.local(&link))
        .header(header::ACCEPT, "text/html")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(
        response.headers()[header::LOCATION],
        "https://app.example/activated?status=success"
    );

    let reset = app
        .http
        .get(format!(
            "{}/accounts/password-reset-confirm/MQ/abc-def/",
            app.http_base
        ))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_redirection());
    assert_eq!(
        reset.headers()[header::LOCATION],
        "https://app.example/reset?uidb64=MQ&token=abc-def"
    );
}

async fn the_reset_link_opens_a_form_that_changes_the_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("formal@example.com").await;
    app.post(
        "/accounts/password-reset/",
        json!({"email": "formal@example.com"}),
    )
    .await;
    let link = app
        .smtp
        .nth_with_subject("formal@example.com", "Reset", 1)
        .await
        .link("/password-reset-confirm/");
    let local = app.local(&link);

    let form = app.http.get(&local).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let html = form.text().await.unwrap();
    assert!(html.contains("<label for=\"new_password\">") && html.contains("method=\"post\""));

    let weak = app
        .http
        .post(&local)
        .form(&[("new_password", "short")])
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    assert!(weak.text().await.unwrap().contains("at least 8 characters"));

    let done = app
        .http
        .post(&local)
        .form(&[("new_password", "a-fresh-form-passphrase")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Password changed"));
    assert!(
        app.login("formal@example.com", "a-fresh-form-passphrase")
            .await
            .is_ok()
    );
}

async fn health_and_the_published_key_let_others_verify_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (user, tokens) = app.signed_in_user("verify@example.com").await;

    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.http_base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.http
            .get(format!("{}/readyz", app.http_base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (status, jwks) = app.get_json("/.well-known/jwks.json", None).await;
    assert_eq!(status, StatusCode::OK);

    let key = &jwks["keys"][0];
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["identity"]);
    validation.set_issuer(&["identity"]);
    let claims = jsonwebtoken::decode::<Value>(&tokens.access, &decoding, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], user.id.to_string());
    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
}

crate::on_both_backends!(
    the_whole_flow_works_over_http_with_the_seed_field_names,
    every_annotated_route_answers_with_and_without_the_slash_and_nothing_else_does,
    refusals_carry_the_grpc_gateway_status_and_body,
    malformed_requests_get_a_clear_4xx_never_a_5xx,
    the_activation_link_answers_a_browser_with_a_button_that_confirms,
    configured_front_ends_receive_redirects,
    the_reset_link_opens_a_form_that_changes_the_password,
    health_and_the_published_key_let_others_verify_tokens,
);
