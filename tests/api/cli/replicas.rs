//! Three replicas of the binary on one Postgres database: limits, key rotation, email and the
//! account rules hold across them.

use std::time::Duration;

use identity::pb::{self, identity_service_client::IdentityServiceClient};
use tonic::transport::Channel;

use super::{futures_all, register_on};
use crate::{
    binary::{Served, replica_settings, serve},
    fake_smtp::FakeSmtp,
    helpers::{Backend, TestApp, TestDatabase, service_tokens_file},
};

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
    let mut clients = clients_of(&replicas).await;
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
    let clients = clients_of(&replicas).await;
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

/// A gRPC client of each replica.
async fn clients_of(replicas: &[Served]) -> Vec<IdentityServiceClient<Channel>> {
    let mut clients = Vec::new();
    for replica in replicas {
        let client = IdentityServiceClient::connect(format!("http://{}", replica.grpc))
            .await
            .unwrap();
        clients.push(client);
    }
    clients
}
