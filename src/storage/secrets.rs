//! Queries on `instance_secrets`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Queries, StoreError, on_backend, schema::instance_secrets};

impl Queries<'_> {
    /// Returns the secret stored under `name`, first storing `candidate` if there is none.
    /// Replicas racing on first start all end up with the one that won.
    ///
    /// # Errors
    /// On database failure.
    pub async fn secret_or_insert(
        &mut self,
        name: &str,
        candidate: &str,
        now: NaiveDateTime,
    ) -> Result<String, StoreError> {
        let secret = (
            instance_secrets::name.eq(name),
            instance_secrets::value.eq(candidate),
            instance_secrets::created_at.eq(now),
        );
        on_backend!(self, conn => {
            diesel::insert_into(instance_secrets::table)
                .values(secret)
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            instance_secrets::table
                .find(name)
                .select(instance_secrets::value)
                .first::<String>(conn)
                .await
        })
    }
}

impl Queries<'_> {
    /// The secret stored under `name`, if any.
    ///
    /// # Errors
    /// On database failure.
    pub async fn secret(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, conn => {
            instance_secrets::table
                .find(name)
                .select(instance_secrets::value)
                .first::<String>(conn)
                .await
                .optional()
        })
    }

    /// Replaces the secret stored under `name` with `replacement` if it still holds
    /// `current` (of replicas doing so at once, one does).
    ///
    /// # Errors
    /// On database failure.
    pub async fn replace_secret(
        &mut self,
        name: &str,
        current: &str,
        replacement: &str,
    ) -> Result<(), StoreError> {
        let unchanged = instance_secrets::table
            .find(name)
            .filter(instance_secrets::value.eq(current));
        on_backend!(self, conn => {
            diesel::update(unchanged)
                .set(instance_secrets::value.eq(replacement))
                .execute(conn)
                .await
                .map(drop)
        })
    }
}
