//! Throughput and latency of the job queue: one `worker` process draining no-op jobs.
//!
//! ```sh
//! cargo run --release -p bench --bin jobs -- [--jobs N] [--idle N] [--batch-size N]
//!     [--concurrency N] [--pg-profile dev|test] [--no-record]
//! ```
//!
//! The PostgreSQL server: the one at `DATABASE_URL` if set (the benchmark creates, and
//! drops at the end, a fresh database `quire_bench_jobs_<pid>` there), otherwise a private
//! cluster `benchjobs` under var/pg, started and stopped through bin/lib.sh like bin/dev's,
//! with `pg_stat_statements` preloaded. Its settings are bin/lib.sh's `dev` profile by
//! default: durable commits (`fsync`, `synchronous_commit` on), as in production;
//! `--pg-profile test` turns those off.
//!
//! The worker is the release `worker` binary (built first with `cargo build --release`),
//! one process, run as in production: `APP_ENV=production`, a `SECRET_KEY`, JSON logs
//! (to a file, which the benchmark reads), all queues, the runtime's retry, timeout,
//! tracing and panic-catching layers. `--batch-size`/`--concurrency` are passed on to it;
//! without them it runs with its own defaults.
//!
//! Phases, all on `app::jobs::maintenance::Noop` (a handler that does nothing):
//!
//! 1. **Enqueue**, worker stopped: N jobs through `app::jobs::enqueue` (one INSERT per
//!    job, as the web side does), 500 per transaction.
//! 2. **Drain**: start the worker on that backlog. jobs/s over the drain, measured with
//!    the server's clock from the first job locked to the last job acknowledged (so the
//!    worker's start-up is not counted). SQL per job: `pg_stat_statements` calls in the
//!    benchmark database (BEGIN and COMMIT included, the benchmark's own progress
//!    queries excluded) over N; transactions per job from `pg_stat_database`. CPU per
//!    job: the worker's user+system time over N, and the machine's busy time over N.
//! 3. **Burst**, worker running and idle: N jobs with `app::jobs::enqueue_many`, 1,000
//!    per transaction, as fast as one connection can. Each job carries a probe number; its
//!    handler logs the wall-clock time it started. Enqueue-to-start latency = that time
//!    minus the time the benchmark saw its transaction commit. p50/p99/max over all N.
//! 4. **Idle**: `--idle` times (200), one job through `app::jobs::enqueue` on a quiet
//!    queue, wait until it ran, pause 20 ms. Same latency measure: this is the
//!    LISTEN/NOTIFY wake-up path.
//!
//! Finally the worker gets SIGTERM and must exit cleanly. Each run appends a dated
//! section to bench/RESULTS.md (unless `--no-record`).

use bench::{Machine, append_results, today_utc};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use app::jobs::maintenance::Noop;
use sqlx::{PgPool, Row, postgres::PgPoolOptions};

const CLUSTER: &str = "benchjobs";
/// `app::jobs::enqueue` calls per transaction in phase 1.
const ENQUEUE_TX: usize = 500;
/// Jobs per `enqueue_many` call (one statement, one transaction) in phase 3.
const BURST_TX: usize = 1000;
/// Progress queries carry this alias so their statements can be told from the worker's.
const MARK: &str = "bench_observer";

struct Options {
    jobs: usize,
    idle: usize,
    batch_size: Option<usize>,
    concurrency: Option<usize>,
    profile: String,
    record: bool,
}

const USAGE: &str = "usage: jobs [--jobs N] [--idle N] [--batch-size N] [--concurrency N] [--pg-profile dev|test] [--no-record]";

fn options() -> Options {
    let mut o = Options { jobs: 50_000, idle: 200, batch_size: None, concurrency: None, profile: "dev".into(), record: true };
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> usize {
        v.and_then(|n| n.parse().ok()).filter(|&n: &usize| n > 0).unwrap_or_else(|| {
            eprintln!("{flag} needs a positive number\n{USAGE}");
            std::process::exit(2)
        })
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs" => o.jobs = number(args.next(), "--jobs"),
            "--idle" => o.idle = number(args.next(), "--idle"),
            "--batch-size" => o.batch_size = Some(number(args.next(), "--batch-size")),
            "--concurrency" => o.concurrency = Some(number(args.next(), "--concurrency")),
            "--pg-profile" => {
                o.profile = args.next().filter(|p| p == "dev" || p == "test").unwrap_or_else(|| {
                    eprintln!("--pg-profile is dev or test\n{USAGE}");
                    std::process::exit(2)
                })
            }
            "--no-record" => o.record = false,
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    o
}


fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros() as i64
}

