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

async fn a_body_trickled_past_the_request_timeout_is_cut_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REQUEST_TIMEOUT_MS", "500")]).await;
    let address = app.http_base.trim_start_matches("http://").to_owned();
    let mut trickle = TcpStream::connect(&address).await.unwrap();
    trickle
        .write_all(
            b"POST /accounts/api/register/ HTTP/1.1\r\nHost: identity\r\n\
              Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{",
        )
        .await
        .unwrap();
    // One byte now and then, for far longer than the request may take.
    let (mut reader, mut writer) = trickle.into_split();
    let dripping = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), reader.read_to_end(&mut answer)).await;
    dripping.abort();
    assert!(
        read.is_ok(),
        "the connection was held past the request timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":4"), "DEADLINE_EXCEEDED: {answer}");
    assert_eq!(app.all_users().await.len(), 1, "nothing was registered");
}

/// Whether a plain HTTP/1 request on a new connection is answered within `wait`.
async fn answered_within(address: &str, wait: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: identity\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(wait, attempt).await, Ok(Some(true)))
}

async fn each_listener_holds_at_most_max_connections(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MAX_CONNECTIONS", "2")]).await;
    let bridge = app.http_base.trim_start_matches("http://").to_owned();
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(&bridge).await.unwrap(),
        TcpStream::connect(&bridge).await.unwrap(),
    ];
    assert!(
        !answered_within(&bridge, Duration::from_millis(700)).await,
        "a third connection was served beside two open ones"
    );
    drop(held);
    assert!(
        answered_within(&bridge, Duration::from_secs(10)).await,
        "served once a place came free"
    );

    // gRPC alike: two connections held open, a third client waits.
    let grpc = app.grpc_addr;
    let first = TcpStream::connect(grpc).await.unwrap();
    let second = TcpStream::connect(grpc).await.unwrap();
    let mut waiting = identity::pb::identity_service_client::IdentityServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect_lazy(),
    );
    let login = identity::pb::LoginRequest {
        email: "nobody@example.com".into(),
        password: PASSWORD.into(),
    };
    let early =
        tokio::time::timeout(Duration::from_millis(700), waiting.login(login.clone())).await;
    assert!(
        early.is_err(),
        "a third gRPC connection was served: {early:?}"
    );
    drop((first, second));
    let late = tokio::time::timeout(Duration::from_secs(10), waiting.login(login)).await;
    let refused = late.expect("served once a place came free").unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

async fn metrics_are_served_on_their_own_listener_without_touching_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let on_bridge = app
        .http
        .get(format!("{}/metrics", app.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(on_bridge.status(), StatusCode::NOT_FOUND);
    let on_bridge_text = on_bridge.text().await.unwrap();
    assert!(!on_bridge_text.contains("grpc_server"), "{on_bridge_text}");
    let elsewhere = app
        .http
        .get(format!("{}/accounts/api/users/", app.metrics_base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        StatusCode::NOT_FOUND,
        "only metrics there"
    );

    // While the tables a gauge counts are locked, scrapes still answer at once: the
    // database gauges come from a timer, not from the scrape.
    let scraped = async {
        for _ in 0..5 {
            let text = app.metrics().await;
            assert!(text.contains("identity_outbox_pending_emails"), "{text}");
        }
    };
    match backend {
        Backend::Postgres => {
            let admin = crate::helpers::admin_client(&app.database_url).await;
            admin
                .batch_execute("BEGIN; LOCK TABLE outbox, users IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(5), scraped)
                .await
                .expect("a scrape waited on the database");
            admin.batch_execute("ROLLBACK").await.unwrap();
        }
        Backend::Sqlite => tokio::time::timeout(Duration::from_secs(5), scraped)
            .await
            .expect("scrapes answer"),
    }
}

crate::on_both_backends!(
    a_body_trickled_past_the_request_timeout_is_cut_off,
    each_listener_holds_at_most_max_connections,
    metrics_are_served_on_their_own_listener_without_touching_the_database,
    slow_and_idle_bridge_clients_are_disconnected,
    a_bridge_call_past_the_request_timeout_answers_gateway_timeout,
    a_grpc_connection_carries_a_bounded_number_of_calls,
);
