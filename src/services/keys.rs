//! The access-token signing keys: a set kept in the database that rotates by time. A new key
//! is published one publication lead before it signs; the latest key whose activation has
//! come signs; a retired key stays published until every token it signed has expired, then
//! goes. Each replica reloads the set on a timer and derives the same states from the times,
//! so replicas agree without talking.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::{Services, core::accounts::utc};
use crate::{
    auth::{KeyEncryption, ScheduledKey, Sealed, TokenIssuer},
    clock::{Clock, span},
    config::JwtConfig,
    error::ServiceResult,
    storage::{SigningKeyRow, Store},
};

/// Where versions before the key set kept their one generated key; it becomes the first.
const LEGACY_SIGNING_KEY: &str = "jwt_ed25519_pkcs8_pem";

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    /// Signing.
    Active,
    /// Replaced, published while tokens it signed may live.
    Retired,
    /// Every token it signed has expired; it is removed at the next maintenance.
    Expired,
}

impl KeyState {
    /// The state's name, as `identity keys list` prints it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Expired => "expired",
        }
    }
}

/// One key of the set, as an operator sees it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Its place in the sequence of keys.
    pub generation: i64,
    /// Where it is in its life now.
    pub state: KeyState,
    /// When it signs from.
    pub activates_at: DateTime<Utc>,
}

/// The key set at start-up: the stored keys, or a first key (the one an older version
/// generated, if there is one, so its tokens stay valid).
///
/// # Errors
/// When the database fails or a stored key does not open.
pub async fn initial_key_set(
    store: &Store,
    encryption: &KeyEncryption,
    clock: &Clock,
) -> anyhow::Result<Vec<ScheduledKey>> {
    let mut conn = store.connection().await?;
    let mut queries = conn.queries();
    if queries.signing_keys().await?.is_empty() {
        let now = clock.now_naive();
        let (pem, activates_at) = match queries.secret(LEGACY_SIGNING_KEY).await? {
            Some(pem) => (pem, DateTime::UNIX_EPOCH.naive_utc()),
            None => (TokenIssuer::generate_ed25519_pem()?, now),
        };
        let first = SigningKeyRow {
            kid: TokenIssuer::kid_of_pem(&pem)?,
            generation: 1,
            private_key: encryption.seal(Sealed::SigningKey, &pem)?,
            created_at: now,
            activates_at,
        };
        // Replicas starting at once race here; the one that wins is everyone's first key.
        queries.insert_signing_key(&first).await?;
    }
    let rows = queries.signing_keys().await?;
    open_all(&rows, encryption)
}

fn open_all(
    rows: &[SigningKeyRow],
    encryption: &KeyEncryption,
) -> anyhow::Result<Vec<ScheduledKey>> {
    rows.iter()
        .map(|row| {
            Ok(ScheduledKey {
                pem: encryption
                    .open(Sealed::SigningKey, &row.private_key)
                    .with_context(|| format!("opening signing key {}", row.kid))?,
                activates_at: utc(row.activates_at),
            })
        })
        .collect()
}

impl Services {
    /// The key set and each key's state now.
    ///
    /// # Errors
    /// On database failure.
    pub async fn signing_keys(&self) -> ServiceResult<Vec<KeyInfo>> {
        let rows = self.stored_keys().await?;
        Ok(self.key_infos(&rows, self.clock.now()))
    }

    /// Schedules a new key to sign one publication lead from now (`identity keys rotate`),
    /// unless one is scheduled already; returns the key that will sign next.
    ///
    /// # Errors
    /// On database failure, or when keys are pinned (`JWT_PRIVATE_KEY_FILE`, HS256).
    pub async fn rotate_signing_key(&self) -> ServiceResult<KeyInfo> {
        if !self.tokens.is_rotating() {
            return Err(anyhow::anyhow!(
                "signing keys are pinned (JWT_PRIVATE_KEY_FILE or HS256): nothing to rotate"
            )
            .into());
        }
        let now = self.clock.now();
        let rows = self.stored_keys().await?;
        if rows
            .last()
            .is_none_or(|newest| utc(newest.activates_at) <= now)
        {
            let at = now + span(self.config.jwt.key_publication_lead());
            self.schedule_key(&rows, at.naive_utc()).await?;
        }
        let rows = self.stored_keys().await?;
        self.reload_keys(&rows)?;
        self.key_infos(&rows, now)
            .into_iter()
            .next_back()
            .ok_or_else(|| anyhow::anyhow!("the key set is empty").into())
    }

