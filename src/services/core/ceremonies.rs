//! WebAuthn ceremonies as the features run them: the relying party, the handle an account
//! is known by to authenticators, and each ceremony's state, kept in the database (replicas
//! keep nothing), taken once and only for its own kind.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::effects::Tx;
use crate::{
    auth::{CEREMONY_TIMEOUT, Ceremony, RelyingParty},
    clock::span,
    domain::UserId,
    error::{ServiceError, ServiceResult},
    services::Services,
    storage::{CeremonyRow, Queries},
};

/// What a ceremony is for: a finish takes only a ceremony of its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CeremonyKind {
    /// Registering a passkey on the signed-in account.
    Registration,
    /// Signing in with a passkey.
    SignIn,
    /// Proving a passkey as a second factor (after a first factor, or to step up).
    SecondFactor,
}

impl CeremonyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::SignIn => "sign_in",
            Self::SecondFactor => "second_factor",
        }
    }
}

/// A started ceremony, as the browser's page needs it.
#[derive(Debug)]
pub struct StartedCeremony {
    /// The id the finish names.
    pub ceremony_id: String,
    /// The W3C JSON options for `navigator.credentials.create` or `.get`.
    pub options: Value,
    /// When the ceremony stops working.
    pub expires_at: DateTime<Utc>,
}

impl Services {
    /// The relying party, or why there is none.
    pub(crate) fn relying_party(&self) -> ServiceResult<&RelyingParty> {
        self.relying_party
            .as_ref()
            .ok_or(ServiceError::PasskeysNotConfigured)
    }

    /// The WebAuthn user handle of an account: derived with the server secret, so it names
    /// the account to its own passkeys without revealing its id or address.
    pub(crate) fn webauthn_handle(&self, user_id: UserId) -> Uuid {
        let mac = self
            .secret
            .mac("webauthn-user-handle", &[&user_id.get().to_be_bytes()]);
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&mac[..16]);
        Uuid::from_bytes(bytes)
    }

    /// Keeps a started ceremony's state for five minutes and answers what the page needs.
    pub(crate) async fn keep_ceremony(
        &self,
        kind: CeremonyKind,
        user_id: Option<UserId>,
        ceremony: Ceremony,
    ) -> ServiceResult<StartedCeremony> {
        let now = self.clock.now();
        let expires_at = now + span(CEREMONY_TIMEOUT);
        let row = CeremonyRow {
            id: Uuid::new_v4().to_string(),
            kind: kind.as_str().to_owned(),
            user_id,
            state: ceremony.state,
            created_at: now.naive_utc(),
            expires_at: expires_at.naive_utc(),
            used_at: None,
        };
        self.connection()
            .await?
            .queries()
            .insert_ceremony(&row)
            .await
            .context("keeping the ceremony")?;
        Ok(StartedCeremony {
            ceremony_id: row.id,
            options: ceremony.options,
            expires_at,
        })
    }

    /// Takes a ceremony of `kind` to finish it, once.
    ///
    /// # Errors
    /// `TokenExpired` for one that lapsed; `TokenInvalid` for an unknown, used or other kind.
    pub(crate) async fn take_ceremony(
        &self,
        id: &str,
        kind: CeremonyKind,
    ) -> ServiceResult<CeremonyRow> {
        let now = self.clock.now_naive();
        let mut conn = self.connection().await?;
        take(&mut conn.queries(), id, kind, now).await
    }
}

impl Tx<'_, '_> {
    /// [`Services::take_ceremony`], in this transaction.
    pub(crate) async fn take_ceremony(
        &mut self,
        id: &str,
        kind: CeremonyKind,
    ) -> ServiceResult<CeremonyRow> {
        let now = self.now_naive();
        take(self, id, kind, now).await
    }
}

async fn take(
    queries: &mut Queries<'_>,
    id: &str,
    kind: CeremonyKind,
    now: NaiveDateTime,
) -> ServiceResult<CeremonyRow> {
    if let Some(row) = queries
        .take_ceremony(id, kind.as_str(), now)
        .await
        .context("taking the ceremony")?
    {
        return Ok(row);
    }
    let lapsed = queries
        .ceremony(id)
        .await
        .context("loading the ceremony")?
        .is_some_and(|row| {
            row.kind == kind.as_str() && row.used_at.is_none() && row.expires_at <= now
        });
    Err(if lapsed {
        ServiceError::TokenExpired
    } else {
        ServiceError::TokenInvalid
    })
}
