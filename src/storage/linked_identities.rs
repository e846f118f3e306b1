//! Queries on `linked_identities`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Queries, StoreError, on_backend, schema::linked_identities};

impl Queries<'_> {
    /// The user linked to `subject` at `provider`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn linked_user(
        &mut self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<i64>, StoreError> {
        let user = on_backend!(self, |conn| {
            linked_identities::table
                .find((provider, subject))
                .select(linked_identities::user_id)
                .first(conn)
                .await
                .optional()
        })?;
        Ok(user)
    }

    /// Links `subject` at `provider` to a user.
    ///
    /// # Errors
    /// `UniqueViolation` when the subject is already linked.
    pub async fn link_identity(
        &mut self,
        provider: &str,
        subject: &str,
        user_id: i64,
        email: &str,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::insert_into(linked_identities::table)
                .values((
                    linked_identities::provider.eq(provider),
                    linked_identities::subject.eq(subject),
                    linked_identities::user_id.eq(user_id),
                    linked_identities::email.eq(email),
                    linked_identities::created_at.eq(now),
                ))
                .execute(conn)
                .await
        })?;
        Ok(())
    }
}
