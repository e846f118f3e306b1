//! Transport bounds: slow or idle clients cannot hold bridge connections, every bridge call
//! has a deadline, and a gRPC connection may carry only so many calls at once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{Backend, PASSWORD, TestApp};

/// Whether the server closes `stream` (within 10 s), reading and dropping what it sends.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn slow_and_idle_bridge_clients_are_disconnected(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HTTP_HEADER_READ_TIMEOUT_MS", "300")]).await;
    let address = app.http_base.trim_start_matches("http://").to_owned();

    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: identity\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: identity\r\n\r\n")
        .await
        .unwrap();

    assert!(closed_by_server(&mut slow).await, "headers never finished");
    assert!(closed_by_server(&mut idle).await, "idle after its answer");
    let healthy = app
        .http
        .get(format!("{}/healthz", app.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), StatusCode::OK, "others are still served");
}

async fn a_bridge_call_past_the_request_timeout_answers_gateway_timeout(backend: Backend) {
    let settings = [
        ("REQUEST_TIMEOUT_MS", "100"),
        ("PASSWORD_HASH_ITERATIONS", "60"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;

    let (status, body) = app
        .post(
            "/accounts/api/token/",
            json!({"email": "slow@example.com", "password": PASSWORD}),
        )
        .await;

    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], 4, "DEADLINE_EXCEEDED: {body}");
}

async fn a_grpc_connection_carries_a_bounded_number_of_calls(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("GRPC_MAX_CONCURRENT_STREAMS", "7")]).await;
    let tcp = TcpStream::connect(app.grpc_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);

    let mut client = client.ready().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The server's SETTINGS arrive just after the handshake.
    while client.current_max_send_streams() != 7 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server allows {} streams",
            client.current_max_send_streams()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        client = client.ready().await.unwrap();
    }
}

crate::on_both_backends!(
    slow_and_idle_bridge_clients_are_disconnected,
    a_bridge_call_past_the_request_timeout_answers_gateway_timeout,
    a_grpc_connection_carries_a_bounded_number_of_calls,
);
