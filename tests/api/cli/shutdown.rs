//! SIGTERM: every call accepted before it completes, and neither an open revocation stream nor a
//! client that stopped answering holds the exit.

use std::time::Duration;

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use super::{create_superuser, futures_all};
use crate::{binary::serve, helpers::service_tokens_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_superuser_signs_in_to_the_served_binary_which_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        create_superuser(&dir, "root@example.com", "a-sturdy-admin-passphrase")
            .status
            .success()
    );
    let served = serve::<&str>(&dir, &[]);

    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let login = pb::LoginRequest {
        email: "root@example.com".into(),
        password: "a-sturdy-admin-passphrase".into(),
    };
    let tokens = client.login(login).await.unwrap().into_inner();
    assert!(!tokens.access.is_empty());

    let (status, _) = served.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_accepted_before_sigterm_completes() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir, &[("RATE_LIMIT_REGISTER", "0")]);
    let client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();

    // A burst of registrations, each paying for an argon2 hash, in flight when SIGTERM lands.
    let calls: Vec<_> = (0..12)
        .map(|n| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let request = pb::RegisterRequest {
                    email: format!("burst{n}@example.com"),
                    password: "a-long-enough-passphrase".into(),
                    ..Default::default()
                };
                client.register(request).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (status, logs) = served.terminate().await;

    let outcomes: Vec<_> = futures_all(calls).await;
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    for outcome in &outcomes {
        if let Err(status) = outcome {
            // A call may be turned away before it starts, never cut off once accepted.
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }
    }
    let handled = logs
        .iter()
        .filter(|l| l.contains(r#""grpc.method":"Register""#) && l.contains("gRPC call"))
        .count();
    assert_eq!(
        accepted, handled,
        "every accepted call answered and was logged"
    );
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_revocation_stream_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let token = "a-service-token-for-the-drain-test";
    let file = service_tokens_file(dir.path(), &[("watcher", "revocations", token)]);
    let served = serve(&dir, &[("SERVICE_TOKENS_FILE", &file)]);
    let mut client =
        pb::token_service_client::TokenServiceClient::connect(format!("http://{}", served.grpc))
            .await
            .unwrap();
    let mut request = tonic::Request::new(pb::WatchRevocationsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut stream = client
        .watch_revocations(request)
        .await
        .unwrap()
        .into_inner();
    let opening = stream.message().await.unwrap().unwrap();
    assert!(opening.caught_up, "{opening:?}");

    let (status, _) = served.terminate().await;

    assert!(status.success());
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    assert!(
        matches!(ended, Ok(Ok(None) | Err(_))),
        "the stream ended with the server: {ended:?}"
    );
}

/// A client that opened connections and then stopped answering (it never acknowledges the
/// server's goodbye) does not hold the exit past the request limit: the server closes what
/// is left and exits 0, without waiting out keepalive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_does_not_hold_up_shutdown() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir, &[("REQUEST_TIMEOUT_MS", "1000")]);
    // An HTTP/2 connection's preface and settings, then silence; and an HTTP/1 request
    // whose answer is never read.
    let mut grpc = tokio::net::TcpStream::connect(&served.grpc).await.unwrap();
    grpc.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut http = tokio::net::TcpStream::connect(&served.http).await.unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\nhost: identity\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, logs) = served.terminate().await;

    assert!(status.success());
    assert!(logs.iter().any(|line| line.contains("identity stopped")));
    drop((grpc, http));
}
