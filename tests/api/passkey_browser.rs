//! A passkey registered and used in a real headless Chromium, against the release-shaped
//! `identity` binary: a WebDriver virtual authenticator (CTAP2, resident keys, user
//! verification) answers `navigator.credentials.create` and `.get` on a small page this test
//! serves on localhost. The page's backend is the test, as an application's backend would be:
//! it asks the bridge for options and posts the browser's answers back.

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::Html,
    routing::{get, post},
};
use identity::pb::{self, identity_service_client::IdentityServiceClient};
use serde_json::{Value, json};

use crate::{
    binary::{replica_settings, serve},
    browser::Browser,
    factors::claims,
    fake_smtp::FakeSmtp,
    helpers::{Backend, PASSWORD, TestDatabase},
    passkeys::options_shape,
};

/// The page: one button registers a passkey, the other signs in with one, username-first
/// when the address field is filled in and usernameless when it is empty.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Passkeys</title></head>
<body><main>
  <input id="email" type="email" autocomplete="username webauthn">
  <button id="register">Register a passkey</button>
  <button id="sign-in">Sign in with a passkey</button>
  <p id="outcome"></p>
</main>
<script>
  const outcome = document.getElementById("outcome");
  async function post(path, body) {
    const response = await fetch("/api/" + path, {
      method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(path + " answered " + JSON.stringify(answer));
    return answer;
  }
  function run(ceremony) {
    return async () => {
      outcome.textContent = "";
      try { outcome.textContent = await ceremony(); }
      catch (error) { outcome.textContent = "failed: " + error; }
    };
  }
  document.getElementById("register").onclick = run(async () => {
    const started = await post("registration", {});
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(started.options.publicKey);
    const credential = await navigator.credentials.create({publicKey});
    await post("registration/finish", {
      ceremony_id: started.ceremony_id, credential: credential.toJSON(), name: "Chromium",
    });
    return "registered";
  });
  document.getElementById("sign-in").onclick = run(async () => {
    const email = document.getElementById("email").value;
    const started = await post("sign-in", email ? {email} : {});
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(started.options.publicKey);
    const credential = await navigator.credentials.get({publicKey});
    await post("sign-in/finish", {ceremony_id: started.ceremony_id, credential: credential.toJSON()});
    return "signed in";
  });
</script>
</body></html>"#;

/// The page's backend: what the bridge answered, and the signed-in caller's token.
#[derive(Clone)]
struct PageBackend {
    bridge: String,
    http: reqwest::Client,
    access: Arc<Mutex<Option<String>>>,
    answers: Arc<Mutex<Vec<(String, Value)>>>,
}

impl PageBackend {
    /// Serves the page on `localhost`, a secure context for WebAuthn without TLS.
    async fn serve(self, listener: tokio::net::TcpListener) {
        let router = Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/api/{*ceremony}", post(forward))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, router).await });
    }

    fn answers_to(&self, ceremony: &str) -> Vec<Value> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path == ceremony)
            .map(|(_, answer)| answer.clone())
            .collect()
    }
}

/// Passes a ceremony step to the bridge's passkey paths, with the caller's bearer token
/// when there is one, and keeps what the bridge answered.
async fn forward(
    State(backend): State<PageBackend>,
    Path(ceremony): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut request = backend
        .http
        .post(format!(
            "{}/accounts/api/passkeys/{ceremony}/",
            backend.bridge
        ))
        .json(&body);
    let access = backend.access.lock().unwrap().clone();
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    backend
        .answers
        .lock()
        .unwrap()
        .push((ceremony, answer.clone()));
    (status, Json(answer))
}

