//! The job pipeline for real: the web side enqueues in its transaction, the apalis
//! runtime (retry, timeout, panic catching, LISTEN/NOTIFY) runs the handlers against
//! PostgreSQL, and mail lands in a file outbox or a real SMTP server.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod smtp_sink;
mod support;

use std::{path::Path, sync::Arc, time::Duration};

use app::{jobs::Envelope, templates::Templates};
use common::TestApp;
use support::{job_context, start_worker, wait_for};
use worker::{
    jobs::{JobContext, run_envelope},
    mailer::Mailer,
    runtime::Options,
};

const PW: &str = "correct horse battery";

fn eml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "eml")).collect())
        .unwrap_or_default()
}

fn link_in(text: &str, prefix: &str) -> String {
    let start = text.find(prefix).expect("link in mail");
    text[start..].split_whitespace().next().unwrap().trim_end_matches(['"', '>', '<']).to_string()
}

#[tokio::test]
async fn signup_mail_is_delivered_by_the_worker_and_its_link_verifies() {
    let app = TestApp::new().await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let worker = start_worker(ctx, Options { queues: vec!["mail".into()], ..Options::default() });

    let started = std::time::Instant::now();
    app.signup("olga", "olga@example.com", PW).await.assert_status(303);
    wait_for("the verification mail", Duration::from_secs(15), || async { eml_files(&app.mail_dir).len() == 1 }).await;
    // LISTEN/NOTIFY wakes the worker: far sooner than the poll interval.
    println!("signup to mail on disk: {:?}", started.elapsed());

    let raw = std::fs::read(&eml_files(&app.mail_dir)[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(msg.subject(), Some("Confirm your email address"));
    let text = msg.body_text(0).unwrap().into_owned();
    // minijinja escapes `/` in HTML; a mail client decodes it back.
    let html = msg.body_html(0).unwrap().replace("&#x2f;", "/");
    assert!(html.contains("<a href="), "HTML part present");
    let link = link_in(&text, "http://localhost:8000/verify-email/");
    assert!(html.contains(&link), "both parts carry the same link");

    // /dev/mail lists it and shows both parts (to this machine: it answers loopback only).
    const LOCAL: &str = "127.0.0.1:50000";
    let list = app.get_from(LOCAL, "/dev/mail").await;
    list.assert_status(200).assert_contains("Confirm your email address");
    let name = eml_files(&app.mail_dir)[0].file_stem().unwrap().to_string_lossy().into_owned();
    app.get_from(LOCAL, &format!("/dev/mail/{name}")).await.assert_status(200).assert_contains("verify-email");
    let html_part = app.get_from(LOCAL, &format!("/dev/mail/{name}/html")).await;
    html_part.assert_status(200).assert_contains("Confirm my email");
    assert!(html_part.header("content-security-policy").unwrap().contains("sandbox"));

    // The job finished and is recorded as done; the job row says so.
    wait_for("job marked done", Duration::from_secs(5), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await == 1
    })
    .await;

    let path = link.trim_start_matches("http://localhost:8000");
    app.get(path).await.assert_status(200).assert_contains("confirmed");
    app.get("/").await.assert_status(200);
    assert!(!app.get("/").await.body.contains("Please confirm your email"));
    worker.abort();
}

#[tokio::test]
async fn a_mail_job_run_twice_sends_once() {
    let app = TestApp::new().await;
    app.signup("pia", "pia@example.com", PW).await.assert_status(303);
    let (job,): (Vec<u8>,) = sqlx::query_as("SELECT job FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    let envelope: Envelope = serde_json::from_slice(&job).unwrap();
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    run_envelope(envelope.clone(), &ctx).await.unwrap();
    run_envelope(envelope.clone(), &ctx).await.unwrap();
    // Concurrent duplicates too.
    let (a, b) = tokio::join!(run_envelope(envelope.clone(), &ctx), run_envelope(envelope, &ctx));
    a.unwrap();
    b.unwrap();
    assert_eq!(eml_files(&app.mail_dir).len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM user_tokens").await, 1);
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_kept_failed_with_its_error() {
    let app = TestApp::new().await;
    app.signup("quinn", "quinn@example.com", PW).await.assert_status(303);
    // An outbox that cannot be created: every send fails (a transient-looking I/O error).
    let ctx = job_context(&app, Mailer::files("/dev/null/outbox".into()));
    let options = Options { queues: vec!["mail".into()], retry_min_delay: Duration::from_millis(100), ..Options::default() };
    let started = std::time::Instant::now();
    let worker = start_worker(ctx, options);
    wait_for("the job to end failed", Duration::from_secs(30), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Failed'").await == 1
    })
    .await;
    let elapsed = started.elapsed();
    let (attempts, max, result): (i32, i32, Option<serde_json::Value>) =
        sqlx::query_as("SELECT attempts, max_attempts, last_result FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(max, 5);
    assert_eq!(attempts, 5, "five runs in all");
    let error = result.map(|r| r.to_string()).unwrap_or_default();
    assert!(error.contains("Not a directory") || error.contains("os error"), "error kept: {error}");
    // Backoff: 4 waits of at least 100 ms doubling (jittered) — well over 400 ms in all.
    assert!(elapsed >= Duration::from_millis(400), "retries were spaced out: {elapsed:?}");
    // It stays failed: not picked up again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts_later: i32 = sqlx::query_scalar("SELECT attempts FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(attempts_later, 5);
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 0, "failed sends leave no idempotency record");
    worker.abort();
}

#[tokio::test]
async fn an_unknown_job_fails_permanently_without_retries() {
    let app = TestApp::new().await;
    let bad = Envelope { name: "no_such_job".into(), args: serde_json::json!({}), request_id: None };
    let task = apalis_core::task::builder::TaskBuilder::new(serde_json::to_vec(&bad).unwrap()).max_attempts(5).build();
    let mut conn = app.db.pool.acquire().await.unwrap();
    apalis_postgres::queries::push_tasks(&mut *conn, "mail", vec![task]).await.unwrap();
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let worker = start_worker(ctx, Options { queues: vec!["mail".into()], retry_min_delay: Duration::from_millis(50), ..Options::default() });
    wait_for("the job to be marked failed", Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status IN ('Failed', 'Killed')").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (attempts, result): (i32, Option<serde_json::Value>) =
        sqlx::query_as("SELECT attempts, last_result FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    assert!(attempts <= 1, "not retried: {attempts} attempts");
    assert!(result.map(|r| r.to_string()).unwrap_or_default().contains("unknown job"));
    worker.abort();
}

#[tokio::test]
async fn jobs_held_by_a_dead_worker_are_picked_up_again() {
    let app = TestApp::new().await;
    app.signup("rita", "rita@example.com", PW).await.assert_status(303);
    // A worker that took the job and then died (SIGKILL): registered, silent for 40 s.
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
         VALUES ('mail@dead:1:deadbeef', 'mail', 'PgStorage', '', now() - interval '40 seconds')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE apalis.jobs SET status = 'Running', lock_by = 'mail@dead:1:deadbeef', lock_at = now() - interval '40 seconds'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let worker = start_worker(ctx, Options { queues: vec!["mail".into()], ..Options::default() });
    wait_for("the orphaned job to be delivered", Duration::from_secs(20), || async { eml_files(&app.mail_dir).len() == 1 }).await;
    worker.abort();
}

#[tokio::test]
async fn mail_is_delivered_through_a_real_smtp_server() {
    let app = TestApp::new().await;
    let localhost: std::net::IpAddr = [127, 0, 0, 1].into();
    let port = smtp_sink::free_port(localhost);
    let server = smtp_sink::smtp_server(localhost, port);
    let maildir = server.maildir.clone();
    let mut config = (*app.state.config).clone();
    config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    let ctx = Arc::new(JobContext {
        db: app.db.db(),
        storage: app.state.storage.clone(),
        mailer: Mailer::from_config(&config).unwrap(),
        config: Arc::new(config),
        templates: Templates::new(|_| None).unwrap(),
    });
    app.signup("sam", "sam@example.com", PW).await.assert_status(303);
    let (job,): (Vec<u8>,) = sqlx::query_as("SELECT job FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    run_envelope(serde_json::from_slice(&job).unwrap(), &ctx).await.unwrap();

    let new_dir = maildir.join("new");
    wait_for("the message in the maildir", Duration::from_secs(10), || async {
        std::fs::read_dir(&new_dir).map(|d| d.count() == 1).unwrap_or(false)
    })
    .await;
    let file = std::fs::read_dir(&new_dir).unwrap().next().unwrap().unwrap().path();
    let raw = std::fs::read(file).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(msg.to().unwrap().first().unwrap().address(), Some("sam@example.com"));
    assert!(msg.body_text(0).unwrap().contains("/verify-email/"), "text part arrived");
    assert!(msg.body_html(0).unwrap().contains("Confirm my email"), "HTML part arrived");
    drop(server);
}

#[tokio::test]
async fn the_periodic_purge_removes_expired_sessions_and_spent_tokens() {
    let app = TestApp::new().await;
    app.signup("tara", "tara@example.com", PW).await.assert_status(303);
    let other = app.new_browser();
    other.login("tara", PW).await.assert_status(303);
    let third = app.new_browser();
    third.login("tara", PW).await.assert_status(303);
    // One idle too long, one past its absolute expiry, one alive.
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '15 days' WHERE public_id = (SELECT min(public_id) FROM sessions)")
        .execute(&app.db.pool).await.unwrap();
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 minute' WHERE public_id = (SELECT max(public_id) FROM sessions)")
        .execute(&app.db.pool).await.unwrap();
    let mut conn = app.db.pool.acquire().await.unwrap();
    let user = app::accounts::users::find_by_username(&mut *conn, "tara").await.unwrap().unwrap();
    app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::ResetPassword).await.unwrap();
    sqlx::query("UPDATE user_tokens SET created_at = now() - interval '3 days', expires_at = now() - interval '2 days'").execute(&app.db.pool).await.unwrap();

    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let job = Envelope { name: "purge_expired".into(), args: serde_json::json!({}), request_id: None };
    run_envelope(job, &ctx).await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM user_tokens").await, 0);
}
