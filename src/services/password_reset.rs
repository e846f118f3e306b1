//! Password reset: an emailed single-use link, then a new password that ends every session.

use anyhow::Context;

use super::{
    Caller, Services,
    core::{
        audit::AuditEntry,
        limits::{IpBudget, MailStream},
        links::{PasswordLink, link_state},
    },
};
use crate::{
    auth::{LinkPurpose, LinkToken, LinkTokenError},
    domain::{Actor, AuditKind, Email, Password, Uidb64},
    email::Notice,
    error::{ServiceError, ServiceResult},
};

/// The answer to every reset request, whether or not the address has an account.
pub const RESET_MESSAGE: &str =
    "If an account uses this address, a password reset link is on its way.";

/// The answer to a successful reset.
pub const RESET_DONE_MESSAGE: &str = "Your password has been changed. Sign in with the new one.";

impl Services {
    /// Queues a reset link for the account, if there is one; the answer is the same either way.
    ///
    /// # Errors
    /// `RateLimited`, `Cooldown` (for every address alike).
    #[tracing::instrument(skip_all)]
    pub async fn password_reset(
        &self,
        caller: Caller,
        email: Email,
    ) -> ServiceResult<&'static str> {
        self.spend_ip_budget(&caller, IpBudget::Email, self.clock.now())
            .await?;
        let queue = async {
            let Some(user) = self.user_by_email(&email).await? else {
                return Ok(());
            };
            self.transaction(&caller, async |tx| {
                tx.send_password_link(&user, PasswordLink::Reset).await
            })
            .await?;
            tracing::info!(user.id = %user.id, "password reset link queued");
            Ok(())
        };
        self.within_mail_budget(&email, MailStream::PasswordReset, queue)
            .await?;
        Ok(RESET_MESSAGE)
    }

    /// Sets a new password from a reset link, marks the address verified (the link proved it),
    /// and revokes every session.
    ///
    /// # Errors
    /// `RateLimited`, `LinkInvalid` (tampered, used, or the password changed since), `LinkExpired`,
    /// `InvalidArgument` for a password built from the address.
    #[tracing::instrument(skip_all)]
    pub async fn password_reset_confirm(
        &self,
        caller: Caller,
        uid: Uidb64,
        token: LinkToken,
        new_password: Password,
    ) -> ServiceResult<&'static str> {
        self.spend_ip_budget(&caller, IpBudget::Verify, self.clock.now())
            .await?;
        let Some(user) = self.user_by_id(uid.user_id()).await? else {
            return Err(ServiceError::LinkInvalid);
        };
        let checked = self.links.check(
            LinkPurpose::PasswordReset,
            &token,
            &link_state(&user),
            self.clock.now(),
            self.config.password_reset_lifetime,
        );
        match checked {
            Ok(()) => {}
            // Perhaps a link Django mailed before the cutover.
            Err(LinkTokenError::Invalid) if self.django_links.is_configured() => {
                self.check_django_link(&user, &token).await?;
            }
            Err(LinkTokenError::Invalid) => return Err(ServiceError::LinkInvalid),
            Err(LinkTokenError::Expired) => return Err(ServiceError::LinkExpired),
        }
        new_password
            .check_against(&user.email)
            .map_err(|e| ServiceError::invalid("new_password", &e))?;
        let hash = self.hasher.hash(new_password.secret()).await?;
        let revoked = self
            .transaction(&caller, async |tx| {
                // Conditional on the password not having changed since the link was checked:
                // of two racing uses of one link, only one succeeds.
                if !tx.replace_password(&user, Some(&hash)).await? {
                    return Err(ServiceError::LinkInvalid);
                }
                // The link proved the mailbox.
                let revoked = tx.prove_mailbox(user.id).await?;
                tx.forget_django_link_state(user.id)
                    .await
                    .context("spending the Django links")?;
                tx.notify(Notice::PasswordChanged, &user).await?;
                let entry =
                    AuditEntry::success(AuditKind::PasswordReset, Actor::Anonymous, user.id)
                        .detail(format!("sessions_revoked={revoked}"));
                tx.audit(entry).await?;
                Ok(revoked)
            })
            .await?;
        self.clear_login_failures(&user.email).await?;
        tracing::info!(user.id = %user.id, sessions.revoked = revoked, "password reset");
        Ok(RESET_DONE_MESSAGE)
    }
}
