//! Where mail goes: an SMTP server (lettre, rustls), or the log for zero-set-up development.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
};
use secrecy::ExposeSecret;

use crate::{config::SmtpConfig, storage::OutboxRow};

/// Bound on one SMTP exchange, so a stuck server cannot hold a claimed row forever.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Delivers one message.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server.
    Smtp {
        /// The pooled lettre transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The `From` mailbox.
        from: Mailbox,
    },
    /// The log, for development: the whole message is printed.
    Log,
}

impl Transport {
    /// The transport for this configuration.
    ///
    /// # Errors
    /// When the `From` address or the TLS set-up is invalid.
    pub fn new(smtp: Option<&SmtpConfig>, from: &str) -> anyhow::Result<Self> {
        let Some(smtp) = smtp else {
            return Ok(Self::Log);
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("DEFAULT_FROM_EMAIL is not a valid address: {e}"))?;
        let mut builder = if !smtp.use_tls {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        } else if smtp.port == 465 {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?
        };
        builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self::Smtp {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one outbox row.
    ///
    /// # Errors
    /// A description of the failure, kept on the row for operators.
    pub async fn send(&self, email: &OutboxRow) -> Result<(), String> {
        match self {
            Self::Log => {
                tracing::info!(
                    outbox.id = email.id,
                    "email (no EMAIL_HOST set, so it is logged instead of sent)\nTo: {}\nSubject: {}\n\n{}",
                    email.recipient,
                    email.subject,
                    email.body_text
                );
                Ok(())
            }
            Self::Smtp { transport, from } => {
                let to: Mailbox = email
                    .recipient
                    .parse()
                    .map_err(|e| format!("invalid recipient: {e}"))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject)
                    .message_id(Some(format!("<outbox-{}@identity>", email.id)))
                    .multipart(MultiPart::alternative_plain_html(
                        email.body_text.clone(),
                        email.body_html.clone(),
                    ))
                    .map_err(|e| format!("building the message: {e}"))?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }
}
