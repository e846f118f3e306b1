//! A user's own devices: the live sessions they can see and end, one at a time or all but
//! the one in hand.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{
    Caller, Credentials, Services,
    core::{
        access::{Access, Authenticated},
        accounts::utc,
        audit::AuditEntry,
    },
};
use crate::{
    domain::{Actor, AuditKind, DeviceName, SessionId},
    error::{ServiceError, ServiceResult},
};

/// One live session, as its owner sees it.
#[derive(Debug, Clone)]
pub struct Device {
    /// The session.
    pub session_id: SessionId,
    /// What the client called itself at sign-in.
    pub device: DeviceName,
    /// The client's address at sign-in.
    pub ip: Option<String>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it was last refreshed.
    pub last_refreshed_at: Option<DateTime<Utc>>,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
    /// Whether the caller's token belongs to it.
    pub current: bool,
}

impl Services {
    /// The bearer's live sessions, newest first.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    pub async fn list_sessions(&self, credentials: Credentials) -> ServiceResult<Vec<Device>> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let mut conn = self.connection().await?;
        let sessions = conn
            .queries()
            .live_sessions(me.user.id, self.clock.now_naive())
            .await
            .context("listing sessions")?;
        Ok(sessions
            .into_iter()
            .map(|session| Device {
                current: session.id.as_str() == me.claims.sid,
                session_id: session.id,
                device: DeviceName::from_stored(session.device),
                ip: session.client_ip,
                created_at: utc(session.created_at),
                last_refreshed_at: session.last_refreshed_at.map(utc),
                expires_at: utc(session.expires_at),
            })
            .collect())
    }

    /// Ends one of the bearer's own live sessions.
    ///
    /// # Errors
    /// Those of [`Services::require`]; `NotFound` alike for a session that is not the
    /// bearer's, unknown, or already ended.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_own_session(
        &self,
        caller: Caller,
        credentials: Credentials,
        session_id: SessionId,
    ) -> ServiceResult<()> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let me = me.user.id;
        self.transaction(&caller, async |tx| {
            let now = tx.now_naive();
            let owned = tx
                .session(&session_id)
                .await
                .context("loading the session")?
                .is_some_and(|session| session.user_id == me);
            // The conditional revoke decides races: of twenty at once, one ends it.
            if !owned
                || !tx
                    .revoke_session(&session_id, now)
                    .await
                    .context("revoking the session")?
            {
                return Err(ServiceError::NotFound);
            }
            let entry = AuditEntry::success(AuditKind::SessionRevoke, Actor::User(me), me)
                .detail(format!("session={session_id} by=owner"));
            tx.audit(entry).await
        })
        .await?;
        tracing::info!(user.id = %me, session.id = %session_id, "session ended by its owner");
        Ok(())
    }

    /// Ends every session of the bearer but the one its token belongs to; returns how many.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    #[tracing::instrument(skip_all)]
    pub async fn logout_others(
        &self,
        caller: Caller,
        credentials: Credentials,
    ) -> ServiceResult<u64> {
        let me: Authenticated = self.require(&credentials, Access::SIGNED_IN).await?;
        let current = SessionId::parse(&me.claims.sid).map_err(|_| ServiceError::TokenInvalid)?;
        let user_id = me.user.id;
        let revoked = self
            .transaction(&caller, async |tx| {
                let now = tx.now_naive();
                let revoked = tx
                    .revoke_other_sessions(user_id, &current, now)
                    .await
                    .context("revoking the other sessions")?;
                let entry =
                    AuditEntry::success(AuditKind::LogoutOthers, Actor::User(user_id), user_id)
                        .detail(format!("sessions_revoked={revoked}"));
                tx.audit(entry).await?;
                Ok::<_, ServiceError>(revoked)
            })
            .await?;
        tracing::info!(user.id = %user_id, sessions = revoked, "signed out elsewhere");
        Ok(u64::try_from(revoked).unwrap_or(u64::MAX))
    }
}
