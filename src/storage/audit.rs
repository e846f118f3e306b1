//! Queries on `audit_events`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{AuditEventRow, NewAuditEvent, Queries, StoreError, on_backend, schema::audit_events};
use crate::domain::UserId;

/// Which events a listing returns; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events that happened to this account.
    pub subject: Option<UserId>,
    /// Events of this kind.
    pub kind: Option<&'static str>,
    /// Events at or after this instant (UTC).
    pub since: Option<NaiveDateTime>,
    /// Events before this instant (UTC).
    pub until: Option<NaiveDateTime>,
    /// Events older than this position (the page before), newest first.
    pub before: Option<i64>,
}

impl Queries<'_> {
    /// Appends one event to the trail.
    ///
    /// # Errors
    /// On database failure.
    pub async fn record_audit_event(&mut self, event: &NewAuditEvent) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(audit_events::table)
                .values(event)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Up to `limit` events matching `filter`, newest first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn audit_events(
        &mut self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        on_backend!(self, conn => {
            let mut query = audit_events::table
                .select(AuditEventRow::as_select())
                .order(audit_events::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(subject) = filter.subject {
                query = query.filter(audit_events::subject_user_id.eq(subject));
            }
            if let Some(kind) = filter.kind {
                query = query.filter(audit_events::kind.eq(kind));
            }
            if let Some(since) = filter.since {
                query = query.filter(audit_events::occurred_at.ge(since));
            }
            if let Some(until) = filter.until {
                query = query.filter(audit_events::occurred_at.lt(until));
            }
            if let Some(before) = filter.before {
                query = query.filter(audit_events::id.lt(before));
            }
            query.load(conn).await
        })
    }
}
