//! Writing accounts imported from another system, with the ids they had there.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Backend, DjangoImportRecord, DjangoLinkRow, ImportedUser, Queries, StoreError, UserRow,
    on_backend,
    schema::{
        django_blacklisted_refresh, django_imported_accounts, django_link_states,
        django_refresh_exchanges, users,
    },
};
use crate::domain::{Email, UserId};

impl Queries<'_> {
    /// The accounts of those of `ids` that exist.
    ///
    /// # Errors
    /// On database failure.
    pub async fn users_by_ids(&mut self, ids: &[UserId]) -> Result<Vec<UserRow>, StoreError> {
        on_backend!(self, conn => {
            users::table
                .filter(users::id.eq_any(ids))
                .select(UserRow::as_select())
                .load(conn)
                .await
        })
    }

    /// What earlier imports recorded of the Django users with these primary keys.
    ///
    /// # Errors
    /// On database failure.
    pub async fn django_import_records(
        &mut self,
        source_pks: &[i64],
    ) -> Result<Vec<DjangoImportRecord>, StoreError> {
        on_backend!(self, conn => {
            django_imported_accounts::table
                .filter(django_imported_accounts::source_pk.eq_any(source_pks))
                .select(DjangoImportRecord::as_select())
                .load(conn)
                .await
        })
    }

    /// Records what an import wrote for each Django user, replacing earlier records.
    ///
    /// # Errors
    /// On database failure.
    pub async fn record_django_imports(
        &mut self,
        records: &[DjangoImportRecord],
    ) -> Result<(), StoreError> {
        let pks: Vec<i64> = records.iter().map(|record| record.source_pk).collect();
        let earlier = django_imported_accounts::table
            .filter(django_imported_accounts::source_pk.eq_any(&pks));
        match &mut self.0 {
            Backend::Postgres(conn) => {
                diesel::delete(earlier).execute(conn).await?;
                if !records.is_empty() {
                    diesel::insert_into(django_imported_accounts::table)
                        .values(records)
                        .execute(conn)
                        .await?;
                }
            }
            // No batches of optional columns on SQLite.
            Backend::Sqlite(conn) => {
                diesel::delete(earlier).execute(*conn).await?;
                for record in records {
                    diesel::insert_into(django_imported_accounts::table)
                        .values(record)
                        .execute(*conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The account an import created from the Django user `source_pk`, if it still exists.
    ///
    /// # Errors
    /// On database failure.
    pub async fn account_imported_from(
        &mut self,
        source_pk: i64,
    ) -> Result<Option<UserId>, StoreError> {
        on_backend!(self, conn => {
            django_imported_accounts::table
                .find(source_pk)
                .select(django_imported_accounts::user_id)
                .first::<Option<UserId>>(conn)
                .await
                .optional()
                .map(Option::flatten)
        })
    }

    /// The accounts holding any of `emails`, as (id, email).
    ///
    /// # Errors
    /// On database failure.
    pub async fn holders_of(
        &mut self,
        emails: &[Email],
    ) -> Result<Vec<(UserId, Email)>, StoreError> {
        on_backend!(self, conn => {
            users::table
                .filter(users::email.eq_any(emails))
                .select((users::id, users::email))
                .load(conn)
                .await
        })
    }

    /// Inserts new imported accounts in one statement; returns the ids written. A row whose
    /// id or address was taken meanwhile is left out, not an error.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_imported_users(
        &mut self,
        rows: &[ImportedUser],
    ) -> Result<Vec<UserId>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        match &mut self.0 {
            Backend::Postgres(conn) => diesel::insert_into(users::table)
                .values(rows)
                .on_conflict_do_nothing()
                .returning(users::id)
                .get_results(conn)
                .await
                .map_err(StoreError::from),
            // Diesel cannot batch rows with optional columns on SQLite; its one writer makes
            // a row at a time cheap.
            Backend::Sqlite(conn) => {
                let mut written = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: Option<UserId> = diesel::insert_into(users::table)
                        .values(row)
                        .on_conflict_do_nothing()
                        .returning(users::id)
                        .get_result(*conn)
                        .await
                        .optional()?;
                    written.extend(id);
                }
                Ok(written)
            }
        }
    }

    /// Writes an imported account's merged state: names and flags, its address, and its
    /// password when `password_changed` (which voids links issued before, as any change does).
    ///
    /// # Errors
    /// On database failure.
    pub async fn update_imported_user(
        &mut self,
        row: &ImportedUser,
        password_changed: bool,
    ) -> Result<(), StoreError> {
        let fields = (
            users::email.eq(&row.email),
            users::first_name.eq(&row.first_name),
            users::last_name.eq(&row.last_name),
            users::is_active.eq(row.is_active),
            users::is_verified.eq(row.is_verified),
            users::is_staff.eq(row.is_staff),
            users::is_superuser.eq(row.is_superuser),
            users::last_login.eq(row.last_login),
        );
        let target = users::table.find(row.id);
        on_backend!(self, conn => {
            if password_changed {
                diesel::update(target)
                    .set((
                        fields,
                        users::password_hash.eq(&row.password_hash),
                        users::password_changed_at.eq(row.password_changed_at),
                    ))
                    .execute(conn)
                    .await
                    .map(drop)
            } else {
                diesel::update(target).set(fields).execute(conn).await.map(drop)
            }
        })
    }

    /// Records what Django's links for imported accounts covered, replacing what an earlier
    /// import recorded.
    ///
    /// # Errors
    /// On database failure.
    pub async fn replace_django_link_states(
        &mut self,
        rows: &[DjangoLinkRow],
    ) -> Result<(), StoreError> {
        let ids: Vec<UserId> = rows.iter().map(|row| row.user_id).collect();
        let earlier = django_link_states::table.filter(django_link_states::user_id.eq_any(&ids));
        match &mut self.0 {
            Backend::Postgres(conn) => {
                diesel::delete(earlier).execute(conn).await?;
                if !rows.is_empty() {
                    diesel::insert_into(django_link_states::table)
                        .values(rows)
                        .execute(conn)
                        .await?;
                }
            }
            // As for users: no batches of optional columns on SQLite.
            Backend::Sqlite(conn) => {
                diesel::delete(earlier).execute(*conn).await?;
                for row in rows {
                    diesel::insert_into(django_link_states::table)
                        .values(row)
                        .execute(*conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// What Django's links for an imported account covered, if it was imported.
    ///
    /// # Errors
    /// On database failure.
    pub async fn django_link_state(
        &mut self,
        user_id: UserId,
    ) -> Result<Option<DjangoLinkRow>, StoreError> {
        on_backend!(self, conn => {
            django_link_states::table
                .find(user_id)
                .select(DjangoLinkRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Forgets an account's Django link state: its Django links are spent.
    ///
    /// # Errors
    /// On database failure.
    pub async fn forget_django_link_state(&mut self, user_id: UserId) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::delete(django_link_states::table.find(user_id))
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Records refresh tokens simplejwt's blacklist held, by `jti`.
    ///
    /// # Errors
    /// On database failure.
    pub async fn blacklist_django_refresh(&mut self, jtis: &[String]) -> Result<(), StoreError> {
        // A blacklist is short-lived tokens: small enough for a row at a time.
        for jti in jtis {
            on_backend!(self, conn => {
                diesel::insert_into(django_blacklisted_refresh::table)
                    .values(django_blacklisted_refresh::jti.eq(jti))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await
                    .map(drop)
            })?;
        }
        Ok(())
    }

    /// Whether simplejwt's blacklist held this `jti` at the import.
    ///
    /// # Errors
    /// On database failure.
    pub async fn is_django_refresh_blacklisted(&mut self, jti: &str) -> Result<bool, StoreError> {
        on_backend!(self, conn => {
            diesel::select(diesel::dsl::exists(django_blacklisted_refresh::table.find(jti)))
                .get_result(conn)
                .await
        })
    }

    /// Spends a Django refresh token's `jti`; `false` when it was spent before (of twenty
    /// exchanges at once, one wins).
    ///
    /// # Errors
    /// On database failure.
    pub async fn spend_django_refresh(
        &mut self,
        jti: &str,
        user_id: UserId,
        now: chrono::NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let spent = (
            django_refresh_exchanges::jti.eq(jti),
            django_refresh_exchanges::user_id.eq(user_id),
            django_refresh_exchanges::exchanged_at.eq(now),
        );
        on_backend!(self, conn => {
            diesel::insert_into(django_refresh_exchanges::table)
                .values(spent)
                .on_conflict_do_nothing()
                .execute(conn)
                .await
                .map(|inserted| inserted == 1)
        })
    }

    /// Up to `limit` accounts' password hashes with ids above `after`, in id order.
    ///
    /// # Errors
    /// On database failure.
    pub async fn password_hashes_after(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(UserId, Option<String>)>, StoreError> {
        on_backend!(self, conn => {
            users::table
                .filter(users::id.gt(after))
                .order(users::id.asc())
                .limit(limit)
                .select((users::id, users::password_hash))
                .load(conn)
                .await
        })
    }

    /// Moves the id sequence to `floor` at least (and past the largest id), never back, so
    /// accounts made here never take an id a Django account holds or will soon be given.
    ///
    /// # Errors
    /// On database failure.
    pub async fn advance_user_ids(&mut self, floor: i64) -> Result<(), StoreError> {
        match &mut self.0 {
            Backend::Postgres(conn) => diesel::sql_query(
                "SELECT setval(s, GREATEST($1, (SELECT COALESCE(MAX(id), 0) FROM users), \
                 COALESCE(pg_sequence_last_value(s), 0), 1)) \
                 FROM (SELECT pg_get_serial_sequence('users', 'id')::regclass AS s) AS sequence",
            )
            .bind::<diesel::sql_types::BigInt, _>(floor)
            .execute(conn)
            .await
            .map(drop)
            .map_err(StoreError::from),
            Backend::Sqlite(conn) => {
                diesel::sql_query(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT 'users', 0 \
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users')",
                )
                .execute(*conn)
                .await?;
                diesel::sql_query(
                    "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'users'",
                )
                .bind::<diesel::sql_types::BigInt, _>(floor)
                .execute(*conn)
                .await
                .map(drop)
                .map_err(StoreError::from)
            }
        }
    }
}
