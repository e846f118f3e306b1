//! Queries on `email_changes`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{EmailChangeRow, Queries, StoreError, on_backend, schema::email_changes};
use crate::domain::UserId;

impl Queries<'_> {
    /// Records an account's pending address change, replacing (and so voiding) any earlier one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn replace_email_change(
        &mut self,
        change: &EmailChangeRow,
    ) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::delete(email_changes::table.find(change.user_id))
                .execute(conn)
                .await?;
            diesel::insert_into(email_changes::table)
                .values(change)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Counts one try against the account's pending change, before its code is compared,
    /// and returns the change; `None` when there is none or its tries are spent. The
    /// conditional update decides races: of twenty tries at once, only `max_tries` count.
    ///
    /// # Errors
    /// On database failure.
    pub async fn try_email_change(
        &mut self,
        user_id: UserId,
        max_tries: i32,
    ) -> Result<Option<EmailChangeRow>, StoreError> {
        let triable = email_changes::table
            .find(user_id)
            .filter(email_changes::attempts.lt(max_tries));
        on_backend!(self, conn => {
            diesel::update(triable)
                .set(email_changes::attempts.eq(email_changes::attempts + 1))
                .returning(EmailChangeRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Whether the account has a pending change at all, spent or not.
    ///
    /// # Errors
    /// On database failure.
    pub async fn has_email_change(&mut self, user_id: UserId) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            diesel::select(diesel::dsl::exists(email_changes::table.find(user_id)))
                .get_result(conn)
                .await
        })
    }

    /// Consumes the pending change with this code hash; `false` when another confirmation
    /// consumed it first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn take_email_change(
        &mut self,
        user_id: UserId,
        code_hash: &str,
    ) -> Result<bool, StoreError> {
        let pending = email_changes::table
            .find(user_id)
            .filter(email_changes::code_hash.eq(code_hash));
        on_backend!(self, conn => {
            diesel::delete(pending)
                .execute(conn)
                .await
                .map(|deleted| deleted == 1)
        })
    }
}
