//! Password reset: an emailed single-use link, then a new password that ends every session.

use anyhow::Context;

use super::{
    Caller, Services,
    audit::AuditEntry,
    limits::{IpBudget, MailStream},
    link_state,
};
use crate::{
    auth::{DjangoLinkState, DjangoTokenError, LinkPurpose, LinkToken, LinkTokenError},
    domain::{Actor, AuditKind, Email, Password, Uidb64},
    email::{EmailedLink, Notice},
    error::{ServiceError, ServiceResult},
    storage::UserRow,
};

/// The answer to every reset request, whether or not the address has an account.
pub const RESET_MESSAGE: &str =
    "If an account uses this address, a password reset link is on its way.";

/// The answer to a successful reset.
pub const RESET_DONE_MESSAGE: &str = "Your password has been changed. Sign in with the new one.";

impl Services {
    /// Checks a link Django mailed for an imported account (its reset and activation links
    /// share one token generator): valid only while the account is as Django left it (the
    /// same password field and last sign-in), within Django's timeout. A reset changes the
    /// password and an activation the account, so each works once.
    pub(crate) async fn check_django_link(
        &self,
        user: &UserRow,
        token: &LinkToken,
    ) -> ServiceResult<()> {
        let mut conn = self.connection().await?;
        let state = conn
            .queries()
            .django_link_state(user.id)
            .await
            .context("loading the Django link state")?
            .ok_or(ServiceError::LinkInvalid)?;
        let unchanged = user.password_hash.as_deref() == Some(state.password.as_str())
            && user.last_login.map(|at| at.and_utc().timestamp())
                == state.last_login.map(|at| at.and_utc().timestamp());
        if !unchanged {
            return Err(ServiceError::LinkInvalid);
        }
        let django = DjangoLinkState {
            id: user.id.get(),
            password: &state.password,
            last_login: state.last_login,
            email: &state.email,
        };
        self.django_links
            .check(
                token.expose(),
                &django,
                self.clock.now(),
                self.config.django.password_reset_timeout,
            )
            .map_err(|e| match e {
                DjangoTokenError::Invalid => ServiceError::LinkInvalid,
                DjangoTokenError::Expired => ServiceError::LinkExpired,
            })
    }

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
        self.spend_ip_budget(&caller, IpBudget::Email).await?;
        let queue = async {
            let Some(user) = self.user_by_email(&email).await? else {
                return Ok(());
            };
            let now = self.clock.now();
            let token = self
                .links
                .make(LinkPurpose::PasswordReset, &link_state(&user), now);
            let uidb64 = Uidb64::encode(user.id);
            let link = EmailedLink {
                uidb64: &uidb64,
                token: &token,
                lifetime: self.config.password_reset_lifetime,
                now: now.naive_utc(),
            };
            let mail = self.mailer.password_reset(&email, &user.first_name, &link);
            let mut conn = self.connection().await?;
            conn.queries()
                .enqueue_email(&mail)
                .await
                .context("queueing the reset email")?;
            self.outbox_wake.notify_one();
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
        self.spend_ip_budget(&caller, IpBudget::Verify).await?;
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
        let now = self.clock.now_naive();
        let revoked = self
            .store
            .transaction(async |tx| {
                // Conditional on the password not having changed since the link was checked:
                // of two racing uses of one link, only one succeeds.
                let changed = tx
                    .set_password_hash(user.id, Some(&hash), user.password_changed_at, now)
                    .await
                    .context("setting the password")?;
                if !changed {
                    return Err(ServiceError::LinkInvalid);
                }
                tx.mark_verified(user.id)
                    .await
                    .context("marking the user verified")?;
                tx.delete_registrations(user.id)
                    .await
                    .context("forgetting unproven sign-ups")?;
                tx.forget_django_link_state(user.id)
                    .await
                    .context("spending the Django links")?;
                let notice =
                    self.mailer
                        .notice(Notice::PasswordChanged, &user.email, &user.first_name, now);
                tx.enqueue_email(&notice)
                    .await
                    .context("queueing the password-changed notice")?;
                let revoked = tx
                    .revoke_user_sessions(user.id, now)
                    .await
                    .context("revoking every session")?;
                let entry =
                    AuditEntry::success(AuditKind::PasswordReset, Actor::Anonymous, user.id)
                        .detail(format!("sessions_revoked={revoked}"));
                self.audit(tx, &caller, entry).await?;
                Ok(revoked)
            })
            .await?;
        self.outbox_wake.notify_one();
        self.clear_login_failures(&user.email).await?;
        tracing::info!(user.id = %user.id, sessions.revoked = revoked, "password reset");
        Ok(RESET_DONE_MESSAGE)
    }
}
