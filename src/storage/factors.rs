//! Queries on `factors` and `recovery_codes`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    FactorRow, NewRecoveryCode, Queries, StoreError, on_backend,
    schema::{factors, recovery_codes},
};
use crate::domain::{FactorId, UserId};

impl Queries<'_> {
    /// Records a factor (pending until confirmed), forgetting the account's lapsed pending ones.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_factor(&mut self, factor: &FactorRow) -> Result<(), StoreError> {
        let lapsed = factors::table
            .filter(factors::user_id.eq(factor.user_id))
            .filter(factors::confirmed_at.is_null())
            .filter(factors::expires_at.le(factor.created_at));
        on_backend!(self, conn => {
            diesel::delete(lapsed).execute(conn).await?;
            diesel::insert_into(factors::table)
                .values(factor)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// One factor of an account, confirmed or pending.
    ///
    /// # Errors
    /// On database failure.
    pub async fn factor_of(
        &mut self,
        user_id: UserId,
        id: &FactorId,
    ) -> Result<Option<FactorRow>, StoreError> {
        let query = factors::table.find(id).filter(factors::user_id.eq(user_id));
        on_backend!(self, conn => {
            query
                .select(FactorRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// The account's confirmed factors, oldest first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn confirmed_factors(
        &mut self,
        user_id: UserId,
    ) -> Result<Vec<FactorRow>, StoreError> {
        let query = factors::table
            .filter(factors::user_id.eq(user_id))
            .filter(factors::confirmed_at.is_not_null())
            .order((factors::created_at.asc(), factors::id.asc()));
        on_backend!(self, conn => query.select(FactorRow::as_select()).load(conn).await)
    }

    /// Confirms a pending factor with the code of time step `step`: only if it has not
    /// lapsed and is still pending, in one conditional update, so of twenty confirmations at
    /// once one confirms it. Returns whether this one did.
    ///
    /// # Errors
    /// On database failure.
    pub async fn confirm_factor(
        &mut self,
        id: &FactorId,
        step: i64,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let pending = factors::table
            .find(id)
            .filter(factors::confirmed_at.is_null())
            .filter(factors::expires_at.gt(now));
        on_backend!(self, conn => {
            diesel::update(pending)
                .set((
                    factors::confirmed_at.eq(now),
                    factors::expires_at.eq(None::<NaiveDateTime>),
                    factors::last_step.eq(step),
                ))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Replaces the account's recovery codes (voiding the old set).
    ///
    /// # Errors
    /// On database failure.
    pub async fn replace_recovery_codes(
        &mut self,
        user_id: UserId,
        codes: &[NewRecoveryCode],
    ) -> Result<(), StoreError> {
        let old = recovery_codes::table.filter(recovery_codes::user_id.eq(user_id));
        // A row at a time: ten, and SQLite takes no batch of them.
        on_backend!(self, conn => {
            diesel::delete(old).execute(conn).await?;
            for code in codes {
                diesel::insert_into(recovery_codes::table)
                    .values(code)
                    .execute(conn)
                    .await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
    }

    /// How many of the account's recovery codes are unused.
    ///
    /// # Errors
    /// On database failure.
    pub async fn recovery_codes_left(&mut self, user_id: UserId) -> Result<i64, StoreError> {
        let query = recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .count();
        on_backend!(self, conn => query.get_result(conn).await)
    }
}