impl Browser {
    /// Adds a platform authenticator that keeps resident keys and verifies its user.
    async fn add_passkey_authenticator(&self) -> String {
        let added = self
            .command(
                reqwest::Method::POST,
                "/webauthn/authenticator",
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserConsenting": true,
                    "isUserVerified": true,
                })),
            )
            .await;
        added
            .as_str()
            .unwrap_or_else(|| panic!("no virtual authenticator: {added}"))
            .to_owned()
    }

    /// The credentials the virtual authenticator holds.
    async fn credentials(&self, authenticator: &str) -> Vec<Value> {
        let listed = self
            .command(
                reqwest::Method::GET,
                &format!("/webauthn/authenticator/{authenticator}/credentials"),
                None,
            )
            .await;
        listed.as_array().cloned().unwrap_or_default()
    }

    /// Clicks `button` and waits (10 s at most) for the page to say how its ceremony ended.
    async fn outcome_of(&self, button: &str) -> String {
        self.click(button).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let outcome = self.text("#outcome").await;
            if !outcome.is_empty() || tokio::time::Instant::now() >= deadline {
                return outcome;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn a_person_registers_a_passkey_in_chromium_and_signs_in_with_it(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let database = TestDatabase::create(backend).await;
    let smtp = FakeSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = replica_settings(&database.url, smtp.port);
    settings.extend([
        ("WEBAUTHN_RP_ID", "localhost".to_owned()),
        ("WEBAUTHN_ORIGINS", origin.clone()),
    ]);
    let served = serve(&dir, &settings);
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let email = "chromium@example.com";
    client
        .register(pb::RegisterRequest {
            email: email.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let otp = smtp
        .nth_with_subject(email, "verification code", 1)
        .await
        .otp();
    let user = client
        .verify_otp(pb::VerifyOtpRequest {
            email: email.into(),
            otp,
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .expect("the verified user");
    let signed_in = client
        .login(pb::LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let page = PageBackend {
        bridge: format!("http://{}", served.http),
        http: reqwest::Client::new(),
        access: Arc::new(Mutex::new(Some(signed_in.access))),
        answers: Arc::default(),
    };
    page.clone().serve(listener).await;
    let authenticator = browser.add_passkey_authenticator().await;
    browser.open(&origin).await;

    assert_eq!(browser.outcome_of("#register").await, "registered");
    let held = browser.credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        held[0]["isResidentCredential"], true,
        "a discoverable passkey"
    );
    let registered = &page.answers_to("registration/finish")[0];
    assert_eq!(registered["factor"]["kind"], "passkey", "{registered}");
    assert_eq!(registered["factor"]["name"], "Chromium");
    assert_eq!(
        registered["recovery_codes"].as_array().map(Vec::len),
        Some(10),
        "the first factor brings recovery codes"
    );

    // The options for the address name its passkey as they name a made-up one for an address
    // without an account.
    let options = async |email: &str| {
        let started: Value = page
            .http
            .post(format!("{}/accounts/api/passkeys/sign-in/", page.bridge))
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        options_shape(&started["options"])
    };
    let (keys, named) = options(email).await;
    let (decoy_keys, decoys) = options("nobody@example.com").await;
    assert_eq!(keys, decoy_keys);
    assert_eq!(named[0], decoys[0], "{named:?} vs {decoys:?}");

    // Signed out from here: the page's backend no longer holds a token.
    page.access.lock().unwrap().take();
    browser.type_into("#email", email).await;
    assert_eq!(browser.outcome_of("#sign-in").await, "signed in");
    browser
        .command(
            reqwest::Method::POST,
            &format!("/element/{}/clear", browser.element("#email").await),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        browser.outcome_of("#sign-in").await,
        "signed in",
        "usernameless, with the resident key"
    );

    let sign_ins = page.answers_to("sign-in/finish");
    assert_eq!(sign_ins.len(), 2);
    for tokens in &sign_ins {
        let claims = claims(tokens["access"].as_str().expect("tokens"));
        assert_eq!(claims["aal"], "aal2", "a user-verified passkey: {claims}");
        assert_eq!(claims["amr"], json!(["hwk", "mfa"]));
        assert_eq!(claims["sub"], user.id.to_string());
    }
    let count = |credential: &Value| credential["signCount"].as_u64().expect("a sign count");
    let used = browser.credentials(&authenticator).await;
    assert_eq!(count(&used[0]), count(&held[0]) + 2, "two sign-ins counted");

    served.terminate().await;
}

crate::on_both_backends!(a_person_registers_a_passkey_in_chromium_and_signs_in_with_it);
