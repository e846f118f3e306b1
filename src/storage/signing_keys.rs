//! Queries on `signing_keys`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Queries, SigningKeyRow, StoreError, on_backend, schema::signing_keys};

impl Queries<'_> {
    /// Every signing key, oldest generation first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn signing_keys(&mut self) -> Result<Vec<SigningKeyRow>, StoreError> {
        on_backend!(self, conn => {
            signing_keys::table
                .order(signing_keys::generation.asc())
                .select(SigningKeyRow::as_select())
                .load(conn)
                .await
        })
    }

    /// Adds a key unless its generation exists; `false` when another writer added it first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_signing_key(&mut self, key: &SigningKeyRow) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(signing_keys::table)
                .values(key)
                .on_conflict_do_nothing()
                .execute(conn)
                .await
                .map(|inserted| inserted == 1)
        })
    }

    /// Deletes the keys named: retired keys whose every token has expired.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_signing_keys(&mut self, kids: &[String]) -> Result<usize, StoreError> {
        on_backend!(self, conn => {
            diesel::delete(signing_keys::table.filter(signing_keys::kid.eq_any(kids)))
                .execute(conn)
                .await
        })
    }
}
