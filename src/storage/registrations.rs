//! Queries on `registrations`: the sign-ups of an address still waiting to be proven.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    NewRegistration, Queries, RegistrationRow, StoreError, on_backend, schema::registrations,
};
use crate::domain::UserId;

impl Queries<'_> {
    /// Records a sign-up.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_registration(
        &mut self,
        registration: &NewRegistration,
    ) -> Result<RegistrationRow, StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(registrations::table)
                .values(registration)
                .returning(RegistrationRow::as_returning())
                .get_result(conn)
                .await
        })
    }

    /// The sign-ups of an account, newest first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn registrations_of(
        &mut self,
        user_id: UserId,
    ) -> Result<Vec<RegistrationRow>, StoreError> {
        on_backend!(self, conn => {
            registrations::table
                .filter(registrations::user_id.eq(user_id))
                .order(registrations::id.desc())
                .select(RegistrationRow::as_select())
                .load(conn)
                .await
        })
    }

    /// The newest sign-up of an account.
    ///
    /// # Errors
    /// On database failure.
    pub async fn newest_registration(
        &mut self,
        user_id: UserId,
    ) -> Result<Option<RegistrationRow>, StoreError> {
        on_backend!(self, conn => {
            registrations::table
                .filter(registrations::user_id.eq(user_id))
                .order(registrations::id.desc())
                .select(RegistrationRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Gives a registration a new code, voiding its previous one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn set_registration_code(
        &mut self,
        id: i64,
        code_hash: &str,
        expires_at: NaiveDateTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::update(registrations::table.find(id))
                .set((
                    registrations::code_hash.eq(code_hash),
                    registrations::code_expires_at.eq(expires_at),
                ))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Counts one code attempt against every registration of the account that has a code and
    /// has not spent `lifetime_cap` attempts, before the code is compared, and returns them:
    /// the code may be compared only with these.
    ///
    /// # Errors
    /// On database failure.
    pub async fn count_code_attempt(
        &mut self,
        user_id: UserId,
        lifetime_cap: i32,
    ) -> Result<Vec<RegistrationRow>, StoreError> {
        let triable = registrations::table
            .filter(registrations::user_id.eq(user_id))
            .filter(registrations::code_hash.is_not_null())
            .filter(registrations::code_attempts.lt(lifetime_cap));
        on_backend!(self, conn => {
            diesel::update(triable)
                .set(registrations::code_attempts.eq(registrations::code_attempts + 1))
                .returning(RegistrationRow::as_returning())
                .get_results(conn)
                .await
        })
    }

    /// Forgets every sign-up of an account (it was proven, or taken over).
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_registrations(&mut self, user_id: UserId) -> Result<(), StoreError> {
        let of_user = registrations::table.filter(registrations::user_id.eq(user_id));
        on_backend!(self, conn => {
            diesel::delete(of_user)
                .execute(conn)
                .await
                .map(drop)
        })
    }
}
