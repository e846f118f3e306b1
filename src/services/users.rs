//! Reading accounts: yourself, or anyone if you are staff.

use anyhow::Context;

use super::Services;
use crate::{
    auth::BearerToken,
    domain::{PageSize, PageToken, User, UserId},
    error::{ServiceError, ServiceResult},
};

/// One page of users.
#[derive(Debug)]
pub struct UserPage {
    /// The users, by id.
    pub users: Vec<User>,
    /// The token of the next page, if there is one.
    pub next_page_token: Option<String>,
}

impl Services {
    /// Lists users in id order; staff only.
    ///
    /// # Errors
    /// Those of [`Services::authenticate`], then `PermissionDenied` for non-staff.
    #[tracing::instrument(skip_all)]
    pub async fn list_users(
        &self,
        bearer: Option<BearerToken>,
        size: PageSize,
        token: PageToken,
    ) -> ServiceResult<UserPage> {
        let caller = self.authenticate(bearer).await?;
        if !(caller.user.is_staff || caller.user.is_superuser) {
            return Err(ServiceError::PermissionDenied);
        }
        let limit = i64::from(size.get());
        let mut conn = self.connection().await?;
        let mut rows = conn
            .queries()
            .users_after(token.after(), limit + 1)
            .await
            .context("listing users")?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_page_token = more
            .then(|| rows.last().map(|r| PageToken::encode(r.id)))
            .flatten();
        Ok(UserPage {
            users: rows.iter().map(|row| self.to_user(row)).collect(),
            next_page_token,
        })
    }

    /// Reads one user: yourself, or anyone if you are staff.
    ///
    /// # Errors
    /// Those of [`Services::authenticate`], `PermissionDenied` for another user when not staff,
    /// `NotFound`.
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    pub async fn get_user(&self, bearer: Option<BearerToken>, id: UserId) -> ServiceResult<User> {
        let caller = self.authenticate(bearer).await?;
        if caller.user.id == id {
            return Ok(caller.user);
        }
        if !(caller.user.is_staff || caller.user.is_superuser) {
            return Err(ServiceError::PermissionDenied);
        }
        let row = self.user_by_id(id).await?.ok_or(ServiceError::NotFound)?;
        Ok(self.to_user(&row))
    }
}
