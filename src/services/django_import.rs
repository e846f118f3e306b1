//! Moving from Django. The import writes a Django deployment's users: ids, addresses,
//! names, flags, dates, and the password hash exactly as Django stored it (login verifies
//! and upgrades it). Re-running updates what it wrote before and never duplicates; an
//! address two source accounts share by case is imported once and the other reported.
//! After the switch, a refresh token Django issued is exchanged here once for a session.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{Caller, Services, sessions::TokenPair};
use crate::{
    auth::{DjangoTokenError, HashFormat, StoredHash},
    domain::{Email, PersonName, UserId},
    error::{ServiceError, ServiceResult},
    storage::{DjangoLinkRow, ImportedUser, Queries},
};

/// One account as a Django source holds it.
#[derive(Debug, Clone)]
pub struct DjangoAccount {
    /// Its primary key.
    pub id: i64,
    /// Its address, as Django stored it.
    pub email: String,
    /// Its `password` field, exactly as Django stored it.
    pub password: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// May sign in.
    pub is_active: bool,
    /// Staff.
    pub is_staff: bool,
    /// Superuser.
    pub is_superuser: bool,
    /// Whether it proved its address, where the model records it; otherwise it counts as
    /// proven (the Django deployment let it sign in).
    pub is_verified: Option<bool>,
    /// When it was made.
    pub date_joined: DateTime<Utc>,
    /// When it last signed in.
    pub last_login: Option<DateTime<Utc>>,
}

/// How to treat what the import cannot carry over as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Import accounts whose hash format this build cannot check, without a usable password
    /// (they reset it); otherwise they are skipped.
    pub unknown_hashes_as_unusable: bool,
    /// The model marks an account that has not proven its address as inactive (the seed's
    /// way): import those active but unverified, so their activation link or a new code
    /// lets them in, rather than disabled.
    pub inactive_means_unverified: bool,
}

/// One account the import left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedAccount {
    /// Its id in the source.
    pub id: i64,
    /// Why.
    pub reason: String,
}

/// What an import did so far.
#[derive(Debug, Default)]
pub struct ImportTally {
    /// Accounts written for the first time.
    pub imported: u64,
    /// Accounts imported before and brought up to date.
    pub updated: u64,
    /// Accounts left out.
    pub skipped: Vec<SkippedAccount>,
    /// Refresh tokens of simplejwt's blacklist recorded, never to be exchanged.
    pub blacklisted_refresh_tokens: u64,
}

/// One import, batch after batch: its options, the addresses seen so far, and its tally.
#[derive(Debug, Default)]
pub struct ImportRun {
    options: ImportOptions,
    seen: HashMap<Email, i64>,
    /// What it did so far.
    pub tally: ImportTally,
}

impl ImportRun {
    /// A new import.
    #[must_use]
    pub fn new(options: ImportOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }
}

/// How many of `passwords` use each hash format.
pub fn hash_formats<'a>(passwords: impl IntoIterator<Item = &'a str>) -> BTreeMap<HashFormat, u64> {
    let mut counts = BTreeMap::new();
    for password in passwords {
        *counts
            .entry(StoredHash::parse(password).format())
            .or_insert(0) += 1;
    }
    counts
}

impl Services {
    /// Writes one batch of a Django import in one transaction.
    ///
    /// # Errors
    /// Only when the database fails; bad accounts are skipped and reported in the tally.
    pub async fn import_django_batch(
        &self,
        run: &mut ImportRun,
        batch: Vec<DjangoAccount>,
    ) -> ServiceResult<()> {
        let now = self.clock.now_naive();
        let mut rows = Vec::with_capacity(batch.len());
        for account in batch {
            let id = account.id;
            match imported_user(account, run, now) {
                Ok(row) => rows.push(row),
                Err(reason) => run.tally.skipped.push(SkippedAccount { id, reason }),
            }
        }
        let outcome = self
            .store
            .transaction(async |tx| write_batch(tx, rows).await)
            .await?;
        run.tally.imported += outcome.imported;
        run.tally.updated += outcome.updated;
        run.tally.skipped.extend(outcome.skipped);
        Ok(())
    }

