//! Outgoing mail: lettre's async SMTP transport when `SMTP_URL` is set, otherwise `.eml`
//! files in `var/mail/` (read at `/dev/mail`).
//!
//! The file outbox names each file after the job's idempotency key and writes it with a
//! rename, so a retried job can never leave two copies of one message.
//!
//! Every message comes from `MAIL_FROM`, and its Message-ID is in that address's domain:
//! a relay checks the From domain against SPF/DMARC, and a Message-ID in someone else's
//! (or an `.invalid`) domain only adds to a spam score.

use std::path::PathBuf;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};

#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

#[derive(Clone)]
enum Transport {
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

impl Mailer {
    /// SMTP when `SMTP_URL` is set (already checked, with its TLS mode settled, by
    /// `Config`), else the file outbox; From is `MAIL_FROM`.
    pub fn from_config(config: &app::config::Config) -> anyhow::Result<Mailer> {
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build()),
            None => Transport::Files(config.mail_dir.clone()),
        };
        Ok(Mailer { transport, from: config.mail_from.clone() })
    }

    /// The file outbox in `dir`, with development's From address (tests).
    pub fn files(dir: PathBuf) -> Mailer {
        let from = app::config::DEV_MAIL_FROM.parse().expect("DEV_MAIL_FROM is a mailbox");
        Mailer { transport: Transport::Files(dir), from }
    }

    pub async fn send(&self, key: &str, email: Email) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(email.to.parse()?)
            .subject(email.subject)
            // Same key, same Message-ID: a receiving system can also drop a duplicate.
            .message_id(Some(format!("<{key}@{}>", self.from.email.domain())))
            .multipart(MultiPart::alternative_plain_html(email.text, email.html))?;
        match &self.transport {
            Transport::Smtp(transport) => {
                transport.send(message).await?;
            }
            Transport::Files(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let tmp = dir.join(format!(".{key}.tmp"));
                tokio::fs::write(&tmp, message.formatted()).await?;
                tokio::fs::rename(&tmp, dir.join(format!("{key}.eml"))).await?;
            }
        }
        Ok(())
    }
}
