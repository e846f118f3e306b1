//! WebAuthn ceremonies under way: their state, kept here so replicas keep none, each used once.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{CeremonyRow, Queries, StoreError, on_backend, schema::webauthn_ceremonies};

impl Queries<'_> {
    /// Records a started ceremony.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_ceremony(&mut self, ceremony: &CeremonyRow) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(webauthn_ceremonies::table)
                .values(ceremony)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Takes a ceremony of `kind` for finishing: only if it is unused and unexpired, in one
    /// conditional update that answers its state, so of twenty answers to one ceremony one
    /// gets it. `None` when this call did not.
    ///
    /// # Errors
    /// On database failure.
    pub async fn take_ceremony(
        &mut self,
        id: &str,
        kind: &str,
        now: NaiveDateTime,
    ) -> Result<Option<CeremonyRow>, StoreError> {
        let open = webauthn_ceremonies::table
            .find(id)
            .filter(webauthn_ceremonies::kind.eq(kind))
            .filter(webauthn_ceremonies::used_at.is_null())
            .filter(webauthn_ceremonies::expires_at.gt(now));
        on_backend!(self, conn => {
            diesel::update(open)
                .set(webauthn_ceremonies::used_at.eq(now))
                .returning(CeremonyRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// A ceremony, used or not, for telling why one could not be taken.
    ///
    /// # Errors
    /// On database failure.
    pub async fn ceremony(&mut self, id: &str) -> Result<Option<CeremonyRow>, StoreError> {
        let query = webauthn_ceremonies::table.find(id);
        on_backend!(self, conn => {
            query
                .select(CeremonyRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }
}
