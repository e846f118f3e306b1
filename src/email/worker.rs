//! The outbox worker: claims due emails with a lease (one conditional update, so replicas
//! never both win a row), sends them, and retries failures with exponential back-off.

use std::{sync::Arc, time::Duration};

use chrono::NaiveDateTime;
use tokio::sync::{Notify, watch};

use super::Transport;
use crate::{
    clock::{Clock, span},
    storage::Store,
    telemetry::Metrics,
};

/// Emails claimed per round.
const BATCH: i64 = 20;
/// Longest wait between two attempts at one email.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often expired state is purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// How long expired state is kept before it is purged (longer than any window or lifetime).
const RETENTION: Duration = Duration::from_secs(2 * 86_400);

/// Settings of the worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Attempts before an email is abandoned.
    pub max_attempts: u32,
    /// Delay after the first failure; doubles after each.
    pub retry_base: Duration,
    /// Wait between rounds when nothing wakes the worker.
    pub poll_interval: Duration,
    /// How long an account may stay unproven before it is purged.
    pub unverified_retention: Duration,
    /// How long audit events are kept.
    pub audit_retention: Duration,
    /// How long a claim lasts: longer than one SMTP exchange may take.
    pub lease: Duration,
}

/// Delivers the outbox until `shutdown` turns true; the email in hand is finished first.
pub async fn run(
    store: Store,
    transport: Transport,
    clock: Clock,
    config: WorkerConfig,
    metrics: Metrics,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_purge: Option<NaiveDateTime> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = clock.now_naive();
        if last_purge.is_none_or(|at| now - at >= span(PURGE_INTERVAL)) {
            last_purge = Some(now);
            purge(&store, &clock, config).await;
        }
        if let Err(error) =
            deliver_due(&store, &transport, &clock, config, &metrics, &shutdown).await
        {
            tracing::warn!(error.cause_chain = ?error, "outbox round failed; will retry");
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(config.poll_interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn deliver_due(
    store: &Store,
    transport: &Transport,
    clock: &Clock,
    config: WorkerConfig,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ids = {
        let mut conn = store.connection().await?;
        conn.queries()
            .due_email_ids(clock.now_naive(), BATCH)
            .await?
    };
    for id in ids {
        if *shutdown.borrow() {
            break;
        }
        let now = clock.now_naive();
        let claimed = {
            let mut conn = store.connection().await?;
            conn.queries()
                .claim_email(id, now, now + span(config.lease))
                .await?
        };
        let Some(email) = claimed else { continue };
        let outcome = transport.send(&email).await;
        match outcome {
            Ok(()) => {
                record_sent(store, clock, config, id).await?;
                metrics.email_delivery("sent");
                tracing::info!(outbox.id = id, "email delivered");
            }
            Err(error) => {
                let now = clock.now_naive();
                let attempts = u32::try_from(email.attempts).unwrap_or(u32::MAX);
                let retry_at = (!error.permanent && attempts < config.max_attempts)
                    .then(|| retry_time(now, config.retry_base, attempts));
                let mut conn = store.connection().await?;
                conn.queries()
                    .mark_email_failed(id, &error.reason, now, retry_at)
                    .await?;
                let outcome = match (retry_at, error.permanent) {
                    (Some(_), _) => "retrying",
                    (None, true) => "rejected",
                    (None, false) => "abandoned",
                };
                metrics.email_delivery(outcome);
                match outcome {
                    "retrying" => {
                        tracing::warn!(outbox.id = id, outbox.attempts = attempts, error = %error.reason, "email delivery failed; will retry");
                    }
                    "rejected" => {
                        tracing::error!(outbox.id = id, error = %error.reason, "the mail server refused the email for good; not retrying");
                    }
                    _ => {
                        tracing::error!(outbox.id = id, outbox.attempts = attempts, error = %error.reason, "email delivery failed; giving up");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Records a delivered email. Until this is written the claim is all that stops another
/// replica from sending it again, so a database that fails here is retried for half the
/// lease before the round gives up.
async fn record_sent(
    store: &Store,
    clock: &Clock,
    config: WorkerConfig,
    id: i64,
) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + config.lease / 2;
    let mut pause = Duration::from_millis(100);
    loop {
        let recorded = match store.connection().await {
            Ok(mut conn) => conn.queries().mark_email_sent(id, clock.now_naive()).await,
            Err(error) => Err(error),
        };
        match recorded {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(outbox.id = id, error = %error, "recording a delivered email failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context("recording a delivered email; it may be sent again"));
            }
        }
    }
}

/// Deletes expired limits, sessions, finished emails, accounts never proven and audit events
/// past their retention; a failure waits for the next round.
async fn purge(store: &Store, clock: &Clock, config: WorkerConfig) {
    let now = clock.now_naive();
    let before = |retention: Duration| now - span(retention);
    let outcome = match store.connection().await {
        Ok(mut conn) => {
            conn.queries()
                .purge_expired(
                    before(RETENTION),
                    before(config.unverified_retention),
                    before(config.audit_retention),
                )
                .await
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "purged expired state"),
        Err(error) => {
            tracing::warn!(error.cause_chain = ?error, "purging expired state failed; will retry")
        }
    }
}

/// `base * 2^(attempts-1)`, capped.
fn retry_time(now: NaiveDateTime, base: Duration, attempts: u32) -> NaiveDateTime {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    let delay = base.saturating_mul(factor).min(MAX_BACKOFF);
    now + span(delay)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::NaiveDateTime;

    use super::retry_time;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let now = NaiveDateTime::default();
        let base = Duration::from_secs(5);
        let delays: Vec<i64> = (1..=4)
            .map(|n| (retry_time(now, base, n) - now).num_seconds())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40]);
        assert_eq!((retry_time(now, base, 30) - now).num_seconds(), 3600);
    }
}