// ---- PostgreSQL -----------------------------------------------------------------------


/// Starts the private cluster (fd 1 of lib.sh's messages goes to stderr; the URL to us).
fn start_cluster(profile: &str) -> String {
    bench::lib_sh(&format!("pg_ensure_cluster {CLUSTER} {profile} >&2; pg_url {CLUSTER} postgres")).unwrap_or_else(|e| panic!("{e}")).trim().to_owned()
}

fn stop_cluster() {
    bench::lib_sh(&format!("pg_setup >&2; pg_stop_cluster {CLUSTER} >&2")).unwrap_or_else(|e| panic!("{e}"));
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

struct Server {
    admin: PgPool,
    /// We started the private cluster, so we stop it.
    private: bool,
    /// `pg_stat_statements` is loaded: statement counts are available.
    statements: bool,
    description: String,
}

async fn server(profile: &str) -> (Server, String) {
    let (admin_url, private) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, false),
        _ => (start_cluster(profile), true),
    };
    let mut admin = PgPool::connect(&admin_url).await.expect("connect to PostgreSQL");
    let preload = |pool: PgPool| async move {
        let libs: String = sqlx::query_scalar("SHOW shared_preload_libraries").fetch_one(&pool).await.unwrap_or_default();
        libs.split(',').any(|l| l.trim() == "pg_stat_statements")
    };
    let mut statements = preload(admin.clone()).await;
    if !statements && private {
        // Statement counts need the library loaded at server start: set it once (it is
        // kept in postgresql.auto.conf, which bin/lib.sh leaves alone) and restart.
        eprintln!("==> enabling pg_stat_statements in the {CLUSTER} cluster (restart)");
        sqlx::query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'").execute(&admin).await.expect("ALTER SYSTEM");
        admin.close().await;
        stop_cluster();
        start_cluster(profile);
        admin = PgPool::connect(&admin_url).await.expect("reconnect to PostgreSQL");
        statements = preload(admin.clone()).await;
    }
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&admin).await.expect("server_version");
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit", "shared_buffers"] {
        let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}"))).fetch_one(&admin).await.expect("SHOW");
        settings.push(format!("{name}={v}"));
    }
    let description = format!(
        "PostgreSQL {} ({}, {})",
        version.split_whitespace().next().unwrap_or(&version),
        if private { format!("private cluster, bin/lib.sh `{profile}` profile") } else { "server from DATABASE_URL".into() },
        settings.join(", ")
    );
    (Server { admin, private, statements, description }, admin_url)
}

// ---- The worker process ---------------------------------------------------------------

fn build_worker() -> PathBuf {
    eprintln!("==> cargo build --release -p worker");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "worker", "--bin", "worker"])
        .current_dir(bench::root())
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the worker failed");
    // Same target directory as this program (target/release/).
    let exe = std::env::current_exe().expect("current_exe").with_file_name("worker");
    assert!(exe.exists(), "{} not found", exe.display());
    exe
}

fn spawn_worker(exe: &Path, dir: &Path, db_url: &str, o: &Options, log: &Path) -> Child {
    let mut c = Command::new(exe);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENV", "production")
        .env("DATABASE_URL", db_url)
        .env("SECRET_KEY", "bench-jobs-0123456789abcdef0123456789abcdef")
        // Required in production; the no-op jobs send no mail.
        .env("BASE_URL", "http://quire.invalid")
        .env("MAIL_FROM", "Quire bench <bench@quire.invalid>")
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .env("LOG_FORMAT", "json")
        .env("MEDIA_ROOT", dir.join("media"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).expect("create worker log"))
        .stderr(Stdio::inherit());
    if let Some(n) = o.batch_size {
        c.arg("--batch-size").arg(n.to_string());
    }
    if let Some(n) = o.concurrency {
        c.arg("--concurrency").arg(n.to_string());
    }
    c.spawn().expect("start worker")
}

/// User + system CPU time of a process, from /proc/PID/stat.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // Index 0 is field 3 (state).
    let ticks = field(11) + field(12);
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Busy CPU time of the whole machine (all cores), from /proc/stat.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: u64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Duration::from_secs_f64(busy as f64 / clock_ticks())
}

/// Reads the worker's JSON log as it grows; collects the probe lines of Noop jobs.
struct LogTail {
    file: std::fs::File,
    partial: String,
    /// probe number → started_us
    probes: HashMap<u64, i64>,
    errors: Vec<String>,
}

impl LogTail {
    fn open(path: &Path) -> LogTail {
        LogTail { file: std::fs::File::open(path).expect("open worker log"), partial: String::new(), probes: HashMap::new(), errors: Vec::new() }
    }

