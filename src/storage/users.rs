//! Queries on `users`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{NewUser, Queries, StoreError, UserRow, on_backend, schema::users};

impl Queries<'_> {
    /// Inserts an account.
    ///
    /// # Errors
    /// `UniqueViolation` when the email is taken.
    pub async fn insert_user(&mut self, new_user: &NewUser) -> Result<UserRow, StoreError> {
        let row = on_backend!(self, |conn| {
            diesel::insert_into(users::table)
                .values(new_user)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
        })?;
        Ok(row)
    }

    /// The account with this normalised email.
    ///
    /// # Errors
    /// On database failure.
    pub async fn user_by_email(&mut self, email: &str) -> Result<Option<UserRow>, StoreError> {
        let row = on_backend!(self, |conn| {
            users::table
                .filter(users::email.eq(email))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()
        })?;
        Ok(row)
    }

    /// The account with this id.
    ///
    /// # Errors
    /// On database failure.
    pub async fn user_by_id(&mut self, id: i64) -> Result<Option<UserRow>, StoreError> {
        let row = on_backend!(self, |conn| {
            users::table
                .find(id)
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()
        })?;
        Ok(row)
    }

    /// Marks an unverified account verified and active; `false` when it already was.
    ///
    /// # Errors
    /// On database failure.
    pub async fn mark_verified(&mut self, id: i64) -> Result<bool, StoreError> {
        let changed = on_backend!(self, |conn| {
            diesel::update(users::table.find(id).filter(users::is_verified.eq(false)))
                .set((users::is_verified.eq(true), users::is_active.eq(true)))
                .execute(conn)
                .await
        })?;
        Ok(changed == 1)
    }

    /// Replaces the password hash if the password has not changed since `expected_changed_at`,
    /// which voids every link issued before; `false` when another change got there first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn set_password_hash(
        &mut self,
        id: i64,
        hash: Option<&str>,
        expected_changed_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let changed = on_backend!(self, |conn| {
            diesel::update(
                users::table
                    .find(id)
                    .filter(users::password_changed_at.eq(expected_changed_at)),
            )
            .set((
                users::password_hash.eq(hash),
                users::password_changed_at.eq(now),
            ))
            .execute(conn)
            .await
        })?;
        Ok(changed == 1)
    }

    /// Upgrades a hash to current parameters, unless the password changed meanwhile.
    ///
    /// # Errors
    /// On database failure.
    pub async fn upgrade_password_hash(
        &mut self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::update(
                users::table
                    .find(id)
                    .filter(users::password_hash.eq(old_hash)),
            )
            .set(users::password_hash.eq(new_hash))
            .execute(conn)
            .await
        })?;
        Ok(())
    }

    /// Records a successful sign-in.
    ///
    /// # Errors
    /// On database failure.
    pub async fn record_login(&mut self, id: i64, now: NaiveDateTime) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::update(users::table.find(id))
                .set(users::last_login.eq(now))
                .execute(conn)
                .await
        })?;
        Ok(())
    }

    /// Up to `limit` accounts with ids above `after_id`, in id order.
    ///
    /// # Errors
    /// On database failure.
    pub async fn users_after(
        &mut self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<UserRow>, StoreError> {
        let rows = on_backend!(self, |conn| {
            users::table
                .filter(users::id.gt(after_id))
                .order(users::id.asc())
                .limit(limit)
                .select(UserRow::as_select())
                .load(conn)
                .await
        })?;
        Ok(rows)
    }

    /// Grants staff and superuser rights, and marks the account verified and active.
    ///
    /// # Errors
    /// On database failure.
    pub async fn promote_user(&mut self, id: i64) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::update(users::table.find(id))
                .set((
                    users::is_staff.eq(true),
                    users::is_superuser.eq(true),
                    users::is_active.eq(true),
                    users::is_verified.eq(true),
                ))
                .execute(conn)
                .await
        })?;
        Ok(())
    }
}
