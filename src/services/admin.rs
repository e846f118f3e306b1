//! Administration: staff users and services with the `users:write` scope create, change and
//! delete accounts. Disabling, demoting or deleting ends the account's sessions at once, and
//! no change may leave the deployment without an active superuser.

use anyhow::Context;

use super::{
    Caller, Credentials, Services,
    core::{
        access::{Access, Principal},
        accounts::{NewAccount, Standing},
        audit::AuditEntry,
        effects::Tx,
        links::PasswordLink,
    },
};
use crate::{
    auth::Scope,
    domain::{AuditKind, Email, Password, PersonName, User, UserId},
    email::Notice,
    error::{ServiceError, ServiceResult},
    storage::{UserChanges, UserRow},
};

/// An account a trusted caller creates: verified, because the caller vouches for the address.
#[derive(Debug)]
pub struct NewUserByAdmin {
    /// Address.
    pub email: Email,
    /// A password to start with; `None` for an account that signs in otherwise (Google, or
    /// the emailed link).
    pub password: Option<Password>,
    /// Given name.
    pub first_name: PersonName,
    /// Family name.
    pub last_name: PersonName,
    /// Staff from the start.
    pub is_staff: bool,
    /// Mail the owner a link to choose a password.
    pub send_password_link: bool,
}

/// The fields an operator changes on an account: each that is set is written.
#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    /// Given name.
    pub first_name: Option<PersonName>,
    /// Family name.
    pub last_name: Option<PersonName>,
    /// May sign in.
    pub is_active: Option<bool>,
    /// Staff.
    pub is_staff: Option<bool>,
    /// Superuser.
    pub is_superuser: Option<bool>,
}

impl AccountChanges {
    /// The same changes, as the storage layer writes them.
    fn into_row_changes(self) -> UserChanges {
        UserChanges {
            first_name: self.first_name.map(PersonName::into_inner),
            last_name: self.last_name.map(PersonName::into_inner),
            is_active: self.is_active,
            is_staff: self.is_staff,
            is_superuser: self.is_superuser,
        }
    }
}

/// An operator's change to one account.
#[derive(Debug, Default)]
pub struct UserUpdate {
    /// The fields to write (those the field mask named).
    pub changes: AccountChanges,
    /// The `etag` the caller read, if it sent one.
    pub etag: Option<String>,
}

impl Services {
    /// Creates a verified account for a trusted caller. An unverified account holding the
    /// address is replaced: the caller vouches for the address, as Google does for its own.
    ///
    /// # Errors
    /// Those of [`Services::require`], `InvalidArgument` for a password built from the
    /// address, `EmailTaken` for an address with a verified account.
    #[tracing::instrument(skip_all)]
    pub async fn create_user(
        &self,
        caller: Caller,
        credentials: Credentials,
        new_user: NewUserByAdmin,
    ) -> ServiceResult<User> {
        let admin: Principal = self
            .require(&credentials, Access::staff_or_service(Scope::UsersWrite))
            .await?;
        let password_hash = match &new_user.password {
            Some(password) => {
                password
                    .check_against(&new_user.email)
                    .map_err(|e| ServiceError::invalid("password", &e))?;
                Some(self.hasher.hash(password.secret()).await?)
            }
            None => None,
        };
        let row = self
            .transaction(&caller, async |tx| {
                tx.take_over_unproven(&new_user.email).await?;
                let account = NewAccount {
                    email: new_user.email.clone(),
                    password_hash: password_hash.clone(),
                    first_name: new_user.first_name.clone().into_inner(),
                    last_name: new_user.last_name.clone().into_inner(),
                    standing: Standing::Verified,
                };
                let mut row = tx.insert_account(account).await?;
                if new_user.is_staff {
                    let staff = UserChanges {
                        is_staff: Some(true),
                        ..UserChanges::default()
                    };
                    row = tx
                        .update_user(row.id, &staff)
                        .await
                        .context("making the user staff")?
                        .ok_or(ServiceError::ConcurrentChange)?;
                }
                if new_user.send_password_link {
                    tx.send_password_link(&row, PasswordLink::Welcome).await?;
                }
                let detail = format!(
                    "password={} staff={} link={}",
                    row.password_hash.is_some(),
                    row.is_staff,
                    new_user.send_password_link
                );
                let entry = AuditEntry::success(AuditKind::UserCreate, admin.actor(), row.id);
                tx.audit(entry.detail(detail)).await?;
                Ok::<_, ServiceError>(row)
            })
            .await?;
        tracing::info!(user.id = %row.id, "account created by an administrator");
        Ok(self.to_user(&row))
    }