    fn poll(&mut self) {
        let mut buf = String::new();
        self.file.read_to_string(&mut buf).expect("read worker log");
        if buf.is_empty() {
            return;
        }
        self.partial.push_str(&buf);
        let complete = match self.partial.rfind('\n') {
            Some(i) => i + 1,
            None => return,
        };
        let text: String = self.partial.drain(..complete).collect();
        for line in text.lines() {
            if line.contains("noop probe") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let (Some(p), Some(t)) = (v["probe"].as_u64(), v["started_us"].as_i64()) {
                        self.probes.insert(p, t);
                    }
                }
            } else if line.contains("\"level\":\"ERROR\"") || line.contains("\"level\":\"WARN\"") {
                self.errors.push(line.to_owned());
            }
        }
    }

    fn skip_to_end(&mut self) {
        self.file.seek(SeekFrom::End(0)).expect("seek worker log");
        self.partial.clear();
    }
}

// ---- Measuring ------------------------------------------------------------------------

/// Jobs of the default queue not yet acknowledged (one sequential scan: polled sparingly).
async fn unfinished(pool: &PgPool) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) AS {MARK} FROM apalis.jobs WHERE job_type = 'default' AND status <> 'Done'")))
        .fetch_one(pool)
        .await
        .expect("count unfinished")
}

