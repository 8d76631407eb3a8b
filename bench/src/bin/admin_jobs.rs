//! `bench/admin_jobs`: the `/admin/jobs` dashboard with a million finished jobs.
//!
//! ```sh
//! cargo run --release -p bench --bin admin_jobs -- [--runs N] [--no-record]
//! ```
//!
//! It starts its own PostgreSQL cluster `benchadminjobs` (bin/lib.sh, under `var/pg/`),
//! creates database `bench_admin_jobs`, migrates it with the app's migrator and fills
//! `apalis.jobs` with `generate_series` (afresh each run: the times are relative to now):
//! 1,000,000 `Done` jobs finished over the last 7.7 days (so ~10 % are past the 7-day
//! retention, for the purge), 60 % mail, 30 % default, 10 % media; 2,000 failed (half
//! `Failed` after 5 attempts, half `Killed`) over 30 days; 500 pending, 200 scheduled,
//! 50 queued, 100 retrying; 6 worker rows. Then it measures:
//! 1. p50/p99 over `--runs` runs of each `jobs::admin` query the page runs (the app's own
//!    functions, one connection), and of the whole page (`GET /admin/jobs` through the
//!    app's endpoint in-process, logged in as an admin: session lookup, five queries,
//!    the template), page 1 and a deep page of the failed list;
//! 2. the same queries with the migration's indexes dropped (inside a transaction rolled
//!    back), fewer runs: what the indexes buy;
//! 3. EXPLAIN (ANALYZE) of each query, checking which indexes they use;
//! 4. one `jobs::admin::purge` run over the ~100,000 jobs past their retention;
//! and appends a section to bench/RESULTS.md unless `--no-record`.

use std::{
    path::PathBuf,
    time::Instant,
};

use app::jobs::{ALL_QUEUES, admin as queue};
use bench::{Cluster, ms, percentile};
use poem::{Endpoint, IntoResponse, Request, http::Method};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};

type R<T> = Result<T, String>;

const CLUSTER: &str = "benchadminjobs";
const DATABASE: &str = "bench_admin_jobs";
const DONE: i64 = 1_000_000;
const ADMIN: &str = "benchadmin";






const SEED_SQL: &str = "
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at, lock_by, last_result)
SELECT 'D' || lpad(g::text, 8, '0'),
       CASE WHEN g % 10 < 6 THEN 'mail' WHEN g % 10 < 9 THEN 'default' ELSE 'media' END,
       convert_to('{\"name\":\"send_notification\",\"args\":{\"user_id\":' || g || '},\"request_id\":null}', 'UTF8'),
       'Done', 1, 5,
       now() - (g::float8 / $1 * 7.7 * 86400 + 0.2) * interval '1 second',
       0,
       now() - (g::float8 / $1 * 7.7 * 86400) * interval '1 second',
       NULL, '{\"Ok\": null}'::jsonb
  FROM generate_series(1, $1) g;

INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at, last_result)
SELECT 'F' || lpad(g::text, 8, '0'),
       CASE WHEN g % 3 = 0 THEN 'media' ELSE 'mail' END,
       convert_to('{\"name\":\"send_password_reset\",\"args\":{\"user_id\":' || g || '},\"request_id\":null}', 'UTF8'),
       CASE WHEN g % 2 = 0 THEN 'Killed' ELSE 'Failed' END,
       CASE WHEN g % 2 = 0 THEN 1 ELSE 5 END, 5,
       now() - (g::float8 / 2000 * 30 * 86400 + 60) * interval '1 second',
       0,
       now() - (g::float8 / 2000 * 30 * 86400) * interval '1 second',
       jsonb_build_object('Err', 'SMTP 451 4.3.0 temporary failure, try again later (attempt ' || g || ')')
  FROM generate_series(1, 2000) g;

INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority)
SELECT 'P' || lpad(g::text, 8, '0'), CASE WHEN g % 2 = 0 THEN 'mail' ELSE 'default' END,
       convert_to('{\"name\":\"noop\",\"args\":{},\"request_id\":null}', 'UTF8'),
       CASE WHEN g <= 500 THEN 'Pending' WHEN g <= 700 THEN 'Pending' WHEN g <= 750 THEN 'Queued' ELSE 'Failed' END,
       CASE WHEN g > 750 THEN 2 ELSE 0 END, 5,
       CASE WHEN g <= 500 THEN now() - (g || ' seconds')::interval ELSE now() + interval '10 minutes' END, 0
  FROM generate_series(1, 850) g;

INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen, started_at)
SELECT q || '@bench-' || p || ':' || (1000 + p) || ':cafe0' || p, q, 'PostgresStorage', '', now() - (p * 4 || ' seconds')::interval, now() - interval '3 hours'
  FROM unnest(ARRAY['mail', 'media', 'default']) q, generate_series(1, 2) p;
";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench/admin_jobs: {e}");
        std::process::exit(1);
    }
}

/// Times `f` `runs` times after one warm-up; (p50, p99) in ms.
async fn time<F, Fut>(runs: usize, mut f: F) -> R<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R<()>>,
{
    f().await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await?;
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

fn e(e: sqlx::Error) -> String {
    e.to_string()
}

/// The cursor of page `n` (1-based) of the failed list.
async fn cursor_of_page(pool: &PgPool, n: usize) -> R<Option<queue::Cursor>> {
    let mut cursor = None;
    for _ in 1..n {
        let (_, next) = queue::failed(pool, None, cursor.as_ref(), queue::PAGE_SIZE).await.map_err(e)?;
        cursor = next;
    }
    Ok(cursor)
}

/// The dashboard's queries, by name.
const QUERIES: &[&str] = &["counts by state", "throughput, 12 × 5 min", "workers", "failed, page 1", "failed, page 20"];

async fn run_query(pool: &PgPool, name: &str, deep: Option<&queue::Cursor>) -> R<()> {
    let mut conn = pool.acquire().await.map_err(e)?;
    match name {
        "counts by state" => drop(queue::counts(&mut conn, ALL_QUEUES).await.map_err(e)?),
        "throughput, 12 × 5 min" => drop(queue::throughput(&mut conn, ALL_QUEUES).await.map_err(e)?),
        "workers" => drop(queue::workers(&mut *conn).await.map_err(e)?),
        "failed, page 1" => drop(queue::failed(&mut *conn, None, None, queue::PAGE_SIZE).await.map_err(e)?),
        _ => drop(queue::failed(&mut *conn, None, deep, queue::PAGE_SIZE).await.map_err(e)?),
    }
    Ok(())
}

fn set_cookie(resp: &poem::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or(v).to_string())
}

async fn body(resp: poem::Response) -> R<String> {
    resp.into_body().into_string().await.map_err(|e| e.to_string())
}

/// Logs in as the bench admin through the app's own endpoint; returns the session cookie.
async fn login(ep: &impl Endpoint<Output = poem::Response>) -> R<String> {
    let page = ep.call(Request::builder().uri_str("/login").finish()).await.map_err(|e| e.to_string())?.into_response();
    let anon = set_cookie(&page, "quire_anon").ok_or("GET /login set no quire_anon cookie")?;
    let html = body(page).await?;
    let csrf = html.split("name=\"csrf_token\" value=\"").nth(1).and_then(|s| s.split('"').next()).ok_or("no csrf_token on /login")?;
    let form = format!("csrf_token={csrf}&login={ADMIN}&password={}", bench::seed::PASSWORD);
    let resp = ep
        .call(
            Request::builder()
                .method(Method::POST)
                .uri_str("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", &anon)
                .body(form),
        )
        .await
        .map_err(|e| e.to_string())?
        .into_response();
    set_cookie(&resp, "quire_session").ok_or_else(|| format!("login answered {} with no session cookie", resp.status()))
}

