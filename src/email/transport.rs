//! Where mail goes: an SMTP server (lettre, rustls), or the log for zero-set-up development.

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
};
use secrecy::ExposeSecret;

use crate::{config::SmtpConfig, storage::OutboxRow};

/// Delivers one message.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server.
    Smtp {
        /// The pooled lettre transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The `From` mailbox.
        from: Mailbox,
        /// Bound on one whole delivery.
        timeout: std::time::Duration,
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
        builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
        if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self::Smtp {
            transport: builder.build(),
            from,
            timeout: smtp.timeout,
        })
    }

    /// Sends one outbox row.
    ///
    /// # Errors
    /// Why it was not sent, and whether trying again could help.
    pub async fn send(&self, email: &OutboxRow) -> Result<(), DeliveryError> {
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
            Self::Smtp {
                transport,
                from,
                timeout,
            } => {
                let to: Mailbox = email.recipient.parse().map_err(|e| DeliveryError {
                    permanent: true,
                    reason: format!("invalid recipient: {e}"),
                })?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject)
                    .message_id(Some(format!("<outbox-{}@identity>", email.id)))
                    .multipart(MultiPart::alternative_plain_html(
                        email.body_text.clone(),
                        email.body_html.clone(),
                    ))
                    .map_err(|e| DeliveryError {
                        permanent: true,
                        reason: format!("building the message: {e}"),
                    })?;
                // lettre bounds only the connect: this bounds the whole exchange, so a server
                // that stops answering cannot hold a claimed row past its lease.
                match tokio::time::timeout(*timeout, transport.send(message)).await {
                    Ok(sent) => sent.map(drop).map_err(|e| DeliveryError {
                        // A 5xx answer: the server will refuse this message every time.
                        permanent: e.is_permanent(),
                        reason: e.to_string(),
                    }),
                    Err(_) => Err(DeliveryError {
                        permanent: false,
                        reason: format!("the mail server did not answer within {timeout:?}"),
                    }),
                }
            }
        }
    }
}

/// Why an email was not delivered.
#[derive(Debug)]
pub struct DeliveryError {
    /// The message itself was refused (a 5xx answer, a malformed recipient): retrying
    /// cannot help.
    pub permanent: bool,
    /// What happened, kept on the row for operators.
    pub reason: String,
}
