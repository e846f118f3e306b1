//! Signing in without a password: `StartEmailSignIn` mails a verified address a code and a link,
//! `FinishEmailSignIn` spends either once. Driven over gRPC, the bridge and the link's page as
//! a mail scanner and a browser reach it.

use identity::pb;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tonic::Code;

use crate::{
    factors::{claims, code_at, verify, with_totp},
    fake_smtp::Mail,
    helpers::{Backend, TestApp, assert_refused, reason},
};

const SUBJECT: &str = "sign-in code";

async fn start(app: &TestApp, email: &str) -> Result<String, tonic::Status> {
    let request = pb::StartEmailSignInRequest {
        email: email.into(),
    };
    Ok(app
        .client
        .clone()
        .start_email_sign_in(request)
        .await?
        .into_inner()
        .message)
}

async fn finish(
    app: &TestApp,
    email: &str,
    code: &str,
    token: &str,
) -> Result<pb::FinishEmailSignInResponse, tonic::Status> {
    let request = pb::FinishEmailSignInRequest {
        email: email.into(),
        code: code.into(),
        token: token.into(),
    };
    Ok(app
        .client
        .clone()
        .finish_email_sign_in(request)
        .await?
        .into_inner())
}

/// Asks for a sign-in email and waits for it to be the `nth` such message.
async fn mailed(app: &TestApp, email: &str, nth: usize) -> Mail {
    start(app, email).await.unwrap();
    app.smtp.nth_with_subject(email, SUBJECT, nth).await
}

/// The link's token, from the link the message carries.
fn link_token(mail: &Mail) -> String {
    mail.link_token("/accounts/email-sign-in/")
}

async fn session_count(app: &TestApp) -> usize {
    app.query_texts("SELECT id AS value FROM sessions WHERE revoked_at IS NULL")
        .await
        .len()
}

