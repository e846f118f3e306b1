//! For backend services that trust `identity`'s access tokens: the key set, introspection
//! that sees revocations at once, and the revocation log they can follow. Callers prove
//! they are a service with a service token; end-user tokens are refused.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{
    Credentials, Services,
    core::{
        access::{Access, Authenticated, Principal},
        accounts::utc,
    },
};
use crate::{
    auth::{BearerToken, Scope},
    domain::{SessionId, UserId},
    error::{ServiceError, ServiceResult},
};

/// Revocations a stream reads from the log at a time.
const REVOCATION_BATCH: i64 = 500;

/// One entry of the revocation log.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// One session's tokens are void.
    Session {
        /// Position in the log.
        cursor: i64,
        /// The session (`sid`).
        session_id: SessionId,
    },
    /// Every token of a user issued before an instant is void.
    User {
        /// Position in the log.
        cursor: i64,
        /// The user (`sub`).
        user_id: UserId,
        /// Tokens issued before this are void.
        not_valid_before: DateTime<Utc>,
    },
}

/// A read of the revocation log.
#[derive(Debug, Clone)]
pub struct RevocationBatch {
    /// The entries, in order.
    pub revocations: Vec<Revocation>,
    /// Whether nothing further was logged when it was read.
    pub drained: bool,
}

impl Services {
    /// Whether an access token is live now, and for whom: `None` for any token that is not
    /// (malformed, forged, expired, revoked, of a disabled user, or none at all), without
    /// saying why. For services with the `introspect` scope.
    ///
    /// # Errors
    /// Those of [`Services::require`]; otherwise only when the database fails.
    pub async fn introspect(
        &self,
        credentials: &Credentials,
        token: Option<BearerToken>,
    ) -> ServiceResult<Option<Authenticated>> {
        let _: Principal = self
            .require(credentials, Access::service(Scope::Introspect))
            .await?;
        let Some(token) = token else {
            return Ok(None);
        };
        match self.authenticate(Some(&token)).await {
            Ok(live) => Ok(Some(live)),
            Err(
                error @ (ServiceError::Unexpected(_)
                | ServiceError::DatabaseUnavailable(_)
                | ServiceError::StorageFull(_)),
            ) => Err(error),
            Err(_) => Ok(None),
        }
    }

    /// The published keys, as JWKs, for services with the `jwks` scope.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    pub async fn published_keys(
        &self,
        credentials: &Credentials,
    ) -> ServiceResult<Vec<serde_json::Value>> {
        let _: Principal = self
            .require(credentials, Access::service(Scope::Jwks))
            .await?;
        Ok(self.tokens.jwks(self.clock.now())["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Admits a reader of the revocation log: a service with the `revocations` scope.
    ///
    /// # Errors
    /// Those of [`Services::require`].
    pub async fn admit_revocation_reader(&self, credentials: &Credentials) -> ServiceResult<()> {
        let _: Principal = self
            .require(credentials, Access::service(Scope::Revocations))
            .await?;
        Ok(())
    }

    /// The revocations logged after `cursor`, in order (a bounded batch), and whether they
    /// are all the log holds after it.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revocations_after(&self, cursor: i64) -> ServiceResult<RevocationBatch> {
        let mut conn = self.connection().await?;
        let rows = conn
            .queries()
            .revocations_after(cursor, REVOCATION_BATCH)
            .await
            .context("reading the revocation log")?;
        let drained = rows.len() < usize::try_from(REVOCATION_BATCH).unwrap_or(usize::MAX);
        let revocations = rows
            .into_iter()
            .filter_map(|row| {
                let cursor = row.position?;
                match (row.session_id, row.user_id, row.not_valid_before) {
                    (Some(session_id), _, _) => Some(Revocation::Session { cursor, session_id }),
                    (None, Some(user_id), Some(at)) => Some(Revocation::User {
                        cursor,
                        user_id,
                        not_valid_before: utc(at),
                    }),
                    _ => None,
                }
            })
            .collect();
        Ok(RevocationBatch {
            revocations,
            drained,
        })
    }
}
