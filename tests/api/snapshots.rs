//! What people and clients read, pinned as `insta` snapshots (in `snapshots/`): the emails a
//! user's life sends, and the bridge's error bodies. What changes from run to run (codes,
//! link tokens, instants, waits) is redacted first; a change to a template or an error's
//! wording shows up as a snapshot diff to review.

use std::time::Duration;

use identity::pb;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    fake_smtp::Mail,
    helpers::{Backend, TestApp},
};

/// A mail's subject and text, with its code, link tokens and instants redacted.
fn redacted(mail: &Mail) -> String {
    let text: Vec<String> = mail
        .text
        .split('\n')
        .map(|line| {
            let words: Vec<String> = line.split(' ').map(redact_word).collect();
            redact_instants(&words.join(" "))
        })
        .collect();
    format!("Subject: {}\n\n{}", mail.subject, text.join("\n"))
}

/// A six-digit code, or the `uidb64` and token of an emailed link, as a placeholder.
fn redact_word(word: &str) -> String {
    let digits = word.trim_end_matches(['.', ',']);
    if digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit()) {
        return word.replacen(digits, "[code]", 1);
    }
    for path in [
        "/accounts/api/activate/",
        "/accounts/password-reset-confirm/",
    ] {
        if let Some((base, _)) = word.split_once(path) {
            return format!("{base}{path}[uidb64]/[token]/");
        }
    }
    word.to_owned()
}

