//! Passkeys driven by a software authenticator (`webauthn-authenticator-rs`'s soft passkey)
//! as a browser would: registered on a signed-in account, then signing in username-first,
//! with and without user verification, and the ceremonies' refusals.

use identity::pb;
use serde_json::{Value, json};
use tonic::Code;
use webauthn_authenticator_rs::{
    prelude::{CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator},
    softpasskey::SoftPasskey,
};

use crate::{
    factors::{claims, code_at, factors, verify, with_totp},
    helpers::{Backend, TestApp, assert_refused},
};

/// The page's origin the relying party is configured with.
pub(crate) const ORIGIN: &str = "http://localhost:8080";

pub(crate) async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[
            ("WEBAUTHN_RP_ID", "localhost"),
            ("WEBAUTHN_ORIGINS", ORIGIN),
        ],
    )
    .await
}

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

fn to_struct(value: &impl serde::Serialize) -> pbjson_types::Struct {
    serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
}

/// The options a gRPC answer carries, as a browser reads them.
pub(crate) fn to_json(options: Option<pbjson_types::Struct>) -> Value {
    pb::struct_json(&options.expect("options")).unwrap()
}

/// The options the bridge answered, as a browser reads them.
pub(crate) fn bridge_json(options: &Value) -> Value {
    to_json(Some(serde_json::from_value(options.clone()).unwrap()))
}

async fn start_registration(
    app: &TestApp,
    access: &str,
) -> Result<pb::StartPasskeyRegistrationResponse, tonic::Status> {
    Ok(app
        .client
        .clone()
        .start_passkey_registration(TestApp::authorized(
            pb::StartPasskeyRegistrationRequest {},
            access,
        ))
        .await?
        .into_inner())
}

async fn finish_registration(
    app: &TestApp,
    access: &str,
    ceremony_id: &str,
    credential: pbjson_types::Struct,
) -> Result<pb::FinishPasskeyRegistrationResponse, tonic::Status> {
    let request = pb::FinishPasskeyRegistrationRequest {
        ceremony_id: ceremony_id.into(),
        credential: Some(credential),
        name: "laptop".into(),
    };
    Ok(app
        .client
        .clone()
        .finish_passkey_registration(TestApp::authorized(request, access))
        .await?
        .into_inner())
}

/// Registers a passkey of `key` on the account of `access`.
pub(crate) async fn register(app: &TestApp, access: &str, key: &mut SoftPasskey) -> Vec<String> {
    let started = start_registration(app, access).await.unwrap();
    let options: CreationChallengeResponse =
        serde_json::from_value(to_json(started.options)).unwrap();
    let created = key.do_registration(origin(), options).unwrap();
    finish_registration(app, access, &started.ceremony_id, to_struct(&created))
        .await
        .unwrap()
        .recovery_codes
}

