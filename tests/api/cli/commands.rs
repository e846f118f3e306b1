//! The operator commands: `migrate`, `create-superuser` (stdin and a real terminal), and both run
//! beside a live server as `kubectl exec` does.

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use super::{create_superuser, free_address, run_in_terminal, run_with_stdin, stderr};
use crate::{
    binary::{identity, serve},
    helpers::{Backend, TestDatabase},
};

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

crate::on_both_backends!(operator_commands_run_beside_a_live_server);
