//! Queries on `factors` and `recovery_codes`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    FactorRow, MfaChallengeRow, NewRecoveryCode, Queries, StoreError, on_backend,
    schema::{factors, mfa_challenges, recovery_codes},
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

    /// Accepts the code of time step `step` for a confirmed factor: only if no code of this
    /// step or a later one was accepted before, in one conditional update, so a code replayed,
    /// or sent twenty times at once, is accepted once. Returns whether it was.
    ///
    /// # Errors
    /// On database failure.
    pub async fn accept_totp_step(
        &mut self,
        id: &FactorId,
        step: i64,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let fresh = factors::table
            .find(id)
            .filter(factors::confirmed_at.is_not_null())
            .filter(factors::last_step.is_null().or(factors::last_step.lt(step)));
        on_backend!(self, conn => {
            diesel::update(fresh)
                .set((factors::last_step.eq(step), factors::last_used_at.eq(now)))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// The confirmed passkey a credential id names, whoever owns it.
    ///
    /// # Errors
    /// On database failure.
    pub async fn passkey_by_credential_id(
        &mut self,
        credential_id: &str,
    ) -> Result<Option<FactorRow>, StoreError> {
        let query = factors::table
            .filter(factors::credential_id.eq(credential_id))
            .filter(factors::confirmed_at.is_not_null());
        on_backend!(self, conn => {
            query
                .select(FactorRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Records a passkey's use: its new signature `counter`, and the credential as it is now
    /// (backup state). Only if the counter moved past the last one stored (or the
    /// authenticator keeps none: 0), in one conditional update, so an assertion is accepted
    /// once and a clone's is refused. Returns whether it was.
    ///
    /// # Errors
    /// On database failure.
    pub async fn accept_passkey_use(
        &mut self,
        id: &FactorId,
        counter: i64,
        credential: &str,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let fresh = factors::table.find(id).filter(
            factors::last_step
                .is_null()
                .or(factors::last_step.lt(counter))
                .or(factors::last_step
                    .eq(0)
                    .and(counter.into_sql::<diesel::sql_types::BigInt>().eq(0))),
        );
        on_backend!(self, conn => {
            diesel::update(fresh)
                .set((
                    factors::last_step.eq(counter),
                    factors::credential.eq(credential),
                    factors::last_used_at.eq(now),
                ))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Spends one of the account's unused recovery codes by its keyed hash, in one
    /// conditional update: of twenty uses at once, one spends it. Returns whether this did.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spend_recovery_code(
        &mut self,
        user_id: UserId,
        code_hash: &str,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let unused = recovery_codes::table
            .find(code_hash)
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null());
        on_backend!(self, conn => {
            diesel::update(unused)
                .set(recovery_codes::used_at.eq(now))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Records a challenge a first factor answered.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_mfa_challenge(
        &mut self,
        challenge: &MfaChallengeRow,
    ) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(mfa_challenges::table)
                .values(challenge)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// The challenge of an `mfa_token`'s hash, used or not.
    ///
    /// # Errors
    /// On database failure.
    pub async fn mfa_challenge(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<MfaChallengeRow>, StoreError> {
        let query = mfa_challenges::table.find(token_hash);
        on_backend!(self, conn => {
            query
                .select(MfaChallengeRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Uses a challenge: only if it is unused and unexpired, in one conditional update, so
    /// an `mfa_token` finishes one sign-in. Returns whether this use did.
    ///
    /// # Errors
    /// On database failure.
    pub async fn use_mfa_challenge(
        &mut self,
        token_hash: &str,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let open = mfa_challenges::table
            .find(token_hash)
            .filter(mfa_challenges::used_at.is_null())
            .filter(mfa_challenges::expires_at.gt(now));
        on_backend!(self, conn => {
            diesel::update(open)
                .set(mfa_challenges::used_at.eq(now))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Removes one of the account's factors, confirmed or pending; with its last confirmed
    /// factor go its recovery codes. Returns the factor removed, if there was such a one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_factor(
        &mut self,
        user_id: UserId,
        id: &FactorId,
    ) -> Result<Option<FactorRow>, StoreError> {
        let factor = factors::table.find(id).filter(factors::user_id.eq(user_id));
        let others = factors::table
            .filter(factors::user_id.eq(user_id))
            .filter(factors::confirmed_at.is_not_null());
        let codes = recovery_codes::table.filter(recovery_codes::user_id.eq(user_id));
        on_backend!(self, conn => {
            let removed = diesel::delete(factor)
                .returning(FactorRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let left: i64 = others.count().get_result(conn).await?;
            if removed.is_some() && left == 0 {
                diesel::delete(codes).execute(conn).await?;
            }
            Ok::<_, diesel::result::Error>(removed)
        })
    }

    /// Renames one of the account's confirmed factors; returns it renamed, if there was such
    /// a one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn rename_factor(
        &mut self,
        user_id: UserId,
        id: &FactorId,
        name: &str,
    ) -> Result<Option<FactorRow>, StoreError> {
        let factor = factors::table
            .find(id)
            .filter(factors::user_id.eq(user_id))
            .filter(factors::confirmed_at.is_not_null());
        on_backend!(self, conn => {
            diesel::update(factor)
                .set(factors::name.eq(name))
                .returning(FactorRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// Removes every factor of the account and its recovery codes; returns how many factors.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_all_factors(&mut self, user_id: UserId) -> Result<usize, StoreError> {
        let all = factors::table.filter(factors::user_id.eq(user_id));
        let codes = recovery_codes::table.filter(recovery_codes::user_id.eq(user_id));
        on_backend!(self, conn => {
            let removed = diesel::delete(all).execute(conn).await?;
            diesel::delete(codes).execute(conn).await?;
            Ok::<_, diesel::result::Error>(removed)
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