async fn start_sign_in(app: &TestApp, email: &str) -> pb::StartPasskeySignInResponse {
    app.client
        .clone()
        .start_passkey_sign_in(pb::StartPasskeySignInRequest {
            email: email.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn finish_sign_in(
    app: &TestApp,
    ceremony_id: &str,
    credential: pbjson_types::Struct,
) -> Result<pb::FinishPasskeySignInResponse, tonic::Status> {
    let request = pb::FinishPasskeySignInRequest {
        ceremony_id: ceremony_id.into(),
        credential: Some(credential),
    };
    Ok(app
        .client
        .clone()
        .finish_passkey_sign_in(request)
        .await?
        .into_inner())
}

/// `key`'s answer to `options`; `verified` has the authenticator verify its user, as a
/// platform authenticator does when the options prefer it.
pub(crate) fn answer(
    key: &mut SoftPasskey,
    mut options: Value,
    verified: bool,
) -> pbjson_types::Struct {
    if verified {
        options["publicKey"]["userVerification"] = json!("required");
    }
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    to_struct(&key.do_authentication(origin(), options).unwrap())
}

/// Signs in username-first with `key`'s passkey, which verifies its user or not: the
/// ceremony started, answered and finished over gRPC.
pub(crate) async fn sign_in_with(
    app: &TestApp,
    email: &str,
    key: &mut SoftPasskey,
    verified: bool,
) -> Result<pb::FinishPasskeySignInResponse, tonic::Status> {
    let started = start_sign_in(app, email).await;
    let answered = answer(key, to_json(started.options), verified);
    finish_sign_in(app, &started.ceremony_id, answered).await
}

async fn a_registered_passkey_signs_in_with_the_level_its_verification_gives(backend: Backend) {
    let app = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let mut key = SoftPasskey::new(true);
    let recovery = register(&app, &tokens.access, &mut key).await;
    assert_eq!(recovery.len(), 10, "the first factor brings recovery codes");
    let listed = app
        .client
        .clone()
        .list_factors(TestApp::authorized(
            pb::ListFactorsRequest {},
            &tokens.access,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.factors.len(), 1);
    assert_eq!(
        (
            listed.factors[0].kind.as_str(),
            listed.factors[0].name.as_str()
        ),
        ("passkey", "laptop")
    );
    app.smtp
        .nth_with_subject("ada@example.com", "factor", 1)
        .await;

    // User verification: two factors in one, aal2 by itself.
    let started = start_sign_in(&app, "ada@example.com").await;
    let options = to_json(started.options);
    assert_eq!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let session = finish_sign_in(&app, &started.ceremony_id, answer(&mut key, options, true))
        .await
        .unwrap();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["aal"], "aal2");
    assert_eq!(signed_in["amr"], json!(["hwk", "mfa"]));

    // Without it the passkey is one factor: aal1 while the account has no other.
    let unverified = sign_in_with(&app, "ada@example.com", &mut key, false)
        .await
        .unwrap();
    let signed_in = claims(&unverified.access);
    assert_eq!(signed_in["aal"], "aal1");
    assert_eq!(signed_in["amr"], json!(["hwk"]));

    // With an authenticator app too, that one is asked for after it.
    let (secret, _) = with_totp(&app, &session.access).await;
    let answered = sign_in_with(&app, "ada@example.com", &mut key, false)
        .await
        .unwrap();
    assert!(answered.access.is_empty());
    let challenge = answered
        .mfa_required
        .expect("the other factor is asked for");
    assert_eq!(challenge.factors, ["totp"]);
    let session = verify(&app, &challenge.mfa_token, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["aal"], "aal2");
    assert_eq!(signed_in["amr"], json!(["hwk", "otp", "mfa"]));
    // A recovery code finishes it too.
    let challenge = sign_in_with(&app, "ada@example.com", &mut key, false)
        .await
        .unwrap()
        .mfa_required
        .unwrap();
    verify(&app, &challenge.mfa_token, "", &recovery[0])
        .await
        .unwrap();
}

async fn a_ceremony_is_used_once_for_its_kind_and_within_its_time(backend: Backend) {
    let app = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let mut key = SoftPasskey::new(true);
    register(&app, &tokens.access, &mut key).await;
    let sessions = "SELECT id AS value FROM sessions";
    let passkeys = "SELECT id AS value FROM factors";
    let started = start_sign_in(&app, "ada@example.com").await;
    let answered = answer(&mut key, to_json(started.options), true);
    let session = finish_sign_in(&app, &started.ceremony_id, answered.clone())
        .await
        .unwrap();
    let opened = app.query_texts(sessions).await;
    // The same answer again: the ceremony is spent.
    assert_refused(
        finish_sign_in(&app, &started.ceremony_id, answered.clone()).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // A sign-in ceremony cannot finish a registration (in a session fresh enough for one).
    let other = start_sign_in(&app, "ada@example.com").await;
    assert_refused(
        finish_registration(&app, &session.access, &other.ceremony_id, answered.clone()).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // A lapsed one is refused as such, and a made-up one as unknown.
    let lapsed = start_sign_in(&app, "ada@example.com").await;
    let late = answer(&mut key, to_json(lapsed.options), true);
    app.clock.advance(std::time::Duration::from_secs(301));
    assert_refused(
        finish_sign_in(&app, &lapsed.ceremony_id, late.clone()).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    assert_refused(
        finish_sign_in(&app, "not-a-ceremony", late).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(app.query_texts(sessions).await, opened, "no session opened");
    assert_eq!(app.query_texts(passkeys).await.len(), 1, "no passkey added");
}

async fn a_passkey_signs_in_only_to_its_own_account(backend: Backend) {
    let app = spawn(backend).await;
    let (_, ada) = app.signed_in_user("ada@example.com").await;
    let (_, grace) = app.signed_in_user("grace@example.com").await;
    let mut ada_key = SoftPasskey::new(true);
    let mut grace_key = SoftPasskey::new(true);
    register(&app, &ada.access, &mut ada_key).await;
    register(&app, &grace.access, &mut grace_key).await;
    let sessions = "SELECT id AS value FROM sessions";
    let before = app.query_texts(sessions).await.len();

    // Grace's passkey answers a ceremony started for Ada.
    let for_ada = start_sign_in(&app, "ada@example.com").await;
    let for_grace = start_sign_in(&app, "grace@example.com").await;
    let mut options = to_json(for_ada.options);
    options["publicKey"]["allowCredentials"] =
        to_json(for_grace.options)["publicKey"]["allowCredentials"].clone();
    assert_refused(
        finish_sign_in(
            &app,
            &for_ada.ceremony_id,
            answer(&mut grace_key, options, true),
        )
        .await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(
        app.query_texts(sessions).await.len(),
        before,
        "no session was opened"
    );
}

async fn a_counter_that_goes_back_is_refused_and_the_owner_told(backend: Backend) {
    let app = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let mut key = SoftPasskey::new(true);
    register(&app, &tokens.access, &mut key).await;
    sign_in_with(&app, "ada@example.com", &mut key, true)
        .await
        .unwrap();
    // The server has seen a later counter than this authenticator will send: a copy's.
    app.execute_sql("UPDATE factors SET last_step = 1000 WHERE kind = 'passkey'")
        .await;
    let sessions = "SELECT id AS value FROM sessions";
    let before = app.query_texts(sessions).await.len();
    assert_refused(
        sign_in_with(&app, "ada@example.com", &mut key, true).await,
        Code::Unauthenticated,
        "PASSKEY_COUNTER_WENT_BACK",
    );
    let told = app
        .smtp
        .nth_with_subject("ada@example.com", "passkeys may", 1)
        .await;
    assert!(told.text.contains("refused"), "{}", told.text);
    assert_eq!(app.query_texts(sessions).await.len(), before);

    // As a second factor too: the step-up is refused and the owner told again.
    let started = start_second_factor(&app, "", Some(&tokens.access))
        .await
        .unwrap();
    let request = pb::StepUpRequest {
        passkey: Some(pb::PasskeyAnswer {
            ceremony_id: started.ceremony_id,
            credential: Some(answer(&mut key, to_json(started.options), false)),
        }),
        ..Default::default()
    };
    assert_refused(
        app.client
            .clone()
            .step_up(TestApp::authorized(request, &tokens.access))
            .await,
        Code::Unauthenticated,
        "PASSKEY_COUNTER_WENT_BACK",
    );
    app.smtp
        .nth_with_subject("ada@example.com", "passkeys may", 2)
        .await;
    assert_eq!(
        app.query_texts("SELECT CAST(last_step AS TEXT) AS value FROM factors")
            .await,
        ["1000"],
        "the counter stays where it was"
    );
    // The session was not raised: what a step-up guards is still refused.
    let factor_id = factors(&app, &tokens.access).await.factors[0].id.clone();
    assert_refused(
        app.client
            .clone()
            .remove_factor(TestApp::authorized(
                pb::RemoveFactorRequest { factor_id },
                &tokens.access,
            ))
            .await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
}

/// The keys of the options, and of each passkey they name.
pub(crate) fn options_shape(options: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let keys = |object: &Value| {
        let mut keys: Vec<String> = object.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let public_key = &options["publicKey"];
    let named = public_key["allowCredentials"].as_array().unwrap();
    (keys(public_key), named.iter().map(keys).collect())
}

async fn every_address_gets_options_of_the_same_shape(backend: Backend) {
    let settings = [
        ("WEBAUTHN_RP_ID", "localhost"),
        ("WEBAUTHN_ORIGINS", ORIGIN),
        ("RATE_LIMIT_LOGIN", "0"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    app.signed_in_user("grace@example.com").await;
    register(&app, &tokens.access, &mut SoftPasskey::new(true)).await;
    let options = async |email: &str| to_json(start_sign_in(&app, email).await.options);
    let with_passkey = options_shape(&options("ada@example.com").await);
    assert_eq!(with_passkey.1.len(), 1);
    // An address without a passkey, whether it has an account or not, names one or two
    // made-up ones, stable for it, so neither count tells that an account exists.
    let mut counts = std::collections::BTreeSet::new();
    let others = (0..30).map(|nth| format!("nobody{nth}@example.com"));
    for email in others.chain(["grace@example.com".to_owned()]) {
        let (keys, named) = options_shape(&options(&email).await);
        assert_eq!(keys, with_passkey.0);
        assert!(named.iter().all(|passkey| *passkey == with_passkey.1[0]));
        counts.insert(named.len());
        assert_eq!(
            options(&email).await["publicKey"]["allowCredentials"],
            options(&email).await["publicKey"]["allowCredentials"]
        );
    }
    assert_eq!(counts, [1, 2].into());
}

async fn passkeys_are_off_without_an_origin_browsers_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let status = app
        .client
        .clone()
        .start_passkey_sign_in(pb::StartPasskeySignInRequest {
            email: "ada@example.com".into(),
            ..Default::default()
        })
        .await;
    assert_refused(status, Code::FailedPrecondition, "PASSKEYS_NOT_CONFIGURED");
}

async fn the_bridge_answers_the_w3c_json_options(backend: Backend) {
    let app = spawn(backend).await;
    let (status, started) = app
        .post(
            "/accounts/api/passkeys/sign-in/",
            json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{started}");
    let public_key = &started["options"]["publicKey"];
    assert_eq!(public_key["rpId"], "localhost");
    assert!(
        public_key["challenge"]
            .as_str()
            .is_some_and(|c| c.len() >= 43)
    );
    assert_eq!(public_key["userVerification"], "preferred");

    // The OpenAPI document describes them as the W3C shape, whose required members are there.
    let (_, openapi) = app.get_json("/openapi.json", None).await;
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(
        schemas["StartPasskeySignInResponse"]["properties"]["options"]["allOf"][0]["$ref"],
        "#/components/schemas/CredentialRequestOptionsJSON"
    );
    let described = &schemas["CredentialRequestOptionsJSON"]["properties"]["publicKey"];
    for member in described["required"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        assert!(public_key.get(member).is_some(), "{member} is missing");
    }
    let body = |path: &str| {
        openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["properties"]
            .clone()
    };
    for (described, shape) in [
        (
            schemas["StartPasskeyRegistrationResponse"]["properties"]["options"].clone(),
            "CredentialCreationOptionsJSON",
        ),
        (
            body("/accounts/api/passkeys/registration/finish/")["credential"].clone(),
            "RegistrationResponseJSON",
        ),
        (
            body("/accounts/api/passkeys/sign-in/finish/")["credential"].clone(),
            "AuthenticationResponseJSON",
        ),
        (
            schemas["PasskeyAnswer"]["properties"]["credential"].clone(),
            "AuthenticationResponseJSON",
        ),
    ] {
        let reference = &described["allOf"][0]["$ref"];
        assert_eq!(reference, &json!(format!("#/components/schemas/{shape}")));
        assert!(schemas[shape]["required"].is_array(), "{shape}");
    }
}

/// Starts a second-factor ceremony: for a sign-in's challenge, or (with `access`) a step-up.
pub(crate) async fn start_second_factor(
    app: &TestApp,
    mfa_token: &str,
    access: Option<&str>,
) -> Result<pb::StartPasskeySignInResponse, tonic::Status> {
    let message = pb::StartPasskeySignInRequest {
        mfa_token: mfa_token.into(),
        for_step_up: access.is_some(),
        ..Default::default()
    };
    let request = match access {
        Some(access) => TestApp::authorized(message, access),
        None => tonic::Request::new(message),
    };
    Ok(app
        .client
        .clone()
        .start_passkey_sign_in(request)
        .await?
        .into_inner())
}

/// Steps up the session of `access` with `key`'s passkey (without user verification: it
/// is the second factor).
pub(crate) async fn step_up_with(
    app: &TestApp,
    access: &str,
    key: &mut SoftPasskey,
) -> pb::StepUpResponse {
    let started = start_second_factor(app, "", Some(access)).await.unwrap();
    let request = pb::StepUpRequest {
        passkey: Some(pb::PasskeyAnswer {
            ceremony_id: started.ceremony_id,
            credential: Some(answer(key, to_json(started.options), false)),
        }),
        ..Default::default()
    };
    app.client
        .clone()
        .step_up(TestApp::authorized(request, access))
        .await
        .unwrap()
        .into_inner()
}

async fn a_passkey_is_the_second_factor_after_a_password_and_of_a_step_up(backend: Backend) {
    let app = spawn(backend).await;
    let (_, password_session) = app.signed_in_user("ada@example.com").await;
    let mut key = SoftPasskey::new(true);
    register(&app, &password_session.access, &mut key).await;

    // The session the password opened steps up with the passkey.
    let stepped = step_up_with(&app, &password_session.access, &mut key).await;
    let raised = claims(&stepped.access);
    assert_eq!(raised["aal"], "aal2");
    assert_eq!(raised["amr"], json!(["pwd", "hwk", "mfa"]));

    // A password sign-in now asks for the passkey, which finishes it.
    let challenge = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap()
        .mfa_required
        .unwrap();
    assert_eq!(challenge.factors, ["passkey"]);
    // A sign-in ceremony is not a second factor's.
    let sign_in = start_sign_in(&app, "ada@example.com").await;
    let wrong_kind = pb::VerifySecondFactorRequest {
        mfa_token: challenge.mfa_token.clone(),
        passkey: Some(pb::PasskeyAnswer {
            ceremony_id: sign_in.ceremony_id,
            credential: Some(answer(&mut key, to_json(sign_in.options), false)),
        }),
        ..Default::default()
    };
    assert_refused(
        app.client.clone().verify_second_factor(wrong_kind).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    let started = start_second_factor(&app, &challenge.mfa_token, None)
        .await
        .unwrap();
    let request = pb::VerifySecondFactorRequest {
        mfa_token: challenge.mfa_token,
        passkey: Some(pb::PasskeyAnswer {
            ceremony_id: started.ceremony_id,
            credential: Some(answer(&mut key, to_json(started.options), false)),
        }),
        ..Default::default()
    };
    let session = app
        .client
        .clone()
        .verify_second_factor(request)
        .await
        .unwrap()
        .into_inner();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["aal"], "aal2");
    assert_eq!(signed_in["amr"], json!(["pwd", "hwk", "mfa"]));
    // An account without a passkey has no second-factor ceremony to start.
    let (_, other) = app.signed_in_user("grace@example.com").await;
    assert_refused(
        start_second_factor(&app, "", Some(&other.access)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

/// The handle an account's passkeys carry (`user.id` of its registration options), which a
/// discoverable passkey answers with.
async fn user_handle(app: &TestApp, access: &str) -> Value {
    let started = start_registration(app, access).await.unwrap();
    to_json(started.options)["publicKey"]["user"]["id"].clone()
}

/// `key`'s answer to a usernameless ceremony, as a discoverable passkey gives it: the
/// browser offers the passkey the person picks (`allow`, its id), and the authenticator names
/// its account (`handle`, outside what it signs).
fn discoverable_answer(
    key: &mut SoftPasskey,
    mut options: Value,
    allow: &Value,
    handle: Option<&Value>,
) -> pbjson_types::Struct {
    options["publicKey"]["allowCredentials"] = allow.clone();
    let answered = answer(key, options, true);
    let mut answered = serde_json::to_value(answered).unwrap();
    match handle {
        Some(handle) => answered["response"]["userHandle"] = handle.clone(),
        None => {
            answered["response"]
                .as_object_mut()
                .unwrap()
                .remove("userHandle");
        }
    }
    serde_json::from_value(answered).unwrap()
}

async fn a_usernameless_sign_in_opens_the_account_its_passkey_names(backend: Backend) {
    let app = spawn(backend).await;
    let (ada, ada_tokens) = app.signed_in_user("ada@example.com").await;
    let (_, grace_tokens) = app.signed_in_user("grace@example.com").await;
    // Asked before the accounts have a factor, which would call for a step-up.
    let ada_handle = user_handle(&app, &ada_tokens.access).await;
    let grace_handle = user_handle(&app, &grace_tokens.access).await;
    let mut ada_key = SoftPasskey::new(true);
    register(&app, &ada_tokens.access, &mut ada_key).await;
    register(&app, &grace_tokens.access, &mut SoftPasskey::new(true)).await;
    assert_ne!(ada_handle, grace_handle);
    let ada_passkey = to_json(start_sign_in(&app, "ada@example.com").await.options)["publicKey"]
        ["allowCredentials"]
        .clone();
    let sessions = "SELECT id AS value FROM sessions";
    let before = app.query_texts(sessions).await.len();

    // Ada's passkey naming Grace's account, or no account at all, opens nothing.
    for handle in [Some(&grace_handle), None] {
        let started = start_sign_in(&app, "").await;
        let options = to_json(started.options);
        assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
        assert_refused(
            finish_sign_in(
                &app,
                &started.ceremony_id,
                discoverable_answer(&mut ada_key, options, &ada_passkey, handle),
            )
            .await,
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        );
    }
    assert_eq!(app.query_texts(sessions).await.len(), before);

    // Naming its own account, it signs in to it.
    let started = start_sign_in(&app, "").await;
    let session = finish_sign_in(
        &app,
        &started.ceremony_id,
        discoverable_answer(
            &mut ada_key,
            to_json(started.options),
            &ada_passkey,
            Some(&ada_handle),
        ),
    )
    .await
    .unwrap();
    let signed_in = claims(&session.access);
    assert_eq!(signed_in["sub"], ada.id.to_string());
    assert_eq!(signed_in["aal"], "aal2");
    assert_eq!(app.query_texts(sessions).await.len(), before + 1);
}

async fn rename(
    app: &TestApp,
    access: &str,
    factor_id: &str,
    name: &str,
) -> Result<pb::RenameFactorResponse, tonic::Status> {
    let request = pb::RenameFactorRequest {
        factor_id: factor_id.into(),
        name: name.into(),
    };
    Ok(app
        .client
        .clone()
        .rename_factor(TestApp::authorized(request, access))
        .await?
        .into_inner())
}

async fn a_passkey_is_listed_renamed_and_removed_with_its_owner_told(backend: Backend) {
    let app = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (_, grace) = app.signed_in_user("grace@example.com").await;
    let mut key = SoftPasskey::new(true);
    register(&app, &tokens.access, &mut key).await;
    let added = app
        .smtp
        .nth_with_subject("ada@example.com", "factor was added", 1)
        .await;
    assert!(added.text.contains("a passkey was added"), "{}", added.text);
    let id = factors(&app, &tokens.access).await.factors[0].id.clone();

    // Names it cannot have, and someone else's passkey, change nothing.
    for name in ["  ", &"x".repeat(65), "work\nlaptop"] {
        assert_refused(
            rename(&app, &tokens.access, &id, name).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    assert_refused(
        rename(&app, &grace.access, &id, "mine now").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_eq!(
        factors(&app, &tokens.access).await.factors[0].name,
        "laptop"
    );

    let renamed = rename(&app, &tokens.access, &id, "  work laptop ")
        .await
        .unwrap()
        .factor
        .unwrap();
    assert_eq!(
        (renamed.kind.as_str(), renamed.name.as_str()),
        ("passkey", "work laptop")
    );
    // The bridge renames it too.
    let response = reqwest::Client::new()
        .patch(format!("{}/accounts/api/mfa/factors/{id}/", app.http_base))
        .bearer_auth(&tokens.access)
        .json(&json!({"name": "security key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let answered: Value = response.json().await.unwrap();
    assert_eq!(answered["factor"]["name"], "security key");
    assert_eq!(
        factors(&app, &tokens.access).await.factors[0].name,
        "security key"
    );
    let audited = app
        .query_texts("SELECT detail AS value FROM audit_events WHERE kind = 'factor_rename'")
        .await;
    assert_eq!(audited, [format!("factor={id}"), format!("factor={id}")]);

    // Removing it asks for a fresh second factor: the passkey itself.
    let remove = |access: String| {
        let client = app.client.clone();
        let factor_id = id.clone();
        async move {
            client
                .clone()
                .remove_factor(TestApp::authorized(
                    pb::RemoveFactorRequest { factor_id },
                    &access,
                ))
                .await
        }
    };
    assert_refused(
        remove(tokens.access.clone()).await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    assert_eq!(factors(&app, &tokens.access).await.factors.len(), 1);
    let stepped = step_up_with(&app, &tokens.access, &mut key).await;
    let started_before = start_sign_in(&app, "ada@example.com").await;
    let answered_before = answer(&mut key, to_json(started_before.options), true);
    remove(stepped.access.clone()).await.unwrap();
    let removed = app
        .smtp
        .nth_with_subject("ada@example.com", "second factor was removed", 1)
        .await;
    assert!(
        removed.text.contains("a passkey was removed"),
        "{}",
        removed.text
    );
    let left = factors(&app, &stepped.access).await;
    assert_eq!((left.factors.len(), left.recovery_codes_left), (0, 0));
    // The passkey no longer signs in, even to a ceremony started while it could, and the
    // password alone does again.
    assert_refused(
        finish_sign_in(&app, &started_before.ceremony_id, answered_before).await,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    let password = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap();
    assert!(password.mfa_required.is_none() && !password.access.is_empty());
}

async fn a_passkey_beside_an_app_needs_a_step_up_and_is_named_once_in_a_challenge(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let (_, tokens) = app.signed_in_user("ada@example.com").await;
    let (secret, _) = with_totp(&app, &tokens.access).await;
    // A second factor is added only in a session that proved one lately.
    assert_refused(
        start_registration(&app, &tokens.access).await,
        Code::PermissionDenied,
        "STEP_UP_REQUIRED",
    );
    let stepped = crate::factors::step_up(&app, &tokens.access, &code_at(&app, &secret, 1), "")
        .await
        .unwrap();
    register(&app, &stepped.access, &mut SoftPasskey::new(true)).await;
    with_totp(&app, &stepped.access).await;
    assert_eq!(factors(&app, &stepped.access).await.factors.len(), 3);
    let challenge = app
        .login("ada@example.com", crate::helpers::PASSWORD)
        .await
        .unwrap()
        .mfa_required
        .unwrap();
    assert_eq!(challenge.factors, ["totp", "passkey"]);
}

crate::on_both_backends!(
    a_passkey_is_the_second_factor_after_a_password_and_of_a_step_up,
    a_registered_passkey_signs_in_with_the_level_its_verification_gives,
    a_ceremony_is_used_once_for_its_kind_and_within_its_time,
    a_passkey_signs_in_only_to_its_own_account,
    a_counter_that_goes_back_is_refused_and_the_owner_told,
    every_address_gets_options_of_the_same_shape,
    passkeys_are_off_without_an_origin_browsers_allow,
    the_bridge_answers_the_w3c_json_options,
    a_usernameless_sign_in_opens_the_account_its_passkey_names,
    a_passkey_is_listed_renamed_and_removed_with_its_owner_told,
    a_passkey_beside_an_app_needs_a_step_up_and_is_named_once_in_a_challenge,
);
