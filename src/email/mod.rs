//! Email: messages are rendered and written to the outbox inside the transaction that needs
//! them; the [`worker`] delivers them over SMTP, or to the log when no server is configured.

mod templates;
mod transport;
pub mod worker;

use std::{sync::Arc, time::Duration};

use chrono::NaiveDateTime;
pub use templates::{Rendered, TemplateName, Templates};
pub use transport::{DeliveryError, Transport};

use crate::{
    domain::{Email, FactorKind},
    storage::NewEmail,
};

/// Builds outbox rows for each kind of message.
#[derive(Clone)]
pub struct Mailer {
    templates: Arc<Templates>,
    public_base_url: String,
}

impl Mailer {
    /// A mailer whose links start at `public_base_url`.
    #[must_use]
    pub fn new(templates: Templates, public_base_url: String) -> Self {
        Self {
            templates: Arc::new(templates),
            public_base_url,
        }
    }

    /// The verification code email.
    #[must_use]
    pub fn otp(
        &self,
        to: &Email,
        name: &str,
        code: &str,
        lifetime: Duration,
        now: NaiveDateTime,
    ) -> NewEmail {
        self.code_mail(TemplateName::Otp, to, name, code, lifetime, now)
    }

    /// The activation link email.
    #[must_use]
    pub fn activation(&self, to: &Email, name: &str, link: &EmailedLink<'_>) -> NewEmail {
        let url = self.link_url("accounts/api/activate", link);
        let hours = link.lifetime.as_secs().div_ceil(3600).to_string();
        let rendered = self.templates.render(
            TemplateName::Activation,
            &[("name", greeting(name)), ("link", &url), ("hours", &hours)],
        );
        outbox_row(to, rendered, link.now)
    }

    /// One message with a sign-up's code and its activation link.
    #[must_use]
    pub fn verification(
        &self,
        to: &Email,
        name: &str,
        code: &str,
        code_lifetime: Duration,
        link: &EmailedLink<'_>,
    ) -> NewEmail {
        let url = self.link_url("accounts/api/activate", link);
        let minutes = code_lifetime.as_secs().div_ceil(60).to_string();
        let hours = link.lifetime.as_secs().div_ceil(3600).to_string();
        let rendered = self.templates.render(
            TemplateName::Verification,
            &[
                ("name", greeting(name)),
                ("code", code),
                ("minutes", &minutes),
                ("link", &url),
                ("hours", &hours),
            ],
        );
        outbox_row(to, rendered, link.now)
    }

    /// A sign-in code and the link that does the same, in one message.
    #[must_use]
    pub fn email_sign_in(
        &self,
        to: &Email,
        name: &str,
        code: &str,
        link_token: &str,
        lifetime: Duration,
        now: NaiveDateTime,
    ) -> NewEmail {
        let url = format!(
            "{}/accounts/email-sign-in/{link_token}/",
            self.public_base_url
        );
        let minutes = lifetime.as_secs().div_ceil(60).to_string();
        let rendered = self.templates.render(
            TemplateName::EmailSignIn,
            &[
                ("name", greeting(name)),
                ("code", code),
                ("minutes", &minutes),
                ("link", &url),
            ],
        );
        outbox_row(to, rendered, now)
    }

    /// The link to choose a password after sign-ups competed for the address.
    #[must_use]
    pub fn choose_password(&self, to: &Email, name: &str, link: &EmailedLink<'_>) -> NewEmail {
        self.link_mail(
            TemplateName::ChoosePassword,
            "accounts/password-reset-confirm",
            to,
            name,
            link,
        )
    }

    /// The password reset link email.
    #[must_use]
    pub fn password_reset(&self, to: &Email, name: &str, link: &EmailedLink<'_>) -> NewEmail {
        self.link_mail(
            TemplateName::PasswordReset,
            "accounts/password-reset-confirm",
            to,
            name,
            link,
        )
    }

    /// The code that confirms a move to the address `to`.
    #[must_use]
    pub fn email_change(
        &self,
        to: &Email,
        name: &str,
        code: &str,
        lifetime: Duration,
        now: NaiveDateTime,
    ) -> NewEmail {
        self.code_mail(TemplateName::EmailChange, to, name, code, lifetime, now)
    }

    /// The link to choose the first password of an account an administrator made.
    #[must_use]
    pub fn welcome(&self, to: &Email, name: &str, link: &EmailedLink<'_>) -> NewEmail {
        self.link_mail(
            TemplateName::Welcome,
            "accounts/password-reset-confirm",
            to,
            name,
            link,
        )
    }

