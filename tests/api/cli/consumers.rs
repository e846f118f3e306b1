//! A consuming service (identity-client) following revocations across a server restart.

use std::time::Duration;

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use reqwest::StatusCode;

use super::{create_superuser, free_address, stderr};
use crate::{
    binary::serve,
    client::{my_orders, serve_orders},
    helpers::service_tokens_file,
    token_service::BILLING,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consuming_service_follows_revocations_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let services = service_tokens_file(dir.path(), &[("orders", "jwks,revocations", BILLING)]);
    let grpc = free_address();
    let settings = [
        ("SERVICE_TOKENS_FILE", services.as_str()),
        ("GRPC_LISTEN_ADDR", grpc.as_str()),
        ("REVOCATION_POLL_INTERVAL_MS", "50"),
    ];
    let created = create_superuser(&dir, "restart@example.com", "a-sturdy-admin-passphrase");
    assert!(created.status.success(), "{}", stderr(&created));
    let first_run = serve(&dir, &settings);
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect_lazy();
    let mut client = IdentityServiceClient::new(channel.clone());
    let login = || pb::LoginRequest {
        email: "restart@example.com".into(),
        password: "a-sturdy-admin-passphrase".into(),
    };
    let before = client.login(login()).await.unwrap().into_inner();
    let kept = client.login(login()).await.unwrap().into_inner();
    let verifier = identity_client::Verifier::builder(channel, BILLING)
        .connect()
        .await
        .unwrap();
    let orders = serve_orders(&verifier).await;
    assert_eq!(
        my_orders(&orders, Some(&before.access)).await.0,
        StatusCode::OK
    );

    let (status, _) = first_run.terminate().await;
    assert!(status.success());
    let second_run = serve(&dir, &settings);
    client
        .logout(pb::LogoutRequest {
            refresh: before.refresh.clone(),
        })
        .await
        .unwrap();

    let started = std::time::Instant::now();
    while my_orders(&orders, Some(&before.access)).await.0 == StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the revocation never reached the service after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        my_orders(&orders, Some(&kept.access)).await.0,
        StatusCode::OK,
        "only the revoked session is refused"
    );
    let (status, _) = second_run.terminate().await;
    assert!(status.success());
}