/// Every `2026-12-06 at 19:58 UTC` in `line`, as `[when]`.
fn redact_instants(line: &str) -> String {
    const SHAPE: &str = "dddd-dd-dd at dd:dd UTC";
    let chars: Vec<char> = line.chars().collect();
    let shape: Vec<char> = SHAPE.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let fits = chars.len() - i >= shape.len()
            && shape.iter().zip(&chars[i..]).all(|(want, got)| {
                if *want == 'd' {
                    got.is_ascii_digit()
                } else {
                    want == got
                }
            });
        if fits {
            out.push_str("[when]");
            i += shape.len();
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The first six-digit code in a mail.
fn code_in(mail: &Mail) -> String {
    mail.text
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .expect("no code in the mail")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emails_of_a_users_life_read_as_pinned() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ada = "ada@example.com";

    app.verified_user(ada).await;
    let verification = app.smtp.nth_with_subject(ada, "verification code", 1).await;
    insta::assert_snapshot!("verification", redacted(&verification));

    // Signing up again with a proven address tells its owner, once the cooldown allows.
    app.clock.advance(Duration::from_secs(61));
    app.register(ada, "another long passphrase").await.unwrap();
    let attempt = app.smtp.nth_with_subject(ada, "tried to sign up", 1).await;
    insta::assert_snapshot!("signup_attempt", redacted(&attempt));

    app.client
        .clone()
        .password_reset(pb::PasswordResetRequest { email: ada.into() })
        .await
        .unwrap();
    let reset = app
        .smtp
        .nth_with_subject(ada, "Reset your password", 1)
        .await;
    insta::assert_snapshot!("password_reset", redacted(&reset));
    let (uidb64, token) = reset.link_parts("/accounts/password-reset-confirm/");
    let new_password = "a brand new passphrase";
    app.client
        .clone()
        .password_reset_confirm(pb::PasswordResetConfirmRequest {
            uidb64,
            token,
            new_password: new_password.into(),
        })
        .await
        .unwrap();
    let changed = app
        .smtp
        .nth_with_subject(ada, "password was changed", 1)
        .await;
    insta::assert_snapshot!("password_changed", redacted(&changed));

    let tokens = app.login(ada, new_password).await.unwrap();
    let moved = "ada@new.example";
    let change = pb::ChangeEmailRequest {
        new_email: moved.into(),
        password: new_password.into(),
        ..Default::default()
    };
    app.client
        .clone()
        .change_email(TestApp::authorized(change, &tokens.access))
        .await
        .unwrap();
    let confirm = app
        .smtp
        .nth_with_subject(moved, "Confirm your new", 1)
        .await;
    insta::assert_snapshot!("email_change", redacted(&confirm));
    let otp = pb::ConfirmEmailChangeRequest {
        otp: code_in(&confirm),
    };
    app.client
        .clone()
        .confirm_email_change(TestApp::authorized(otp, &tokens.access))
        .await
        .unwrap();
    let told = app
        .smtp
        .nth_with_subject(ada, "email address was changed", 1)
        .await;
    insta::assert_snapshot!("email_changed", redacted(&told));

    // A spent refresh token presented past the grace is a stolen copy: the session ends.
    let rotated = app.refresh(&tokens.refresh).await.unwrap();
    assert_ne!(rotated.refresh, tokens.refresh);
    app.clock.advance(Duration::from_secs(11));
    app.refresh(&tokens.refresh).await.unwrap_err();
    let revoked = app.smtp.nth_with_subject(moved, "signed out one", 1).await;
    insta::assert_snapshot!("session_revoked", redacted(&revoked));
}

/// A bridge error body, with the waits it names (which depend on the second it ran) redacted.
fn redacted_error(mut body: Value) -> String {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(fields) => {
                for (name, field) in fields.iter_mut() {
                    if name == "retryDelay" {
                        *field = json!("[delay]");
                    } else {
                        walk(field);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut body);
    serde_json::to_string_pretty(&body).unwrap()
}

/// Sends one bridge request; returns its status and JSON body.
async fn bridge(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = app.http.request(method, format!("{}{path}", app.http_base));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        request = request
            .header("content-type", content_type)
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// One request the bridge refuses, and the status it answers with.
struct Refused {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    /// Sent with the signed-in user's access token.
    signed_in: bool,
    /// Content type and body.
    body: Option<(&'static str, &'static str)>,
    status: StatusCode,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridges_error_bodies_read_as_pinned() {
    use reqwest::Method;
    let app = TestApp::spawn_with(Backend::Sqlite, &[("RATE_LIMIT_LOGIN", "1")]).await;
    let (_, tokens) = app.signed_in_user("grace@example.com").await;
    let json = "application/json";
    let register = "/accounts/api/register/";
    let refused = |name, method, path, body, status| Refused {
        name,
        method,
        path,
        signed_in: false,
        body,
        status,
    };
    let cases = [
        refused(
            "not_json",
            Method::POST,
            register,
            Some((json, "{\"email\":")),
            StatusCode::BAD_REQUEST,
        ),
        refused(
            "not_an_object",
            Method::POST,
            register,
            Some((json, "[1, 2]")),
            StatusCode::BAD_REQUEST,
        ),
        refused(
            "unsupported_media_type",
            Method::POST,
            register,
            Some(("text/plain", "email=a")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        refused(
            "no_such_path",
            Method::GET,
            "/accounts/api/nothing/",
            None,
            StatusCode::NOT_FOUND,
        ),
        refused(
            "method_not_allowed",
            Method::DELETE,
            register,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        refused(
            "invalid_field",
            Method::POST,
            register,
            Some((json, r#"{"email": "x@example.com", "password": "short"}"#)),
            StatusCode::BAD_REQUEST,
        ),
        refused(
            "wrong_code",
            Method::POST,
            "/accounts/api/verify-otp/",
            Some((json, r#"{"email": "nobody@example.com", "otp": "000000"}"#)),
            StatusCode::BAD_REQUEST,
        ),
        refused(
            "no_token",
            Method::POST,
            "/accounts/api/logout_all/",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        Refused {
            signed_in: true,
            ..refused(
                "not_staff",
                Method::GET,
                "/accounts/api/users/",
                None,
                StatusCode::FORBIDDEN,
            )
        },
        // The login budget (one per five minutes here) was spent by the sign-in above.
        refused(
            "rate_limited",
            Method::POST,
            "/accounts/api/token/",
            Some((
                json,
                r#"{"email": "grace@example.com", "password": "wrong"}"#,
            )),
            StatusCode::TOO_MANY_REQUESTS,
        ),
    ];
    for case in cases {
        let bearer = case.signed_in.then_some(tokens.access.as_str());
        let (status, body) = bridge(&app, case.method, case.path, bearer, case.body).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        insta::assert_snapshot!(format!("bridge_{}", case.name), redacted_error(body));
    }
}