    /// A notice to an account's owner about something that happened at `when`; it names the
    /// time, never a secret.
    #[must_use]
    pub fn notice(&self, kind: Notice, to: &Email, name: &str, when: NaiveDateTime) -> NewEmail {
        let template = match kind {
            Notice::SignupAttempt => TemplateName::SignupAttempt,
            Notice::PasswordChanged => TemplateName::PasswordChanged,
            Notice::GoogleLinked => TemplateName::GoogleLinked,
            Notice::GoogleLinkedPasswordRemoved => TemplateName::GoogleLinkedPasswordRemoved,
            Notice::ImportChanged => TemplateName::ImportChanged,
            Notice::SessionRevoked => TemplateName::SessionRevoked,
            Notice::EmailChanged => TemplateName::EmailChanged,
            Notice::FactorAdded(_) => TemplateName::FactorAdded,
            Notice::FactorRemoved(_) => TemplateName::FactorRemoved,
            Notice::RecoveryCodesRegenerated => TemplateName::RecoveryCodesRegenerated,
            Notice::FactorsReset => TemplateName::FactorsReset,
            Notice::PasskeyCounterWentBack => TemplateName::PasskeyCounterWentBack,
        };
        // The kind, never the owner's name for it: whoever added the factor chose that text.
        let factor = match kind {
            Notice::FactorAdded(factor) | Notice::FactorRemoved(factor) => match factor {
                FactorKind::Totp => "an authenticator app",
                FactorKind::Passkey => "a passkey",
            },
            _ => "",
        };
        let at = when.format("%Y-%m-%d at %H:%M UTC").to_string();
        let rendered = self.templates.render(
            template,
            &[("name", greeting(name)), ("when", &at), ("factor", factor)],
        );
        outbox_row(to, rendered, when)
    }

    /// The notice that a recovery code was used at `when`, naming how many are `left`.
    #[must_use]
    pub fn recovery_code_used(
        &self,
        to: &Email,
        name: &str,
        left: i64,
        when: NaiveDateTime,
    ) -> NewEmail {
        let at = when.format("%Y-%m-%d at %H:%M UTC").to_string();
        let rendered = self.templates.render(
            TemplateName::RecoveryCodeUsed,
            &[
                ("name", greeting(name)),
                ("when", &at),
                ("left", &left.to_string()),
            ],
        );
        outbox_row(to, rendered, when)
    }

    /// A message with a code that lasts some minutes.
    fn code_mail(
        &self,
        template: TemplateName,
        to: &Email,
        name: &str,
        code: &str,
        lifetime: Duration,
        now: NaiveDateTime,
    ) -> NewEmail {
        let minutes = lifetime.as_secs().div_ceil(60).to_string();
        let rendered = self.templates.render(
            template,
            &[
                ("name", greeting(name)),
                ("code", code),
                ("minutes", &minutes),
            ],
        );
        outbox_row(to, rendered, now)
    }

    /// A message with a link to `path` that lasts some minutes.
    fn link_mail(
        &self,
        template: TemplateName,
        path: &str,
        to: &Email,
        name: &str,
        link: &EmailedLink<'_>,
    ) -> NewEmail {
        let url = self.link_url(path, link);
        let minutes = link.lifetime.as_secs().div_ceil(60).to_string();
        let rendered = self.templates.render(
            template,
            &[
                ("name", greeting(name)),
                ("link", &url),
                ("minutes", &minutes),
            ],
        );
        outbox_row(to, rendered, link.now)
    }

    fn link_url(&self, path: &str, link: &EmailedLink<'_>) -> String {
        format!(
            "{}/{path}/{}/{}/",
            self.public_base_url, link.uidb64, link.token
        )
    }
}

/// What an account's owner is told of (OWASP ASVS 5.0 V6: notify on credential changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Someone tried to register the address, which has a verified account.
    SignupAttempt,
    /// The password changed.
    PasswordChanged,
    /// A Google account was linked.
    GoogleLinked,
    /// A Google account was linked, and a password never used since the address was proven
    /// (perhaps a squatter's) was removed.
    GoogleLinkedPasswordRemoved,
    /// A re-run of the Django import changed the account's address, flags or password.
    ImportChanged,
    /// A reused refresh token revoked a session.
    SessionRevoked,
    /// The account moved to another address (sent to the old one).
    EmailChanged,
    /// A second factor of this kind was added.
    FactorAdded(FactorKind),
    /// A second factor of this kind was removed.
    FactorRemoved(FactorKind),
    /// New recovery codes replaced the old.
    RecoveryCodesRegenerated,
    /// An administrator removed every second factor.
    FactorsReset,
    /// A passkey's signature counter went back: perhaps a copy; the sign-in was refused.
    PasskeyCounterWentBack,
}

/// The parts of an emailed link: whose it is, its token, and how long it lasts from when.
#[derive(Debug, Clone, Copy)]
pub struct EmailedLink<'a> {
    /// The account, as `uidb64`.
    pub uidb64: &'a str,
    /// The link token.
    pub token: &'a str,
    /// How long the link works.
    pub lifetime: Duration,
    /// When it was made (UTC).
    pub now: NaiveDateTime,
}

fn greeting(first_name: &str) -> &str {
    if first_name.trim().is_empty() {
        "there"
    } else {
        first_name
    }
}

fn outbox_row(to: &Email, rendered: Rendered, now: NaiveDateTime) -> NewEmail {
    NewEmail {
        recipient: to.as_str().to_owned(),
        subject: rendered.subject,
        body_text: rendered.text,
        body_html: rendered.html,
        created_at: now,
        next_attempt_at: now,
    }
}
