//! Email: messages are rendered and written to the outbox inside the transaction that needs
//! them; the [`worker`] delivers them over SMTP, or to the log when no server is configured.

mod templates;
mod transport;
pub mod worker;

use std::{sync::Arc, time::Duration};

use chrono::NaiveDateTime;
pub use templates::{Rendered, TemplateName, Templates};
pub use transport::Transport;

use crate::{domain::Email, storage::NewEmail};

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
        let minutes = lifetime.as_secs().div_ceil(60).to_string();
        let rendered = self.templates.render(
            TemplateName::Otp,
            &[
                ("name", greeting(name)),
                ("code", code),
                ("minutes", &minutes),
            ],
        );
        outbox_row(to, rendered, now)
    }

    /// The activation link email.
    #[must_use]
    pub fn activation(
        &self,
        to: &Email,
        name: &str,
        uidb64: &str,
        token: &str,
        lifetime: Duration,
        now: NaiveDateTime,
    ) -> NewEmail {
        let link = format!(
            "{}/accounts/api/activate/{uidb64}/{token}/",
            self.public_base_url
        );
        let hours = lifetime.as_secs().div_ceil(3600).to_string();
        let rendered = self.templates.render(
            TemplateName::Activation,
            &[("name", greeting(name)), ("link", &link), ("hours", &hours)],
        );
        outbox_row(to, rendered, now)
    }

    /// The password reset link email.
    #[must_use]
    pub fn password_reset(
        &self,
        to: &Email,
        name: &str,
        uidb64: &str,
        token: &str,
        lifetime: Duration,
        now: NaiveDateTime,
    ) -> NewEmail {
        let link = format!(
            "{}/accounts/password-reset-confirm/{uidb64}/{token}/",
            self.public_base_url
        );
        let minutes = lifetime.as_secs().div_ceil(60).to_string();
        let rendered = self.templates.render(
            TemplateName::PasswordReset,
            &[
                ("name", greeting(name)),
                ("link", &link),
                ("minutes", &minutes),
            ],
        );
        outbox_row(to, rendered, now)
    }
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
