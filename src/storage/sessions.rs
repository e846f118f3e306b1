//! Queries on `sessions` and `refresh_tokens`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Queries, SessionRow, StoreError,
    models::RefreshTokenRow,
    on_backend,
    schema::{refresh_tokens, sessions},
};

impl Queries<'_> {
    /// Starts a session.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_session(&mut self, session: &SessionRow) -> Result<(), StoreError> {
        on_backend!(self, |conn| {
            diesel::insert_into(sessions::table)
                .values(session)
                .execute(conn)
                .await
        })?;
        Ok(())
    }

    /// Stores the hash of a newly issued refresh token.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_refresh_token(
        &mut self,
        session_id: &str,
        token_hash: &str,
        issued_at: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let row = RefreshTokenRow {
            token_hash: token_hash.to_owned(),
            session_id: session_id.to_owned(),
            issued_at,
            expires_at,
            used_at: None,
        };
        on_backend!(self, |conn| {
            diesel::insert_into(refresh_tokens::table)
                .values(&row)
                .execute(conn)
                .await
        })?;
        Ok(())
    }

    /// Marks an unspent refresh token spent and returns its session id and expiry; `None`
    /// when it is unknown or already spent. The conditional update makes this race-free:
    /// of two concurrent rotations, exactly one wins.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spend_refresh_token(
        &mut self,
        token_hash: &str,
        now: NaiveDateTime,
    ) -> Result<Option<(String, NaiveDateTime)>, StoreError> {
        let row = on_backend!(self, |conn| {
            diesel::update(
                refresh_tokens::table
                    .find(token_hash)
                    .filter(refresh_tokens::used_at.is_null()),
            )
            .set(refresh_tokens::used_at.eq(now))
            .returning((refresh_tokens::session_id, refresh_tokens::expires_at))
            .get_result(conn)
            .await
            .optional()
        })?;
        Ok(row)
    }

    /// The session a refresh token (spent or not) belongs to.
    ///
    /// # Errors
    /// On database failure.
    pub async fn refresh_token_session(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = on_backend!(self, |conn| {
            refresh_tokens::table
                .find(token_hash)
                .select(refresh_tokens::session_id)
                .first(conn)
                .await
                .optional()
        })?;
        Ok(row)
    }

    /// One session.
    ///
    /// # Errors
    /// On database failure.
    pub async fn session(&mut self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = on_backend!(self, |conn| {
            sessions::table
                .find(id)
                .select(SessionRow::as_select())
                .first(conn)
                .await
                .optional()
        })?;
        Ok(row)
    }

    /// Revokes one live session; `false` when it was already revoked or unknown.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revoke_session(
        &mut self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let changed = on_backend!(self, |conn| {
            diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::revoked_at.is_null()),
            )
            .set(sessions::revoked_at.eq(now))
            .execute(conn)
            .await
        })?;
        Ok(changed == 1)
    }

    /// Revokes every live session of a user; returns how many there were.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revoke_user_sessions(
        &mut self,
        user_id: i64,
        now: NaiveDateTime,
    ) -> Result<usize, StoreError> {
        let changed = on_backend!(self, |conn| {
            diesel::update(
                sessions::table
                    .filter(sessions::user_id.eq(user_id))
                    .filter(sessions::revoked_at.is_null())
                    .filter(sessions::expires_at.gt(now)),
            )
            .set(sessions::revoked_at.eq(now))
            .execute(conn)
            .await
        })?;
        Ok(changed)
    }
}
