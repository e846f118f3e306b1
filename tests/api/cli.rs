//! The binary as an operator runs it: settings errors, `migrate`, `create-superuser`, SIGTERM.

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use reqwest::StatusCode;

use crate::{
    binary::{identity, replica_settings, serve},
    client::{my_orders, serve_orders},
    fake_smtp::FakeSmtp,
    helpers::{Backend, TestApp, TestDatabase, service_tokens_file},
    token_service::BILLING,
};

fn create_superuser(dir: &tempfile::TempDir, email: &str, password: &str) -> std::process::Output {
    run_with_stdin(
        identity(dir, &["create-superuser", "--email", email]),
        &format!("{password}\n"),
    )
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();

    let output = identity(&dir, &["serve"])
        .env("OTP_EXPIRATION_TIME", "ten minutes")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("OTP_EXPIRATION_TIME"), "{stderr}");
}

#[test]
fn tls_settings_that_do_not_load_stop_start_up_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let garbage = garbage.to_str().unwrap();

    let half = identity(&dir, &["serve"])
        .env("GRPC_TLS_KEY_FILE", garbage)
        .output()
        .unwrap();
    let unreadable = identity(&dir, &["serve"])
        .env("GRPC_TLS_CERT_FILE", garbage)
        .env("GRPC_TLS_KEY_FILE", garbage)
        .output()
        .unwrap();

    assert_eq!(half.status.code(), Some(2));
    assert!(
        stderr(&half).contains("GRPC_TLS_CERT_FILE"),
        "{}",
        stderr(&half)
    );
    assert!(!unreadable.status.success());
    assert_eq!(
        stderr(&unreadable).lines().count(),
        1,
        "{}",
        stderr(&unreadable)
    );
    assert!(
        stderr(&unreadable).contains("GRPC_TLS_CERT_FILE"),
        "{}",
        stderr(&unreadable)
    );
}