async fn a_verified_address_signs_in_once_with_the_mailed_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    let before = session_count(&app).await;
    let mail = mailed(&app, "ada@example.com", 1).await;
    let code = mail.otp();
    assert!(
        mail.text.contains("/accounts/email-sign-in/"),
        "{}",
        mail.text
    );

    // A wrong code, a code for another address, or a malformed one signs nobody in.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_refused(
        finish(&app, "ada@example.com", wrong, "").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    assert_refused(
        finish(&app, "grace@example.com", &code, "").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    assert_refused(
        finish(&app, "ada@example.com", "12ab56", "").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_refused(
        finish(&app, "ada@example.com", &code, &link_token(&mail)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        session_count(&app).await,
        before,
        "no session from a refusal"
    );

    let session = finish(&app, "ada@example.com", &code, "").await.unwrap();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["aal"], "aal1");
    assert_eq!(signed_in["amr"], json!(["otp"]));
    assert!(session.mfa_required.is_none());
    app.refresh(&session.refresh).await.unwrap();
    assert_eq!(session_count(&app).await, before + 1);
    let audited = app
        .query_texts("SELECT detail AS value FROM audit_events")
        .await;
    assert!(
        audited
            .iter()
            .any(|detail| detail.contains("method=email_code aal=aal1")),
        "{audited:?}"
    );
    assert!(!audited.iter().any(|detail| detail.contains(&code)));

    // The code and the link are one: either signs in once.
    assert_refused(
        finish(&app, "ada@example.com", &code, "").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
    assert_refused(
        finish(&app, "", "", &link_token(&mail)).await,
        Code::InvalidArgument,
        "LINK_INVALID",
    );
    assert_eq!(session_count(&app).await, before + 1);
}

async fn every_address_gets_the_same_answer_and_only_a_verified_one_mail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    app.verified_user("off@example.com").await;
    app.execute_sql("UPDATE users SET is_active = false WHERE email = 'off@example.com'")
        .await;
    app.register("new@example.com", "a-long-enough-passphrase")
        .await
        .unwrap();
    app.settle_outbox().await;
    let mailed_before = |address: &str| app.smtp.to(address).len();
    let before: Vec<usize> = ["ada", "off", "new", "nobody"]
        .iter()
        .map(|name| mailed_before(&format!("{name}@example.com")))
        .collect();

    let mut answers = Vec::new();
    for name in ["ada", "off", "new", "nobody"] {
        answers.push(start(&app, &format!("{name}@example.com")).await.unwrap());
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    // A second request within the cooldown is refused alike for every address.
    for name in ["ada", "off", "new", "nobody"] {
        let status = assert_refused(
            start(&app, &format!("{name}@example.com")).await,
            Code::ResourceExhausted,
            "RESEND_COOLDOWN",
        );
        assert!(!status.message().contains(name));
    }
    app.smtp
        .nth_with_subject("ada@example.com", SUBJECT, 1)
        .await;
    app.settle_outbox().await;
    let after: Vec<usize> = ["ada", "off", "new", "nobody"]
        .iter()
        .map(|name| mailed_before(&format!("{name}@example.com")))
        .collect();
    assert_eq!(
        after,
        [before[0] + 1, before[1], before[2], before[3]],
        "only the verified, active account is mailed"
    );
    assert_refused(
        start(&app, "not an address").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

/// `count` `FinishEmailSignIn` calls at once with `code`; the reasons of those refused.
async fn at_once(app: &TestApp, email: &str, code: &str, count: usize) -> Vec<String> {
    let mut calls = Vec::new();
    for _ in 0..count {
        let (client, email, code) = (app.client.clone(), email.to_owned(), code.to_owned());
        calls.push(tokio::spawn(async move {
            let request = pb::FinishEmailSignInRequest {
                email,
                code,
                token: String::new(),
            };
            client.clone().finish_email_sign_in(request).await
        }));
    }
    let mut refusals = Vec::new();
    for call in calls {
        if let Err(status) = call.await.unwrap() {
            refusals.push(reason(&status));
        }
    }
    refusals
}

async fn guesses_are_counted_before_they_are_checked_and_one_sign_in_wins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    let code = mailed(&app, "ada@example.com", 1).await.otp();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refusals = at_once(&app, "ada@example.com", wrong, 20).await;
    assert_eq!(refusals.len(), 20);
    let checked = refusals.iter().filter(|r| *r == "OTP_INVALID").count();
    assert!(
        (1..=5).contains(&checked),
        "{checked} of twenty guesses were checked: {refusals:?}"
    );
    // The tries are spent: even the right code is refused now, and signs nobody in.
    let before = session_count(&app).await;
    let status = finish(&app, "ada@example.com", &code, "")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(session_count(&app).await, before);

    // Twenty right answers at once open one session.
    app.verified_user("grace@example.com").await;
    let code = mailed(&app, "grace@example.com", 1).await.otp();
    let before = session_count(&app).await;
    let refusals = at_once(&app, "grace@example.com", &code, 20).await;
    assert_eq!(refusals.len(), 19, "one code, one sign-in: {refusals:?}");
    assert_eq!(session_count(&app).await, before + 1);
}

async fn expired_codes_and_links_sign_nobody_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    let mail = mailed(&app, "ada@example.com", 1).await;
    app.clock.advance(std::time::Duration::from_secs(601));
    assert_refused(
        finish(&app, "ada@example.com", &mail.otp(), "").await,
        Code::InvalidArgument,
        "OTP_EXPIRED",
    );
    assert_refused(
        finish(&app, "", "", &link_token(&mail)).await,
        Code::InvalidArgument,
        "LINK_EXPIRED",
    );
}

async fn a_code_mailed_before_the_address_changed_signs_nobody_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    let mail = mailed(&app, "ada@example.com", 1).await;
    app.execute_sql(
        "UPDATE users SET email = 'ada@elsewhere.example' WHERE email = 'ada@example.com'",
    )
    .await;
    assert_refused(
        finish(&app, "", "", &link_token(&mail)).await,
        Code::InvalidArgument,
        "LINK_INVALID",
    );
    assert_refused(
        finish(&app, "ada@elsewhere.example", &mail.otp(), "").await,
        Code::InvalidArgument,
        "OTP_INVALID",
    );
}

async fn an_account_with_a_second_factor_needs_it_after_the_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;
    let mail = mailed(&app, "ada@example.com", 1).await;
    let answer = finish(&app, "ada@example.com", &mail.otp(), "")
        .await
        .unwrap();
    assert!(answer.access.is_empty() && answer.refresh.is_empty());
    let challenge = answer.mfa_required.expect("the second factor is asked for");
    let session = verify(&app, &challenge.mfa_token, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["aal"], "aal2");
    assert_eq!(signed_in["amr"], json!(["otp", "mfa"]));
}

