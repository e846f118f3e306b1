//! Queries on `linked_identities`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Queries, StoreError, on_backend, schema::linked_identities};
use crate::domain::{Email, UserId};

impl Queries<'_> {
    /// The user linked to `subject` at `provider`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn linked_user(
        &mut self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<UserId>, StoreError> {
        on_backend!(self, conn => {
            linked_identities::table
                .find((provider, subject))
                .select(linked_identities::user_id)
                .first(conn)
                .await
                .optional()
        })
    }

    /// Whether a user is linked to any subject at `provider`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn has_linked_identity(
        &mut self,
        provider: &str,
        user_id: UserId,
    ) -> Result<bool, StoreError> {
        let links = linked_identities::table
            .filter(linked_identities::provider.eq(provider))
            .filter(linked_identities::user_id.eq(user_id));
        on_backend!(self, conn => {
            links
                .count()
                .get_result(conn)
                .await
                .map(|count: i64| count > 0)
        })
    }

    /// Links `subject` at `provider` to a user; `false` when another writer linked the
    /// subject first (the insert waits for it), so a race never aborts the transaction.
    ///
    /// # Errors
    /// On database failure.
    pub async fn link_identity(
        &mut self,
        provider: &str,
        subject: &str,
        user_id: UserId,
        email: &Email,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let link = (
            linked_identities::provider.eq(provider),
            linked_identities::subject.eq(subject),
            linked_identities::user_id.eq(user_id),
            linked_identities::email.eq(email),
            linked_identities::created_at.eq(now),
        );
        on_backend!(self, conn => {
            diesel::insert_into(linked_identities::table)
                .values(link)
                .on_conflict_do_nothing()
                .execute(conn)
                .await
                .map(|inserted| inserted == 1)
        })
    }
}
