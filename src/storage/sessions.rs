//! Queries on `sessions` and `refresh_tokens`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{
    Backend, Queries, RevocationRow, SessionRow, SpentRefreshToken, StoreError, UserRow,
    models::RefreshTokenRow,
    on_backend,
    schema::{refresh_tokens, revocations, sessions, users},
};
use crate::domain::{RefreshTokenHash, SessionId, UserId};

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

    /// The live sessions of a user, newest first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn live_sessions(
        &mut self,
        user_id: UserId,
        now: NaiveDateTime,
    ) -> Result<Vec<SessionRow>, StoreError> {
        on_backend!(self, conn => {
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::expires_at.gt(now))
                .order((sessions::created_at.desc(), sessions::id.desc()))
                .select(SessionRow::as_select())
                .load(conn)
                .await
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

    /// Marks an unspent refresh token spent and says when it expires, with the session it
    /// continues and that session's user; `None` when the token is unknown or already
    /// spent. The conditional update makes this race-free: of two concurrent rotations,
    /// exactly one wins. On Postgres the read is pipelined with the update (one round trip):
    /// it reads rows the update does not change.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spend_refresh_token(
        &mut self,
        token_hash: &RefreshTokenHash,
        now: NaiveDateTime,
    ) -> Result<Option<(SpentRefreshToken, Option<(SessionRow, UserRow)>)>, StoreError> {
        let unspent = refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null());
        // Macros, not values: each backend's selection is a type of its own.
        macro_rules! spend {
            () => {
                diesel::update(unspent)
                    .set(refresh_tokens::used_at.eq(now))
                    .returning(SpentRefreshToken::as_returning())
            };
        }
        macro_rules! continued {
            () => {
                refresh_tokens::table
                    .find(token_hash)
                    .inner_join(sessions::table.inner_join(users::table))
                    .select((SessionRow::as_select(), UserRow::as_select()))
            };
        }
        let (spent, continued) = match &mut self.0 {
            Backend::Postgres(conn) => {
                let (mut first, mut second) = (*conn, *conn);
                tokio::join!(
                    spend!().get_result(&mut first),
                    continued!().first(&mut second)
                )
            }
            Backend::Sqlite(conn) => (
                spend!().get_result(*conn).await,
                continued!().first(*conn).await,
            ),
        };
        let Some(spent) = spent.optional()? else {
            return Ok(None);
        };
        Ok(Some((spent, continued.optional()?)))
    }

    /// Records a refresh of a session at `now` and stores the hash of the token it issued;
    /// one round trip on Postgres, where the two statements are pipelined.
    ///
    /// # Errors
    /// On database failure.
    pub async fn record_refresh(
        &mut self,
        session_id: &SessionId,
        successor: RefreshTokenHash,
        now: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let touch = diesel::update(sessions::table.find(session_id))
            .set(sessions::last_refreshed_at.eq(now));
        let row = RefreshTokenRow {
            token_hash: successor,
            session_id: session_id.clone(),
            issued_at: now,
            expires_at,
            used_at: None,
        };
        let store = diesel::insert_into(refresh_tokens::table).values(&row);
        let (touched, stored) = match &mut self.0 {
            Backend::Postgres(conn) => {
                let (mut first, mut second) = (*conn, *conn);
                tokio::join!(touch.execute(&mut first), store.execute(&mut second))
            }
            Backend::Sqlite(conn) => (touch.execute(*conn).await, store.execute(*conn).await),
        };
        touched?;
        stored?;
        Ok(())
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

    /// When a refresh token (of any session) was spent: `None` for an unknown token,
    /// `Some(None)` for one that is unspent.
    ///
    /// # Errors
    /// On database failure.
    pub async fn refresh_token_spent_at(
        &mut self,
        token_hash: &RefreshTokenHash,
    ) -> Result<Option<Option<NaiveDateTime>>, StoreError> {
        on_backend!(self, conn => {
            refresh_tokens::table
                .find(token_hash)
                .select(refresh_tokens::used_at)
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

    /// Records that a live session's user proved another factor at `at`: its methods and
    /// `auth_time`. Returns whether the session was live.
    ///
    /// # Errors
    /// On database failure.
    pub async fn raise_session(
        &mut self,
        id: &SessionId,
        methods: &str,
        at: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let live = sessions::table
            .find(id)
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(at));
        on_backend!(self, conn => {
            diesel::update(live)
                .set((sessions::methods.eq(methods), sessions::auth_time.eq(at)))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }

    /// One session with its user, read in one round trip: every bearer call and every
    /// refresh needs both.
    ///
    /// # Errors
    /// On database failure.
    pub async fn session_with_user(
        &mut self,
        id: &SessionId,
    ) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
        on_backend!(self, conn => {
            sessions::table
                .find(id)
                .inner_join(users::table)
                .select((SessionRow::as_select(), UserRow::as_select()))
                .first(conn)
                .await
                .optional()
        })
    }

    /// Revokes one live session, and logs it for services that follow revocations; `false`
    /// when it was already revoked or unknown.
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
        let revoked = on_backend!(self, conn => {
            diesel::update(live)
                .set(sessions::revoked_at.eq(now))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })?;
        if revoked {
            self.log_revocation(Some(id), None, now).await?;
        }
        Ok(revoked)
    }

    /// Revokes every live session of a user, and logs each of them and (when there was one)
    /// "not valid before now" for services that follow revocations; returns how many
    /// sessions were live. The account records the instant either way.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revoke_user_sessions(
        &mut self,
        user_id: UserId,
        now: NaiveDateTime,
    ) -> Result<usize, StoreError> {
        let revoked = self.revoke_live_sessions(user_id, None, now).await?;
        // With no live session there is no live token to void.
        if revoked > 0 {
            self.log_revocation(None, Some(user_id), now).await?;
        }
        Ok(revoked)
    }

    /// Revokes every live session of a user but `kept`, and logs each; returns how many.
    /// The account records the instant.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revoke_other_sessions(
        &mut self,
        user_id: UserId,
        kept: &SessionId,
        now: NaiveDateTime,
    ) -> Result<usize, StoreError> {
        self.revoke_live_sessions(user_id, Some(kept), now).await
    }

    async fn revoke_live_sessions(
        &mut self,
        user_id: UserId,
        kept: Option<&SessionId>,
        now: NaiveDateTime,
    ) -> Result<usize, StoreError> {
        let live = sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now))
            .select(sessions::id);
        let ids: Vec<SessionId> = on_backend!(self, conn => { live.load(conn).await })?;
        // Tokens minted elsewhere (simplejwt's, before the cutover) have no session here to
        // revoke: the instant voids those issued before it.
        on_backend!(self, conn => {
            diesel::update(users::table.find(user_id))
                .set(users::sessions_ended_at.eq(now))
                .execute(conn)
                .await
        })?;
        let mut revoked = 0;
        for id in ids.iter().filter(|id| Some(*id) != kept) {
            // Each session is named: "not valid before" counts whole seconds, so a token
            // issued in the second of the revocation is voided only by its session's entry.
            if self.revoke_session(id, now).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Up to `limit` revocations after `cursor`, in commit order.
    ///
    /// # Errors
    /// On database failure.
    pub async fn revocations_after(
        &mut self,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<RevocationRow>, StoreError> {
        on_backend!(self, conn => {
            revocations::table
                .filter(revocations::position.gt(cursor))
                .order(revocations::position.asc())
                .limit(limit)
                .select(RevocationRow::as_select())
                .load(conn)
                .await
        })
    }

    /// Appends to the revocation log: one session, or every session of a user before `now`.
    /// Its place in the feed is given when the transaction commits.
    async fn log_revocation(
        &mut self,
        session_id: Option<&SessionId>,
        user_id: Option<UserId>,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let entry = (
            revocations::session_id.eq(session_id),
            revocations::user_id.eq(user_id),
            revocations::not_valid_before.eq(user_id.map(|_| now)),
            revocations::created_at.eq(now),
        );
        let id = on_backend!(self, conn => {
            diesel::insert_into(revocations::table)
                .values(entry)
                .returning(revocations::id)
                .get_result::<i64>(conn)
                .await
        })?;
        self.awaiting_feed_position(id)
    }
}