async fn wait_drained(pool: &PgPool, within: Duration, polls: &mut u64) {
    let start = Instant::now();
    loop {
        *polls += 1;
        let left = unfinished(pool).await;
        if left == 0 {
            return;
        }
        assert!(start.elapsed() < within, "{left} jobs still unfinished after {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

impl Latency {
    /// From samples in µs; reported in ms.
    fn of(mut us: Vec<f64>) -> Latency {
        us.sort_by(|a, b| a.total_cmp(b));
        Latency { p50: percentile(&us, 50.0) / 1000.0, p99: percentile(&us, 99.0) / 1000.0, max: us.last().copied().unwrap_or(f64::NAN) / 1000.0, n: us.len() }
    }
}

struct Statements {
    per_job: f64,
    top: Vec<(i64, String)>,
}

async fn db_oid(pool: &PgPool) -> u32 {
    let oid: sqlx::postgres::types::Oid = sqlx::query_scalar("SELECT oid FROM pg_database WHERE datname = current_database()").fetch_one(pool).await.expect("oid");
    oid.0
}

async fn xact_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT (xact_commit + xact_rollback)::int8 AS {MARK} FROM pg_stat_database WHERE datname = current_database()")))
        .fetch_one(pool)
        .await
        .expect("pg_stat_database")
}

async fn reset_statements(pool: &PgPool) {
    sqlx::query("SELECT pg_stat_statements_reset()").execute(pool).await.expect("pg_stat_statements_reset");
}

/// Statement calls in our database since the reset, minus the benchmark's own.
async fn read_statements(pool: &PgPool, dbid: u32) -> (i64, Vec<(i64, String)>) {
    let rows = sqlx::query(
        "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') AS query FROM pg_stat_statements \
         WHERE dbid = $1 AND query NOT LIKE '%bench_observer%' AND query NOT LIKE '%pg_stat_statements%' \
         ORDER BY calls DESC",
    )
    .bind(sqlx::postgres::types::Oid(dbid))
    .fetch_all(pool)
    .await
    .expect("read pg_stat_statements");
    let total = rows.iter().map(|r| r.get::<i64, _>("calls")).sum();
    let top = rows.iter().take(8).map(|r| (r.get::<i64, _>("calls"), r.get::<String, _>("query").chars().take(90).collect())).collect();
    (total, top)
}

// ---- Main -----------------------------------------------------------------------------

struct Results {
    enqueue_one_rate: f64,
    drain_rate: f64,
    drain_secs: f64,
    statements: Option<Statements>,
    xacts_per_job: f64,
    worker_cpu_us_per_job: f64,
    machine_cpu_us_per_job: f64,
    burst_enqueue_rate: f64,
    burst_rate: f64,
    burst: Latency,
    idle: Latency,
    shutdown: Duration,
    worker_args: String,
}

#[tokio::main]
async fn main() {
    let o = options();
    let machine = Machine::read();
    let worker_exe = build_worker();
    let (srv, admin_url) = server(&o.profile).await;
    let db_name = format!("quire_bench_jobs_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db_name}"))).execute(&srv.admin).await.expect("drop database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&srv.admin).await.expect("create database");
    let db_url = with_database(&admin_url, &db_name);
    let pool = PgPoolOptions::new().max_connections(2).connect(&db_url).await.expect("connect to the bench database");
    app::db::migrate(&pool).await.expect("migrations");
    if srv.statements {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.expect("create extension");
    }
    let dbid = db_oid(&pool).await;
    let dir = std::env::temp_dir().join(format!("quire-bench-jobs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log_path = dir.join("worker.log");
    println!("{} ({} cores), load average {} at start; {}", machine.cpu, machine.cores, machine.load, srv.description);

    let r = run(&o, &srv, &pool, dbid, &worker_exe, &dir, &db_url, &log_path).await;

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))).execute(&srv.admin).await.expect("drop database");
    srv.admin.close().await;
    if srv.private {
        stop_cluster();
    }
    let _ = std::fs::remove_dir_all(&dir);

    let section = results_section(&o, &machine, &srv, &r);
    println!("{section}");
    if o.record {
        append_results(&Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"), &section);
        println!("(appended to bench/RESULTS.md)");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(o: &Options, srv: &Server, pool: &PgPool, dbid: u32, exe: &Path, dir: &Path, db_url: &str, log: &Path) -> Results {
    let n = o.jobs;

    // 1. Enqueue through the normal path, worker stopped.
    eprintln!("==> enqueueing {n} jobs with app::jobs::enqueue, {ENQUEUE_TX} per transaction");
    let t = Instant::now();
    let mut conn = pool.acquire().await.expect("connection");
    for chunk in (0..n).collect::<Vec<_>>().chunks(ENQUEUE_TX) {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
        for _ in chunk {
            app::jobs::enqueue(&mut tx, &Noop::default(), None).await.expect("enqueue");
        }
        tx.commit().await.expect("commit");
    }
    let enqueue_one_rate = n as f64 / t.elapsed().as_secs_f64();
    drop(conn);

    // 2. Drain that backlog with a fresh worker.
    if srv.statements {
        reset_statements(pool).await;
    }
    let xacts_before = xact_count(pool).await;
    let mut polls = 0u64;
    let busy_before = machine_busy();
    eprintln!("==> draining with one worker process");
    let mut child = spawn_worker(exe, dir, db_url, o, log);
    let worker_args = {
        let mut a = Vec::new();
        if let Some(b) = o.batch_size {
            a.push(format!("--batch-size {b}"));
        }
        if let Some(c) = o.concurrency {
            a.push(format!("--concurrency {c}"));
        }
        if a.is_empty() { "defaults".to_string() } else { a.join(" ") }
    };
    let mut tail = LogTail::open(log);
    wait_drained(pool, Duration::from_secs(600), &mut polls).await;
    let worker_cpu = process_cpu(child.id());
    let busy = machine_busy() - busy_before;
    // Backends publish their pg_stat_database counters at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let xacts = xact_count(pool).await - xacts_before - polls as i64 - 1;
    let statements = if srv.statements {
        let (calls, top) = read_statements(pool, dbid).await;
        Some(Statements { per_job: calls as f64 / n as f64, top })
    } else {
        None
    };
    let drain_secs: f64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT extract(epoch FROM max(done_at) - min(lock_at))::float8 AS {MARK} FROM apalis.jobs WHERE job_type = 'default'"
    )))
    .fetch_one(pool)
    .await
    .expect("drain span");
    let drain_rate = n as f64 / drain_secs;
    eprintln!("    {drain_rate:.0} jobs/s");

    // 3. A burst of N jobs on the running, idle worker; each logs when it started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tail.poll();
    tail.skip_to_end();
    eprintln!("==> burst: {n} jobs with app::jobs::enqueue_many, {BURST_TX} per transaction, worker running");
    let mut commits = Vec::with_capacity(n / BURST_TX + 1);
    let mut conn = pool.acquire().await.expect("connection");
    let t = Instant::now();
    for start in (0..n).step_by(BURST_TX) {
        let jobs: Vec<Noop> = (start..(start + BURST_TX).min(n)).map(|i| Noop { probe: Some(i as u64) }).collect();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
        app::jobs::enqueue_many(&mut tx, &jobs, None).await.expect("enqueue_many");
        tx.commit().await.expect("commit");
        commits.push(now_us());
    }
    let burst_enqueue_rate = n as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    let mut polls = 0;
    wait_drained(pool, Duration::from_secs(600), &mut polls).await;
    // The probe lines may trail the acknowledgements a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tail.probes.len() < n && Instant::now() < deadline {
        tail.poll();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tail.probes.len(), n, "not every burst job logged its probe");
    let burst_samples: Vec<f64> = tail.probes.iter().map(|(&p, &started)| (started - commits[p as usize / BURST_TX]) as f64).collect();
    let last_start = tail.probes.values().copied().max().unwrap_or(0);
    let first_commit = commits[0];
    let burst_rate = n as f64 / ((last_start - first_commit) as f64 / 1e6);
    let burst = Latency::of(burst_samples);
    eprintln!("    p50 {:.1} ms, p99 {:.1} ms", burst.p50, burst.p99);

    // 4. One job at a time on an idle queue.
    eprintln!("==> idle: {} single jobs", o.idle);
    let mut idle_samples = Vec::with_capacity(o.idle);
    let mut conn = pool.acquire().await.expect("connection");
    for i in 0..o.idle {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let probe = 1_000_000_000 + i as u64;
        app::jobs::enqueue(&mut conn, &Noop { probe: Some(probe) }, None).await.expect("enqueue");
        let committed = now_us();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tail.poll();
            if let Some(&started) = tail.probes.get(&probe) {
                idle_samples.push((started - committed) as f64);
                break;
            }
            assert!(Instant::now() < deadline, "idle job {i} did not run within 10 s");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    drop(conn);
    let idle = Latency::of(idle_samples);
    eprintln!("    p50 {:.2} ms, p99 {:.2} ms", idle.p50, idle.p99);

    // Graceful shutdown.
    let t = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().expect("wait for worker");
    let shutdown = t.elapsed();
    assert!(status.success(), "worker exited with {status} after SIGTERM");
    tail.poll();
    if !tail.errors.is_empty() {
        eprintln!("worker logged {} warnings/errors, first: {}", tail.errors.len(), tail.errors[0]);
    }

    Results {
        enqueue_one_rate,
        drain_rate,
        drain_secs,
        xacts_per_job: xacts as f64 / n as f64,
        statements,
        worker_cpu_us_per_job: worker_cpu.as_secs_f64() * 1e6 / n as f64,
        machine_cpu_us_per_job: busy.as_secs_f64() * 1e6 / n as f64,
        burst_enqueue_rate,
        burst_rate,
        burst,
        idle,
        shutdown,
        worker_args,
    }
}

