//! Sign-in codes and links mailed to an account's address: one live per account, each
//! used once.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{EmailSignInRow, Queries, StoreError, on_backend, schema::email_sign_ins};
use crate::domain::UserId;

impl Queries<'_> {
    /// Records a mailed sign-in, replacing the account's earlier ones: only the newest code
    /// and link work.
    ///
    /// # Errors
    /// On database failure.
    pub async fn replace_email_sign_in(&mut self, row: &EmailSignInRow) -> Result<(), StoreError> {
        let earlier = email_sign_ins::table.filter(email_sign_ins::user_id.eq(row.user_id));
        on_backend!(self, conn => {
            diesel::delete(earlier).execute(conn).await?;
            diesel::insert_into(email_sign_ins::table)
                .values(row)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// The account's unused mailed sign-in, if any, expired or not.
    ///
    /// # Errors
    /// On database failure.
    pub async fn unused_email_sign_in(
        &mut self,
        user_id: UserId,
    ) -> Result<Option<EmailSignInRow>, StoreError> {
        let query = email_sign_ins::table
            .filter(email_sign_ins::user_id.eq(user_id))
            .filter(email_sign_ins::used_at.is_null());
        on_backend!(self, conn => {
            query
                .select(EmailSignInRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// The mailed sign-in of a link token's hash, used or not.
    ///
    /// # Errors
    /// On database failure.
    pub async fn email_sign_in_by_link(
        &mut self,
        link_hash: &str,
    ) -> Result<Option<EmailSignInRow>, StoreError> {
        let query = email_sign_ins::table.find(link_hash);
        on_backend!(self, conn => {
            query
                .select(EmailSignInRow::as_select())
                .first(conn)
                .await
                .optional()
        })
    }

    /// Uses a mailed sign-in: only if it is unused and unexpired, in one conditional update,
    /// so its code or its link signs in once. Returns whether this use did.
    ///
    /// # Errors
    /// On database failure.
    pub async fn use_email_sign_in(
        &mut self,
        link_hash: &str,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let open = email_sign_ins::table
            .find(link_hash)
            .filter(email_sign_ins::used_at.is_null())
            .filter(email_sign_ins::expires_at.gt(now));
        on_backend!(self, conn => {
            diesel::update(open)
                .set(email_sign_ins::used_at.eq(now))
                .execute(conn)
                .await
                .map(|changed| changed == 1)
        })
    }
}