    /// What every replica does on its timer: schedule the next key when the active one's
    /// period is ending, remove keys whose tokens have all expired, and reload the set.
    ///
    /// # Errors
    /// On database failure, or when a stored key does not open.
    pub async fn maintain_signing_keys(&self) -> ServiceResult<()> {
        if !self.tokens.is_rotating() {
            return Ok(());
        }
        let now = self.clock.now();
        let jwt = &self.config.jwt;
        let mut rows = self.stored_keys().await?;
        if let Some(newest) = rows.last()
            && utc(newest.activates_at) <= now
        {
            let due = utc(newest.activates_at) + span(jwt.key_rotation_period);
            let earliest = now + span(jwt.key_publication_lead());
            if due <= earliest {
                self.schedule_key(&rows, earliest.max(due).naive_utc())
                    .await?;
                rows = self.stored_keys().await?;
            }
        }
        let expired: Vec<String> = self
            .key_infos(&rows, now)
            .into_iter()
            .filter(|key| key.state == KeyState::Expired)
            .map(|key| key.kid)
            .collect();
        if !expired.is_empty() {
            let mut conn = self.connection().await?;
            conn.queries()
                .delete_signing_keys(&expired)
                .await
                .context("removing expired signing keys")?;
            tracing::info!(keys = ?expired, "expired signing keys removed");
            rows.retain(|row| !expired.contains(&row.kid));
        }
        self.reload_keys(&rows)
    }

    async fn stored_keys(&self) -> ServiceResult<Vec<SigningKeyRow>> {
        let mut conn = self.connection().await?;
        Ok(conn
            .queries()
            .signing_keys()
            .await
            .context("loading the signing keys")?)
    }

    /// Writes the next generation's key; of replicas racing, one key is written.
    async fn schedule_key(
        &self,
        rows: &[SigningKeyRow],
        activates_at: NaiveDateTime,
    ) -> ServiceResult<()> {
        let pem = TokenIssuer::generate_ed25519_pem()?;
        let key = SigningKeyRow {
            kid: TokenIssuer::kid_of_pem(&pem)?,
            generation: rows.last().map_or(1, |newest| newest.generation + 1),
            private_key: self.key_encryption.seal(Sealed::SigningKey, &pem)?,
            created_at: self.clock.now_naive(),
            activates_at,
        };
        let mut conn = self.connection().await?;
        let written = conn
            .queries()
            .insert_signing_key(&key)
            .await
            .context("scheduling the next signing key")?;
        if written {
            tracing::info!(key.id = %key.kid, key.activates_at = %activates_at, "next signing key published");
        }
        Ok(())
    }

    fn reload_keys(&self, rows: &[SigningKeyRow]) -> ServiceResult<()> {
        let keys = open_all(rows, &self.key_encryption)?;
        self.tokens.replace_keys(&keys)?;
        Ok(())
    }

    fn key_infos(&self, rows: &[SigningKeyRow], now: DateTime<Utc>) -> Vec<KeyInfo> {
        let active = rows
            .iter()
            .rposition(|row| utc(row.activates_at) <= now)
            .unwrap_or(0);
        rows.iter()
            .enumerate()
            .map(|(n, row)| {
                let state = if n == active {
                    KeyState::Active
                } else if n > active {
                    KeyState::Next
                } else if rows.get(n + 1).is_some_and(|successor| {
                    self.tokens.still_needed(utc(successor.activates_at), now)
                }) {
                    KeyState::Retired
                } else {
                    KeyState::Expired
                };
                KeyInfo {
                    kid: row.kid.clone(),
                    generation: row.generation,
                    state,
                    activates_at: utc(row.activates_at),
                }
            })
            .collect()
    }
}

/// How often each replica reloads and maintains the key set, at least once a second.
#[must_use]
pub fn refresh_interval(jwt: &JwtConfig) -> Duration {
    jwt.key_refresh_interval.max(Duration::from_secs(1))
}
