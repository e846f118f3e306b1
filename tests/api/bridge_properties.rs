//! Hostile bytes at the JSON bridge: any path, method and body a client can send gets a
//! clear answer (never a 5xx, and every error a grpc-gateway body), property by property.
//! The budget is proptest's default (256 cases each) unless `PROPTEST_CASES` says otherwise.

use proptest::{prelude::*, test_runner::TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Backend, TestApp};

/// The bridge's POST routes that take a JSON body, without a bearer token.
const POST_ROUTES: &[&str] = &[
    "/accounts/api/register/",
    "/accounts/api/verify-otp/",
    "/accounts/api/resend-otp/",
    "/accounts/api/resend-activation-email/",
    "/accounts/api/token/",
    "/accounts/api/token/refresh/",
    "/accounts/api/logout/",
    "/accounts/password-reset/",
    "/accounts/api/google/",
    "/accounts/api/token/introspect/",
    "/accounts/api/email/change/",
    "/accounts/api/password/change/",
    "/accounts/api/users/",
];

/// The field names the bridge reads, so bodies reach past "unknown field".
const FIELDS: &[&str] = &[
    "email",
    "password",
    "otp",
    "refresh",
    "token",
    "access_token",
    "id_token",
    "new_email",
    "new_password",
    "current_password",
    "first_name",
    "last_name",
    "update_mask",
    "etag",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9._%+-]{1,20}@[a-z0-9.-]{1,20}",
        "[0-9]{6}",
        Just(String::new()),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    proptest::sample::select(FIELDS).prop_map(str::to_owned),
                    text()
                ],
                inner,
                0..5,
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A path a client might try: a known prefix and any segments, percent-encoded as sent.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        text(),
        Just("..".to_owned()),
        Just("%2e%2e".to_owned()),
        "[A-Za-z0-9_-]{1,12}",
    ];
    (
        proptest::sample::select(
            &["/accounts/api/", "/accounts/", "/", "/accounts/api/users/"][..],
        ),
        proptest::collection::vec(segment, 0..4),
        any::<bool>(),
    )
        .prop_map(|(prefix, segments, slash)| {
            let encoded: Vec<String> = segments
                .iter()
                .map(|s| {
                    s.bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b"-._~%".contains(&b) {
                                char::from(b).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect()
                })
                .collect();
            format!(
                "{prefix}{}{}",
                encoded.join("/"),
                if slash { "/" } else { "" }
            )
        })
}

/// A clear answer: not a server error, and an error body that says what went wrong.
async fn assert_clear(response: reqwest::Response, what: &str) -> Result<(), TestCaseError> {
    let status = response.status();
    prop_assert!(status.as_u16() < 500, "{what} answered {status}");
    let body = response.bytes().await.unwrap();
    if status.is_client_error() && status != StatusCode::METHOD_NOT_ALLOWED && !body.is_empty() {
        let error: Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!("{what}: a {status} body that is not JSON: {e}"))
        })?;
        prop_assert!(error["code"].is_number(), "{what}: {error}");
        prop_assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {error}"
        );
    }
    Ok(())
}

#[test]
fn hostile_requests_to_the_bridge_get_clear_answers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let no_limits = [
        ("RATE_LIMIT_LOGIN", "0"),
        ("RATE_LIMIT_REGISTER", "0"),
        ("RATE_LIMIT_VERIFY", "0"),
        ("RATE_LIMIT_EMAIL", "0"),
        ("RATE_LIMIT_REFRESH", "0"),
        ("OTP_RESEND_COOLDOWN", "0"),
    ];
    let app = runtime.block_on(TestApp::spawn_with(Backend::Sqlite, &no_limits));

    let mut runner = TestRunner::default();
    runner
        .run(
            &(proptest::sample::select(POST_ROUTES), json()),
            |(route, body)| {
                runtime.block_on(async {
                    let response = app
                        .http
                        .post(format!("{}{route}", app.http_base))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_clear(response, &format!("POST {route} {body}")).await
                })
            },
        )
        .unwrap();

    runner
        .run(
            &(proptest::sample::select(POST_ROUTES), any::<Vec<u8>>()),
            |(route, bytes)| {
                runtime.block_on(async {
                    let response = app
                        .http
                        .post(format!("{}{route}", app.http_base))
                        .header("content-type", "application/json")
                        .body(bytes.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_clear(response, &format!("POST {route} {bytes:?}")).await
                })
            },
        )
        .unwrap();

    let methods = vec![
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
        Method::PUT,
    ];
    runner
        .run(
            &(proptest::sample::select(methods), path(), json()),
            |(method, path, body)| {
                runtime.block_on(async {
                    let response = app
                        .http
                        .request(method.clone(), format!("{}{path}", app.http_base))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_clear(response, &format!("{method} {path}")).await
                })
            },
        )
        .unwrap();
    runtime.block_on(app.stop());
}
