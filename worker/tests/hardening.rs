//! The worker's failure paths, for real: a recipient address the mailer refuses fails
//! once and for good; no address reaches the logs; an image whose retries ran out is
//! marked failed so its pages stop waiting.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod smtp_sink;
mod support;

use std::{
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use app::jobs::{Envelope, Job, mail::SendVerificationEmail, media::ProcessImage};
use common::TestApp;
use support::{job_context, start_worker, wait_finished, wait_for};
use worker::{
    jobs::{JobError, run_envelope},
    mailer::Mailer,
    runtime::Options,
};

/// A user with this email, and their verification mail queued, as signup does. Inserted
/// directly: the point is an address already stored (our signup check is looser than
/// RFC 5322), whatever the signup form accepts today.
async fn user_with_mail(app: &TestApp, username: &str, email: &str) -> i64 {
    let mut tx = app.db.pool.begin().await.unwrap();
    let user = app::accounts::users::insert(
        &mut tx,
        &app::accounts::users::NewUser { username, email, password_hash: "x" },
    )
    .await
    .unwrap();
    app::jobs::enqueue(&mut tx, &SendVerificationEmail::new(user.id), None).await.unwrap();
    tx.commit().await.unwrap();
    user.id
}

async fn queued_envelope(app: &TestApp) -> Envelope {
    let (job,): (Vec<u8>,) = sqlx::query_as("SELECT job FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    serde_json::from_slice(&job).unwrap()
}

fn eml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count()).unwrap_or(0)
}

#[tokio::test]
async fn an_address_lettre_refuses_fails_permanently_after_one_attempt() {
    let app = TestApp::new().await;
    // A trailing dot ends the local part: not a valid dot-atom, so lettre refuses it.
    let user_id = user_with_mail(&app, "ann", "ann.@example.com").await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let worker = start_worker(ctx, Options { queues: vec!["mail".into()], retry_min_delay: Duration::from_millis(20), ..Options::default() });
    let (status, attempts, error) = wait_finished(&app, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status, "Killed", "a permanent failure");
    assert_eq!(attempts, 1, "not retried");
    assert!(error.contains(&format!("cannot mail user {user_id}")), "error kept: {error}");
    assert!(!error.contains("ann.@"), "the error names the user, not the address: {error}");
    assert_eq!(eml_count(&app.mail_dir), 0);
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM user_tokens").await, 0, "the token rolled back with the claim");
    worker.abort();
}

