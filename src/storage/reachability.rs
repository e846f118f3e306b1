//! Whether the database answers, as the pool's latest attempt to open a connection found it.
//!
//! While it does not, a checkout fails at once instead of waiting out the pool's timeout, and
//! readiness is told the moment the state changes.

use std::sync::Arc;

use tokio::sync::watch;

/// The database's reachability, shared by the pool's connection set-up and its checkouts.
#[derive(Clone)]
pub(super) struct Reachability(Arc<watch::Sender<bool>>);

impl Reachability {
    /// Reachable until an attempt to connect says otherwise.
    pub(super) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(true)))
    }

    /// A connection was opened; whether the database was unreachable until now.
    pub(super) fn connected(&self) -> bool {
        self.0
            .send_if_modified(|reachable| !std::mem::replace(reachable, true))
    }

    /// An attempt to open a connection failed; whether the database was reachable until now.
    pub(super) fn failed(&self) -> bool {
        self.0
            .send_if_modified(|reachable| std::mem::replace(reachable, false))
    }

    pub(super) fn is_reachable(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the database stops being reachable (at once if it is not).
    pub(super) async fn lost(&self) {
        let mut changes = self.0.subscribe();
        // The sender lives in `self`, so this only ends by seeing `false`.
        let _ = changes.wait_for(|reachable| !reachable).await;
    }

    /// Every change, for readiness.
    pub(super) fn changes(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Reachability;

    #[tokio::test]
    async fn a_failed_connect_wakes_whoever_waits_for_the_loss_and_a_success_clears_it() {
        let reachability = Reachability::new();
        let mut changes = reachability.changes();
        let waiter = tokio::spawn({
            let reachability = reachability.clone();
            async move { reachability.lost().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        assert!(!reachability.connected());
        assert!(!changes.has_changed().unwrap(), "no change while reachable");
        assert!(reachability.failed());
        waiter.await.unwrap();
        assert!(!reachability.is_reachable());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(!reachability.failed());
        assert!(
            !changes.has_changed().unwrap(),
            "a second failure is no news"
        );
        assert!(reachability.connected());
        assert!(reachability.is_reachable());
        assert!(changes.has_changed().unwrap());
    }
}
