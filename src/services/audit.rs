//! Reading the audit trail (which each change writes in its own transaction, through the
//! core): staff and services with the `audit:read` scope page through it.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{
    Credentials, Services,
    core::{
        access::{Access, Principal},
        accounts::utc,
        paging::{one_page, rows_to_read},
    },
};
use crate::{
    auth::Scope,
    domain::{AuditKind, AuditPageToken, PageSize, UserId, query_fingerprint},
    error::{ServiceError, ServiceResult},
    storage::AuditFilter,
};

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Events that happened to this account.
    pub subject: Option<UserId>,
    /// Events of this kind.
    pub kind: Option<AuditKind>,
    /// At or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Before this instant.
    pub until: Option<DateTime<Utc>>,
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Position in the trail.
    pub id: i64,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// What happened.
    pub kind: String,
    /// How it ended.
    pub outcome: String,
    /// Who did it.
    pub actor: String,
    /// The account it happened to.
    pub subject: Option<UserId>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's device.
    pub user_agent: String,
    /// Details.
    pub detail: String,
}

/// One page of events, newest first.
#[derive(Debug)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// The token of the next (older) page, if there is one.
    pub next_page_token: Option<String>,
}

impl Services {
    /// Pages through the trail, newest first; staff and services with `audit:read`.
    ///
    /// # Errors
    /// Those of [`Services::require`]; `InvalidArgument` for a page token of a listing
    /// with other filters.
    #[tracing::instrument(skip_all)]
    pub async fn list_audit_events(
        &self,
        credentials: Credentials,
        query: AuditQuery,
        size: PageSize,
        token: AuditPageToken,
    ) -> ServiceResult<AuditPage> {
        let _: Principal = self
            .require(&credentials, Access::staff_or_service(Scope::AuditRead))
            .await?;
        let instant = |at: Option<DateTime<Utc>>| at.map(|at| at.to_rfc3339()).unwrap_or_default();
        let fingerprint = query_fingerprint(&[
            &query.subject.map(|id| id.to_string()).unwrap_or_default(),
            query.kind.map_or("", AuditKind::as_str),
            &instant(query.since),
            &instant(query.until),
        ]);
        if !token.continues(&fingerprint) {
            return Err(ServiceError::other_listing());
        }
        let filter = AuditFilter {
            subject: query.subject,
            kind: query.kind.map(AuditKind::as_str),
            since: query.since.map(|at| at.naive_utc()),
            until: query.until.map(|at| at.naive_utc()),
            before: token.before(),
        };
        let mut conn = self.connection().await?;
        let rows = conn
            .queries()
            .audit_events(&filter, rows_to_read(size))
            .await
            .context("listing audit events")?;
        let (rows, next_page_token) = one_page(rows, size, |last| {
            AuditPageToken::encode(last.id, &fingerprint)
        });
        let events = rows
            .into_iter()
            .map(|row| AuditEvent {
                id: row.id,
                occurred_at: utc(row.occurred_at),
                kind: row.kind,
                outcome: row.outcome,
                actor: row.actor,
                subject: row.subject_user_id,
                client_ip: row.client_ip,
                user_agent: row.user_agent,
                detail: row.detail,
            })
            .collect();
        Ok(AuditPage {
            events,
            next_page_token,
        })
    }
}
