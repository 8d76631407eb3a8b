//! Trending is recomputed once per 10-minute period however many workers schedule it:
//! three "workers" (each with its own pool) run the scheduler's trending step for the
//! same period at once; one job is queued, the real runtime runs it once, and the table
//! is filled.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::TestApp;
use support::{job_context, start_worker, wait_for};
use worker::{mailer::Mailer, runtime::Options};

async fn own_pool(app: &TestApp) -> app::db::Db {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&app.db.url).await.expect("pool");
    app::db::Db::from_pool(pool)
}

#[tokio::test]
async fn three_workers_scheduling_one_period_enqueue_and_run_one_recompute() {
    let app = TestApp::new().await;
    // Something to score: a public story with a like.
    let story: i64 = sqlx::query_scalar(
        "WITH a AS (INSERT INTO users (username, email, password_hash, display_name) VALUES ('alice', 'a@example.com', 'x', 'Alice') RETURNING id),
              b AS (INSERT INTO users (username, email, password_hash, display_name) VALUES ('bob', 'b@example.com', 'x', 'Bob') RETURNING id),
              s AS (INSERT INTO stories (author_id, title, summary, status, published_at) SELECT id, 'Rising', '', 'published', now() FROM a RETURNING id),
              l AS (INSERT INTO likes (story_id, user_id) SELECT s.id, b.id FROM s, b)
         SELECT id FROM s",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("seed");

    let workers = [own_pool(&app).await, own_pool(&app).await, own_pool(&app).await];
    let period = 2_950_000u64;
    let results = futures::future::join_all(workers.iter().map(|db| worker::scheduler::schedule_trending(db, period))).await;
    let queued = results.iter().filter(|r| r.is_ok()).count();
    let duplicates = results.iter().filter(|r| r.as_ref().is_err_and(worker::scheduler::is_duplicate)).count();
    assert_eq!((queued, duplicates), (1, 2), "{results:?}");
    let jobs = "SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb ->> 'name' = 'recompute_trending'";
    assert_eq!(app.count(jobs).await, 1);
    // The next period is a new job.
    worker::scheduler::schedule_trending(&workers[0], period + 1).await.expect("next period");
    assert_eq!(app.count(jobs).await, 2);

    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let runner = start_worker(ctx, Options { queues: vec!["default".into()], ..Options::default() });
    wait_for("both recomputes done", Duration::from_secs(20), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await == 2
    })
    .await;
    runner.abort();
    let scored: Vec<(i64, f64)> = sqlx::query_as("SELECT story_id, score FROM trending").fetch_all(&app.db.pool).await.unwrap();
    assert_eq!(scored.len(), 1);
    assert_eq!(scored[0].0, story);
    assert!(scored[0].1 > 2.9 && scored[0].1 <= 3.0, "one fresh like: {}", scored[0].1);
}