async fn the_bridge_signs_in_by_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    let (status, answer) = app
        .post(
            "/accounts/api/email-sign-in/",
            json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, unknown) = app
        .post(
            "/accounts/api/email-sign-in/",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(answer, unknown, "alike for every address");
    let mail = app
        .smtp
        .nth_with_subject("ada@example.com", SUBJECT, 1)
        .await;
    let (status, refused) = app
        .post(
            "/accounts/api/email-sign-in/finish/",
            json!({"email": "ada@example.com", "code": "12345"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, session) = app
        .post(
            "/accounts/api/email-sign-in/finish/",
            json!({"email": "ada@example.com", "code": mail.otp()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(
        claims(session["access"].as_str().unwrap())["amr"],
        json!(["otp"])
    );
}

/// What the link's address answers to a GET, HEAD or POST with these headers.
async fn open(
    app: &TestApp,
    method: reqwest::Method,
    link: &str,
    accept: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .request(method, app.local(link))
        .header(header::ACCEPT, accept)
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap_or_default())
}

async fn a_scanner_opening_the_link_spends_nothing_and_a_browser_posts(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("OTP_RESEND_COOLDOWN", "0")]).await;
    app.verified_user("ada@example.com").await;
    let mail = mailed(&app, "ada@example.com", 1).await;
    let link = mail.link("/accounts/email-sign-in/");
    let before = session_count(&app).await;
    for accept in ["*/*", "text/html,application/xhtml+xml"] {
        let (status, headers, page) = open(&app, reqwest::Method::GET, &link, accept).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(page.contains("<form method=\"post\""), "{page}");
    }
    let (status, _, _) = open(&app, reqwest::Method::HEAD, &link, "*/*").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        session_count(&app).await,
        before,
        "opening the link spent nothing"
    );

    // The button: a browser's POST signs in, once.
    let (status, _, page) = open(&app, reqwest::Method::POST, &link, "text/html").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("You are signed in"), "{page}");
    assert_eq!(session_count(&app).await, before + 1);
    let (status, _, page) = open(&app, reqwest::Method::POST, &link, "text/html").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("Sign-in failed"), "{page}");
    assert_eq!(session_count(&app).await, before + 1);

    // A client that asks for JSON signs in with a GET of the link.
    let link = mailed(&app, "ada@example.com", 2)
        .await
        .link("/accounts/email-sign-in/");
    let (status, _, body) = open(&app, reqwest::Method::GET, &link, "application/json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(claims(session["access"].as_str().unwrap())["aal"], "aal1");
}

async fn a_front_end_receives_the_session_in_the_fragment(backend: Backend) {
    let front_end = "https://app.example/signed-in";
    let app = TestApp::spawn_with(backend, &[("EMAIL_SIGN_IN_REDIRECT_URL", front_end)]).await;
    app.verified_user("ada@example.com").await;
    let link = mailed(&app, "ada@example.com", 1)
        .await
        .link("/accounts/email-sign-in/");
    let (status, headers, _) = open(&app, reqwest::Method::POST, &link, "text/html").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap();
    let fragment = location
        .strip_prefix(&format!("{front_end}#access="))
        .unwrap_or_else(|| panic!("{location}"));
    let (access, refresh) = fragment.split_once("&refresh=").unwrap();
    assert_eq!(claims(access)["amr"], json!(["otp"]));
    app.refresh(refresh).await.unwrap();
    let (_, headers, _) = open(&app, reqwest::Method::POST, &link, "text/html").await;
    assert_eq!(
        headers[header::LOCATION],
        format!("{front_end}#error=LINK_INVALID").as_str()
    );
}

async fn email_sign_in_can_be_turned_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("EMAIL_SIGN_IN", "false")]).await;
    app.verified_user("ada@example.com").await;
    app.settle_outbox().await;
    let mailed_before = app.smtp.to("ada@example.com").len();
    assert_refused(
        start(&app, "ada@example.com").await,
        Code::FailedPrecondition,
        "EMAIL_SIGN_IN_DISABLED",
    );
    assert_refused(
        finish(&app, "ada@example.com", "123456", "").await,
        Code::FailedPrecondition,
        "EMAIL_SIGN_IN_DISABLED",
    );
    app.settle_outbox().await;
    assert_eq!(app.smtp.to("ada@example.com").len(), mailed_before);
}

async fn lapsed_sign_in_codes_are_purged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ada@example.com").await;
    mailed(&app, "ada@example.com", 1).await;
    let stored = "SELECT link_hash AS value FROM email_sign_ins";
    assert_eq!(app.query_texts(stored).await.len(), 1);
    app.clock
        .advance(std::time::Duration::from_secs(3 * 86_400));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.query_texts(stored).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a lapsed sign-in code was not purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

crate::on_both_backends!(
    lapsed_sign_in_codes_are_purged,
    a_verified_address_signs_in_once_with_the_mailed_code,
    every_address_gets_the_same_answer_and_only_a_verified_one_mail,
    guesses_are_counted_before_they_are_checked_and_one_sign_in_wins,
    expired_codes_and_links_sign_nobody_in,
    a_code_mailed_before_the_address_changed_signs_nobody_in,
    an_account_with_a_second_factor_needs_it_after_the_code,
    the_bridge_signs_in_by_email,
    a_scanner_opening_the_link_spends_nothing_and_a_browser_posts,
    a_front_end_receives_the_session_in_the_fragment,
    email_sign_in_can_be_turned_off,
);
