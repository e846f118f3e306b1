//! Signing keys rotated beside a live server.

use std::time::Duration;

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use reqwest::StatusCode;

use super::{run_with_stdin, stderr};
use crate::{
    binary::{identity, serve},
    client::{my_orders, serve_orders},
    helpers::service_tokens_file,
    token_service::BILLING,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_beside_a_live_server_and_new_tokens_verify_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let services = service_tokens_file(dir.path(), &[("orders", "jwks,revocations", BILLING)]);
    let settings = [
        ("KEY_REFRESH_INTERVAL", "1"),
        ("JWKS_MAX_AGE", "1"),
        ("KEY_ENCRYPTION_KEY", kek),
        ("RATE_LIMIT_LOGIN", "0"),
        ("SERVICE_TOKENS_FILE", &services),
    ];
    let beside = |args: &[&str], extra: &[(&str, &str)]| {
        let mut command = identity(&dir, args);
        command.envs(settings).envs(extra.iter().copied());
        command
    };
    let created = run_with_stdin(
        beside(&["create-superuser", "--email", "keys@example.com"], &[]),
        "a-sturdy-admin-passphrase\n",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let served = serve(&dir, &settings);
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let login = || {
        let mut client = client.clone();
        async move {
            client
                .login(pb::LoginRequest {
                    email: "keys@example.com".into(),
                    password: "a-sturdy-admin-passphrase".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .access
        }
    };
    let kid = |token: &str| {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let old_token = login().await;
    let old_kid = kid(&old_token);
    // A consuming service that stays up across the rotation.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", served.grpc))
        .unwrap()
        .connect_lazy();
    let verifier = identity_client::Verifier::builder(channel, BILLING)
        .connect()
        .await
        .unwrap();
    let orders = serve_orders(&verifier).await;
    assert_eq!(my_orders(&orders, Some(&old_token)).await.0, StatusCode::OK);

    let listed = beside(&["keys", "list"], &[]).output().unwrap();
    let rotated = beside(&["keys", "rotate"], &[]).output().unwrap();
    let rotated_text = String::from_utf8_lossy(&rotated.stdout).into_owned();
    // The table follows its header line (log lines may come before it).
    let new_kid = rotated_text
        .lines()
        .skip_while(|line| !line.starts_with("kid "))
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .unwrap()
        .to_owned();

    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&old_kid) && listed.contains("active"),
        "{listed}"
    );
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    assert!(
        rotated_text.contains("next") && new_kid != old_kid,
        "{rotated_text}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let new_token = loop {
        let token = login().await;
        if kid(&token) == new_kid {
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never signed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for token in [&new_token, &old_token] {
        let mut request = tonic::Request::new(pb::GetUserRequest { id: 1 });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(client.get_user(request).await.is_ok(), "both keys verify");
        assert_eq!(
            my_orders(&orders, Some(token)).await.0,
            StatusCode::OK,
            "the consuming service takes tokens of both keys without a restart"
        );
    }
    let after = beside(&["keys", "list"], &[]).output().unwrap();
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(
        after.contains("retired") && after.contains("active"),
        "{after}"
    );
    let wrong = beside(
        &["keys", "list"],
        &[(
            "KEY_ENCRYPTION_KEY",
            "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
        )],
    )
    .output()
    .unwrap();
    let mut unsealed = beside(&["keys", "list"], &[]);
    unsealed.env_remove("KEY_ENCRYPTION_KEY");
    let unsealed = unsealed.output().unwrap();
    for refused in [&wrong, &unsealed] {
        assert!(!refused.status.success());
        assert_eq!(stderr(refused).lines().count(), 1, "{}", stderr(refused));
        assert!(
            stderr(refused).contains("KEY_ENCRYPTION_KEY"),
            "{}",
            stderr(refused)
        );
    }
    let (status, _) = served.terminate().await;
    assert!(status.success());
}
