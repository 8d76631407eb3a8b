//! The mailer against a real SMTP server (aiosmtpd, which offers no STARTTLS): mail comes
//! from `MAIL_FROM` with Message-IDs in its domain, and `smtp://` to a host other than
//! this one is never sent in plaintext unless the URL says `?tls=none`.

mod smtp_sink;

use std::{collections::HashMap, ffi::OsString, net::IpAddr};

use app::config::Config;
use smtp_sink::{free_port, received, smtp_server};
use worker::mailer::{Email, Mailer};

/// A configuration read the way the binaries read it (development, so no DB or other
/// production variables are needed).
fn config(smtp_url: &str, mail_from: &str) -> Config {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("APP_ENV", "development"),
        ("DATABASE_URL", "postgres://unused@127.0.0.1/unused"),
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef-test"),
        ("SMTP_URL", smtp_url),
        ("MAIL_FROM", mail_from),
    ]);
    Config::read(|k| vars.get(k).map(OsString::from)).expect("valid configuration")
}

fn email() -> Email {
    Email {
        to: "reader@example.com".into(),
        subject: "Reset your password".into(),
        text: "http://localhost/password/reset/t".into(),
        html: "<p>reset</p>".into(),
        unsubscribe_url: None,
    }
}

/// An address of this machine that is not loopback, if it has one.
fn non_loopback_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").or_else(|_| s.connect("8.8.8.8:53")).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test]
async fn mail_comes_from_mail_from_with_message_ids_in_its_domain() {
    let ip = IpAddr::from([127, 0, 0, 1]);
    let port = free_port(ip);
    let server = smtp_server(ip, port);
    let mailer = Mailer::from_config(&config(&format!("smtp://127.0.0.1:{port}"), "Quire Stories <hello@mail.quire.example>")).unwrap();
    mailer.send("job-key-1", email()).await.unwrap();

    let all = received(&server);
    assert_eq!(all.len(), 1);
    let msg = mail_parser::MessageParser::default().parse(&all[0]).unwrap();
    let from = msg.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some("hello@mail.quire.example"));
    assert_eq!(from.name(), Some("Quire Stories"));
    assert_eq!(msg.message_id(), Some("job-key-1@mail.quire.example"));
    assert!(!String::from_utf8_lossy(&all[0]).contains("quire.invalid"));
}

#[tokio::test]
async fn the_file_outbox_uses_mail_from_too() {
    let dir = std::env::temp_dir().join(format!("quire-outbox-{}", uuid::Uuid::new_v4().simple()));
    let mut config = config("smtp://127.0.0.1:1", "no-reply@stories.example");
    config.smtp_url = None;
    config.mail_dir = dir.clone();
    Mailer::from_config(&config).unwrap().send("k2", email()).await.unwrap();
    let raw = std::fs::read(dir.join("k2.eml")).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(msg.from().unwrap().first().unwrap().address(), Some("no-reply@stories.example"));
    assert_eq!(msg.message_id(), Some("k2@stories.example"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn smtp_to_another_host_requires_starttls_unless_tls_none_is_asked_for() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this machine has no non-loopback address to stand in for a remote relay");
        return;
    };
    let port = free_port(ip);
    let server = smtp_server(ip, port);

    // Plain smtp:// to a non-loopback host means STARTTLS required: this server offers
    // none, so nothing goes out in the clear.
    let url = format!("smtp://mailer:hunter2@{ip}:{port}");
    let mailer = Mailer::from_config(&config(&url, "no-reply@quire.example")).unwrap();
    let err = mailer.send("k-tls", email()).await.expect_err("sent without TLS");
    assert!(format!("{err:#}").to_lowercase().contains("tls"), "{err:#}");
    assert!(received(&server).is_empty(), "nothing delivered in plaintext");

    // Plaintext on purpose.
    let mailer = Mailer::from_config(&config(&format!("smtp://{ip}:{port}?tls=none"), "no-reply@quire.example")).unwrap();
    mailer.send("k-plain", email()).await.unwrap();
    assert_eq!(received(&server).len(), 1);
}
