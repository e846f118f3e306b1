//! Accounts as every feature reads them, and the transitions an account goes through, each
//! written once: inserted, its mailbox proven, its address taken over from an unproven
//! claim, its password replaced, removed.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::effects::Tx;
use crate::{
    domain::{Email, User, UserId},
    error::{ServiceError, ServiceResult},
    services::Services,
    storage::{Connection, NewUser, UserRow},
};

/// An account about to be written by [`Tx::insert_account`].
pub(crate) struct NewAccount {
    pub(crate) email: Email,
    pub(crate) password_hash: Option<String>,
    pub(crate) first_name: String,
    pub(crate) last_name: String,
    pub(crate) standing: Standing,
}

/// What a new account has proved and may do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Standing {
    /// Registered, waiting for its owner to prove the address.
    Unverified,
    /// The address is proven by a trusted party (Google, an administrator).
    Verified,
    /// Made by an operator: verified, staff and superuser.
    Superuser,
}

impl Services {
    /// Borrows a database connection for statements outside a transaction.
    pub(crate) async fn connection(&self) -> ServiceResult<Connection<'_>> {
        Ok(self
            .store
            .connection()
            .await
            .context("borrowing a connection")?)
    }

    pub(crate) async fn user_by_email(&self, email: &Email) -> ServiceResult<Option<UserRow>> {
        let mut conn = self.connection().await?;
        Ok(conn
            .queries()
            .user_by_email(email)
            .await
            .context("loading a user by email")?)
    }

    pub(crate) async fn user_by_id(&self, id: UserId) -> ServiceResult<Option<UserRow>> {
        let mut conn = self.connection().await?;
        Ok(conn
            .queries()
            .user_by_id(id)
            .await
            .context("loading a user by id")?)
    }

    /// The public view of a stored account. An account waiting for verification is shown
    /// inactive when verification is required: it cannot sign in yet.
    pub(crate) fn to_user(&self, row: &UserRow) -> User {
        User {
            id: row.id,
            email: row.email.clone(),
            first_name: row.first_name.clone(),
            last_name: row.last_name.clone(),
            is_active: row.is_active && (row.is_verified || !self.config.verification.required),
            is_verified: row.is_verified,
            is_staff: row.is_staff,
            is_superuser: row.is_superuser,
            date_joined: utc(row.date_joined),
            last_login: row.last_login.map(utc),
        }
    }
}

impl Tx<'_, '_> {
    /// Writes a new account: the one place an account is inserted and a taken address
    /// becomes `EmailTaken`.
    pub(crate) async fn insert_account(&mut self, account: NewAccount) -> ServiceResult<UserRow> {
        let now = self.now_naive();
        let (is_verified, is_staff) = match account.standing {
            Standing::Unverified => (false, false),
            Standing::Verified => (true, false),
            Standing::Superuser => (true, true),
        };
        let new_user = NewUser {
            email: account.email,
            password_hash: account.password_hash,
            first_name: account.first_name,
            last_name: account.last_name,
            is_active: true,
            is_verified,
            is_staff,
            is_superuser: is_staff,
            date_joined: now,
            password_changed_at: now,
        };
        self.insert_user(&new_user)
            .await
            .context("inserting the user")?
            .ok_or(ServiceError::EmailTaken)
    }

    /// Frees `email` for an account whose claim to it is proven (a code sent there, a trusted
    /// caller's word): an unverified account holding it is removed with its sessions.
    ///
    /// # Errors
    /// `EmailTaken` when a verified account holds it.
    pub(crate) async fn take_over_unproven(&mut self, email: &Email) -> ServiceResult<()> {
        let holder = self
            .user_by_email(email)
            .await
            .context("finding the address's account")?;
        match holder {
            Some(holder) if holder.is_verified => Err(ServiceError::EmailTaken),
            Some(squatter) => {
                let now = self.now_naive();
                self.revoke_user_sessions(squatter.id, now)
                    .await
                    .context("ending an unproven account's sessions")?;
                self.delete_user(squatter.id)
                    .await
                    .context("removing an unproven account")?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The owner of the mailbox has proven it: the account is verified, every other sign-up
    /// for it is forgotten, and every session is ended (any may have been opened with a
    /// password that was not the owner's). Returns how many sessions were live.
    pub(crate) async fn prove_mailbox(&mut self, id: UserId) -> ServiceResult<usize> {
        self.mark_verified(id)
            .await
            .context("marking the user verified")?;
        self.delete_registrations(id)
            .await
            .context("forgetting unproven sign-ups")?;
        let now = self.now_naive();
        Ok(self
            .revoke_user_sessions(id, now)
            .await
            .context("ending the sessions of unproven passwords")?)
    }

    /// Replaces the password of `account` (`None` leaves it without one), if it is still the
    /// one the caller checked: of two changes at once, one wins, and a sign-in that checked
    /// the old password is refused. `false` when it changed meanwhile.
    pub(crate) async fn replace_password(
        &mut self,
        account: &UserRow,
        hash: Option<&str>,
    ) -> ServiceResult<bool> {
        let now = self.now_naive();
        Ok(self
            .set_password_hash(account.id, hash, account.password_changed_at, now)
            .await
            .context("setting the password")?)
    }

    /// Ends every session of an account and deletes it, refusing to delete the last active
    /// superuser; returns how many sessions were live.
    pub(crate) async fn remove_account(&mut self, account: &UserRow) -> ServiceResult<usize> {
        let now = self.now_naive();
        let revoked = self
            .revoke_user_sessions(account.id, now)
            .await
            .context("ending the account's sessions")?;
        self.delete_user(account.id)
            .await
            .context("deleting the account")?;
        if account.is_superuser {
            self.ensure_a_superuser_remains().await?;
        }
        Ok(revoked)
    }

    /// Refuses (rolling the transaction back) when no active superuser would remain. The
    /// lock orders concurrent removals, so two at once cannot each count the other.
    pub(crate) async fn ensure_a_superuser_remains(&mut self) -> ServiceResult<()> {
        self.lock_superusers()
            .await
            .context("ordering superuser changes")?;
        let remaining = self
            .count_active_superusers()
            .await
            .context("counting superusers")?;
        if remaining == 0 {
            return Err(ServiceError::LastSuperuser);
        }
        Ok(())
    }
}

/// A stored instant, in UTC.
pub(crate) fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    naive.and_utc()
}