// ---- Machine, RESULTS.md --------------------------------------------------------------


fn results_section(o: &Options, m: &Machine, srv: &Server, r: &Results) -> String {
    let n = o.jobs;
    let mut s = format!("\n## {} — job queue: {} ({} cores), load average {} at start\n\n", today_utc(), m.cpu, m.cores, m.load);
    s += &format!(
        "`cargo run --release -p bench --bin jobs` (bench/src/bin/jobs.rs): one `worker` process ({}), production settings, {n} no-op jobs; {}.\n\n",
        r.worker_args, srv.description
    );
    s += "| | |\n|---|---|\n";
    s += &format!("| enqueue, `app::jobs::enqueue`, {ENQUEUE_TX}/transaction, worker stopped | {:.0} jobs/s |\n", r.enqueue_one_rate);
    s += &format!("| **drain of the {n}-job backlog** | **{:.0} jobs/s** ({:.2} s) |\n", r.drain_rate, r.drain_secs);
    match &r.statements {
        Some(st) => s += &format!("| SQL statements per job (pg_stat_statements, BEGIN/COMMIT included) | {:.3} |\n", st.per_job),
        None => s += "| SQL statements per job | n/a (pg_stat_statements not loaded) |\n",
    }
    s += &format!("| transactions per job (pg_stat_database) | {:.3} |\n", r.xacts_per_job);
    s += &format!("| CPU per job: worker process / whole machine | {:.1} µs / {:.1} µs |\n", r.worker_cpu_us_per_job, r.machine_cpu_us_per_job);
    s += &format!("| burst enqueue, `app::jobs::enqueue_many`, {BURST_TX}/transaction, worker running | {:.0} jobs/s |\n", r.burst_enqueue_rate);
    s += &format!("| burst: first commit to last job started | {:.0} jobs/s |\n", r.burst_rate);
    s += &format!(
        "| enqueue-to-start latency under the {n}-job burst, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |\n",
        r.burst.p50, r.burst.p99, r.burst.max
    );
    s += &format!(
        "| enqueue-to-start latency, idle queue ({} single jobs), p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |\n",
        r.idle.n, r.idle.p50, r.idle.p99, r.idle.max
    );
    s += &format!("| SIGTERM to exit, idle worker | {:.0} ms |\n", r.shutdown.as_secs_f64() * 1000.0);
    if let Some(st) = &r.statements {
        s += "\nStatements during the drain, by calls:\n\n";
        for (calls, q) in &st.top {
            s += &format!("- {calls} × `{q}`\n");
        }
    }
    s
}


