//! Queries on `users`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Backend, NewUser, Queries, RegistrationRow, StoreError, UserRow, on_backend, schema::users,
};
use crate::domain::{Email, EmailPrefix, UserId};

/// Serialises, on Postgres, the transactions that could take away a superuser, so the count
/// each makes after its change sees the others' (two demotions at once cannot both pass).
const SUPERUSER_LOCK_KEY: i64 = 0x6964_5f73_7570_6572; // "id_super"

/// An operator's change to an account: each field that is set is written.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// May sign in.
    pub is_active: Option<bool>,
    /// Staff.
    pub is_staff: Option<bool>,
    /// Superuser.
    pub is_superuser: Option<bool>,
}

/// Which accounts a listing returns; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Addresses starting with this.
    pub email_prefix: Option<EmailPrefix>,
    /// Proven addresses, or unproven ones.
    pub is_verified: Option<bool>,
    /// Accounts that may sign in (active and, where verification is required, verified),
    /// or those that may not.
    pub is_active: Option<bool>,
    /// Staff, or not.
    pub is_staff: Option<bool>,
    /// Whether an unverified account counts as inactive.
    pub verification_required: bool,
}

impl Queries<'_> {
    /// Inserts an account; `None` when the address is taken (by a row that may still be
    /// uncommitted: the insert waits for it), so a race never aborts the transaction.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_user(&mut self, new_user: &NewUser) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(users::table)
                .values(new_user)
                .on_conflict_do_nothing()
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// The account with this address.
    ///
    /// # Errors
    /// On database failure.
    pub async fn user_by_email(&mut self, email: &Email) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, conn => {
            users::table
                .filter(users::email.eq(email))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// The account with this id.
    ///
    /// # Errors
    /// On database failure.
    pub async fn user_by_id(&mut self, id: UserId) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, conn => {
            users::table
                .find(id)
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Marks an unverified account verified; `false` when it already was. Whether it may
    /// sign in (`is_active`) is an operator's decision and stays as it is.
    ///
    /// # Errors
    /// On database failure.
    pub async fn mark_verified(&mut self, id: UserId) -> Result<bool, StoreError> {
        let unverified = users::table.find(id).filter(users::is_verified.eq(false));
        on_backend!(self, conn => {
            diesel::update(unverified)
                .set(users::is_verified.eq(true))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Verifies an unverified account with the names of the sign-up that proved the
    /// mailbox, and its password when `with_password` (otherwise none), voiding every link
    /// made before; `false` when it was verified already (of two racing proofs, one wins).
    ///
    /// # Errors
    /// On database failure.
    pub async fn verify_with(
        &mut self,
        id: UserId,
        registration: &RegistrationRow,
        with_password: bool,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let unverified = users::table.find(id).filter(users::is_verified.eq(false));
        let password = registration
            .password_hash
            .as_deref()
            .filter(|_| with_password);
        on_backend!(self, conn => {
            diesel::update(unverified)
                .set((
                    users::is_verified.eq(true),
                    users::password_hash.eq(password),
                    users::first_name.eq(&registration.first_name),
                    users::last_name.eq(&registration.last_name),
                    users::password_changed_at.eq(now),
                    users::password_unproven.eq(password.is_some()),
                ))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Replaces the password hash if the password has not changed since `expected_changed_at`,
    /// which voids every link issued before; `false` when another change got there first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn set_password_hash(
        &mut self,
        id: UserId,
        hash: Option<&str>,
        expected_changed_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let unchanged = users::table
            .find(id)
            .filter(users::password_changed_at.eq(expected_changed_at));
        on_backend!(self, conn => {
            diesel::update(unchanged)
                .set((
                    users::password_hash.eq(hash),
                    users::password_changed_at.eq(now),
                    users::password_unproven.eq(false),
                ))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Upgrades a hash to current parameters, unless the password changed meanwhile.
    ///
    /// # Errors
    /// On database failure.
    pub async fn upgrade_password_hash(
        &mut self,
        id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError> {
        let unchanged = users::table
            .find(id)
            .filter(users::password_hash.eq(old_hash));
        on_backend!(self, conn => {
            diesel::update(unchanged)
                .set(users::password_hash.eq(new_hash))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Records a successful sign-in, if the password has not changed since
    /// `password_changed_at` (when the sign-in checked it); `false` when it has. The update
    /// locks the row, so a concurrent password change either waits for this sign-in (and
    /// then revokes its session) or has committed first (and this finds it). A sign-in
    /// `with_password` proves that password.
    ///
    /// # Errors
    /// On database failure.
    pub async fn record_login(
        &mut self,
        id: UserId,
        password_changed_at: NaiveDateTime,
        with_password: bool,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let unchanged = users::table
            .find(id)
            .filter(users::password_changed_at.eq(password_changed_at));
        // Once proven it stays so; a sign-in by other means proves nothing about it.
        let unproven = users::password_unproven.and(diesel::IntoSql::into_sql::<
            diesel::sql_types::Bool,
        >(!with_password));
        on_backend!(self, conn => {
            diesel::update(unchanged)
                .set((users::last_login.eq(now), users::password_unproven.eq(unproven)))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Up to `limit` accounts matching `filter` with ids above `after` (from the first when
    /// `None`), in id order.
    ///
    /// # Errors
    /// On database failure.
    pub async fn users_after(
        &mut self,
        filter: &UserFilter,
        after: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<UserRow>, StoreError> {
        let after = after.map_or(0, UserId::get);
        let pattern = filter.email_prefix.as_ref().map(EmailPrefix::like_pattern);
        on_backend!(self, conn => {
            let mut query = users::table
                .filter(users::id.gt(after))
                .order(users::id.asc())
                .limit(limit)
                .select(UserRow::as_select())
                .into_boxed();
            if let Some(pattern) = &pattern {
                query = query.filter(users::email.like(pattern).escape('\\'));
            }
            if let Some(verified) = filter.is_verified {
                query = query.filter(users::is_verified.eq(verified));
            }
            query = match (filter.is_active, filter.verification_required) {
                (None, _) => query,
                (Some(active), false) => query.filter(users::is_active.eq(active)),
                (Some(true), true) => query
                    .filter(users::is_active.eq(true))
                    .filter(users::is_verified.eq(true)),
                (Some(false), true) => query
                    .filter(users::is_active.eq(false).or(users::is_verified.eq(false))),
            };
            if let Some(staff) = filter.is_staff {
                query = query.filter(users::is_staff.eq(staff));
            }
            query.load(conn).await
        })
    }

    /// Writes an operator's change; the account as it is now, `None` when it does not exist.
    ///
    /// # Errors
    /// On database failure.
    pub async fn update_user(
        &mut self,
        id: UserId,
        changes: &UserChanges,
    ) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, conn => {
            diesel::update(users::table.find(id))
                .set(changes)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Moves an account to a new address, if it still has `old`; `false` when it does not.
    ///
    /// # Errors
    /// `UniqueViolation` when the new address was taken meanwhile; on database failure.
    pub async fn change_email(
        &mut self,
        id: UserId,
        old: &Email,
        new: &Email,
    ) -> Result<bool, StoreError> {
        let unchanged = users::table.find(id).filter(users::email.eq(old));
        on_backend!(self, conn => {
            diesel::update(unchanged)
                .set(users::email.eq(new))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Deletes an account and, by cascade, everything of it but the logs; `false` when it
    /// did not exist.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_user(&mut self, id: UserId) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            diesel::delete(users::table.find(id))
                .execute(conn)
                .await
                .map(|deleted| deleted == 1)
        })
    }

    /// The account with this id, locked against other writers to the end of the transaction
    /// (SQLite's single writer is lock enough).
    ///
    /// # Errors
    /// On database failure.
    pub async fn lock_user(&mut self, id: UserId) -> Result<Option<UserRow>, StoreError> {
        let row = users::table.find(id);
        match &mut self.0 {
            Backend::Postgres(conn) => {
                row.select(UserRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
            }
            Backend::Sqlite(conn) => row.select(UserRow::as_select()).first(*conn).await,
        }
        .optional()
        .map_err(StoreError::from)
    }

    /// Takes the lock that orders changes which could leave no superuser; held to the end of
    /// the transaction. SQLite needs none: it has one writer at a time.
    ///
    /// # Errors
    /// On database failure.
    pub async fn lock_superusers(&mut self) -> Result<(), StoreError> {
        use diesel_async::SimpleAsyncConnection;
        match &mut self.0 {
            Backend::Postgres(conn) => conn
                .batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock({SUPERUSER_LOCK_KEY})"
                ))
                .await
                .map_err(StoreError::from),
            Backend::Sqlite(_) => Ok(()),
        }
    }

    /// How many accounts hold a usable password hash in a format other than argon2id (one
    /// an import brought, re-hashed at the account's next sign-in).
    ///
    /// # Errors
    /// On database failure.
    pub async fn count_legacy_password_hashes(&mut self) -> Result<i64, StoreError> {
        on_backend!(self, conn => {
            users::table
                .filter(users::password_hash.is_not_null())
                .filter(users::password_hash.not_like("$argon2id$%"))
                .filter(users::password_hash.not_like("!%"))
                .count()
                .get_result(conn)
                .await
        })
    }

    /// How many accounts are active superusers.
    ///
    /// # Errors
    /// On database failure.
    pub async fn count_active_superusers(&mut self) -> Result<i64, StoreError> {
        on_backend!(self, conn => {
            users::table
                .filter(users::is_superuser.eq(true))
                .filter(users::is_active.eq(true))
                .count()
                .get_result(conn)
                .await
        })
    }
}
