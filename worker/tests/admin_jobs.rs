//! The jobs dashboard's effects on the real worker: a failed job retried from
//! `/admin/jobs` is picked up at once (the retry wakes the queue) and runs to the end;
//! the periodic maintenance job purges finished and failed jobs and `sent_emails` past
//! their retention.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use app::jobs::Envelope;
use common::TestApp;
use support::{job_context, start_worker, wait_for};
use worker::{jobs::run_envelope, mailer::Mailer, runtime::Options};

const PW: &str = "correct horse battery";

#[tokio::test]
async fn a_job_retried_from_the_dashboard_runs_again_and_finishes() {
    let app = TestApp::new().await;
    // A no-op that gave up (as the worker leaves a job after its last attempt).
    let mut conn = app.db.pool.acquire().await.unwrap();
    app::jobs::enqueue(&mut conn, &app::jobs::maintenance::Noop::default(), None).await.unwrap();
    drop(conn);
    sqlx::query("UPDATE apalis.jobs SET status = 'Failed', attempts = max_attempts, done_at = now(), last_result = '{\"Err\": \"boom\"}'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let id: String = sqlx::query_scalar("SELECT id FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();

    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let worker = start_worker(ctx, Options { queues: vec!["default".into()], ..Options::default() });
    // The worker is up (registered) before the retry, so the retry's notification wakes it.
    wait_for("the worker to register", Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM apalis.workers WHERE worker_type = 'default'").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Failed'").await, 1, "a failed job is not run again by itself");

    app.signup("ada", "ada@example.com", PW).await.assert_status(303);
    sqlx::query("UPDATE users SET role = 'admin' WHERE username = 'ada'").execute(&app.db.pool).await.unwrap();
    let admin = app.new_browser();
    admin.login("ada", PW).await.assert_status(303);
    admin.post_form(&format!("/admin/jobs/{id}/retry"), &[]).await.assert_status(303);
    wait_for("the retried job to finish", Duration::from_secs(20), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await == 1
    })
    .await;
    let (attempts, result): (i32, Option<serde_json::Value>) =
        sqlx::query_as("SELECT attempts, last_result FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    assert!(attempts <= 1, "one run after the retry (attempts were reset): {attempts}");
    assert!(!result.map(|r| r.to_string()).unwrap_or_default().contains("boom"), "the old error is replaced by the run's result");
    worker.abort();
}

#[tokio::test]
async fn the_maintenance_job_purges_jobs_and_sent_emails_past_their_retention() {
    let app = TestApp::new().await;
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at)
         SELECT 'D' || g, 'mail', '\\x7b7d'::bytea, 'Done', 1, 5, now() - interval '10 days', 0,
                now() - CASE WHEN g <= 30 THEN interval '8 days' ELSE interval '1 day' END
           FROM generate_series(1, 50) g
         UNION ALL
         SELECT 'F' || g, 'mail', '\\x7b7d'::bytea, CASE WHEN g % 2 = 0 THEN 'Killed' ELSE 'Failed' END, 5, 5, now() - interval '40 days', 0,
                now() - CASE WHEN g <= 4 THEN interval '31 days' ELSE interval '29 days' END
           FROM generate_series(1, 10) g",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sent_emails (job_key, recipient, subject, sent_at)
         SELECT 'k' || g, 'user:1', 'subject', now() - make_interval(days => g) FROM generate_series(1, 40) g",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let job = Envelope { name: "purge_expired".into(), args: serde_json::json!({}), request_id: None };
    run_envelope(job, &ctx).await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await, 20, "finished 8 days ago: gone; 1 day: kept");
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE status <> 'Done'").await, 6, "failed 31 days ago: gone; 29: kept");
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 29, "days 1-29 kept, 30-40 gone");
}
