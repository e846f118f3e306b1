//! Moving from Django. The import writes a Django deployment's users: ids, addresses,
//! names, flags, dates, and the password hash exactly as Django stored it (login verifies
//! and upgrades it), and records which Django user each account came from.
//!
//! The cutover never joins two people's accounts:
//! - a re-run touches only accounts it created from the same Django user, changes only what
//!   changed in Django since, never reverts what changed here, and never re-creates an
//!   account deleted here; any other holder of the id is reported and left alone;
//! - accounts made here get ids past every Django user's, with room for those Django makes
//!   while both run;
//! - a refresh token Django issued is exchanged once, only into the account created from its
//!   user, and not when it predates the account's sessions last being ended here.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::{Caller, Services, core::effects::Tx};
use crate::{
    auth::{HashFormat, StoredHash},
    domain::{Email, PersonName, UserId},
    email::Notice,
    error::ServiceResult,
    storage::{DjangoImportRecord, DjangoLinkRow, ImportedUser, UserRow},
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
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Import accounts whose hash format this build cannot check, without a usable password
    /// (they reset it); otherwise they are skipped.
    pub unknown_hashes_as_unusable: bool,
    /// The model marks an account that has not proven its address as inactive (the seed's
    /// way): import those active but unverified, so their activation link or a new code
    /// lets them in, rather than disabled.
    pub inactive_means_unverified: bool,
    /// How many ids past the largest Django id accounts made here start, so those Django
    /// hands out while both systems run stay free for the next import.
    pub id_headroom: i64,
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
    /// Accounts imported before that changed in Django since, brought up to date.
    pub updated: u64,
    /// Accounts imported before with nothing new to take.
    pub unchanged: u64,
    /// Accounts left out.
    pub skipped: Vec<SkippedAccount>,
    /// Refresh tokens of simplejwt's blacklist recorded, never to be exchanged.
    pub blacklisted_refresh_tokens: u64,
}

/// One import, batch after batch: its options, the addresses and ids seen so far, and its
/// tally.
#[derive(Debug)]
pub struct ImportRun {
    options: ImportOptions,
    seen: HashMap<Email, i64>,
    /// The largest Django id read, imported or not.
    largest_source_pk: i64,
    /// What it did so far.
    pub tally: ImportTally,
}

impl ImportRun {
    /// A new import.
    #[must_use]
    pub fn new(options: ImportOptions) -> Self {
        Self {
            options,
            seen: HashMap::new(),
            largest_source_pk: 0,
            tally: ImportTally::default(),
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
            run.largest_source_pk = run.largest_source_pk.max(id);
            match imported_user(account, run, now) {
                Ok(row) => rows.push(row),
                Err(reason) => run.tally.skipped.push(SkippedAccount { id, reason }),
            }
        }
        let operator = Caller::default();
        let outcome = self
            .transaction(&operator, async |tx| Self::write_batch(tx, rows, now).await)
            .await?;
        run.tally.imported += outcome.imported;
        run.tally.updated += outcome.updated;
        run.tally.unchanged += outcome.unchanged;
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

    /// Ends an import: accounts made here from now on get ids past every Django id read,
    /// imported or skipped, plus the headroom.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn finish_django_import(&self, run: &ImportRun) -> ServiceResult<()> {
        if run.largest_source_pk == 0 {
            return Ok(());
        }
        let floor = run
            .largest_source_pk
            .saturating_add(run.options.id_headroom.max(0));
        let mut conn = self.connection().await?;
        conn.queries()
            .advance_user_ids(floor)
            .await
            .context("advancing the id sequence")?;
        Ok(())
    }

