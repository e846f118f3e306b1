//! The mail server failing: down, slow, refusing for now or for good, dropping the
//! connection mid-message; and a replica killed while it holds claims on the outbox.

use std::time::Duration;

use identity::pb::{self, identity_service_client::IdentityServiceClient};

use crate::{
    binary::{replica_settings, serve},
    fake_smtp::{Behaviour, FakeSmtp},
    helpers::{Backend, PASSWORD, TestApp, TestDatabase},
};

/// The value of one sample (`name{labels}`) in Prometheus text, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Every address got each of its emails exactly once.
fn assert_each_sent_once(smtp: &FakeSmtp, addresses: &[&str], per_address: usize) {
    for address in addresses {
        let mut subjects: Vec<String> = smtp.to(address).into_iter().map(|m| m.subject).collect();
        subjects.sort();
        let received = subjects.len();
        subjects.dedup();
        assert_eq!(
            (received, subjects.len()),
            (per_address, per_address),
            "{address} received {subjects:?}"
        );
    }
}

/// Mail queued while the server is down, refusing for now, dropping connections mid-DATA and
/// answering too slowly is all delivered once it recovers, each message once; meanwhile the
/// outbox's depth and the age of its oldest message show in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_through_an_smtp_outage_is_delivered_once_after_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("EMAIL_PORT", port.as_str()),
            ("EMAIL_TIMEOUT_MS", "300"),
            ("EMAIL_MAX_ATTEMPTS", "1000"),
        ],
    )
    .await;
    let addresses = ["ada@example.com", "grace@example.com", "edsger@example.com"];
    for address in addresses {
        app.register(address, PASSWORD).await.unwrap();
    }

    // Down: nothing listens on the port.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app.metrics().await;
        let pending = sample(&metrics, "identity_outbox_pending_emails");
        let oldest = sample(&metrics, "identity_outbox_oldest_pending_seconds");
        let retrying = sample(
            &metrics,
            r#"identity_email_deliveries_total{outcome="retrying"}"#,
        );
        if pending == Some(3.0) && oldest.is_some_and(|age| age > 0.0) && retrying > Some(3.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pending {pending:?}, oldest {oldest:?}, retrying {retrying:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Up, but failing in every way a server can, each for a few attempts.
    let smtp = FakeSmtp::start_on(port.parse().unwrap()).await;
    for behaviour in [
        Behaviour::RefuseForNow,
        Behaviour::DropMidData,
        Behaviour::SlowGreeting(Duration::from_secs(1)),
    ] {
        smtp.behave(behaviour);
        let failures = smtp.failures();
        smtp.wait_for_failures(failures + 3).await;
        assert!(smtp.all().is_empty(), "{behaviour:?} delivered mail");
    }

    smtp.behave(Behaviour::Accept);
    for address in addresses {
        smtp.wait_for(address, 1).await;
    }
    app.settle_outbox().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_sent_once(&smtp, &addresses, 1);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(&metrics, "identity_outbox_oldest_pending_seconds"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"identity_email_deliveries_total{outcome="sent"}"#
        ),
        Some(3.0)
    );
}

/// A message the server refuses for good (5xx) is tried once, counted as rejected and never
/// sent later; mail after it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_not_retried_and_is_counted() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("EMAIL_MAX_ATTEMPTS", "1000")]).await;
    app.smtp.behave(Behaviour::RefuseForGood);
    app.register("ada@example.com", PASSWORD).await.unwrap();
    app.smtp.wait_for_failures(1).await;
    app.settle_outbox().await;
    // Several of the worker's rounds (100 ms apart here) pass without another try.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.smtp.failures(), 1);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"identity_email_deliveries_total{outcome="rejected"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"identity_email_deliveries_total{outcome="retrying"}"#
        ),
        None
    );

    app.smtp.behave(Behaviour::Accept);
    app.register("grace@example.com", PASSWORD).await.unwrap();
    app.smtp.wait_for("grace@example.com", 1).await;
    app.settle_outbox().await;
    assert!(app.smtp.to("ada@example.com").is_empty());
}

/// A replica killed with SIGKILL while it sends (its claim still held) leaves that email to
/// another replica, which sends it once the claim's lease runs out, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_a_claim_leaves_the_email_to_another_once() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let smtp = FakeSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = replica_settings(&database.url, smtp.port);
    settings.extend([
        ("EMAIL_RETRY_BASE", "0".to_owned()),
        ("EMAIL_TIMEOUT_MS", "2000".to_owned()),
        ("EMAIL_LEASE_MS", "3000".to_owned()),
    ]);
    smtp.behave(Behaviour::Stall);
    let mut doomed = serve(&dir, &settings);
    let mut client = IdentityServiceClient::connect(format!("http://{}", doomed.grpc))
        .await
        .unwrap();
    let request = pb::RegisterRequest {
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    client.register(request).await.unwrap();
    // Its worker has claimed the first email and waits on the stalled server.
    smtp.wait_for_failures(1).await;
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    assert!(smtp.all().is_empty());

    smtp.behave(Behaviour::Accept);
    let survivor = serve(&dir, &settings);
    smtp.wait_for("ada@example.com", 1).await;
    // Well past another lease: nothing is sent again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_each_sent_once(&smtp, &["ada@example.com"], 1);
    let (status, _) = survivor.terminate().await;
    assert!(status.success());
}
