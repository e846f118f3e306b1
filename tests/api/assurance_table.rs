//! The README's table of sign-in paths and the level each gives: every row is walked here, as
//! a user would sign in that way, and the access token's `aal` and `amr` are read back, on
//! both backends and over both transports.

use std::path::Path;

use identity::pb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::{
    django::{DJANGO_SECRET_KEY, django_made_users, import_django},
    factors::{bridge_post, claims, code_at, step_up, verify, with_totp},
    fake_google::{CLIENT_ID, GoogleAccount},
    helpers::{Backend, PASSWORD, TestApp},
    passkeys::{
        ORIGIN, answer, bridge_json, register, sign_in_with, start_second_factor, step_up_with,
        to_json,
    },
};

/// The rows of the README's table: how the session signed in, `aal`, `amr`.
fn readme_rows() -> Vec<(String, String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
    readme
        .lines()
        .skip_while(|line| !line.starts_with("| how the session signed in |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            let amr = cells[2].split(',').map(unquote).collect();
            (cells[0].trim().to_owned(), unquote(cells[1]), amr)
        })
        .collect()
}

/// The `aal` and `amr` of an access token.
fn level(access: &str) -> (String, Vec<String>) {
    let claims = claims(access);
    let amr = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap().to_owned())
        .collect();
    (claims["aal"].as_str().unwrap().to_owned(), amr)
}

/// `key`'s answer (without user verification) to the second-factor ceremony the bridge
/// `started`: the `passkey` member `VerifySecondFactor` and `StepUp` take.
fn second_factor_answer(key: &mut SoftPasskey, (status, started): (StatusCode, Value)) -> Value {
    assert_eq!(status, StatusCode::OK, "{started}");
    let credential = answer(key, bridge_json(&started["options"]), false);
    json!({"ceremony_id": started["ceremony_id"], "credential": credential})
}

/// How the walk reaches the service: the tonic client, or the JSON bridge.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Grpc,
    Bridge,
}

/// What a sign-in answered: a session's access token, or the challenge of a second factor.
enum Answer {
    Session(String),
    Challenge(String),
}

impl Answer {
    fn access(self) -> String {
        match self {
            Self::Session(access) => access,
            Self::Challenge(_) => panic!("a session was expected, not a challenge"),
        }
    }

    fn mfa_token(self) -> String {
        match self {
            Self::Challenge(token) => token,
            Self::Session(_) => panic!("a challenge was expected, not a session"),
        }
    }

    fn from_grpc(access: String, challenge: Option<pb::MfaRequired>) -> Self {
        match challenge {
            Some(challenge) => Self::Challenge(challenge.mfa_token),
            None => Self::Session(access),
        }
    }

    fn from_json((status, answer): (StatusCode, Value)) -> Self {
        assert_eq!(status, StatusCode::OK, "{answer}");
        match answer["mfa_required"]["mfa_token"].as_str() {
            Some(token) => Self::Challenge(token.to_owned()),
            None => Self::Session(answer["access"].as_str().unwrap().to_owned()),
        }
    }
}

impl Transport {
    async fn login(self, app: &TestApp, email: &str, password: &str) -> Answer {
        match self {
            Self::Grpc => {
                let answer = app.login(email, password).await.unwrap();
                Answer::from_grpc(answer.access, answer.mfa_required)
            }
            Self::Bridge => Answer::from_json(
                app.post(
                    "/accounts/api/token/",
                    json!({"email": email, "password": password}),
                )
                .await,
            ),
        }
    }

    async fn google(self, app: &TestApp, token: &str) -> Answer {
        match self {
            Self::Grpc => {
                let request = pb::GoogleLoginRequest {
                    access_token: token.into(),
                    id_token: String::new(),
                };
                let answer = app
                    .client
                    .clone()
                    .google_login(request)
                    .await
                    .unwrap()
                    .into_inner();
                Answer::from_grpc(answer.access, answer.mfa_required)
            }
            Self::Bridge => Answer::from_json(
                app.post("/accounts/api/google/", json!({"access_token": token}))
                    .await,
            ),
        }
    }

    async fn refresh(self, app: &TestApp, token: &str) -> Answer {
        match self {
            Self::Grpc => {
                let answer = app.refresh(token).await.unwrap();
                Answer::from_grpc(answer.access, answer.mfa_required)
            }
            Self::Bridge => Answer::from_json(
                app.post("/accounts/api/token/refresh/", json!({"refresh": token}))
                    .await,
            ),
        }
    }

