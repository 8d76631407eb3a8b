//! The notification fan-out: one chapter from an author with 100,000 followers.
//!
//! ```sh
//! cargo run --release -p bench --bin notify -- [--followers N] [--no-record]
//! ```
//!
//! The PostgreSQL server: the one at `DATABASE_URL` if set (a fresh database
//! `quire_bench_notify_<pid>` is created there and dropped at the end), otherwise a
//! private cluster `benchnotify` under var/pg started through bin/lib.sh (`dev` profile:
//! fsync and synchronous_commit on), with `pg_stat_statements` preloaded.
//!
//! Setup, in bulk SQL (not timed): N verified users following one author (default
//! preferences, so each wants the chapter mailed at once), a published story with one
//! chapter. Then `worker::jobs::notify::handle` — exactly what the `notify` job's handler
//! runs — for `Notify{Chapter}`, twice: the first run creates the notifications, the
//! second is the retry and must insert nothing.
//!
//! Statements: `pg_stat_statements` calls in the bench database during each run (BEGIN
//! and COMMIT included; the benchmark's own queries, marked `bench_observer`, excluded).
//! Rows: counted in the tables afterwards (notifications, live events, queued jobs).
//! Each run appends a dated section to bench/RESULTS.md (unless `--no-record`).

use std::path::Path;
use std::time::{Duration, Instant};

use app::jobs::notify::Activity;
use bench::{Machine, append_results, today_utc};
use sqlx::{PgPool, Row, postgres::PgPoolOptions};

const CLUSTER: &str = "benchnotify";
const USAGE: &str = "usage: notify [--followers N] [--no-record]";



fn start_cluster() -> String {
    bench::lib_sh(&format!("pg_ensure_cluster {CLUSTER} dev >&2; pg_url {CLUSTER} postgres")).unwrap_or_else(|e| panic!("{e}")).trim().to_owned()
}

