//! What operators rely on: reflection, health, email delivery with retries, graceful stop.

use identity::pb;
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{Backend, PASSWORD, TestApp, required_tool};

async fn reflection_lists_every_service(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut client = ServerReflectionClient::new(app.channel().await);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };

    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["identity.v1.IdentityService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

async fn reflection_v1_answers_too(backend: Backend) {
    use tonic_reflection::pb::v1;
    let app = TestApp::spawn(backend).await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "identity.v1.IdentityService".into(),
            ),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap().message_response;

    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response
    else {
        panic!("expected file descriptors, got {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

/// grpcurl, as an operator runs it, without .proto files. Needs `GRPCURL` (scripts/test
/// installs it), unless opted out with `IDENTITY_TESTS_WITHOUT_GRPCURL=1`.
async fn grpcurl_lists_describes_and_calls_through_reflection(backend: Backend) {
    let Some(grpcurl) = required_tool("GRPCURL", "IDENTITY_TESTS_WITHOUT_GRPCURL") else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let addr = app.grpc_addr.to_string();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&grpcurl)
            .arg("-plaintext")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };

    let (listed, services) = run(&[&addr, "list"]);
    let (described, description) = run(&[&addr, "describe", "identity.v1.IdentityService"]);
    let body = r#"{"email": "cli@example.com", "password": "a-long-enough-passphrase"}"#;
    let (registered, user) = run(&["-d", body, &addr, "identity.v1.IdentityService/Register"]);
    // Inside the address's email cooldown the answer is the same: only the mail waits.
    let (again, answer) = run(&["-d", body, &addr, "identity.v1.IdentityService/Register"]);

    assert!(
        listed && services.contains("identity.v1.IdentityService"),
        "{services}"
    );
    assert!(
        described && description.contains("rpc Login"),
        "{description}"
    );
    assert!(
        registered && user.contains("\"message\": \"Check your email"),
        "{user}"
    );
    assert_eq!((again, answer.as_str()), (registered, user.as_str()));
}

async fn health_reports_serving_for_the_server_and_the_service(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut health = HealthClient::new(app.channel().await);

    for service in ["", "identity.v1.IdentityService", "liveness", "readiness"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "for {service:?}");
    }
}

async fn mail_refused_by_the_server_is_retried_and_delivered_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.smtp.refuse_mail(true);

    app.register("retry@example.com", PASSWORD).await.unwrap();
    app.smtp.wait_for_refusals(1).await;
    assert!(app.smtp.to("retry@example.com").is_empty());
    app.smtp.refuse_mail(false);

    app.smtp.wait_for("retry@example.com", 1).await;
    app.settle_outbox().await;
    assert_eq!(
        app.smtp.to("retry@example.com").len(),
        1,
        "each email exactly once"
    );
}

async fn the_server_stops_gracefully(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let _ = app
        .client
        .clone()
        .resend_otp(pb::ResendOtpRequest {
            email: "x@example.com".into(),
        })
        .await;

    app.stop().await;
}

