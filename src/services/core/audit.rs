//! Entries of the audit trail, written in the transaction of the change they record.

use anyhow::Context;

use super::effects::Tx;
use crate::{
    domain::{Actor, AuditKind, AuditOutcome, UserId},
    error::ServiceResult,
    storage::NewAuditEvent,
};

/// One event about to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct AuditEntry {
    pub(crate) kind: AuditKind,
    pub(crate) outcome: AuditOutcome,
    pub(crate) actor: Actor,
    pub(crate) subject: Option<UserId>,
    /// What else an investigator needs; never a secret.
    pub(crate) detail: String,
}

impl AuditEntry {
    /// A successful event `actor` caused to `subject`.
    pub(crate) fn success(kind: AuditKind, actor: Actor, subject: UserId) -> Self {
        Self {
            kind,
            outcome: AuditOutcome::Success,
            actor,
            subject: Some(subject),
            detail: String::new(),
        }
    }

    /// The same entry, with details.
    pub(crate) fn detail(self, detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            ..self
        }
    }
}

impl Tx<'_, '_> {
    /// Records one event, by the transaction's caller, as part of the transaction.
    pub(crate) async fn audit(&mut self, entry: AuditEntry) -> ServiceResult<()> {
        let event = NewAuditEvent {
            occurred_at: self.now_naive(),
            kind: entry.kind.as_str(),
            outcome: entry.outcome.as_str(),
            actor: entry.actor.to_string(),
            subject_user_id: entry.subject,
            client_ip: self.caller.ip.map(|ip| ip.to_string()),
            user_agent: self.caller.device.as_str().to_owned(),
            detail: entry.detail,
        };
        self.record_audit_event(&event)
            .await
            .context("recording an audit event")?;
        Ok(())
    }
}