#[tokio::test]
async fn a_non_ascii_address_to_a_server_without_smtputf8_fails_permanently() {
    let app = TestApp::new().await;
    let localhost: std::net::IpAddr = [127, 0, 0, 1].into();
    let port = smtp_sink::free_port(localhost);
    // aiosmtpd offers SMTPUTF8 only with --smtputf8, which the sink does not pass.
    let server = smtp_sink::smtp_server(localhost, port);
    let mut config = (*app.state.config).clone();
    config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    let mut ctx = Arc::try_unwrap(job_context(&app, Mailer::from_config(&config).unwrap())).ok().unwrap();
    ctx.config = Arc::new(config);

    let user_id = user_with_mail(&app, "jose", "josé@example.com").await;
    let result = run_envelope(queued_envelope(&app).await, &ctx).await;
    drop(server);
    match result {
        Err(JobError::Permanent(msg)) => {
            assert!(msg.contains(&format!("cannot mail user {user_id}")) && !msg.contains("josé"), "{msg}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 0);
}

/// An SMTP server (aiosmtpd) that answers every RCPT with `reply`, echoing the address
/// as real servers do; killed on drop.
struct RefusingSmtp {
    child: std::process::Child,
    port: u16,
}

impl RefusingSmtp {
    async fn start(reply: &str) -> RefusingSmtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = r#"
import sys, time
from aiosmtpd.controller import Controller
class Refuse:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return sys.argv[2].replace("ADDR", address)
Controller(Refuse(), hostname="127.0.0.1", port=int(sys.argv[1])).start()
while True:
    time.sleep(3600)
"#;
        let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        let child = std::process::Command::new(python)
            .args(["-c", script, &port.to_string(), reply])
            .spawn()
            .expect("start aiosmtpd (bin/test installs python3-aiosmtpd)");
        wait_for("the SMTP server to listen", Duration::from_secs(10), || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        RefusingSmtp { child, port }
    }
}

impl Drop for RefusingSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_mailbox_the_server_refuses_fails_permanently_and_a_busy_one_is_retried() {
    let app = TestApp::new().await;
    for (reply, permanent) in [("550 5.1.1 <ADDR>: Recipient address rejected", true), ("451 4.3.0 <ADDR>: try again later", false)] {
        let server = RefusingSmtp::start(reply).await;
        let mut config = (*app.state.config).clone();
        config.smtp_url = Some(format!("smtp://127.0.0.1:{}", server.port));
        let mut ctx = Arc::try_unwrap(job_context(&app, Mailer::from_config(&config).unwrap())).ok().unwrap();
        ctx.config = Arc::new(config);
        sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap();
        let username = if permanent { "gone" } else { "busy" };
        let address = format!("{username}@example.com");
        let user_id = user_with_mail(&app, username, &address).await;
        let result = run_envelope(queued_envelope(&app).await, &ctx).await;
        let message = match (&result, permanent) {
            (Err(JobError::Permanent(msg)), true) => msg.clone(),
            (Err(JobError::Retry(e)), false) => format!("{e:#}"),
            _ => panic!("{reply}: unexpected {result:?}"),
        };
        assert!(message.contains(&reply[..3]), "the server's reply is kept: {message}");
        assert!(message.contains("<recipient>") && !message.contains(&address), "the address is redacted: {message}");
        if permanent {
            assert!(message.contains(&format!("cannot mail user {user_id}")), "{message}");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 0);
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn mail_jobs_log_the_user_id_never_the_address() {
    use tracing_subscriber::prelude::*;
    let app = TestApp::new().await;
    let logs = Captured::default();
    // The production JSON format (app::telemetry), every level, into the buffer; this
    // test's runtime runs on this one thread, so a thread-local default sees it all.
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(logs.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let ida = user_with_mail(&app, "ida", "ida.lovelace@example.com").await;
    run_envelope(queued_envelope(&app).await, &ctx).await.unwrap();
    assert_eq!(eml_count(&app.mail_dir), 1, "sent");
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap();
    user_with_mail(&app, "bad", "bad.address.@example.com").await;
    assert!(matches!(run_envelope(queued_envelope(&app).await, &ctx).await, Err(JobError::Permanent(_))));

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sent = lines.iter().find(|l| l["message"] == "mail sent").unwrap_or_else(|| panic!("a `mail sent` line in {text}"));
    assert_eq!(sent["user_id"], ida);
    assert!(lines.iter().any(|l| l["message"] == "job failed permanently"), "the failure is logged: {text}");
    for address in ["ida.lovelace@example.com", "bad.address.@example.com", "ida.lovelace", "bad.address."] {
        assert!(!text.contains(address), "`{address}` in the logs:\n{text}");
    }
}

#[tokio::test]
async fn an_image_whose_retries_ran_out_is_marked_failed_for_its_owner() {
    let app = TestApp::new().await;
    let mut conn = app.db.pool.acquire().await.unwrap();
    let owner = app::accounts::users::insert(
        &mut conn,
        &app::accounts::users::NewUser { username: "mia", email: "mia@example.com", password_hash: "x" },
    )
    .await
    .unwrap();
    // A pending row whose original is not in storage: every attempt fails to read it.
    let media_id: i64 = sqlx::query_scalar(
        "INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height)
         VALUES ($1, 'cover', 'originals/gone.png', 'image/png', 1000, 40, 30) RETURNING id",
    )
    .bind(owner.id)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    app::jobs::enqueue(&mut conn, &ProcessImage { media_id }, None).await.unwrap();
    let status = || async {
        let (status, error): (String, Option<String>) =
            sqlx::query_as("SELECT status, error FROM media WHERE id = $1").bind(media_id).fetch_one(&app.db.pool).await.unwrap();
        (status, error)
    };

    // A first attempt that fails leaves it pending: attempts remain.
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    assert!(matches!(run_envelope(queued_envelope(&app).await, &ctx).await, Err(JobError::Retry(_))));
    assert_eq!(status().await.0, "pending");

    let worker = start_worker(ctx, Options { queues: vec!["media".into()], retry_min_delay: Duration::from_millis(20), ..Options::default() });
    let (job_status, attempts, error) = wait_finished(&app, Duration::from_secs(30)).await;
    assert_eq!(job_status, "Failed");
    assert_eq!(attempts as usize, ProcessImage::MAX_ATTEMPTS);
    assert!(error.contains("reading original"), "the cause stays in the job for operators: {error}");
    let (status, message) = status().await;
    assert_eq!(status, "failed", "no more polling");
    assert_eq!(message.as_deref(), Some(worker::jobs::media::GAVE_UP_MESSAGE));
    worker.abort();
}