#[test]
fn migrate_then_create_superuser_with_the_password_on_stdin() {
    let dir = tempfile::tempdir().unwrap();

    assert!(
        identity(&dir, &["migrate"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let weak = create_superuser(&dir, "root@example.com", "short");
    let created = create_superuser(&dir, "root@example.com", "a-sturdy-admin-passphrase");
    let again = create_superuser(&dir, "ROOT@example.com", "a-sturdy-admin-passphrase");

    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        !again.status.success(),
        "a second account with the same email"
    );
}

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
    let activation = smtp
        .nth_with_subject(email, "Activate", 1)
        .await
        .link("/activate/");
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
    let activation_token = activation
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let secrets = [
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
    ];
    for line in &logs {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        for secret in secrets {
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

/// Three replicas of the binary on one Postgres database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_rotation_and_email_hold_across_three_replicas() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let smtp = FakeSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = replica_settings(&database.url, smtp.port);
    // One migrates first, as the migration Job would; the others find the schema ready.
    let first = serve(&dir, &settings);
    let mut replicas = vec![first, serve(&dir, &settings), serve(&dir, &settings)];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(
            IdentityServiceClient::connect(format!("http://{}", replica.grpc))
                .await
                .unwrap(),
        );
    }
    let password = "a-long-enough-passphrase";

    // Code attempts are counted in the database, whichever replica answers.
    register_on(&clients[0], "otp@example.com").await;
    let otp = smtp
        .nth_with_subject("otp@example.com", "verification code", 1)
        .await
        .otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    for n in 0..5 {
        let request = pb::VerifyOtpRequest {
            email: "otp@example.com".into(),
            otp: wrong.into(),
        };
        assert_eq!(
            clients[n % 3]
                .clone()
                .verify_otp(request)
                .await
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
    }
    let right = pb::VerifyOtpRequest {
        email: "otp@example.com".into(),
        otp,
    };
    assert_eq!(
        clients[1]
            .clone()
            .verify_otp(right)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::ResourceExhausted
    );

    // The resend cooldown opened on one replica holds on the others.
    for client in &clients[1..] {
        let request = pb::ResendOtpRequest {
            email: "otp@example.com".into(),
        };
        assert_eq!(
            client.clone().resend_otp(request).await.unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
    }

    // Rotation and reuse detection span replicas, with one shared signing key.
    register_on(&clients[1], "rotate@example.com").await;
    let code = smtp
        .nth_with_subject("rotate@example.com", "verification code", 1)
        .await
        .otp();
    clients[2]
        .clone()
        .verify_otp(pb::VerifyOtpRequest {
            email: "rotate@example.com".into(),
            otp: code,
        })
        .await
        .unwrap();
    let login = pb::LoginRequest {
        email: "rotate@example.com".into(),
        password: password.into(),
    };
    let first_pair = clients[0].clone().login(login).await.unwrap().into_inner();
    let second_pair = clients[1]
        .clone()
        .refresh(pb::RefreshRequest {
            refresh: first_pair.refresh.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let refresh_on = |replica: usize, refresh: &str| {
        let mut client = clients[replica].clone();
        let request = pb::RefreshRequest {
            refresh: refresh.to_owned(),
        };
        async move {
            client
                .refresh(request)
                .await
                .map(|r| r.into_inner().refresh)
        }
    };
    // A retry on another replica, within the grace, gets the same successor.
    let retried = refresh_on(2, &first_pair.refresh).await.unwrap();
    assert_eq!(retried, second_pair.refresh);
    // Once the successor is used (on a third replica), the old token is a stolen copy.
    let third = refresh_on(0, &second_pair.refresh).await.unwrap();
    let reuse = refresh_on(2, &first_pair.refresh).await.unwrap_err();
    assert_eq!(reuse.code(), tonic::Code::Unauthenticated);
    assert!(reuse.message().contains("already used"), "{reuse:?}");
    let revoked = refresh_on(1, &third).await.unwrap_err();
    assert_eq!(revoked.code(), tonic::Code::Unauthenticated);

    // Every queued email goes out exactly once while replicas stop and start.
    for n in 0..9 {
        register_on(&clients[n % clients.len()], &format!("mail{n}@example.com")).await;
        if n == 3 {
            let (status, _) = replicas.remove(1).terminate().await;
            assert!(status.success());
            clients.remove(1);
        }
        if n == 6 {
            let fresh = serve(&dir, &settings);
            clients.push(
                IdentityServiceClient::connect(format!("http://{}", fresh.grpc))
                    .await
                    .unwrap(),
            );
            replicas.push(fresh);
        }
    }
    for n in 0..9 {
        smtp.wait_for(&format!("mail{n}@example.com"), 1).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..9 {
        assert_eq!(
            smtp.to(&format!("mail{n}@example.com")).len(),
            1,
            "mail{n} got a duplicate"
        );
    }
    for replica in replicas {
        let (status, _) = replica.terminate().await;
        assert!(status.success());
    }
}

/// Three replicas on one Postgres database: the last-superuser rule, password changes and
/// address confirmations each hold when twenty calls arrive spread over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_rules_hold_across_three_replicas() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let smtp = FakeSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let support = "support-service-token-0123456789abcdef";
    let tokens = service_tokens_file(
        dir.path(),
        &[("support", "users:read,users:write", support)],
    );
    let mut settings = replica_settings(&database.url, smtp.port);
    settings.extend([
        ("SERVICE_TOKENS_FILE", tokens.clone()),
        ("RATE_LIMIT_VERIFY", "0".to_owned()),
    ]);
    let first = serve(&dir, &settings);
    let replicas = vec![first, serve(&dir, &settings), serve(&dir, &settings)];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(
            IdentityServiceClient::connect(format!("http://{}", replica.grpc))
                .await
                .unwrap(),
        );
    }
    let password = "a-long-enough-passphrase";
    let mut roots = Vec::new();
    for email in ["root1@example.com", "root2@example.com"] {
        let request = pb::CreateUserRequest {
            email: email.into(),
            password: password.into(),
            ..Default::default()
        };
        let user = clients[0]
            .clone()
            .create_user(TestApp::authorized(request, support))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        let promote = pb::UpdateUserRequest {
            id: user.id,
            is_superuser: true,
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["is_superuser".into()],
            }),
            ..Default::default()
        };
        clients[1]
            .clone()
            .update_user(TestApp::authorized(promote, support))
            .await
            .unwrap();
        roots.push(user.id);
    }

    // Twenty demotions over three replicas, half of each superuser: one remains.
    let demotions = (0..20).map(|n| {
        let client = clients[n % 3].clone();
        let target = roots[n % 2];
        tokio::spawn(async move {
            let demote = pb::UpdateUserRequest {
                id: target,
                update_mask: Some(pbjson_types::FieldMask {
                    paths: vec!["is_superuser".into()],
                }),
                ..Default::default()
            };
            client
                .clone()
                .update_user(TestApp::authorized(demote, support))
                .await
                .map(|_| target)
                .map_err(|status| status.code())
        })
    });
    let outcomes = futures_all(demotions.collect()).await;
    let demoted: std::collections::HashSet<i64> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .copied()
        .collect();
    assert_eq!(demoted.len(), 1, "{outcomes:?}");
    let mut superusers = 0;
    for id in &roots {
        let user = clients[2]
            .clone()
            .get_user(TestApp::authorized(pb::GetUserRequest { id: *id }, support))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        superusers += usize::from(user.is_superuser);
    }
    assert_eq!(superusers, 1);

    // Twenty password changes of one account over three replicas: one wins.
    let login = pb::LoginRequest {
        email: "root1@example.com".into(),
        password: password.into(),
    };
    let session = clients[0].clone().login(login).await.unwrap().into_inner();
    let changes = (0..20).map(|n| {
        let client = clients[n % 3].clone();
        let access = session.access.clone();
        tokio::spawn(async move {
            let change = pb::ChangePasswordRequest {
                current_password: password.into(),
                new_password: format!("replica-passphrase-{n}"),
                ..Default::default()
            };
            client
                .clone()
                .change_password(TestApp::authorized(change, &access))
                .await
                .is_ok()
        })
    });
    let won: Vec<bool> = futures_all(changes.collect()).await;
    assert_eq!(won.iter().filter(|ok| **ok).count(), 1, "{won:?}");

    // Twenty confirmations of one address change over three replicas: one moves it.
    let ask = pb::ChangeEmailRequest {
        new_email: "moved@example.com".into(),
        password: format!(
            "replica-passphrase-{}",
            won.iter().position(|ok| *ok).unwrap()
        ),
        ..Default::default()
    };
    clients[1]
        .clone()
        .change_email(TestApp::authorized(ask, &session.access))
        .await
        .unwrap();
    let otp = smtp
        .nth_with_subject("moved@example.com", "Confirm your new email", 1)
        .await
        .otp();
    let confirmations = (0..20).map(|n| {
        let client = clients[n % 3].clone();
        let access = session.access.clone();
        let otp = otp.clone();
        tokio::spawn(async move {
            let confirm = pb::ConfirmEmailChangeRequest { otp };
            client
                .clone()
                .confirm_email_change(TestApp::authorized(confirm, &access))
                .await
                .is_ok()
        })
    });
    let moved = futures_all(confirmations.collect()).await;
    assert_eq!(moved.iter().filter(|ok| **ok).count(), 1, "{moved:?}");
    smtp.wait_for("root1@example.com", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = smtp
        .to("root1@example.com")
        .into_iter()
        .filter(|mail| mail.subject.contains("email address was changed"))
        .count();
    assert_eq!(notices, 1);
    for replica in replicas {
        let (status, _) = replica.terminate().await;
        assert!(status.success());
    }
}

/// The whole Django cutover through the real binary, on each backend: `import-django`
/// beside a live `serve`, then the moved users sign in, follow the links Django mailed and
/// exchange the refresh tokens simplejwt issued (one voided by the reset since).
async fn a_django_cutover_runs_through_the_binary(backend: Backend) {
    let password = "a Django user's passphrase";
    let made = crate::django::django_made_users(password);
    let dump = made.path().join("users.json");
    let read = |name: &str| std::fs::read_to_string(made.path().join(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend).await;
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut settings = vec![
        ("DJANGO_SECRET_KEY", crate::django::DJANGO_SECRET_KEY),
        ("DJANGO_REFRESH_TOKENS_UNTIL", until.as_str()),
    ];
    if matches!(backend, Backend::Postgres) {
        settings.push(("DATABASE_URL", database.url.as_str()));
    }
    let served = serve(&dir, &settings);
    let imported = identity(
        &dir,
        &[
            "import-django",
            "--from-json",
            dump.to_str().unwrap(),
            "--inactive-means-unverified",
        ],
    )
    .envs(settings.iter().copied())
    .output()
    .unwrap();
    let summary = String::from_utf8_lossy(&imported.stdout);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        summary.contains("imported 7, updated 0, unchanged 0, skipped 1"),
        "{summary}"
    );
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();

    // A reset link Django mailed, then a sign-in with the new password.
    let (uidb64, token) = read("reset_links.txt")
        .lines()
        .next()
        .and_then(|line| {
            line.split_once(' ')
                .map(|(u, t)| (u.to_owned(), t.to_owned()))
        })
        .unwrap();
    let reset = pb::PasswordResetConfirmRequest {
        uidb64,
        token,
        new_password: "a new passphrase after the move".into(),
    };
    client.password_reset_confirm(reset).await.unwrap();
    let login = |email: &str, password: &str| pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    };
    client
        .login(login(
            "pbkdf2_sha256@example.com",
            "a new passphrase after the move",
        ))
        .await
        .unwrap();
    // Every other format signs in with the password it had in Django.
    for hasher in ["pbkdf2_sha1", "argon2", "bcrypt_sha256", "bcrypt"] {
        client
            .login(login(&format!("{hasher}@example.com"), password))
            .await
            .unwrap_or_else(|e| panic!("{hasher}: {e:?}"));
    }
    // The activation link Django mailed to the account that never activated.
    let link = read("activation_link.txt");
    let (uidb64, token) = link.trim().split_once(' ').unwrap();
    let activation = pb::ActivateRequest {
        uidb64: uidb64.into(),
        token: token.into(),
    };
    client.activate(activation).await.unwrap();
    client
        .login(login("pending@example.com", password))
        .await
        .unwrap();
    // The refresh token simplejwt issued before that reset opens nothing; another user's
    // becomes a session here.
    let voided = client
        .refresh(pb::RefreshRequest {
            refresh: read("refresh_token.txt"),
        })
        .await
        .unwrap_err();
    assert_eq!(voided.code(), tonic::Code::Unauthenticated, "{voided:?}");
    let exchanged = client
        .refresh(pb::RefreshRequest {
            refresh: read("other_refresh_token.txt"),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .refresh(pb::RefreshRequest {
            refresh: exchanged.refresh,
        })
        .await
        .unwrap();
    let (status, _) = served.terminate().await;
    assert!(status.success());
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

async fn register_on(client: &IdentityServiceClient<tonic::transport::Channel>, email: &str) {
    let request = pb::RegisterRequest {
        email: email.into(),
        password: "a-long-enough-passphrase".into(),
        ..Default::default()
    };
    client.clone().register(request).await.unwrap();
}

async fn futures_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

/// `migrate` and `create-superuser` as `kubectl exec` runs them in a serving pod: the same
/// environment, listen addresses included, on the server's database.
async fn operator_commands_run_beside_a_live_server(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_address(), free_address());
    let settings = [
        ("DATABASE_URL", database.url.as_str()),
        ("GRPC_LISTEN_ADDR", grpc.as_str()),
        ("HTTP_LISTEN_ADDR", http.as_str()),
    ];
    let served = serve(&dir, &settings);
    let beside = |args: &[&str]| {
        let mut command = identity(&dir, args);
        command.envs(settings);
        command
    };

    let migrated = beside(&["migrate"]).output().unwrap();
    let piped = run_with_stdin(
        beside(&["create-superuser", "--email", "ops1@example.com"]),
        "a-sturdy-admin-passphrase\n",
    );
    let typed = run_in_terminal(
        beside(&["create-superuser", "--email", "ops2@example.com"]),
        &["a-typed-admin-passphrase", "a-typed-admin-passphrase"],
    );
    let mismatched = run_in_terminal(
        beside(&["create-superuser", "--email", "ops3@example.com"]),
        &["a-typed-admin-passphrase", "a-typo-admin-passphrase"],
    );
    let taken = run_with_stdin(
        beside(&["create-superuser", "--email", "OPS1@example.com"]),
        "another-sturdy-passphrase\n",
    );

    for (what, output) in [("migrate", &migrated), ("piped", &piped)] {
        assert!(output.status.success(), "{what}: {}", stderr(output));
    }
    assert_eq!(typed.0, Some(0), "typed: {}", typed.1);
    assert_ne!(mismatched.0, Some(0), "mismatched passwords");
    assert!(mismatched.1.contains("do not match"), "{}", mismatched.1);
    assert!(!taken.status.success(), "the address is taken");
    assert_eq!(stderr(&taken).lines().count(), 1, "{}", stderr(&taken));
    assert!(
        stderr(&taken).contains("already exists"),
        "{}",
        stderr(&taken)
    );
    let mut client = IdentityServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    for (email, password) in [
        ("ops1@example.com", "a-sturdy-admin-passphrase"),
        ("ops2@example.com", "a-typed-admin-passphrase"),
    ] {
        let login = pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        };
        assert!(client.login(login).await.is_ok(), "{email} signs in");
    }
    let typo = pb::LoginRequest {
        email: "ops3@example.com".into(),
        password: "a-typed-admin-passphrase".into(),
    };
    assert!(client.login(typo).await.is_err(), "no account was made");
    let (status, _) = served.terminate().await;
    assert!(status.success());
}

crate::on_both_backends!(
    operator_commands_run_beside_a_live_server,
    a_django_cutover_runs_through_the_binary,
);

/// A loopback address no one listens on, for settings that must name a fixed port.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `command` with `input` on standard input; bounded, so a command that hangs fails.
fn run_with_stdin(mut command: Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let output = child.wait_with_output().unwrap();
    drop(watchdog);
    output
}

/// Runs `command` in a pseudo-terminal (util-linux `script`), answering each `Password`
/// prompt with the next of `answers` as a person types; returns the exit code and
/// everything the terminal showed. A command that hangs is killed after 30 s.
fn run_in_terminal(command: Command, answers: &[&str]) -> (Option<i32>, String) {
    let program = command.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut terminal = Command::new("script");
    terminal.args(["--quiet", "--return", "--command"]);
    terminal.arg(format!("{program} {}", args.join(" ")));
    terminal.arg("/dev/null");
    terminal.env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            terminal.env(key, value);
        }
    }
    terminal.current_dir(command.get_current_dir().unwrap());
    let mut child = terminal
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (shown_tx, shown_rx) = std::sync::mpsc::channel::<u8>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
            if shown_tx.send(byte[0]).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut shown = Vec::new();
    let mut answered = 0;
    let mut prompts_seen = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match shown_rx.recv_timeout(left) {
            Ok(byte) => shown.push(byte),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "the command hung in the terminal; it showed: {}",
                    String::from_utf8_lossy(&shown)
                );
            }
        }
        let prompts = String::from_utf8_lossy(&shown).matches("Password").count();
        if prompts > prompts_seen && shown.ends_with(b": ") {
            prompts_seen = prompts;
            if let Some(answer) = answers.get(answered) {
                stdin.write_all(format!("{answer}\r").as_bytes()).unwrap();
                stdin.flush().unwrap();
                answered += 1;
            }
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    (status.code(), String::from_utf8_lossy(&shown).into_owned())
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
