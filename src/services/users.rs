//! Reading accounts: yourself, or anyone if you are staff or a service with `users:read`.

use anyhow::Context;

use super::{
    Credentials, Services,
    core::{
        access::{Access, Principal},
        paging::{one_page, rows_to_read},
    },
};
use crate::{
    auth::Scope,
    domain::{EmailPrefix, PageSize, PageToken, User, UserId, query_fingerprint},
    error::{ServiceError, ServiceResult},
    storage::UserFilter,
};

/// One page of users.
#[derive(Debug)]
pub struct UserPage {
    /// The users, by id.
    pub users: Vec<User>,
    /// The token of the next page, if there is one.
    pub next_page_token: Option<String>,
}

/// Which accounts a listing returns; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Addresses starting with this.
    pub email_prefix: Option<EmailPrefix>,
    /// Proven addresses, or unproven ones.
    pub is_verified: Option<bool>,
    /// Accounts that may sign in, or those that may not.
    pub is_active: Option<bool>,
    /// Staff, or not.
    pub is_staff: Option<bool>,
}

impl Services {
    /// Lists the users matching `filter` in id order; staff and services only.
    ///
    /// # Errors
    /// Those of [`Services::require`]; `InvalidArgument` for a page token of a listing
    /// with other filters.
    #[tracing::instrument(skip_all)]
    pub async fn list_users(
        &self,
        credentials: Credentials,
        filter: UserQuery,
        size: PageSize,
        token: PageToken,
    ) -> ServiceResult<UserPage> {
        let _: Principal = self
            .require(&credentials, Access::staff_or_service(Scope::UsersRead))
            .await?;
        let flag = |flag: Option<bool>| flag.map_or("", |on| if on { "1" } else { "0" });
        let fingerprint = query_fingerprint(&[
            filter.email_prefix.as_ref().map_or("", EmailPrefix::as_str),
            flag(filter.is_verified),
            flag(filter.is_active),
            flag(filter.is_staff),
        ]);
        if !token.continues(&fingerprint) {
            return Err(ServiceError::other_listing());
        }
        let filter = UserFilter {
            email_prefix: filter.email_prefix,
            is_verified: filter.is_verified,
            is_active: filter.is_active,
            is_staff: filter.is_staff,
            verification_required: self.config.verification.required,
        };
        let mut conn = self.connection().await?;
        let rows = conn
            .queries()
            .users_after(&filter, token.after(), rows_to_read(size))
            .await
            .context("listing users")?;
        let (rows, next_page_token) =
            one_page(rows, size, |last| PageToken::encode(last.id, &fingerprint));
        Ok(UserPage {
            users: rows.iter().map(|row| self.to_user(row)).collect(),
            next_page_token,
        })
    }

    /// Reads one user: yourself, or anyone if you are staff or a service.
    ///
    /// # Errors
    /// Those of [`Services::require`], `PermissionDenied` for another user when not staff,
    /// `NotFound`.
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    pub async fn get_user(&self, credentials: Credentials, id: UserId) -> ServiceResult<User> {
        let caller: Principal = self
            .require(&credentials, Access::user_or_service(Scope::UsersRead))
            .await?;
        match caller {
            Principal::User(me) if me.user.id == id => return Ok(me.user),
            caller if !caller.is_staff() => return Err(ServiceError::PermissionDenied),
            Principal::User(_) | Principal::Service(_) => {}
        }
        let row = self.user_by_id(id).await?.ok_or(ServiceError::NotFound)?;
        Ok(self.to_user(&row))
    }
}