async fn metrics_use_the_go_grpc_prometheus_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("metrics@example.com", PASSWORD).await.unwrap();
    let cooling = pb::ResendOtpRequest {
        email: "metrics@example.com".into(),
    };
    let _ = app.client.clone().resend_otp(cooling).await;
    app.smtp.wait_for("metrics@example.com", 1).await;
    let bridge = app
        .http
        .get(format!("{}/accounts/api/users/", app.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(bridge.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The worker counts a delivery just after the fake server has it: wait for the count.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = app.metrics().await;
        if text.contains(r#"identity_email_deliveries_total{outcome="sent"} 1"#)
            || tokio::time::Instant::now() >= deadline
        {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };

    let has = |needle: &str| text.lines().any(|line| line.contains(needle));
    assert!(
        has(
            r#"grpc_server_started_total{grpc_type="unary",grpc_service="identity.v1.IdentityService",grpc_method="Register"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="identity.v1.IdentityService",grpc_method="Register",grpc_code="OK"} 1"#
        ),
        "{text}"
    );
    assert!(has(r#"grpc_code="ResourceExhausted"} 1"#), "{text}");
    assert!(has("grpc_server_handling_seconds_bucket{"), "{text}");
    assert!(
        has(r#"http_requests_total{method="GET",route="/accounts/api/users/",status="401"} 1"#),
        "{text}"
    );
    assert!(has("http_request_duration_seconds_bucket{"), "{text}");
    for gauge in [
        "identity_db_pool_connections",
        "identity_outbox_pending_emails",
        "identity_password_hash_queue_wait_seconds_count",
    ] {
        assert!(has(gauge), "{gauge} missing");
    }
    assert!(
        has(r#"identity_email_deliveries_total{outcome="sent"} 1"#),
        "{text}"
    );
}

async fn request_ids_are_echoed_on_both_protocols(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let http = app
        .http
        .get(format!("{}/healthz", app.http_base))
        .header("x-request-id", "req-from-caller")
        .send()
        .await
        .unwrap();
    let generated = app
        .http
        .get(format!("{}/healthz", app.http_base))
        .send()
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ResendOtpRequest {
        email: "rid@example.com".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-req-1".parse().unwrap());
    let grpc = app.client.clone().resend_otp(request).await.unwrap();

    assert_eq!(http.headers()["x-request-id"], "req-from-caller");
    assert_eq!(
        generated.headers()["x-request-id"].len(),
        36,
        "a UUID is made when none is sent"
    );
    assert_eq!(grpc.metadata().get("x-request-id").unwrap(), "grpc-req-1");
}

async fn an_expired_deadline_answers_deadline_exceeded_and_changes_nothing(backend: Backend) {
    // Costly hashing, so the call cannot finish inside the deadline.
    let app = TestApp::spawn_with(backend, &[("PASSWORD_HASH_ITERATIONS", "100")]).await;
    // A plain HTTP/2 client: tonic's Channel would enforce `grpc-timeout` itself and hide
    // the server's answer.
    let http2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let origin = format!("http://{}", app.grpc_addr).parse().unwrap();
    let mut client = pb::identity_service_client::IdentityServiceClient::with_origin(http2, origin);
    let mut request = tonic::Request::new(pb::RegisterRequest {
        email: "hurry@example.com".into(),
        password: PASSWORD.into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("grpc-timeout", "50m".parse().unwrap());

    let status = client.register(request).await.unwrap_err();

    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(app.user("hurry@example.com").await.is_none());
}

/// Rows no API shows: delivered emails keep no body, and expired state is purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_mail_keeps_no_secret_and_expired_state_is_purged() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (client, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let (_, tokens) = app.signed_in_user("tidy@example.com").await;
    let _ = app.login("tidy@example.com", "a-wrong-passphrase").await;
    app.smtp.wait_for("tidy@example.com", 1).await;
    app.settle_outbox().await;

    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE body_text <> '' OR body_html <> ''").await,
        0
    );
    assert!(count("SELECT count(*) FROM counters").await > 0);

    app.clock
        .advance(std::time::Duration::from_secs(40 * 86_400));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("SELECT count(*) FROM sessions").await > 0 {
        assert!(std::time::Instant::now() < deadline, "nothing was purged");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count("SELECT count(*) FROM counters").await, 0);
    assert_eq!(count("SELECT count(*) FROM outbox").await, 0);
    assert!(app.refresh(&tokens.refresh).await.is_err());
}

crate::on_both_backends!(
    an_expired_deadline_answers_deadline_exceeded_and_changes_nothing,
    metrics_use_the_go_grpc_prometheus_names,
    request_ids_are_echoed_on_both_protocols,
    reflection_lists_every_service,
    reflection_v1_answers_too,
    grpcurl_lists_describes_and_calls_through_reflection,
    health_reports_serving_for_the_server_and_the_service,
    mail_refused_by_the_server_is_retried_and_delivered_once,
    the_server_stops_gracefully,
);