    /// Inserts the new accounts of a batch and brings the ones this import created before up
    /// to date; anything else holding an id or an address is reported, not touched.
    async fn write_batch(
        tx: &mut Tx<'_, '_>,
        rows: Vec<(ImportedUser, DjangoLinkRow)>,
        now: chrono::NaiveDateTime,
    ) -> ServiceResult<ImportTally> {
        let mut tally = ImportTally::default();
        let pks: Vec<i64> = rows.iter().map(|(row, _)| row.id.get()).collect();
        let ids: Vec<UserId> = rows.iter().map(|(row, _)| row.id).collect();
        let emails: Vec<Email> = rows.iter().map(|(row, _)| row.email.clone()).collect();
        let records: HashMap<i64, DjangoImportRecord> = tx
            .django_import_records(&pks)
            .await
            .context("reading what earlier imports wrote")?
            .into_iter()
            .map(|record| (record.source_pk, record))
            .collect();
        let current: HashMap<UserId, UserRow> = tx
            .users_by_ids(&ids)
            .await
            .context("finding the accounts holding the ids")?
            .into_iter()
            .map(|user| (user.id, user))
            .collect();
        let holders: HashMap<Email, UserId> = tx
            .holders_of(&emails)
            .await
            .context("finding who holds the addresses")?
            .into_iter()
            .map(|(id, email)| (email, id))
            .collect();
        let mut new = Vec::new();
        let mut written_records = Vec::new();
        let mut link_states = Vec::new();
        for (row, link_state) in rows {
            let pk = row.id.get();
            let skip = |reason: String| SkippedAccount { id: pk, reason };
            match (records.get(&pk), current.get(&row.id)) {
                (Some(record), Some(user)) if record.user_id == Some(user.id) => {
                    let merge = Merge::of(&row, record, user, now);
                    let email_holder = holders.get(&merge.user.email).filter(|h| **h != user.id);
                    let merge = match email_holder {
                        Some(holder) => {
                            tally.skipped.push(skip(format!(
                                "its new address belongs to account {holder} here; the rest was updated"
                            )));
                            merge.keeping_email(&user.email)
                        }
                        None => merge,
                    };
                    if merge.changes_anything(user) {
                        tx.update_imported_user(&merge.user, merge.password_changed)
                            .await
                            .context("updating an imported account")?;
                        tally.updated += 1;
                    } else {
                        tally.unchanged += 1;
                    }
                    if merge.changes_credentials(user) {
                        Self::end_sessions_after_import(tx, user).await?;
                    }
                    written_records.push(record_of(&row, merge.password_written_at(record)));
                    link_states.push(link_state);
                }
                (Some(_), _) => tally.skipped.push(skip(
                    "its account here was deleted after an earlier import; it is not re-created"
                        .into(),
                )),
                (None, Some(_)) => tally.skipped.push(skip(format!(
                    "id {pk} belongs to an account here that was not imported from this Django user"
                ))),
                (None, None) => {
                    if let Some(holder) = holders.get(&row.email) {
                        tally.skipped.push(skip(format!(
                            "its address belongs to account {holder} here"
                        )));
                        continue;
                    }
                    new.push((row, link_state));
                }
            }
        }
        let (new, new_link_states): (Vec<ImportedUser>, Vec<DjangoLinkRow>) =
            new.into_iter().unzip();
        let written = tx
            .insert_imported_users(&new)
            .await
            .context("inserting imported accounts")?;
        tally.imported = u64::try_from(written.len()).unwrap_or(u64::MAX);
        for (row, link_state) in new.iter().zip(new_link_states) {
            if written.contains(&row.id) {
                written_records.push(record_of(row, now));
                link_states.push(link_state);
            } else {
                tally.skipped.push(SkippedAccount {
                    id: row.id.get(),
                    reason: "its id or address was taken while the import ran".into(),
                });
            }
        }
        tx.record_django_imports(&written_records)
            .await
            .context("recording what the import wrote")?;
        tx.replace_django_link_states(&link_states)
            .await
            .context("recording what Django's links covered")?;
        Ok(tally)
    }

    /// A re-run changed an account's address, flags or password: whoever holds a session
    /// signs in again, and the owner is told at the address the account had.
    async fn end_sessions_after_import(tx: &mut Tx<'_, '_>, user: &UserRow) -> ServiceResult<()> {
        let now = tx.now_naive();
        tx.revoke_user_sessions(user.id, now)
            .await
            .context("ending the sessions of an account the import changed")?;
        tx.notify(Notice::ImportChanged, user).await
    }
}

