//! Queries on `sessions` and `refresh_tokens`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Queries, SessionRow, SpentRefreshToken, StoreError,
    models::RefreshTokenRow,
    on_backend,
    schema::{refresh_tokens, sessions},
};
use crate::{
    auth::RefreshTokenHash,
    domain::{SessionId, UserId},
};

impl Queries<'_> {
    /// Starts a session.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_session(&mut self, session: &SessionRow) -> Result<(), StoreError> {
        on_backend!(self, conn => {
            diesel::insert_into(sessions::table)
                .values(session)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Stores the hash of a newly issued refresh token.
    ///
    /// # Errors
    /// On database failure.
    pub async fn insert_refresh_token(
        &mut self,
        session_id: &SessionId,
        token_hash: RefreshTokenHash,
        issued_at: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let row = RefreshTokenRow {
            token_hash,
            session_id: session_id.clone(),
            issued_at,
            expires_at,
            used_at: None,
        };
        on_backend!(self, conn => {
            diesel::insert_into(refresh_tokens::table)
                .values(&row)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Marks an unspent refresh token spent and says what it belonged to; `None` when it is
    /// unknown or already spent. The conditional update makes this race-free: of two
    /// concurrent rotations, exactly one wins.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spend_refresh_token(
        &mut self,
        token_hash: &RefreshTokenHash,
        now: NaiveDateTime,
    ) -> Result<Option<SpentRefreshToken>, StoreError> {
        let unspent = refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null());
        on_backend!(self, conn => {
            diesel::update(unspent)
                .set(refresh_tokens::used_at.eq(now))
                .returning(SpentRefreshToken::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
    }

    /// The session a refresh token (spent or not) belongs to.
    ///
    /// # Errors
    /// On database failure.
    pub async fn refresh_token_session(
        &mut self,
        token_hash: &RefreshTokenHash,
    ) -> Result<Option<SessionId>, StoreError> {
        on_backend!(self, conn => {
            refresh_tokens::table
                .find(token_hash)
                .select(refresh_tokens::session_id)
                .first(conn)
                .await
                .optional()
        })
    }

    /// One session.
    ///
    /// # Errors
    /// On database failure.
    pub async fn session(&mut self, id: &SessionId) -> Result<Option<SessionRow>, StoreError> {
        on_backend!(self, conn => {
            sessions::table
                .find(id)
                .select(SessionRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Revokes one live session; `false` when it was already revoked or unknown.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revoke_session(
        &mut self,
        id: &SessionId,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let live = sessions::table
            .find(id)
            .filter(sessions::revoked_at.is_null());
        on_backend!(self, conn => {
            diesel::update(live)
                .set(sessions::revoked_at.eq(now))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// Revokes every live session of a user; returns how many there were.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revoke_user_sessions(
        &mut self,
        user_id: UserId,
        now: NaiveDateTime,
    ) -> Result<usize, StoreError> {
        let live = sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now));
        on_backend!(self, conn => {
            diesel::update(live)
                .set(sessions::revoked_at.eq(now))
                .execute(conn)
                .await
        })
    }
}
