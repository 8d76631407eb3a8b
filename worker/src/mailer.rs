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
    address::AddressError,
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
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
    /// The one-click unsubscribe link of a notification mail: sent as `List-Unsubscribe:
    /// <url>` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), so mail
    /// clients offer their own unsubscribe button and may POST to it without a browser.
    pub unsubscribe_url: Option<String>,
}

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// Why a send failed: `Recipient` can never succeed for this address (retrying would
/// fail the same way); `Other` may be transient (an SMTP server down, a full disk).
///
/// Neither message contains the recipient's address itself (lettre's parse errors do
/// not; SMTP replies often echo it and are redacted by the caller, which knows it).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("recipient address refused: {0}")]
    Recipient(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<lettre::error::Error> for MailError {
    fn from(e: lettre::error::Error) -> Self {
        MailError::Other(e.into())
    }
}

impl From<std::io::Error> for MailError {
    fn from(e: std::io::Error) -> Self {
        MailError::Other(e.into())
    }
}

/// Sorts an SMTP failure: only what this recipient will never get is permanent. Other
/// 5xx replies (530/535 authentication, 554 policy) and client-side refusals (no
/// STARTTLS, no common auth mechanism) are the server's or our configuration's, fixed
/// by an operator, after which the retries go through.
fn classify_smtp(e: lettre::transport::smtp::Error, non_ascii_recipient: bool) -> MailError {
    // RFC 5321: 550 mailbox unavailable, 551 user not local, 553 mailbox name not allowed.
    let refused = e.status().map(u16::from).is_some_and(|code| matches!(code, 550 | 551 | 553));
    // lettre will not send a non-ASCII address to a server without SMTPUTF8.
    let cannot_carry = e.is_client() && non_ascii_recipient;
    if refused || cannot_carry { MailError::Recipient(e.to_string()) } else { MailError::Other(e.into()) }
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

    pub async fn send(&self, key: &str, email: Email) -> Result<(), MailError> {
        // Our signup check is looser than RFC 5322 (it accepts `ann.@example.com`, say),
        // so lettre may refuse an address we stored: a permanent failure for this mail.
        let non_ascii_recipient = !email.to.is_ascii();
        let to: Mailbox = email.to.parse().map_err(|e: AddressError| MailError::Recipient(e.to_string()))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            // Same key, same Message-ID: a receiving system can also drop a duplicate.
            .message_id(Some(format!("<{key}@{}>", self.from.email.domain())));
        if let Some(url) = &email.unsubscribe_url {
            // Our own URL (BASE_URL plus a token of [0-9a-z._-]): no CR/LF or `>` to inject.
            builder = builder
                .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, format!("<{url}>")))
                .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE_POST, "List-Unsubscribe=One-Click".to_string()));
        }
        let message = builder.multipart(MultiPart::alternative_plain_html(email.text, email.html))?;
        match &self.transport {
            Transport::Smtp(transport) => {
                transport.send(message).await.map_err(|e| classify_smtp(e, non_ascii_recipient))?;
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