    /// Asks for a sign-in email and finishes with its code, the `nth` such message.
    async fn email_code(self, app: &TestApp, email: &str, nth: usize) -> Answer {
        match self {
            Self::Grpc => {
                let request = pb::StartEmailSignInRequest {
                    email: email.into(),
                };
                app.client
                    .clone()
                    .start_email_sign_in(request)
                    .await
                    .unwrap();
            }
            Self::Bridge => {
                let (status, _) = app
                    .post("/accounts/api/email-sign-in/", json!({"email": email}))
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
        }
        let code = app
            .smtp
            .nth_with_subject(email, "sign-in code", nth)
            .await
            .otp();
        match self {
            Self::Grpc => {
                let request = pb::FinishEmailSignInRequest {
                    email: email.into(),
                    code,
                    token: String::new(),
                };
                let answer = app
                    .client
                    .clone()
                    .finish_email_sign_in(request)
                    .await
                    .unwrap()
                    .into_inner();
                Answer::from_grpc(answer.access, answer.mfa_required)
            }
            Self::Bridge => Answer::from_json(
                app.post(
                    "/accounts/api/email-sign-in/finish/",
                    json!({"email": email, "code": code}),
                )
                .await,
            ),
        }
    }

    /// Signs in username-first with `key`'s passkey, which verifies its user or not.
    async fn passkey(
        self,
        app: &TestApp,
        email: &str,
        key: &mut SoftPasskey,
        verified: bool,
    ) -> Answer {
        match self {
            Self::Grpc => {
                let answer = sign_in_with(app, email, key, verified).await.unwrap();
                Answer::from_grpc(answer.access, answer.mfa_required)
            }
            Self::Bridge => {
                let (status, started) = app
                    .post("/accounts/api/passkeys/sign-in/", json!({"email": email}))
                    .await;
                assert_eq!(status, StatusCode::OK, "{started}");
                let credential = answer(key, bridge_json(&started["options"]), verified);
                Answer::from_json(
                    app.post(
                        "/accounts/api/passkeys/sign-in/finish/",
                        json!({"ceremony_id": started["ceremony_id"], "credential": credential}),
                    )
                    .await,
                )
            }
        }
    }

    /// Finishes the sign-in that answered `mfa_token` with `key`'s passkey as its second
    /// factor (without user verification).
    async fn verify_with_passkey(
        self,
        app: &TestApp,
        mfa_token: &str,
        key: &mut SoftPasskey,
    ) -> String {
        match self {
            Self::Grpc => {
                let started = start_second_factor(app, mfa_token, None).await.unwrap();
                let options = to_json(started.options);
                let request = pb::VerifySecondFactorRequest {
                    mfa_token: mfa_token.into(),
                    passkey: Some(pb::PasskeyAnswer {
                        ceremony_id: started.ceremony_id,
                        credential: Some(answer(key, options, false)),
                    }),
                    ..Default::default()
                };
                let session = app.client.clone().verify_second_factor(request).await;
                session.unwrap().into_inner().access
            }
            Self::Bridge => {
                let started = app
                    .post(
                        "/accounts/api/passkeys/sign-in/",
                        json!({"mfa_token": mfa_token}),
                    )
                    .await;
                let passkey = second_factor_answer(key, started);
                Answer::from_json(
                    app.post(
                        "/accounts/api/mfa/verify/",
                        json!({"mfa_token": mfa_token, "passkey": passkey}),
                    )
                    .await,
                )
                .access()
            }
        }
    }

    /// Steps up the session of `access` with `key`'s passkey (without user verification).
    async fn step_up_with_passkey(
        self,
        app: &TestApp,
        access: &str,
        key: &mut SoftPasskey,
    ) -> String {
        match self {
            Self::Grpc => step_up_with(app, access, key).await.access,
            Self::Bridge => {
                let started = bridge_post(
                    app,
                    "/accounts/api/passkeys/sign-in/",
                    access,
                    json!({"for_step_up": true}),
                )
                .await;
                let passkey = second_factor_answer(key, started);
                Answer::from_json(
                    bridge_post(
                        app,
                        "/accounts/api/mfa/step-up/",
                        access,
                        json!({"passkey": passkey}),
                    )
                    .await,
                )
                .access()
            }
        }
    }

    async fn verify(self, app: &TestApp, mfa_token: &str, code: &str) -> String {
        match self {
            Self::Grpc => verify(app, mfa_token, code, "").await.unwrap().access,
            Self::Bridge => Answer::from_json(
                app.post(
                    "/accounts/api/mfa/verify/",
                    json!({"mfa_token": mfa_token, "totp_code": code}),
                )
                .await,
            )
            .access(),
        }
    }

    async fn step_up(self, app: &TestApp, access: &str, code: &str) -> String {
        match self {
            Self::Grpc => step_up(app, access, code, "").await.unwrap().access,
            Self::Bridge => Answer::from_json(
                bridge_post(
                    app,
                    "/accounts/api/mfa/step-up/",
                    access,
                    json!({"totp_code": code}),
                )
                .await,
            )
            .access(),
        }
    }
}

async fn the_readmes_assurance_table_holds(backend: Backend) {
    let django_password = "a Django user's passphrase";
    let dir = django_made_users(django_password);
    let mut documented = readme_rows();
    documented.sort();
    for transport in [Transport::Grpc, Transport::Bridge] {
        let mut walked = walk(backend, transport, dir.path(), django_password).await;
        walked.sort();
        assert_eq!(
            walked, documented,
            "over {transport:?}, the README's table and the service disagree"
        );
    }
}

/// Signs in every way the table names, on a service of its own, and reads back each level.
async fn walk(
    backend: Backend,
    transport: Transport,
    django: &Path,
    django_password: &str,
) -> Vec<(String, String, Vec<String>)> {
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let app = TestApp::spawn_with(
        backend,
        &[
            ("DJANGO_SECRET_KEY", DJANGO_SECRET_KEY),
            ("DJANGO_REFRESH_TOKENS_UNTIL", &until),
            ("WEBAUTHN_RP_ID", "localhost"),
            ("WEBAUTHN_ORIGINS", ORIGIN),
        ],
    )
    .await;
    let dump = django.join("users.json");
    import_django(&app, &["--from-json", dump.to_str().unwrap()]);
    let mut walked = Vec::new();
    let mut row = |path: &str, access: &str| {
        let (aal, amr) = level(access);
        walked.push((path.to_owned(), aal, amr));
    };

    // Without a second factor.
    app.verified_user("ada@example.com").await;
    let password = transport
        .login(&app, "ada@example.com", PASSWORD)
        .await
        .access();
    row("password", &password);
    let account = GoogleAccount::new("g-300", "table@gmail.com");
    app.google
        .grant_access_token("at-3", &account, CLIENT_ID, 3600);
    let by_google = transport.google(&app, "at-3").await.access();
    row("Google", &by_google);
    let other = std::fs::read_to_string(django.join("other_refresh_token.txt")).unwrap();
    let by_django = transport.refresh(&app, &other).await.access();
    row("a Django refresh token", &by_django);
    app.verified_user("mailed@example.com").await;
    let by_mail = transport
        .email_code(&app, "mailed@example.com", 1)
        .await
        .access();
    row("an emailed code or link", &by_mail);

    // With one: each first factor, then a code.
    let (secret, _) = with_totp(&app, &password).await;
    let stepped = transport
        .step_up(&app, &password, &code_at(&app, &secret, 1))
        .await;
    row(
        "password, then StepUp with a TOTP or recovery code",
        &stepped,
    );
    let challenge = transport
        .login(&app, "ada@example.com", PASSWORD)
        .await
        .mfa_token();
    app.clock.advance(std::time::Duration::from_secs(60));
    let session = transport
        .verify(&app, &challenge, &code_at(&app, &secret, 0))
        .await;
    row("password + TOTP or recovery code", &session);

    let (google_secret, _) = with_totp(&app, &by_google).await;
    let challenge = transport.google(&app, "at-3").await.mfa_token();
    let session = transport
        .verify(&app, &challenge, &code_at(&app, &google_secret, 1))
        .await;
    row("Google + TOTP or recovery code", &session);

    let signed_in = app
        .login("pbkdf2_sha256@example.com", django_password)
        .await
        .unwrap();
    let (django_secret, _) = with_totp(&app, &signed_in.access).await;
    let token = std::fs::read_to_string(django.join("refresh_token.txt")).unwrap();
    let challenge = transport.refresh(&app, &token).await.mfa_token();
    let session = transport
        .verify(&app, &challenge, &code_at(&app, &django_secret, 1))
        .await;
    row("a Django refresh token + TOTP or recovery code", &session);

    let (mail_secret, _) = with_totp(&app, &by_mail).await;
    // Past the address's cooldown between two emails.
    app.clock.advance(std::time::Duration::from_secs(61));
    let challenge = transport
        .email_code(&app, "mailed@example.com", 2)
        .await
        .mfa_token();
    let session = transport
        .verify(&app, &challenge, &code_at(&app, &mail_secret, 1))
        .await;
    row("an emailed code + TOTP or recovery code", &session);

    // Passkeys: one that verifies its user is two factors; one that does not is one, and an
    // account's other factor then follows it.
    let (_, keyed) = app.signed_in_user("keyed@example.com").await;
    let mut key = SoftPasskey::new(true);
    register(&app, &keyed.access, &mut key).await;
    let verified = transport
        .passkey(&app, "keyed@example.com", &mut key, true)
        .await
        .access();
    row("a passkey that verified its user", &verified);
    let unverified = transport
        .passkey(&app, "keyed@example.com", &mut key, false)
        .await
        .access();
    row("a passkey that did not verify its user", &unverified);
    let (key_secret, _) = with_totp(&app, &verified).await;
    let challenge = transport
        .passkey(&app, "keyed@example.com", &mut key, false)
        .await
        .mfa_token();
    let session = transport
        .verify(&app, &challenge, &code_at(&app, &key_secret, 1))
        .await;
    row(
        "a passkey that did not verify its user + TOTP or recovery code",
        &session,
    );

    // A passkey as the second factor after a password, and of a step-up.
    let (_, password_first) = app.signed_in_user("second@example.com").await;
    let mut second_key = SoftPasskey::new(true);
    register(&app, &password_first.access, &mut second_key).await;
    let stepped = transport
        .step_up_with_passkey(&app, &password_first.access, &mut second_key)
        .await;
    row("password, then StepUp with a passkey", &stepped);
    let challenge = transport
        .login(&app, "second@example.com", PASSWORD)
        .await
        .mfa_token();
    let session = transport
        .verify_with_passkey(&app, &challenge, &mut second_key)
        .await;
    row("password + passkey", &session);
    walked
}

crate::on_both_backends!(the_readmes_assurance_table_holds);