/// What a re-run writes for an account it created before: each field Django changed since
/// the last run, unless it changed here too; the password only when it changed in Django
/// and not here since the import last wrote it.
struct Merge {
    user: ImportedUser,
    password_changed: bool,
}

impl Merge {
    fn of(
        source: &ImportedUser,
        record: &DjangoImportRecord,
        current: &UserRow,
        now: chrono::NaiveDateTime,
    ) -> Self {
        fn take<T: PartialEq + Clone>(source: &T, recorded: &T, current: &T) -> T {
            if source != recorded && current == recorded {
                source.clone()
            } else {
                current.clone()
            }
        }
        let changed_here = current.password_changed_at > record.imported_at;
        let password_changed = source.password_hash != record.password_hash && !changed_here;
        Self {
            user: ImportedUser {
                id: current.id,
                email: take(&source.email, &record.email, &current.email),
                password_hash: if password_changed {
                    source.password_hash.clone()
                } else {
                    current.password_hash.clone()
                },
                first_name: take(&source.first_name, &record.first_name, &current.first_name),
                last_name: take(&source.last_name, &record.last_name, &current.last_name),
                is_active: take(&source.is_active, &record.is_active, &current.is_active),
                is_verified: take(
                    &source.is_verified,
                    &record.is_verified,
                    &current.is_verified,
                ),
                is_staff: take(&source.is_staff, &record.is_staff, &current.is_staff),
                is_superuser: take(
                    &source.is_superuser,
                    &record.is_superuser,
                    &current.is_superuser,
                ),
                date_joined: current.date_joined,
                last_login: current.last_login.max(source.last_login),
                password_changed_at: if password_changed {
                    now
                } else {
                    current.password_changed_at
                },
            },
            password_changed,
        }
    }

    /// The same, with the account's address left as it is.
    fn keeping_email(mut self, email: &Email) -> Self {
        self.user.email = email.clone();
        self
    }

    fn changes_credentials(&self, current: &UserRow) -> bool {
        let user = &self.user;
        self.password_changed
            || user.email != current.email
            || user.is_active != current.is_active
            || user.is_verified != current.is_verified
            || user.is_staff != current.is_staff
            || user.is_superuser != current.is_superuser
    }

    fn changes_anything(&self, current: &UserRow) -> bool {
        self.changes_credentials(current)
            || self.user.first_name != current.first_name
            || self.user.last_name != current.last_name
            || self.user.last_login != current.last_login
    }

    /// When the import last wrote the password: now if this run did, else as recorded.
    fn password_written_at(&self, record: &DjangoImportRecord) -> chrono::NaiveDateTime {
        if self.password_changed {
            self.user.password_changed_at
        } else {
            record.imported_at
        }
    }
}

/// What the import wrote (or would have) from the Django user `row` came from.
fn record_of(row: &ImportedUser, password_written_at: chrono::NaiveDateTime) -> DjangoImportRecord {
    DjangoImportRecord {
        source_pk: row.id.get(),
        user_id: Some(row.id),
        email: row.email.clone(),
        first_name: row.first_name.clone(),
        last_name: row.last_name.clone(),
        is_active: row.is_active,
        is_verified: row.is_verified,
        is_staff: row.is_staff,
        is_superuser: row.is_superuser,
        password_hash: row.password_hash.clone(),
        imported_at: password_written_at,
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
        is_verified: account.is_verified.unwrap_or(true)
            && (account.is_active || !run.options.inactive_means_unverified),
        is_staff: account.is_staff,
        is_superuser: account.is_superuser,
        date_joined: account.date_joined.naive_utc(),
        last_login: account.last_login.map(|at| at.naive_utc()),
        password_changed_at: now,
    };
    Ok((user, link_state))
}