    /// How many accounts here hold a password in each format: what is left of an import's
    /// hashes until their owners sign in (accounts without a password count as unusable).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn password_formats(&self) -> ServiceResult<BTreeMap<HashFormat, u64>> {
        const BATCH: i64 = 5_000;
        let mut counts = BTreeMap::new();
        let mut after = 0;
        let mut conn = self.connection().await?;
        loop {
            let hashes = conn
                .queries()
                .password_hashes_after(after, BATCH)
                .await
                .context("reading password hashes")?;
            let Some((last, _)) = hashes.last() else {
                return Ok(counts);
            };
            after = last.get();
            for (_, hash) in &hashes {
                let format = hash.as_deref().map_or(HashFormat::Unusable, |hash| {
                    StoredHash::parse(hash).format()
                });
                *counts.entry(format).or_insert(0) += 1;
            }
        }
    }

    /// Exchanges a refresh token the Django deployment's simplejwt issued, once and within
    /// the configured window, for a session here.
    ///
    /// # Errors
    /// `TokenInvalid` (forged, not a refresh token, of an unknown account, blacklisted in
    /// Django, or exchanged before), `TokenExpired`, `SessionRevoked` (a disabled account).
    pub(crate) async fn exchange_django_refresh(
        &self,
        caller: &Caller,
        token: &str,
    ) -> ServiceResult<TokenPair> {
        let refresh = self
            .django_refresh
            .check(token, self.clock.now())
            .map_err(|e| match e {
                DjangoTokenError::Invalid => ServiceError::TokenInvalid,
                DjangoTokenError::Expired => ServiceError::TokenExpired,
            })?;
        let user_id = UserId::parse(refresh.user_id).map_err(|_| ServiceError::TokenInvalid)?;
        let user = self
            .user_by_id(user_id)
            .await?
            .ok_or(ServiceError::TokenInvalid)?;
        if !user.is_active {
            return Err(ServiceError::SessionRevoked);
        }
        let mut conn = self.connection().await?;
        let mut queries = conn.queries();
        if queries
            .is_django_refresh_blacklisted(&refresh.jti)
            .await
            .context("looking the token up in simplejwt's blacklist")?
        {
            return Err(ServiceError::TokenInvalid);
        }
        let first = queries
            .spend_django_refresh(&refresh.jti, user_id, self.clock.now_naive())
            .await
            .context("spending a Django refresh token")?;
        drop(conn);
        if !first {
            return Err(ServiceError::TokenInvalid);
        }
        let pair = self
            .start_session(&user, caller, super::sessions::SignedIn::DjangoRefresh)
            .await?;
        tracing::info!(user.id = %user.id, "a Django refresh token was exchanged");
        Ok(pair)
    }

    /// Records the refresh tokens simplejwt's blacklist holds, so none is exchanged.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn import_django_blacklist(
        &self,
        run: &mut ImportRun,
        jtis: &[String],
    ) -> ServiceResult<()> {
        let mut conn = self.connection().await?;
        conn.queries()
            .blacklist_django_refresh(jtis)
            .await
            .context("recording simplejwt's blacklist")?;
        run.tally.blacklisted_refresh_tokens += u64::try_from(jtis.len()).unwrap_or(u64::MAX);
        Ok(())
    }

    /// Ends an import: accounts made here from now on get ids past every imported one.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn finish_django_import(&self) -> ServiceResult<()> {
        let mut conn = self.connection().await?;
        conn.queries()
            .advance_user_ids()
            .await
            .context("advancing the id sequence")?;
        Ok(())
    }
}

