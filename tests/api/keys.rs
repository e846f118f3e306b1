//! The published key set, as verifiers and standard JWT libraries find and cache it.

use std::time::Duration;

use reqwest::{StatusCode, header};

use crate::helpers::{Backend, STAFF_EMAIL, STAFF_PASSWORD, TestApp};

/// Keys that rotate hourly, published two seconds before they sign, reloaded every second.
const FAST_KEYS: &[(&str, &str)] = &[
    ("KEY_ROTATION_PERIOD", "3600"),
    ("KEY_REFRESH_INTERVAL", "1"),
    ("JWKS_MAX_AGE", "1"),
];

/// The `kid` in an access token's header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    let (_, jwks) = app.get_json("/.well-known/jwks.json", None).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `check` every 50 ms until it holds, for 10 s at most.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn keys_rotate_by_time_and_verifiers_never_meet_an_unknown_kid(backend: Backend) {
    let app = TestApp::spawn_with(backend, FAST_KEYS).await;
    let first = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    let first_kid = kid(&first.access);
    assert_eq!(published_kids(&app).await, std::slice::from_ref(&first_kid));

    // The period ends: a next key is published before anything is signed with it.
    app.clock.advance(Duration::from_secs(3600));
    eventually("publishing the next key", || async {
        published_kids(&app).await.len() == 2
    })
    .await;
    let next_kid = published_kids(&app)
        .await
        .into_iter()
        .find(|kid| *kid != first_kid)
        .unwrap();

    // Once its lead has passed it signs, and the old key's tokens still verify.
    app.clock.advance(Duration::from_secs(3));
    let second = app.login(STAFF_EMAIL, STAFF_PASSWORD).await.unwrap();
    assert_eq!(kid(&second.access), next_kid);
    let staff_id = app.user(STAFF_EMAIL).await.unwrap().id;
    assert!(app.get_user(&second.access, staff_id).await.is_ok());

    // When every token of the old key has expired, it is no longer published.
    app.clock.advance(Duration::from_secs(300 + 31));
    eventually("removing the retired key", || async {
        published_kids(&app).await == [next_kid.clone()]
    })
    .await;
    assert!(app.get_user(&first.access, staff_id).await.is_err());
}

async fn stored_private_keys_are_sealed_under_the_key_encryption_key(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[(
            "KEY_ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )],
    )
    .await;

    let stored = app
        .query_texts("SELECT private_key AS value FROM signing_keys")
        .await;

    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("sealed:v1:"), "{}", &stored[0][..20]);
    assert!(!stored[0].contains("PRIVATE KEY"));
    assert!(app.login(STAFF_EMAIL, STAFF_PASSWORD).await.is_ok());
    // The generated SECRET_KEY too.
    let secret = app
        .query_texts("SELECT value FROM instance_secrets WHERE name = 'secret_key'")
        .await;
    assert!(secret[0].starts_with("sealed:v1:"), "{}", &secret[0][..10]);
}

/// A secret generated before a key-encryption key was set is sealed once one is (once, by
/// whichever start gets there first); from then on a start without the key is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_generated_secret_is_sealed_once_a_key_encryption_key_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("identity.sqlite3");
    let secret = || async {
        crate::helpers::sqlite_texts(
            database.to_str().unwrap(),
            "SELECT value FROM instance_secrets WHERE name = 'secret_key'",
        )
        .await
        .remove(0)
    };
    let keys_list = |kek: Option<&str>| {
        let mut command = crate::binary::identity(&dir, &["keys", "list"]);
        if let Some(kek) = kek {
            command.env("KEY_ENCRYPTION_KEY", kek);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    keys_list(None);
    let plain = secret().await;
    assert!(!plain.starts_with("sealed:"));

    let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    keys_list(Some(kek));
    let sealed = secret().await;
    assert!(sealed.starts_with("sealed:v1:"));
    assert!(!sealed.contains(&plain));
    // The same secret under its seal: a start with the key opens it, one without refuses.
    keys_list(Some(kek));
    assert_eq!(secret().await, sealed, "sealed once");
    let refused = crate::binary::identity(&dir, &["keys", "list"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("KEY_ENCRYPTION_KEY"));
}

async fn the_key_set_is_cacheable_and_revalidates_with_its_etag(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = format!("{}/.well-known/jwks.json", app.http_base);

    let first = app.http.get(&url).send().await.unwrap();
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    let cache_control = first.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .to_owned();
    let keys: serde_json::Value = first.json().await.unwrap();
    let revalidated = app
        .http
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    let stale = app
        .http
        .get(&url)
        .header(header::IF_NONE_MATCH, "\"another\"")
        .send()
        .await
        .unwrap();

    assert!(cache_control.contains("max-age=") && cache_control.contains("public"));
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()[header::ETAG], etag.as_str());
    assert_eq!(stale.status(), StatusCode::OK);
}

async fn openid_configuration_names_the_issuer_and_where_its_keys_are(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("JWT_ISSUER", "https://identity.test")]).await;

    let (status, discovery) = app
        .get_json("/.well-known/openid-configuration", None)
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(discovery["issuer"], "https://identity.test");
    assert_eq!(
        discovery["jwks_uri"],
        "http://identity.test/.well-known/jwks.json"
    );
    assert!(
        discovery.get("authorization_endpoint").is_none()
            && discovery.get("token_endpoint").is_none(),
        "no OAuth flow is claimed: {discovery}"
    );
}

crate::on_both_backends!(
    keys_rotate_by_time_and_verifiers_never_meet_an_unknown_kid,
    stored_private_keys_are_sealed_under_the_key_encryption_key,
    the_key_set_is_cacheable_and_revalidates_with_its_etag,
    openid_configuration_names_the_issuer_and_where_its_keys_are,
);
