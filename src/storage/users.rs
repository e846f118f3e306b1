//! Queries on `users`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{NewUser, Queries, RegistrationRow, StoreError, UserRow, on_backend, schema::users};
use crate::domain::{Email, UserId};

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

    /// Verifies an unverified account with the password and names of the sign-up that
    /// proved the mailbox, voiding every link made before; `false` when it was verified
    /// already (of two racing proofs, one wins).
    ///
    /// # Errors
    /// On database failure.
    pub async fn verify_with(
        &mut self,
        id: UserId,
        registration: &RegistrationRow,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let unverified = users::table.find(id).filter(users::is_verified.eq(false));
        on_backend!(self, conn => {
            diesel::update(unverified)
                .set((
                    users::is_verified.eq(true),
                    users::password_hash.eq(&registration.password_hash),
                    users::first_name.eq(&registration.first_name),
                    users::last_name.eq(&registration.last_name),
                    users::password_changed_at.eq(now),
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
                .set((users::password_hash.eq(hash), users::password_changed_at.eq(now)))
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
    /// then revokes its session) or has committed first (and this finds it).
    ///
    /// # Errors
    /// On database failure.
    pub async fn record_login(
        &mut self,
        id: UserId,
        password_changed_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let unchanged = users::table
            .find(id)
            .filter(users::password_changed_at.eq(password_changed_at));
        on_backend!(self, conn => {
            diesel::update(unchanged)
                .set(users::last_login.eq(now))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Up to `limit` accounts with ids above `after` (from the first when `None`), in id order.
    ///
    /// # Errors
    /// On database failure.
    pub async fn users_after(
        &mut self,
        after: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<UserRow>, StoreError> {
        let after = after.map_or(0, UserId::get);
        on_backend!(self, conn => {
            users::table
                .filter(users::id.gt(after))
                .order(users::id.asc())
                .limit(limit)
                .select(UserRow::as_select())
                .load(conn)
                .await
        })
    }
}