fn stop_cluster() {
    bench::lib_sh(&format!("pg_setup >&2; pg_stop_cluster {CLUSTER} >&2")).unwrap_or_else(|e| panic!("{e}"));
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = base[scheme_end..].find('/').map_or(base, |i| &base[..scheme_end + i]);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn has_statements(pool: &PgPool) -> bool {
    let libs: String = sqlx::query_scalar("SHOW shared_preload_libraries").fetch_one(pool).await.unwrap_or_default();
    libs.split(',').any(|l| l.trim() == "pg_stat_statements")
}

struct Run {
    elapsed: Duration,
    created: usize,
    mail_jobs: usize,
    live_events: usize,
    /// (total calls, the statements with their calls)
    statements: Option<(i64, Vec<(i64, String)>)>,
}

async fn statements_since_reset(pool: &PgPool) -> (i64, Vec<(i64, String)>) {
    let rows = sqlx::query(
        "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') AS query FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%bench_observer%' AND query NOT LIKE '%pg_stat_statements%'
         ORDER BY calls DESC",
    )
    .fetch_all(pool)
    .await
    .expect("read pg_stat_statements");
    let total = rows.iter().map(|r| r.get::<i64, _>("calls")).sum();
    let list = rows.iter().map(|r| (r.get::<i64, _>("calls"), r.get::<String, _>("query").chars().take(100).collect())).collect();
    (total, list)
}

async fn run_once(pool: &PgPool, activity: &Activity, statements: bool) -> Run {
    if statements {
        sqlx::query("SELECT pg_stat_statements_reset() AS bench_observer").execute(pool).await.expect("reset");
    }
    let start = Instant::now();
    let out = worker::jobs::notify::handle(pool, activity).await.expect("notify handler");
    let elapsed = start.elapsed();
    let statements = if statements { Some(statements_since_reset(pool).await) } else { None };
    Run { elapsed, created: out.created, mail_jobs: out.mail_jobs, live_events: out.live_events, statements }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(pool).await.expect("count")
}

#[tokio::main]
async fn main() {
    let mut followers: i32 = 100_000;
    let mut record = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--followers" => {
                followers = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| {
                    eprintln!("--followers needs a positive number\n{USAGE}");
                    std::process::exit(2)
                })
            }
            "--no-record" => record = false,
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2)
            }
        }
    }
    let machine = Machine::read();
    let (admin_url, private) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, false),
        _ => (start_cluster(), true),
    };
    let mut admin = PgPool::connect(&admin_url).await.expect("connect to PostgreSQL");
    if !has_statements(&admin).await && private {
        eprintln!("==> enabling pg_stat_statements in the {CLUSTER} cluster (restart)");
        sqlx::query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'").execute(&admin).await.expect("ALTER SYSTEM");
        admin.close().await;
        stop_cluster();
        start_cluster();
        admin = PgPool::connect(&admin_url).await.expect("reconnect");
    }
    let statements = has_statements(&admin).await;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&admin).await.expect("version");
    let db_name = format!("quire_bench_notify_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&admin).await.expect("create database");
    let pool = PgPoolOptions::new().max_connections(2).connect(&with_database(&admin_url, &db_name)).await.expect("connect");
    app::db::migrate(&pool).await.expect("migrations");
    if statements {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.expect("extension");
    }
    // The social area's table, when its migration is not there (this branch).
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS follows (follower_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
             followee_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, created_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (follower_id, followee_id))",
    )
    .execute(&pool)
    .await
    .expect("follows");

    eprintln!("==> setup: {followers} followers");
    let setup = Instant::now();
    let author: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, email_verified_at) VALUES ('author', 'author@example.com', 'x', now()) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("author");
    sqlx::query(
        "WITH f AS (INSERT INTO users (username, email, password_hash, email_verified_at)
                    SELECT 'reader' || i, 'reader' || i || '@example.com', 'x', now() FROM generate_series(1, $1) i RETURNING id)
         INSERT INTO follows (follower_id, followee_id) SELECT id, $2 FROM f",
    )
    .bind(followers)
    .bind(author)
    .execute(&pool)
    .await
    .expect("followers");
    let story: i64 = sqlx::query_scalar(
        "INSERT INTO stories (author_id, title, status, published_at, chapter_count) VALUES ($1, 'The Long Road', 'published', now(), 1) RETURNING id",
    )
    .bind(author)
    .fetch_one(&pool)
    .await
    .expect("story");
    sqlx::query("INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count) VALUES ($1, 1, 'Departure', 'x', '<p>x</p>', 1)")
        .bind(story)
        .execute(&pool)
        .await
        .expect("chapter");
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.expect("vacuum");
    eprintln!("    setup took {:.1} s", setup.elapsed().as_secs_f64());

    let activity = Activity::Chapter { story_id: story, author_id: author, number: 1 };
    let first = run_once(&pool, &activity, statements).await;
    let rows_after_first = count(&pool, "SELECT count(*) AS bench_observer FROM notifications").await;
    let jobs_after_first = count(&pool, "SELECT count(*) AS bench_observer FROM apalis.jobs").await;
    let live_after_first = count(&pool, "SELECT count(*) AS bench_observer FROM live_events").await;
    let retry = run_once(&pool, &activity, statements).await;
    let rows_after_retry = count(&pool, "SELECT count(*) AS bench_observer FROM notifications").await;
    let jobs_after_retry = count(&pool, "SELECT count(*) AS bench_observer FROM apalis.jobs").await;

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))).execute(&admin).await.expect("drop");
    admin.close().await;
    if private {
        stop_cluster();
    }

    let stmt = |r: &Run| r.statements.as_ref().map_or("n/a (no pg_stat_statements)".to_string(), |(n, _)| n.to_string());
    let mut s = format!(
        "\n## {} — notification fan-out: {} ({} cores), load average {} at start\n\n\
         `cargo run{} -p bench --bin notify -- --followers {followers}` (bench/src/bin/notify.rs{}): \
         `worker::jobs::notify::handle` for `Notify{{Chapter}}` of an author with {followers} verified followers \
         (default preferences: chapter mail instant); PostgreSQL {} ({}).\n\n\
         | | first run | retry |\n|---|---|---|\n\
         | elapsed | {:.0} ms | {:.1} ms |\n\
         | SQL statements (pg_stat_statements calls, BEGIN/COMMIT included) | {} | {} |\n\
         | notifications inserted | {} | {} |\n\
         | mail jobs enqueued (≤200 recipients each, one statement) | {} | {} |\n\
         | live `unread` events (skipped above 1000 recipients) | {} | {} |\n\n\
         Table counts after each run: notifications {rows_after_first} → {rows_after_retry}; queued jobs {jobs_after_first} → {jobs_after_retry}; live events {live_after_first}.\n",
        today_utc(),
        machine.cpu,
        machine.cores,
        machine.load,
        if cfg!(debug_assertions) { "" } else { " --release" },
        if cfg!(debug_assertions) { ", a debug build: the time is PostgreSQL's, the client only sends 6 statements" } else { "" },
        version.split_whitespace().next().unwrap_or(&version),
        if private { "private cluster, bin/lib.sh `dev` profile" } else { "server from DATABASE_URL" },
        first.elapsed.as_secs_f64() * 1000.0,
        retry.elapsed.as_secs_f64() * 1000.0,
        stmt(&first),
        stmt(&retry),
        first.created,
        retry.created,
        first.mail_jobs,
        retry.mail_jobs,
        first.live_events,
        retry.live_events,
    );
    if let Some((_, list)) = &first.statements {
        s.push_str("\nStatements of the first run, by calls:\n\n");
        for (calls, q) in list {
            s.push_str(&format!("- {calls} × `{q}`\n"));
        }
    }
    println!("{s}");
    assert_eq!(retry.created, 0, "the retry must insert nothing");
    assert_eq!(rows_after_first, rows_after_retry);
    if record {
        append_results(&Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"), &s);
        println!("(appended to bench/RESULTS.md)");
    }
}