/// A source account as it will be written, or why it cannot be.
fn imported_user(
    account: DjangoAccount,
    run: &mut ImportRun,
    now: chrono::NaiveDateTime,
) -> Result<(ImportedUser, DjangoLinkRow), String> {
    let id =
        UserId::parse(account.id).map_err(|_| "its id is not a positive integer".to_owned())?;
    if account.email.trim().is_empty() {
        return Err("it has no email address".into());
    }
    let email = Email::parse(&account.email).map_err(|e| format!("email {}", e.reason()))?;
    let name = |field: &str, raw: &str| {
        PersonName::parse(raw)
            .map(PersonName::into_inner)
            .map_err(|e| format!("{field} {}", e.reason()))
    };
    let first_name = name("first_name", &account.first_name)?;
    let last_name = name("last_name", &account.last_name)?;
    let password_hash = match StoredHash::parse(&account.password).format() {
        HashFormat::Unusable => None,
        HashFormat::Unknown if run.options.unknown_hashes_as_unusable => None,
        HashFormat::Unknown => {
            return Err("its password hash is in a format this build cannot check".into());
        }
        _ => Some(account.password.clone()),
    };
    match run.seen.get(&email) {
        Some(first) if *first != account.id => {
            return Err(format!(
                "its address differs from account {first}'s only by case"
            ));
        }
        _ => {
            run.seen.insert(email.clone(), account.id);
        }
    }
    let link_state = DjangoLinkRow {
        user_id: id,
        email: account.email.clone(),
        password: account.password.clone(),
        last_login: account.last_login.map(|at| at.naive_utc()),
    };
    let user = ImportedUser {
        id,
        email,
        password_hash,
        first_name,
        last_name,
        is_active: account.is_active || run.options.inactive_means_unverified,
        is_verified: if run.options.inactive_means_unverified {
            account.is_active
        } else {
            account.is_verified.unwrap_or(true)
        },
        is_staff: account.is_staff,
        is_superuser: account.is_superuser,
        date_joined: account.date_joined.naive_utc(),
        last_login: account.last_login.map(|at| at.naive_utc()),
        password_changed_at: now,
    };
    Ok((user, link_state))
}

/// Inserts the new accounts of a batch and updates the ones imported before. An address
/// held here by another account is reported, not taken.
async fn write_batch(
    tx: &mut Queries<'_>,
    rows: Vec<(ImportedUser, DjangoLinkRow)>,
) -> ServiceResult<ImportTally> {
    let (rows, link_states): (Vec<ImportedUser>, Vec<DjangoLinkRow>) = rows.into_iter().unzip();
    let mut tally = ImportTally::default();
    let ids: Vec<UserId> = rows.iter().map(|row| row.id).collect();
    let emails: Vec<Email> = rows.iter().map(|row| row.email.clone()).collect();
    let existing: HashMap<UserId, Option<String>> = tx
        .existing_users(&ids)
        .await
        .context("finding accounts imported before")?
        .into_iter()
        .collect();
    let holders: HashMap<Email, UserId> = tx
        .holders_of(&emails)
        .await
        .context("finding who holds the addresses")?
        .into_iter()
        .map(|(id, email)| (email, id))
        .collect();
    let mut new = Vec::new();
    for row in rows {
        if let Some(holder) = holders.get(&row.email).filter(|holder| **holder != row.id) {
            tally.skipped.push(SkippedAccount {
                id: row.id.get(),
                reason: format!("its address belongs to account {holder} here"),
            });
            continue;
        }
        match existing.get(&row.id) {
            Some(stored) => {
                // Signed in here since, its password was re-hashed: this one is current.
                let upgraded = stored
                    .as_deref()
                    .is_some_and(|hash| StoredHash::parse(hash) == StoredHash::Argon2id);
                tx.update_imported_user(&row, upgraded)
                    .await
                    .context("updating an imported account")?;
                tally.updated += 1;
            }
            None => new.push(row),
        }
    }
    let written = tx
        .insert_imported_users(&new)
        .await
        .context("inserting imported accounts")?;
    tally.imported = u64::try_from(written.len()).unwrap_or(u64::MAX);
    for row in new.iter().filter(|row| !written.contains(&row.id)) {
        tally.skipped.push(SkippedAccount {
            id: row.id.get(),
            reason: "its id or address was taken while the import ran".into(),
        });
    }
    let skipped: Vec<i64> = tally.skipped.iter().map(|s| s.id).collect();
    let link_states: Vec<DjangoLinkRow> = link_states
        .into_iter()
        .filter(|state| !skipped.contains(&state.user_id.get()))
        .collect();
    tx.replace_django_link_states(&link_states)
        .await
        .context("recording what Django's links covered")?;
    Ok(tally)
}
