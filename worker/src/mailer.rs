//! Outgoing mail: lettre's async SMTP transport when `SMTP_URL` is set, otherwise `.eml`
//! files in `var/mail/` (read at `/dev/mail`).
//!
//! The file outbox names each file after the job's idempotency key and writes it with a
//! rename, so a retried job can never leave two copies of one message.

use std::path::PathBuf;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::MultiPart,
};

#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// A rendered message, before it gets an envelope.
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub const FROM: &str = "Quire <no-reply@quire.invalid>";

impl Mailer {
    pub fn from_config(config: &app::config::Config) -> anyhow::Result<Mailer> {
        match &config.smtp_url {
            Some(url) => Ok(Mailer::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build())),
            None => Ok(Mailer::Files(config.mail_dir.clone())),
        }
    }

    pub async fn send(&self, key: &str, email: Email) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(FROM.parse()?)
            .to(email.to.parse()?)
            .subject(email.subject)
            // Same key, same Message-ID: a receiving system can also drop a duplicate.
            .message_id(Some(format!("<{key}@quire.invalid>")))
            .multipart(MultiPart::alternative_plain_html(email.text, email.html))?;
        match self {
            Mailer::Smtp(transport) => {
                transport.send(message).await?;
            }
            Mailer::Files(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let tmp = dir.join(format!(".{key}.tmp"));
                tokio::fs::write(&tmp, message.formatted()).await?;
                tokio::fs::rename(&tmp, dir.join(format!("{key}.eml"))).await?;
            }
        }
        Ok(())
    }
}