async fn run() -> R<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed_secs;
    let record = !args.iter().any(|a| a == "--no-record");
    let machine = bench::Machine::read();

    let cluster = Cluster::start(CLUSTER)?;
    let mut admin = PgConnection::connect(&cluster.url("postgres", "bench-admin-jobs")).await.map_err(e)?;
    // Always a fresh table: its times are relative to now (the last hour, the retention),
    // and the purge below deletes part of it.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))).execute(&mut admin).await.map_err(e)?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}"))).execute(&mut admin).await.map_err(e)?;
    {
        let pool = PgPoolOptions::new().max_connections(1).connect(&cluster.url(DATABASE, "bench-admin-jobs")).await.map_err(e)?;
        app::db::migrate(&pool).await.map_err(|e| e.to_string())?;
        let t = Instant::now();
        let mut conn = pool.acquire().await.map_err(e)?;
        for stmt in SEED_SQL.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            let q = sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()));
            let q = if stmt.contains("$1") { q.bind(DONE) } else { q };
            q.execute(&mut *conn).await.map_err(e)?;
        }
        drop(conn);
        seed_secs = t.elapsed().as_secs_f64();
        println!("seeded {DONE} finished jobs and the rest in {seed_secs:.1} s (indexes included)");
        pool.close().await;
    }
    let pool = PgPoolOptions::new().max_connections(4).connect(&cluster.url(DATABASE, "bench-admin-jobs")).await.map_err(e)?;
    // The admin who opens the page.
    sqlx::query(
        "INSERT INTO users (username, email, password_hash, display_name, role, email_verified_at)
         VALUES ($1, $1 || '@example.com', $2, 'Bench admin', 'admin', now()) ON CONFLICT DO NOTHING",
    )
    .bind(ADMIN)
    .bind(bench::seed::password_hash())
    .execute(&pool)
    .await
    .map_err(e)?;
    // Refresh the workers' heartbeats (a kept database's are hours old).
    sqlx::query("UPDATE apalis.workers SET last_seen = now() - (right(id, 1)::int * 4 || ' seconds')::interval").execute(&pool).await.map_err(e)?;
    sqlx::query("VACUUM (ANALYZE) apalis.jobs, apalis.workers").execute(&pool).await.map_err(e)?;
    let (rows, table, indexes): (i64, String, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM apalis.jobs), pg_size_pretty(pg_table_size('apalis.jobs')), pg_size_pretty(pg_indexes_size('apalis.jobs'))",
    )
    .fetch_one(&pool)
    .await
    .map_err(e)?;
    let last_hour: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status = 'Done' AND done_at > now() - interval '1 hour'")
        .fetch_one(&pool)
        .await
        .map_err(e)?;

    let deep = cursor_of_page(&pool, 20).await?;
    let date = bench::today_utc();
    let mut out = format!(
        "\n## Admin jobs dashboard — {date}\n\n`cargo run --release -p bench --bin admin_jobs` on {} ({} cores, load {} at start; \
         the machine is shared with other engineers' builds and tests, so wall times are inflated and noisy). \
         `apalis.jobs`: {rows} rows ({DONE} `Done` over 7.7 days, {last_hour} of them in the last hour; 2,000 failed/killed over 30 days; \
         850 pending/scheduled/queued/retrying; seeded in {seed_secs:.0} s), table {table}, its indexes {indexes}. Each query through `app::jobs::admin` on one \
         pooled connection, {runs} runs after a warm-up; the page is `GET /admin/jobs` through the app's endpoint in-process as a \
         logged-in admin (session lookup, the four statements, the template), no network.\n\n\
         | query | p50 ms | p99 ms | without the `jobs_dashboard` indexes, p50 ms |\n|---|---:|---:|---:|\n",
        machine.cpu, machine.cores, machine.load
    );
    // With the indexes dropped (rolled back): a few runs on one connection.
    let mut without = Vec::new();
    {
        let mut conn = pool.acquire().await.map_err(e)?;
        let mut tx = conn.begin().await.map_err(e)?;
        sqlx::query("DROP INDEX apalis.apalis_jobs_done_idx, apalis.apalis_jobs_open_idx, apalis.apalis_jobs_failed_idx")
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        for name in QUERIES {
            let mut times = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                match *name {
                    "counts by state" => drop(queue::counts(&mut tx, ALL_QUEUES).await.map_err(e)?),
                    "throughput, 12 × 5 min" => drop(queue::throughput(&mut tx, ALL_QUEUES).await.map_err(e)?),
                    "workers" => drop(queue::workers(&mut *tx).await.map_err(e)?),
                    "failed, page 1" => drop(queue::failed(&mut *tx, None, None, queue::PAGE_SIZE).await.map_err(e)?),
                    _ => drop(queue::failed(&mut *tx, None, deep.as_ref(), queue::PAGE_SIZE).await.map_err(e)?),
                }
                times.push(ms(t.elapsed()));
            }
            times.sort_by(f64::total_cmp);
            without.push(percentile(&times, 0.5));
        }
        tx.rollback().await.map_err(e)?;
    }
    for (i, name) in QUERIES.iter().enumerate() {
        let (p50, p99) = time(runs, || run_query(&pool, name, deep.as_ref())).await?;
        let line = format!("| {name} | {p50:.2} | {p99:.2} | {:.1} |\n", without[i]);
        print!("{line}");
        out.push_str(&line);
    }

    // The whole page.
    let config = app::config::Config::for_tests(&cluster.url(DATABASE, "bench-admin-jobs"), PathBuf::from("var/bench/admin_jobs/mail"));
    let state = app::web::AppState::new(config, app::db::Db::from_pool(pool.clone())).map_err(|e| e.to_string())?;
    let ep = app::web::app(state);
    let session = login(&ep).await?;
    let get = |path: &'static str| {
        let session = session.clone();
        let ep = &ep;
        async move {
            let resp = ep.call(Request::builder().uri_str(path).header("cookie", &session).finish()).await.map_err(|e| e.to_string())?.into_response();
            let status = resp.status();
            let html = body(resp).await?;
            if status != 200 || !html.contains("<h1>Jobs</h1>") {
                return Err(format!("GET {path}: {status}"));
            }
            Ok(html.len())
        }
    };
    let size = get("/admin/jobs").await?;
    for (label, path) in [("whole page `GET /admin/jobs`", "/admin/jobs"), ("whole page, one queue's failed jobs", "/admin/jobs?queue=media")] {
        let (p50, p99) = time(runs, || async { get(path).await.map(drop) }).await?;
        let line = format!("| {label} ({} KB of HTML) | {p50:.2} | {p99:.2} | — |\n", size / 1024);
        print!("{line}");
        out.push_str(&line);
    }

    // EXPLAIN: which index each statement reads.
    out.push_str("\nEXPLAIN (ANALYZE) of each statement, indexes used:\n\n");
    let failed_sql = queue::FAILED_SQL;
    let explains: Vec<(&str, String)> = vec![
        ("counts", "SELECT job_type, status, count(*), min(run_at) FILTER (WHERE status = 'Pending' AND run_at <= now()) FROM apalis.jobs WHERE status <> 'Done' GROUP BY 1, 2".into()),
        ("done in the last hour", "SELECT job_type, count(*) FROM apalis.jobs WHERE status = 'Done' AND done_at >= now() - interval '1 hour' GROUP BY 1".into()),
        ("failed page 1", format!("SELECT id FROM apalis.jobs WHERE {failed_sql} ORDER BY coalesce(done_at, run_at) DESC, id DESC LIMIT 51")),
        ("purge batch (done)", "SELECT id FROM apalis.jobs WHERE status = 'Done' AND done_at < now() - interval '7 days' ORDER BY done_at LIMIT 5000".into()),
    ];
    let dir = bench::root().join("var/bench/admin_jobs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut all_plans = String::new();
    for (label, sql) in explains {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"))).fetch_all(&pool).await.map_err(e)?;
        let used: Vec<&str> = ["apalis_jobs_done_idx", "apalis_jobs_open_idx", "apalis_jobs_failed_idx", "Seq Scan"]
            .into_iter()
            .filter(|i| plan.iter().any(|l| l.contains(i)))
            .collect();
        let total = plan.iter().rev().find(|l| l.contains("Execution Time")).map(|l| l.trim().to_string()).unwrap_or_default();
        out.push_str(&format!("- {label}: {}; {total}\n", used.join(", ")));
        all_plans.push_str(&format!("-- {label}\n{}\n\n", plan.join("\n")));
    }
    std::fs::write(dir.join("explain.txt"), all_plans).map_err(|e| e.to_string())?;

    // The purge, over what is past its retention (a reseed is needed to measure it again).
    let due: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status = 'Done' AND done_at < now() - interval '7 days'")
        .fetch_one(&pool)
        .await
        .map_err(e)?;
    let t = Instant::now();
    let purged = queue::purge(&pool).await.map_err(e)?;
    let took = t.elapsed();
    out.push_str(&format!(
        "\nPurge (`jobs::admin::purge`, batches of {}): {} finished jobs past 7 days (of {due} due), {} failed past 30 days, in {:.2} s{}.\n",
        queue::PURGE_BATCH,
        purged.done_jobs,
        purged.failed_jobs,
        took.as_secs_f64(),
        ""
    ));
    print!("{out}");
    if record {
        bench::append_results(&bench::root().join("bench/RESULTS.md"), &out);
    }
    pool.close().await;
    drop(cluster);
    Ok(())
}