    /// Writes the fields an administrator's field mask named. Disabling or demoting ends
    /// every session of the account, in the same transaction.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound`, `StaleEtag`, `PermissionDenied`
    /// (staff changing a superuser or the flag), `LastSuperuser`.
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    pub async fn update_user(
        &self,
        caller: Caller,
        credentials: Credentials,
        id: UserId,
        update: UserUpdate,
    ) -> ServiceResult<User> {
        let admin: Principal = self
            .require(&credentials, Access::staff_or_service(Scope::UsersWrite))
            .await?;
        let changes = update.changes.into_row_changes();
        let row = self
            .transaction(&caller, async |tx| {
                let before = self
                    .administered_user(tx, &admin, id, update.etag.as_deref())
                    .await?;
                if changes.is_superuser.is_some() && !admin.governs_superusers() {
                    return Err(ServiceError::PermissionDenied);
                }
                let after = tx
                    .update_user(id, &changes)
                    .await
                    .context("changing the user")?
                    .ok_or(ServiceError::NotFound)?;
                let lost = |was: bool, is: bool| was && !is;
                let loses_power = lost(before.is_active, after.is_active)
                    || lost(before.is_staff, after.is_staff)
                    || lost(before.is_superuser, after.is_superuser);
                if before.is_superuser && !(after.is_superuser && after.is_active) {
                    tx.ensure_a_superuser_remains().await?;
                }
                let now = tx.now_naive();
                let revoked = if loses_power {
                    tx.revoke_user_sessions(id, now)
                        .await
                        .context("ending the user's sessions")?
                } else {
                    0
                };
                let entry = AuditEntry::success(AuditKind::UserUpdate, admin.actor(), id)
                    .detail(describe_update(&before, &after, revoked));
                tx.audit(entry).await?;
                Ok(after)
            })
            .await?;
        tracing::info!(user.id = %id, "account changed by an administrator");
        Ok(self.to_user(&row))
    }

    /// Removes every second factor of an account and its recovery codes, for a user who lost
    /// them (after the support desk's own checks); the next sign-in asks for the password
    /// alone. The owner is told.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound`, `PermissionDenied` (staff resetting a
    /// superuser).
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    pub async fn reset_user_factors(
        &self,
        caller: Caller,
        credentials: Credentials,
        id: UserId,
    ) -> ServiceResult<()> {
        let admin: Principal = self
            .require(&credentials, Access::staff_or_service(Scope::UsersWrite))
            .await?;
        self.transaction(&caller, async |tx| {
            let row = self.administered_user(tx, &admin, id, None).await?;
            let removed = tx
                .delete_all_factors(id)
                .await
                .context("removing the factors")?;
            tx.notify(Notice::FactorsReset, &row).await?;
            let entry = AuditEntry::success(AuditKind::FactorsReset, admin.actor(), id)
                .detail(format!("factors_removed={removed}"));
            tx.audit(entry).await
        })
        .await?;
        tracing::info!(user.id = %id, "second factors reset by an administrator");
        Ok(())
    }

    /// Deletes an account and ends its sessions at once.
    ///
    /// # Errors
    /// Those of [`Services::require`], `NotFound`, `StaleEtag`, `PermissionDenied`
    /// (staff deleting a superuser), `LastSuperuser`.
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    pub async fn delete_user(
        &self,
        caller: Caller,
        credentials: Credentials,
        id: UserId,
        etag: Option<String>,
    ) -> ServiceResult<()> {
        let admin: Principal = self
            .require(&credentials, Access::staff_or_service(Scope::UsersWrite))
            .await?;
        self.transaction(&caller, async |tx| {
            let row = self
                .administered_user(tx, &admin, id, etag.as_deref())
                .await?;
            let revoked = tx.remove_account(&row).await?;
            let entry = AuditEntry::success(AuditKind::UserDelete, admin.actor(), id)
                .detail(format!("sessions_revoked={revoked}"));
            tx.audit(entry).await
        })
        .await?;
        tracing::info!(user.id = %id, "account deleted by an administrator");
        Ok(())
    }

    /// The account an administrator acts on, locked for the rest of the transaction, once
    /// the caller's `etag` matches and the administrator may touch it.
    async fn administered_user(
        &self,
        tx: &mut Tx<'_, '_>,
        admin: &Principal,
        id: UserId,
        etag: Option<&str>,
    ) -> ServiceResult<UserRow> {
        let row = tx
            .lock_user(id)
            .await
            .context("loading the user")?
            .ok_or(ServiceError::NotFound)?;
        if etag.is_some_and(|etag| etag != self.to_user(&row).etag()) {
            return Err(ServiceError::StaleEtag);
        }
        if row.is_superuser && !admin.governs_superusers() {
            return Err(ServiceError::PermissionDenied);
        }
        Ok(row)
    }
}

/// What an update changed, for the audit trail.
fn describe_update(before: &UserRow, after: &UserRow, revoked: usize) -> String {
    let mut changed = Vec::new();
    let mut flag = |name: &str, was: bool, is: bool| {
        if was != is {
            changed.push(format!("{name}: {was} -> {is}"));
        }
    };
    flag("is_active", before.is_active, after.is_active);
    flag("is_staff", before.is_staff, after.is_staff);
    flag("is_superuser", before.is_superuser, after.is_superuser);
    if before.first_name != after.first_name || before.last_name != after.last_name {
        changed.push("name".to_owned());
    }
    if revoked > 0 {
        changed.push(format!("sessions_revoked={revoked}"));
    }
    changed.join(", ")
}
