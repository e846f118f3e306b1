//! The published key set, as verifiers and standard JWT libraries find and cache it.

use reqwest::{StatusCode, header};

use crate::helpers::{Backend, TestApp};

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
    the_key_set_is_cacheable_and_revalidates_with_its_etag,
    openid_configuration_names_the_issuer_and_where_its_keys_are,
);
