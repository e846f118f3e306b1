//! What the binary writes about a call: no secret in any log line, and spans reach an OTLP
//! collector under the caller's trace.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use super::free_address;
use crate::{binary::serve, fake_smtp::FakeSmtp, helpers::TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_a_whole_flow_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = FakeSmtp::start().await;
    let port = smtp.port.to_string();
    let served = serve(
        &dir,
        &[
            ("EMAIL_HOST", "127.0.0.1"),
            ("EMAIL_PORT", &port),
            ("EMAIL_USE_TLS", "false"),
            ("EMAIL_POLL_INTERVAL_MS", "50"),
        ],
    );
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let (email, password, new_password) = (
        "secretive@example.com",
        "first-secret-passphrase",
        "second-secret-passphrase",
    );

    client
        .register(pb::RegisterRequest {
            email: email.into(),
            password: password.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let otp = smtp
        .nth_with_subject(email, "verification code", 1)
        .await
        .otp();
    let activation_token = smtp
        .nth_with_subject(email, "Activate", 1)
        .await
        .link_token("/activate/");
    client
        .verify_otp(pb::VerifyOtpRequest {
            email: email.into(),
            otp: otp.clone(),
        })
        .await
        .unwrap();
    let tokens = http
        .post(format!("http://{}/accounts/api/token/", served.http))
        .header("x-request-id", "flow-42")
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let refresh = tokens["refresh"].as_str().unwrap().to_owned();
    let access = tokens["access"].as_str().unwrap().to_owned();
    let rotated = client
        .refresh(pb::RefreshRequest {
            refresh: refresh.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // An authenticator app: its secret, its URI, a code and the recovery codes are secrets.
    let enrollment = client
        .start_totp_enrollment(TestApp::authorized(
            pb::StartTotpEnrollmentRequest::default(),
            &rotated.access,
        ))
        .await
        .unwrap()
        .into_inner();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&enrollment.secret).unwrap())
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let totp_code = totp.generate(now).to_string();
    let confirmed = client
        .confirm_totp_enrollment(TestApp::authorized(
            pb::ConfirmTotpEnrollmentRequest {
                factor_id: enrollment.factor_id.clone(),
                code: totp_code.clone(),
            },
            &rotated.access,
        ))
        .await
        .unwrap()
        .into_inner();
    // A sign-in email: its code, its link's token, and the mfa_token the link answers.
    client
        .start_email_sign_in(pb::StartEmailSignInRequest {
            email: email.into(),
        })
        .await
        .unwrap();
    let sign_in_mail = smtp.nth_with_subject(email, "sign-in code", 1).await;
    let sign_in_code = sign_in_mail.otp();
    let sign_in_link = sign_in_mail.link("/accounts/email-sign-in/");
    let sign_in_token = sign_in_mail.link_token("/accounts/email-sign-in/");
    let challenged = http
        .get(sign_in_link.replace("http://localhost:8080", &format!("http://{}", served.http)))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let mfa_token = challenged["mfa_required"]["mfa_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{challenged}"))
        .to_owned();
    client
        .password_reset(pb::PasswordResetRequest {
            email: email.into(),
        })
        .await
        .unwrap();
    let reset = smtp.nth_with_subject(email, "Reset", 1).await;
    let (uidb64, reset_token) = reset.link_parts("/password-reset-confirm/");
    client
        .password_reset_confirm(pb::PasswordResetConfirmRequest {
            uidb64,
            token: reset_token.clone(),
            new_password: new_password.into(),
        })
        .await
        .unwrap();
    let _ = client
        .login(pb::LoginRequest {
            email: email.into(),
            password: "a-wrong-passphrase".into(),
        })
        .await;

    let (_, logs) = served.terminate().await;
    let mut secrets = vec![
        password,
        new_password,
        "a-wrong-passphrase",
        &otp,
        &access,
        &refresh,
        &rotated.access,
        &rotated.refresh,
        &reset_token,
        &activation_token,
        email,
        &enrollment.secret,
        &enrollment.otpauth_uri,
        &totp_code,
        &sign_in_code,
        &sign_in_token,
        &mfa_token,
    ];
    secrets.extend(confirmed.recovery_codes.iter().map(String::as_str));
    for line in &logs {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        for secret in &secrets {
            assert!(
                !line.contains(secret),
                "a secret leaked into the log: {line}"
            );
        }
    }
    let login_line = logs
        .iter()
        .find(|l| l.contains(r#""request.id":"flow-42""#) && l.contains("HTTP request"))
        .expect("the bridge call is logged with its request id");
    assert!(
        login_line.contains(r#""http.status":200"#) && login_line.contains("duration_ms"),
        "{login_line}"
    );
    let grpc_line = logs
        .iter()
        .find(|l| l.contains(r#""grpc.method":"VerifyOtp""#) && l.contains("gRPC call"))
        .unwrap();
    assert!(
        grpc_line.contains(r#""grpc.code":"OK""#) && grpc_line.contains("request.id"),
        "{grpc_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_holds_a_google_access_token_when_google_fails() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://{}", free_address());
    let google = crate::fake_google::FakeGoogle::start().await;
    google.stall(Duration::from_secs(2));
    let served = serve(
        &dir,
        &[
            ("GOOGLE_OAUTH_CLIENT_ID", crate::fake_google::CLIENT_ID),
            ("GOOGLE_TOKENINFO_URL", &format!("{closed}/tokeninfo")),
            ("GOOGLE_USERINFO_URL", &format!("{}/userinfo", google.base)),
            ("GOOGLE_JWKS_URL", &format!("{}/jwks", google.base)),
            ("GOOGLE_TIMEOUT_MS", "300"),
            ("RUST_LOG", "trace"),
        ],
    );
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let secret = "ya29.a-google-access-token-that-must-stay-secret";

    let refused = client
        .google_login(pb::GoogleLoginRequest {
            access_token: secret.into(),
            id_token: String::new(),
        })
        .await
        .unwrap_err();
    let (status, logs) = served.terminate().await;

    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(status.success());
    assert!(
        logs.iter()
            .any(|l| l.contains("Google could not be reached")),
        "the failure is logged"
    );
    let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
    assert!(leaks.is_empty(), "{leaks:?}");
}

/// An OTLP collector that keeps the trace ids of every span it receives.
#[derive(Clone, Default)]
struct FakeCollector {
    trace_ids: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for FakeCollector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut ids = self.trace_ids.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    ids.push(span.trace_id.iter().map(|b| format!("{b:02x}")).collect());
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_collector_under_the_callers_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let collector = FakeCollector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let served = serve(&dir, &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";

    let mut request = tonic::Request::new(pb::ResendOtpRequest {
        email: "traced@example.com".into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    client.resend_otp(request).await.unwrap();
    let (status, logs) = served.terminate().await;

    assert!(status.success());
    assert!(
        logs.iter().any(|l| l.contains(trace)),
        "the trace id is in the log line"
    );
    let exported = collector.trace_ids.lock().unwrap().clone();
    assert!(
        exported.iter().any(|id| id == trace),
        "exported {exported:?}"
    );
}
