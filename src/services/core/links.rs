//! Emailed links: the account state a link is bound to (so it dies when that changes),
//! links Django mailed before the cutover, and the link to choose a password.

use anyhow::Context;

use super::{accounts::utc, effects::Tx};
use crate::{
    auth::{DjangoLinkState, DjangoTokenError, LinkPurpose, LinkToken, UserState},
    domain::Uidb64,
    email::EmailedLink,
    error::{ServiceError, ServiceResult},
    services::Services,
    storage::{RegistrationRow, UserRow},
};

/// Why an account is mailed a link to choose its password.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PasswordLink {
    /// Its owner asked to reset it.
    Reset,
    /// An administrator made the account.
    Welcome,
    /// Sign-ups competed for the address, so none of their passwords was kept.
    AfterCompetingSignUps,
}

impl Tx<'_, '_> {
    /// Queues a link to choose the account's password: a reset link, void once the password
    /// changes.
    pub(crate) async fn send_password_link(
        &mut self,
        account: &UserRow,
        why: PasswordLink,
    ) -> ServiceResult<()> {
        let services = self.services;
        let now = self.now();
        let token = services
            .links
            .make(LinkPurpose::PasswordReset, &link_state(account), now);
        let uidb64 = Uidb64::encode(account.id);
        let link = EmailedLink {
            uidb64: &uidb64,
            token: &token,
            lifetime: services.config.password_reset_lifetime,
            now: now.naive_utc(),
        };
        let (to, name) = (&account.email, &account.first_name);
        let mail = match why {
            PasswordLink::Reset => services.mailer.password_reset(to, name, &link),
            PasswordLink::Welcome => services.mailer.welcome(to, name, &link),
            PasswordLink::AfterCompetingSignUps => services.mailer.choose_password(to, name, &link),
        };
        self.queue_mail(&mail).await
    }
}

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
}

/// The state an emailed link is bound to.
pub(crate) fn link_state(row: &UserRow) -> UserState<'_> {
    UserState {
        id: row.id,
        email: &row.email,
        password_hash: row.password_hash.as_deref(),
        password_changed_at: utc(row.password_changed_at),
        is_verified: row.is_verified,
        registration: None,
    }
}

/// The state an activation link for one sign-up is bound to: its password, not the account's.
pub(crate) fn registration_link_state<'a>(
    row: &'a UserRow,
    registration: &'a RegistrationRow,
) -> UserState<'a> {
    UserState {
        password_hash: registration.password_hash.as_deref(),
        registration: Some(registration.id),
        ..link_state(row)
    }
}
