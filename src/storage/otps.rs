//! Queries on `otps`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{OtpRow, Queries, StoreError, on_backend, schema::otps};
use crate::domain::UserId;

impl Queries<'_> {
    /// Stores a user's new code, replacing (and so voiding) any previous one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn replace_otp(&mut self, otp: &OtpRow) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(otps::table)
                .values(otp)
                .on_conflict(otps::user_id)
                .do_update()
                .set((
                    otps::code_hash.eq(&otp.code_hash),
                    otps::attempts.eq(0),
                    otps::created_at.eq(otp.created_at),
                    otps::expires_at.eq(otp.expires_at),
                ))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Counts one attempt against the user's code before it is compared, and returns the code;
    /// `None` when there is no code or it has used up `max_attempts`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn count_otp_attempt(
        &mut self,
        user_id: UserId,
        max_attempts: i32,
    ) -> Result<Option<OtpRow>, StoreError> {
        let untried = otps::table
            .find(user_id)
            .filter(otps::attempts.lt(max_attempts));
        on_backend!(self, conn => {
            diesel::update(untried)
                .set(otps::attempts.eq(otps::attempts + 1))
                .returning(OtpRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Whether the user has a code, spent or not.
    ///
    /// # Errors
    /// On database failure.
    pub async fn has_otp(&mut self, user_id: UserId) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            otps::table
                .find(user_id)
                .count()
                .get_result(conn)
                .await
                .map(|count: i64| count > 0)
        })
    }

    /// Removes the user's code (after use).
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_otp(&mut self, user_id: UserId) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::delete(otps::table.find(user_id))
                .execute(conn)
                .await
                .map(drop)
        })
    }
}
