//! Outgoing mail: lettre's async SMTP transport when `SMTP_URL` is set, otherwise `.eml`
//! files in `var/mail/` (read at `/dev/mail`).
//!
//! The file outbox names each file after the job's idempotency key and writes it with a
//! rename, so a retried job can never leave two copies of one message.
//!
//! SMTP connections are kept and reused, with `TCP_NODELAY` set (see [`Direct`]):
//! lettre writes a message's body and its final `.` in two writes, and without
//! `TCP_NODELAY` Nagle's algorithm holds the `.` back until the server ACKs the body —
//! which a server waiting for that `.` delays by up to 40 ms (delayed ACK). That stall,
//! once per mail, capped one connection at ~25 mails/s.
//!
//! Every message comes from `MAIL_FROM`, and its Message-ID is in that address's domain:
//! a relay checks the From domain against SPF/DMARC, and a Message-ID in someone else's
//! (or an `.invalid`) domain only adds to a spam score.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    address::{AddressError, Envelope},
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
    transport::smtp::{
        authentication::{Credentials, DEFAULT_MECHANISMS},
        client::{AsyncSmtpConnection, TlsParameters},
        extension::ClientId,
    },
};

#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

#[derive(Clone)]
enum Transport {
    /// `smtps://` (TLS from the first byte): lettre's pooled transport. lettre offers no
    /// way to wrap our own socket in its TLS before the greeting, so these connections
    /// keep Nagle's algorithm on.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `smtp://`, plaintext or STARTTLS: our pool of lettre connections on sockets with
    /// `TCP_NODELAY`.
    Direct(Arc<Direct>),
    Files(PathBuf),
}

/// How long one connection attempt or one message's exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection idle this long is closed rather than reused (servers drop idle
/// clients after a minute or more; RFC 5321 asks them to wait at least 5 minutes).
const SMTP_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept; more are opened while more jobs send at once.
const SMTP_MAX_IDLE: usize = 16;

/// A pool of SMTP connections that lettre drives (EHLO, STARTTLS, AUTH, the exchange
/// itself), over TCP sockets we open with `TCP_NODELAY`. It keeps lettre's own
/// transport's behaviour: the URL means what lettre's `from_url` makes of it, STARTTLS
/// is required or opportunistic as `?tls=` says, AUTH uses lettre's default mechanisms,
/// a reused connection is checked with NOOP first, a broken one is dropped.
pub struct Direct {
    host: String,
    port: u16,
    starttls: Option<(TlsParameters, bool)>,
    hello: ClientId,
    credentials: Option<Credentials>,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl Direct {
    /// `None` for `smtps://`, which stays with lettre's transport.
    fn from_url(raw: &str) -> anyhow::Result<Option<Direct>> {
        let url = url::Url::parse(raw)?;
        if url.scheme() != "smtp" {
            return Ok(None);
        }
        let host = url.host_str().ok_or_else(|| anyhow::anyhow!("SMTP_URL has no host"))?.to_string();
        // An IPv6 literal comes bracketed; the socket wants the bare address.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        // lettre's defaults: 25 in plaintext, 587 (submission) with STARTTLS.
        let (starttls, default_port) = match tls.as_deref() {
            None => (None, 25),
            Some("required") => (Some((TlsParameters::new(host.clone())?, true)), 587),
            Some("opportunistic") => (Some((TlsParameters::new(host.clone())?, false)), 587),
            Some(other) => anyhow::bail!("SMTP_URL: unknown tls parameter `{other}`"),
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        let port = url.port().unwrap_or(default_port);
        Ok(Some(Direct { host, port, starttls, hello, credentials, idle: Mutex::new(Vec::new()) }))
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, MailError> {
        let tcp = tokio::time::timeout(SMTP_TIMEOUT, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to the SMTP server timed out"))?
            .map_err(|e| anyhow::anyhow!("connecting to the SMTP server: {e}"))?;
        tcp.set_nodelay(true)?;
        let setup = async {
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?;
            match &self.starttls {
                Some((params, required)) if *required || conn.can_starttls() => conn.starttls(params.clone(), &self.hello).await?,
                _ => {}
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials).await?;
            }
            Ok::<_, lettre::transport::smtp::Error>(conn)
        };
        match tokio::time::timeout(SMTP_TIMEOUT, setup).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(MailError::Other(e.into())),
            Err(_) => Err(MailError::Other(anyhow::anyhow!("SMTP greeting, STARTTLS or AUTH timed out"))),
        }
    }

    /// A pooled connection that still answers NOOP, or a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, MailError> {
        loop {
            let parked = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((mut conn, since)) = parked else { return self.connect().await };
            if since.elapsed() < SMTP_IDLE
                && tokio::time::timeout(Duration::from_secs(5), conn.test_connected()).await.unwrap_or(false)
            {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Connections parked long ago are the first to go stale; drop those.
        idle.retain(|(_, since)| since.elapsed() < SMTP_IDLE);
        if idle.len() < SMTP_MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    async fn send(&self, envelope: &Envelope, raw: &[u8], non_ascii_recipient: bool) -> Result<(), MailError> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(SMTP_TIMEOUT, conn.send(envelope, raw)).await {
            Ok(Ok(_)) => {
                self.park(conn);
                Ok(())
            }
            // lettre aborts (and marks broken) a connection after a failed command.
            Ok(Err(e)) => {
                if !conn.has_broken() {
                    self.park(conn);
                }
                Err(classify_smtp(e, non_ascii_recipient))
            }
            Err(_) => {
                conn.abort().await;
                Err(MailError::Other(anyhow::anyhow!("sending to the SMTP server timed out")))
            }
        }
    }
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
            Some(url) => match Direct::from_url(url)? {
                Some(direct) => Transport::Direct(Arc::new(direct)),
                None => Transport::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build()),
            },
            None => Transport::Files(config.mail_dir.clone()),
        };
        Ok(Mailer { transport, from: config.mail_from.clone() })
    }

    /// The file outbox in `dir`, with development's From address (tests).
    pub fn files(dir: PathBuf) -> Mailer {
        let from = app::config::DEV_MAIL_FROM.parse().expect("DEV_MAIL_FROM is a mailbox");
        Mailer { transport: Transport::Files(dir), from }
    }

    /// Sends `email` (Message-ID from `key`), counted for `/metrics`.
    pub async fn send(&self, key: &str, email: Email) -> Result<(), MailError> {
        use std::sync::atomic::Ordering::Relaxed;
        let result = self.send_uncounted(key, email).await;
        match &result {
            Ok(()) => crate::metrics::MAIL_SENT.fetch_add(1, Relaxed),
            Err(MailError::Recipient(_)) => crate::metrics::MAIL_REFUSED.fetch_add(1, Relaxed),
            Err(_) => crate::metrics::MAIL_FAILED.fetch_add(1, Relaxed),
        };
        result
    }

    async fn send_uncounted(&self, key: &str, email: Email) -> Result<(), MailError> {
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
            Transport::Direct(direct) => {
                direct.send(message.envelope(), &message.formatted(), non_ascii_recipient).await?;
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
