//! Fault drills: break one part of a running Quire on purpose and check that users (or
//! mail recipients) notice nothing. Each drill prints PASS or FAIL with its numbers.
//!
//! ```sh
//! cargo run --release -p bench --bin drills -- [DRILL...] [--no-build] [--no-record] [--mails N]
//! ```
//!
//! Drills (all of them when none is named):
//!
//! - `worker-kill`: 1,000 verification mails (the real `SendVerificationEmail` job, enqueued
//!   as signup does) drain through `worker --queues mail` into a local SMTP sink run by this
//!   program; the worker is SIGKILLed after about a quarter are delivered and started
//!   again. PASS when the sink received every message exactly once (by Message-ID), with
//!   one `sent_emails` row and one token per user and every job `Done`. Prints the time to
//!   drain and the time to recover the jobs the dead worker held (re-queued after 3 missed
//!   10 s heartbeats).
//! - `web-sigterm`: two `web serve` behind a local Caddy (round robin, active health checks
//!   on `/health` every second, passive checks, retries for 5 s); wrk runs against Caddy
//!   for 16 s, one web process gets SIGTERM after 5 s and is started again after 9 s. PASS
//!   when wrk saw no non-2xx/3xx response and no socket error.
//! - `redis-stop`: a private redis-server, two `web serve` and a worker with `REDIS_URL`;
//!   wrk on each web process (cached anonymous pages) and a client POSTing the
//!   rate-limited forgot-password form to both, 20 s; redis-server is killed at 5 s and
//!   started again at 12 s. PASS when nothing answered 5xx (429 is the limit at work) or
//!   failed, `/health` said `degraded` with `checks.redis` `down` during the outage and
//!   `ok` after, and both processes report `quire_redis_up 1` again by themselves.
//!   Prints `/health`'s Redis check and the Redis, fallback and invalidation lines of
//!   `/metrics` before, during and after.
//! - `replica-stop`: a streaming replica of the drill cluster; one `web serve` with
//!   `DATABASE_REPLICA_URLS` pointing at it under wrk read load (home and story pages); the
//!   replica is stopped (`bin/pgctl NAME stop`) after 5 s and started after 12 s. PASS
//!   when no request failed; prints what `/health` says about the replicas before, during
//!   and after, and the replica-related lines of `/metrics`.
//! - `rolling-restart`: the whole topology of `bin/stack --web 2 --workers 2 --seed`
//!   (Caddy, two web, two workers split by queue, primary + replica, Redis, the SMTP
//!   sink, under honcho); wrk drives the home, story and chapter pages through Caddy
//!   while `bin/stack restart web` and then `bin/stack restart worker` run, and
//!   verification mails are enqueued (as signup does) all through the worker restart.
//!   PASS when wrk saw no non-2xx/3xx response and no socket error, both restarts
//!   succeeded, and every mail reached the sink exactly once (one message per recipient,
//!   one `sent_emails` row each). Prints the time each restart took.
//! - `backup-restore`: a primary of its own (`drills-backup`, dev profile: fsync on) with
//!   the load benchmark's data (bench::seed, timed); `bin/backup --setup-only` turns WAL
//!   archiving on, a writer commits rows numbered 1, 2, 3… into a drill table (~100/s,
//!   recording when each INSERT was sent and acknowledged), `bin/backup` takes a base
//!   backup meanwhile; 10 s later the drill picks T, writes 45 s more (longer than
//!   archive_timeout), then kills the primary (`bin/pgctl kill`) and deletes its data
//!   directory. `bin/restore --to T` and a `web serve` on the restored cluster: RTO is the
//!   time from destruction to `/health` 200. PASS when every write acknowledged before T is
//!   there, none sent after T is, RTO ≤ 5 min, and a second `bin/restore --to latest`
//!   loses only the writes of the last ≤ 1 min (RPO: acknowledged writes missing there,
//!   as the time from the first lost one to the destruction), with no hole.
//!
//! Everything runs on this machine: a private PostgreSQL cluster `drills` (and its replica
//! `drills-replica`) under var/pg via bin/lib.sh, fresh databases `drills_mail` and
//! `drills_web`, the release `web` and `worker` binaries (built first with
//! `cargo build --release -p app -p worker` unless `--no-build`), Caddy and wrk (installed
//! with apt-get on Debian when missing). The processes run with `APP_ENV=production`, a
//! fixed drill `SECRET_KEY`, mail over SMTP to the sink. Everything started is stopped at
//! the end, on failure, and on Ctrl-C/SIGTERM.
//!
//! A dated section with the machine's CPU and core count and the summary table is appended
//! to `bench/RESULTS.md` (unless `--no-record`). Not part of `bin/test`.

use bench::{Machine, append_results, today_utc};
use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{PgPool, postgres::PgPoolOptions};

const CLUSTER: &str = "drills";
const REPLICA: &str = "drills-replica";
const MAIL_DB: &str = "drills_mail";
const WEB_DB: &str = "drills_web";
const SECRET_KEY: &str = "bench-drills-secret-key-not-for-production-0123456789";
const ALL_DRILLS: &[&str] = &["worker-kill", "web-sigterm", "redis-stop", "replica-stop", "rolling-restart", "backup-restore"];

// ---- what to run ----------------------------------------------------------------------

struct Options {
    drills: Vec<String>,
    build: bool,
    record: bool,
    mails: usize,
}

fn options() -> Options {
    let mut o = Options { drills: Vec::new(), build: true, record: true, mails: 1000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-build" => o.build = false,
            "--no-record" => o.record = false,
            "--mails" => o.mails = args.next().and_then(|n| n.parse().ok()).filter(|&n| n >= 8).expect("--mails N (N ≥ 8)"),
            name if ALL_DRILLS.contains(&name) => o.drills.push(name.to_string()),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: drills [{}]... [--no-build] [--no-record] [--mails N]",
                    ALL_DRILLS.join("|")
                );
                std::process::exit(2);
            }
        }
    }
    if o.drills.is_empty() {
        o.drills = ALL_DRILLS.iter().map(|s| s.to_string()).collect();
    }
    o
}

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        }
    }
}

struct Outcome {
    drill: String,
    verdict: Verdict,
    /// One line of key figures for the table.
    figures: String,
    /// Observations worth keeping (causes of a failure, what was not there yet).
    notes: Vec<String>,
}

impl Outcome {
    fn new(drill: &str, verdict: Verdict, figures: String, notes: Vec<String>) -> Outcome {
        Outcome { drill: drill.to_string(), verdict, figures, notes }
    }
}

fn main() {
    let options = options();
    let machine = Machine::read();
    println!("machine: {} ({} cores, load average {} at start)", machine.cpu, machine.cores, machine.load);
    install_signal_handler();

    let result = std::panic::catch_unwind(|| run(&options));
    cleanup();
    let outcomes = match result {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(e)) => {
            eprintln!("drills: {e:#}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("drills: aborted (panic above); everything started was stopped");
            std::process::exit(1);
        }
    };

    println!("\n==================== summary ====================");
    let width = outcomes.iter().map(|o| o.drill.len()).max().unwrap_or(5).max(5);
    for o in &outcomes {
        println!("{:<width$}  {}  {}", o.drill, o.verdict.label(), o.figures);
    }
    for o in &outcomes {
        for n in &o.notes {
            println!("  {}: {n}", o.drill);
        }
    }
    if options.record {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
        append_results(&path, &results_section(&machine, &options, &outcomes));
        println!("\nappended to {}", path.display());
    }
    if outcomes.iter().any(|o| o.verdict == Verdict::Fail) {
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn run(options: &Options) -> Res<Vec<Outcome>> {
    let env = Env::prepare(options)?;
    let mut outcomes = Vec::new();
    for name in &options.drills {
        println!("\n==================== {name} ====================");
        let t = Instant::now();
        let outcome = match name.as_str() {
            "worker-kill" => worker_kill(&env, options.mails),
            "web-sigterm" => web_sigterm(&env),
            "redis-stop" => redis_stop(&env),
            "replica-stop" => replica_stop(&env),
            "rolling-restart" => rolling_restart(&env),
            "backup-restore" => backup_restore(&env),
            _ => unreachable!(),
        };
        let outcome = outcome.unwrap_or_else(|e| Outcome::new(name, Verdict::Fail, format!("error: {e}"), vec![]));
        // Whatever a drill left running goes before the next one starts.
        stop_all_processes();
        println!("{name}: {}  {}  ({:.0} s)", outcome.verdict.label(), outcome.figures, t.elapsed().as_secs_f64());
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

// ---- the environment: binaries, cluster, databases -------------------------------------

struct Env {
    root: PathBuf,
    web: PathBuf,
    worker: PathBuf,
    pg_port: u16,
    tmp: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Env {
    fn prepare(options: &Options) -> Res<Env> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let bin_dir = std::env::current_exe().map_err(|e| e.to_string())?.parent().unwrap().to_path_buf();
        let (web, worker) = (bin_dir.join("web"), bin_dir.join("worker"));
        if options.build {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            println!("building: cargo build --release -p app -p worker");
            let status = Command::new(&cargo)
                .args(["build", "--release", "-p", "app", "-p", "worker"])
                .env("SQLX_OFFLINE", "true")
                .current_dir(&root)
                .status()
                .map_err(|e| format!("running {cargo}: {e}"))?;
            if !status.success() {
                if web.is_file() && worker.is_file() {
                    println!("warning: the build failed; using the web and worker binaries already in {}", bin_dir.display());
                } else {
                    return Err("cargo build --release -p app -p worker failed".into());
                }
            }
        }
        for b in [&web, &worker] {
            if !b.is_file() {
                return Err(format!("{} is missing: run `SQLX_OFFLINE=true cargo build --release -p app -p worker`", b.display()));
            }
        }
        let tmp = std::env::temp_dir().join(format!("quire-drills-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        register_tmp(&tmp);

        println!("starting PostgreSQL cluster {CLUSTER} (bin/lib.sh)");
        register_cluster(CLUSTER);
        let out = lib_sh(&root, &format!("pg_ensure_cluster {CLUSTER} test; echo \"PG_PORT=$PG_PORT\""))?;
        let pg_port = parse_port(&out)?;
        println!("  {CLUSTER} on 127.0.0.1:{pg_port}");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|e| e.to_string())?;
        Ok(Env { root, web, worker, pg_port, tmp, rt })
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://quire@127.0.0.1:{}/{db}", self.pg_port)
    }

    fn pool(&self, db: &str) -> Res<PgPool> {
        self.rt
            .block_on(PgPoolOptions::new().max_connections(2).connect(&self.url(db)))
            .map_err(|e| format!("connecting to {db}: {e}"))
    }

    /// Drops and creates `db`, then runs `web migrate` on it.
    fn fresh_database(&self, db: &str) -> Res<()> {
        let admin = self.pool("postgres")?;
        self.rt
            .block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))).execute(&admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\""))).execute(&admin).await?;
                admin.close().await;
                Ok::<_, sqlx::Error>(())
            })
            .map_err(|e| format!("creating database {db}: {e}"))?;
        let dir = self.tmp.join(db);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let status = self.app_cmd(&self.web, &dir, &self.url(db)).arg("migrate").status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("web migrate on {db} failed ({status})"));
        }
        Ok(())
    }

    /// `web` or `worker` with a clean, production-like environment.
    fn app_cmd(&self, exe: &Path, dir: &Path, db_url: &str) -> Command {
        let mut c = Command::new(exe);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_ENV", "production")
            .env("DATABASE_URL", db_url)
            .env("SECRET_KEY", SECRET_KEY)
            // Production requires these; processes that send mail get the sink's URL.
            .env("BASE_URL", "http://quire.invalid")
            .env("MAIL_FROM", "Quire drills <drills@quire.invalid>")
            .env("SMTP_URL", "smtp://127.0.0.1:1")
            .env("MEDIA_ROOT", dir.join("media"))
            .env("RUST_LOG", "warn")
            .current_dir(dir)
            .stdin(Stdio::null());
        c
    }
}

/// Runs SCRIPT in bash with bin/lib.sh sourced, in its own process group (a Ctrl-C in the
/// terminal reaches only us). Its stdout is returned and echoed; stderr goes to ours.
fn lib_sh(root: &Path, script: &str) -> Res<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; source bin/lib.sh; {script}"))
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .output()
        .map_err(|e| format!("bash: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for line in stdout.lines().filter(|l| !l.starts_with("PG_PORT=")) {
        println!("  {line}");
    }
    if !out.status.success() {
        return Err(format!("bin/lib.sh: `{script}` failed ({})", out.status));
    }
    Ok(stdout)
}

fn parse_port(out: &str) -> Res<u16> {
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix("PG_PORT=").and_then(|p| p.trim().parse().ok()))
        .ok_or_else(|| "bin/lib.sh did not report the port".to_string())
}

fn pgctl(root: &Path, name: &str, action: &str) -> Res<Duration> {
    let t = Instant::now();
    let status = Command::new(root.join("bin/pgctl"))
        .args([name, action])
        .current_dir(root)
        .stdin(Stdio::null())
        .process_group(0)
        .status()
        .map_err(|e| format!("bin/pgctl: {e}"))?;
    if !status.success() {
        return Err(format!("bin/pgctl {name} {action} failed ({status})"));
    }
    Ok(t.elapsed())
}

// ---- processes we start, and stopping all of them -------------------------------------

#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    clusters: Vec<String>,
    tmp: Option<PathBuf>,
    root: Option<PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry { root: Some(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()), ..Default::default() }))
}

static STOPPING: AtomicBool = AtomicBool::new(false);

fn register_cluster(name: &str) {
    let mut r = registry().lock().unwrap();
    if !r.clusters.iter().any(|c| c == name) {
        r.clusters.push(name.to_string());
    }
}

fn register_tmp(dir: &Path) {
    registry().lock().unwrap().tmp = Some(dir.to_path_buf());
}

/// A child process in its own process group, stopped (TERM, then KILL) by `cleanup`.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path) -> Res<Proc> {
        if STOPPING.load(Ordering::SeqCst) {
            return Err("stopping".into());
        }
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd.stdout(out).stderr(err).process_group(0).spawn().map_err(|e| format!("starting {name}: {e}"))?;
        registry().lock().unwrap().pids.push(child.id());
        Ok(Proc { name: name.to_string(), child, log: log.to_path_buf() })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on a pid we started and have not reaped.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, sig);
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for exit up to `within`; the exit status (None if still running).
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                registry().lock().unwrap().pids.retain(|&p| p != self.pid());
                return Some(s);
            }
            if t.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// TERM, up to `grace`, then KILL.
    fn stop(&mut self, grace: Duration) {
        if !self.alive() {
            self.wait(Duration::ZERO);
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait(grace).is_none() {
            println!("  {} did not stop within {grace:?}; killing it", self.name);
            self.signal(libc::SIGKILL);
            self.wait(Duration::from_secs(5));
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// TERM every registered process group, KILL what is left after 5 s.
fn stop_all_processes() {
    let pids: Vec<u32> = registry().lock().unwrap().pids.drain(..).collect();
    if pids.is_empty() {
        return;
    }
    let alive = |pid: u32| unsafe { libc::kill(pid as libc::pid_t, 0) == 0 };
    for &pid in &pids {
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGTERM);
        }
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        // Reap what exited (children of ours), then check.
        unsafe {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        }
        if !pids.iter().any(|&p| alive(p)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in &pids {
        if alive(pid) {
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
    }
}

/// Stops every process, then every cluster (newest first, so a replica before its
/// primary), then removes the temp dir.
fn cleanup() {
    STOPPING.store(true, Ordering::SeqCst);
    stop_all_processes();
    let (clusters, tmp, root) = {
        let mut r = registry().lock().unwrap();
        (std::mem::take(&mut r.clusters), r.tmp.take(), r.root.clone())
    };
    if let Some(root) = root {
        for name in clusters.iter().rev() {
            let _ = lib_sh(&root, &format!("pg_setup >/dev/null; pg_stop_cluster {name}"));
        }
    }
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_dir_all(tmp);
    }
}

/// SIGINT/SIGTERM: stop everything we started, then exit 130.
fn install_signal_handler() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).unwrap();
            let mut term = signal(SignalKind::terminate()).unwrap();
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        });
        eprintln!("\ndrills: interrupted; stopping everything it started");
        cleanup();
        std::process::exit(130);
    });
}

// ---- small HTTP and tooling helpers ---------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// GET over HTTP/1.1 with `Connection: close`: status and body.
fn http_get(port: u16, path: &str, timeout: Duration) -> Res<(u16, String)> {
    bench::http::request(port, "GET", path, &[("Accept", "*/*")], "", timeout).map(|r| (r.status, r.text()))
}

fn wait_healthy(port: u16, proc: &mut Proc, within: Duration) -> Res<Duration> {
    let t = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(port, "/health", Duration::from_secs(2)) {
            return Ok(t.elapsed());
        }
        if !proc.alive() {
            return Err(format!("{} exited before /health answered:\n{}", proc.name, proc.log_tail(20)));
        }
        if t.elapsed() > within {
            return Err(format!("{} did not answer /health within {within:?}:\n{}", proc.name, proc.log_tail(20)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

/// The command, or install its Debian package (as root, or with sudo).
fn ensure_tool(cmd: &str, package: &str) -> Res<PathBuf> {
    if let Some(p) = which(cmd) {
        return Ok(p);
    }
    if !Path::new("/etc/debian_version").exists() || which("apt-get").is_none() {
        return Err(format!("{cmd} is not installed (install the {package} package)"));
    }
    println!("installing {package} (apt-get)");
    let root = unsafe { libc::geteuid() } == 0;
    let apt = |args: &[&str]| {
        let mut c = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive").stdin(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
    };
    if !apt(&["install", "-y", "-qq", "--no-install-recommends", package]) {
        apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", "--no-install-recommends", package]);
    }
    which(cmd).ok_or_else(|| format!("{cmd} is not installed and apt-get could not install {package}"))
}

/// What wrk printed, parsed.
#[derive(Default, Debug)]
struct WrkReport {
    requests: u64,
    rps: f64,
    non_2xx_3xx: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    p50: String,
    p99: String,
    max: String,
    raw: String,
}

impl WrkReport {
    fn parse(raw: String) -> WrkReport {
        let mut r = WrkReport { raw: raw.clone(), ..Default::default() };
        for line in raw.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.contains("requests in") {
                r.requests = words.first().and_then(|n| n.parse().ok()).unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("Requests/sec:") {
                r.rps = v.trim().parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
                r.non_2xx_3xx = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("Socket errors:") {
                for part in v.split(',') {
                    let mut it = part.split_whitespace();
                    let (k, n) = (it.next().unwrap_or(""), it.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                    match k {
                        "connect" => r.connect = n,
                        "read" => r.read = n,
                        "write" => r.write = n,
                        "timeout" => r.timeout = n,
                        _ => {}
                    }
                }
            } else if words.first() == Some(&"50%") {
                r.p50 = words.get(1).unwrap_or(&"").to_string();
            } else if words.first() == Some(&"99%") {
                r.p99 = words.get(1).unwrap_or(&"").to_string();
            } else if words.first() == Some(&"Latency") && r.max.is_empty() {
                r.max = words.get(3).unwrap_or(&"").to_string();
            }
        }
        r
    }

    fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }

    fn clean(&self) -> bool {
        self.requests > 0 && self.non_2xx_3xx == 0 && self.socket_errors() == 0
    }

    fn summary(&self) -> String {
        format!(
            "{} requests, {:.0} req/s, non-2xx/3xx {}, socket errors {} (connect {}, read {}, write {}, timeout {}), latency p50 {} p99 {} max {}",
            self.requests,
            self.rps,
            self.non_2xx_3xx,
            self.socket_errors(),
            self.connect,
            self.read,
            self.write,
            self.timeout,
            self.p50,
            self.p99,
            self.max
        )
    }
}

/// Starts wrk in a thread: `connections` connections for `secs` seconds over `paths` in
/// turn. Join the handle for the report.
fn start_wrk(env: &Env, port: u16, paths: &[String], connections: usize, secs: u64) -> Res<std::thread::JoinHandle<Res<WrkReport>>> {
    let wrk = ensure_tool("wrk", "wrk")?;
    let script = env.tmp.join(format!("paths-{port}.lua"));
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    std::fs::write(
        &script,
        format!(
            "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n",
            list.join(", ")
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(wrk);
    cmd.args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s"), "--timeout", "10s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().map_err(|e| format!("starting wrk: {e}"))?;
    let pid = child.id();
    registry().lock().unwrap().pids.push(pid);
    Ok(std::thread::spawn(move || {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        registry().lock().unwrap().pids.retain(|&p| p != pid);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(format!("wrk failed ({}): {text}", out.status));
        }
        Ok(WrkReport::parse(text))
    }))
}

fn sleep_until(start: Instant, at: Duration) {
    if let Some(d) = at.checked_sub(start.elapsed()) {
        std::thread::sleep(d);
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// ---- drill 1: worker-kill -------------------------------------------------------------

/// A minimal SMTP server: accepts everything, counts each message and its Message-ID.
/// A message counts only once the client has sent its final "." (like a real server,
/// which has not accepted a message the client dropped mid-DATA).
#[derive(Default)]
struct SmtpSink {
    total: AtomicUsize,
    ids: Mutex<HashMap<String, u32>>,
    /// The link token of each message, in arrival order (None: no link found).
    tokens: Mutex<Vec<(String, Option<String>)>>,
}

/// The token of the `/verify-email/{token}` link in the message's text part.
fn link_token(raw: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(raw)?;
    let text = msg.body_text(0)?.into_owned();
    let at = text.find("/verify-email/")? + "/verify-email/".len();
    let token: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    app::tokens::is_well_formed(&token).then_some(token)
}

impl SmtpSink {
    fn start() -> Res<(Arc<SmtpSink>, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().unwrap().port();
        let sink = Arc::new(SmtpSink::default());
        let s = sink.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = s.session(conn);
                });
            }
        });
        Ok((sink, port))
    }

    fn session(&self, conn: TcpStream) -> std::io::Result<()> {
        let mut out = conn.try_clone()?;
        let mut reader = BufReader::new(conn);
        out.write_all(b"220 drills-sink ESMTP\r\n")?;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => out.write_all(b"250-drills-sink\r\n250 8BITMIME\r\n")?,
                "DATA" => {
                    out.write_all(b"354 go ahead\r\n")?;
                    let mut message_id = None;
                    let mut in_headers = true;
                    let mut raw = Vec::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line)? == 0 {
                            return Ok(()); // dropped mid-message: not accepted
                        }
                        if line == ".\r\n" || line == ".\n" {
                            break;
                        }
                        raw.extend_from_slice(line.strip_prefix('.').unwrap_or(&line).as_bytes());
                        if in_headers {
                            if line.trim().is_empty() {
                                in_headers = false;
                            } else if line.to_ascii_lowercase().starts_with("message-id:") {
                                message_id = Some(line[11..].trim().to_string());
                            }
                        }
                    }
                    let id = message_id.unwrap_or_else(|| format!("<no-id-{}>", self.total.load(Ordering::SeqCst)));
                    *self.ids.lock().unwrap().entry(id.clone()).or_default() += 1;
                    self.tokens.lock().unwrap().push((id, link_token(&raw)));
                    self.total.fetch_add(1, Ordering::SeqCst);
                    out.write_all(b"250 accepted\r\n")?;
                }
                "QUIT" => {
                    out.write_all(b"221 bye\r\n")?;
                    return Ok(());
                }
                _ => out.write_all(b"250 ok\r\n")?,
            }
        }
    }

    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn distinct(&self) -> usize {
        self.ids.lock().unwrap().len()
    }
}

fn worker_kill(env: &Env, n: usize) -> Res<Outcome> {
    const NAME: &str = "worker-kill";
    env.fresh_database(MAIL_DB)?;
    let pool = env.pool(MAIL_DB)?;
    let t = Instant::now();
    env.rt
        .block_on(async {
            for batch in 0..n.div_ceil(100) {
                let mut tx = pool.begin().await?;
                for i in batch * 100..((batch + 1) * 100).min(n) {
                    let user = app::accounts::users::insert(
                        &mut tx,
                        &app::accounts::users::NewUser {
                            username: &format!("drill{i}"),
                            email: &format!("drill{i}@example.com"),
                            password_hash: "x",
                        },
                    )
                    .await?;
                    app::jobs::enqueue(&mut tx, &app::jobs::mail::SendVerificationEmail::new(user.id), None)
                        .await
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                }
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        })
        .map_err(|e| format!("enqueueing: {e}"))?;
    println!("enqueued {n} verification mails ({} users) in {}", n, secs(t.elapsed()));

    let (sink, smtp_port) = SmtpSink::start()?;
    let dir = env.tmp.join("worker-kill");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = dir.join("worker.log");
    let worker = |label: &str| {
        let mut c = env.app_cmd(&env.worker, &dir, &env.url(MAIL_DB));
        c.env("SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}")).env("BASE_URL", "http://quire.invalid").args(["--queues", "mail"]);
        Proc::spawn(label, c, &log)
    };

    let kill_at = n / 4;
    let start = Instant::now();
    let mut first = worker("worker #1")?;
    while sink.total() < kill_at {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("only {} mails after 60 s; worker log:\n{}", sink.total(), first.log_tail(20)));
        }
        if !first.alive() {
            return Err(format!("the worker exited:\n{}", first.log_tail(20)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // At a random moment, not right after the sink accepted a message (that would aim at
    // the few milliseconds between a message's acceptance and its run's commit).
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos() % 40).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(u64::from(jitter)));
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    first.wait(Duration::from_secs(5)).ok_or("the worker survived SIGKILL")?;
    let before_kill = killed - start;
    let at_kill = sink.total();
    let rate = at_kill as f64 / before_kill.as_secs_f64();
    // What the dead worker held (fetched or running, never finished): only the heartbeat
    // timeout gives these back.
    let held: Vec<String> = env
        .rt
        .block_on(sqlx::query_scalar("SELECT id::text FROM apalis.jobs WHERE status NOT IN ('Pending', 'Done')").fetch_all(&pool))
        .map_err(|e| e.to_string())?;
    println!(
        "SIGKILL after {at_kill} of {n} delivered ({} at {rate:.0} mails/s); the dead worker held {} jobs",
        secs(before_kill),
        held.len()
    );

    let mut second = worker("worker #2")?;
    let restarted = Instant::now();
    let mut backlog_done: Option<Duration> = None; // everything but the held jobs
    let mut recovered: Option<Duration> = None; // the held jobs too
    let mut done = 0i64;
    let deadline = Duration::from_secs(120);
    while restarted.elapsed() < deadline {
        let held_done: i64;
        (done, held_done) = env
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT count(*) FILTER (WHERE status = 'Done'),
                            count(*) FILTER (WHERE status = 'Done' AND id::text = ANY($1))
                       FROM apalis.jobs",
                )
                .bind(&held)
                .fetch_one(&pool),
            )
            .map_err(|e| e.to_string())?;
        if backlog_done.is_none() && done - held_done >= (n - held.len()) as i64 {
            backlog_done = Some(restarted.elapsed());
            println!(
                "  backlog (all but the held jobs) done {} after the restart; waiting for the held jobs to be re-queued",
                secs(restarted.elapsed())
            );
        }
        if done >= n as i64 && sink.total() >= n {
            recovered = Some(killed.elapsed());
            break;
        }
        if !second.alive() {
            return Err(format!("the restarted worker exited:\n{}", second.log_tail(20)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let drained = start.elapsed();
    // Late duplicates would show up now.
    std::thread::sleep(Duration::from_secs(1));
    let (sent_rows, multi_token, failed): (i64, i64, i64) = env
        .rt
        .block_on(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM sent_emails),
                        (SELECT count(*) FROM (SELECT user_id FROM user_tokens GROUP BY user_id HAVING count(*) > 1) d),
                        (SELECT count(*) FROM apalis.jobs WHERE status NOT IN ('Pending', 'Done', 'Queued', 'Running'))",
            )
            .fetch_one(&pool),
        )
        .map_err(|e| e.to_string())?;
    // Does every delivered link work? A link's token must be in user_tokens (a run that
    // sent and then died before its commit leaves a link whose token was rolled back).
    let hashes: Vec<Vec<u8>> = env
        .rt
        .block_on(sqlx::query_scalar("SELECT token_hash FROM user_tokens").fetch_all(&pool))
        .map_err(|e| e.to_string())?;
    let hashes: std::collections::HashSet<Vec<u8>> = hashes.into_iter().collect();
    let (mut dead_links, mut no_link) = (Vec::new(), 0usize);
    for (id, token) in sink.tokens.lock().unwrap().iter() {
        match token {
            Some(t) if !hashes.contains(&app::tokens::hash_token(t)) => dead_links.push(id.clone()),
            Some(_) => {}
            None => no_link += 1,
        }
    }
    let (total, distinct) = (sink.total(), sink.distinct());
    let dups: Vec<String> = sink.ids.lock().unwrap().iter().filter(|(_, c)| **c > 1).map(|(id, c)| format!("{id} ×{c}")).take(5).collect();

    second.stop(Duration::from_secs(35));
    env.rt.block_on(pool.close());

    // SMTP is at-least-once: a kill after the server's 250 and before the job's commit
    // sends again. Our mails make that copy harmless — same Message-ID, same working link
    // (the token derives from the job key) — so a receiver deduplicating by Message-ID gets
    // each mail once. Pass: every mail delivered, every copy's link valid; identical
    // second copies are reported, not failed.
    let ok = total >= n
        && distinct == n
        && sent_rows == n as i64
        && multi_token == 0
        && done == n as i64
        && failed == 0
        && dead_links.is_empty()
        && no_link == 0;
    let mut notes = Vec::new();
    if !dups.is_empty() {
        notes.push(format!(
            "identical second copies (same Message-ID, same valid link): {} — SIGKILL landed after the SMTP server accepted the message (250) but before the job's transaction committed, so the retry sent again",
            dups.join(", ")
        ));
    }
    if !dead_links.is_empty() {
        notes.push(format!(
            "{} delivered messages carry a link whose token is not in user_tokens (rolled back with the killed run), e.g. {}: that copy's link says \"no longer valid\"",
            dead_links.len(),
            dead_links[0]
        ));
    }
    if no_link > 0 {
        notes.push(format!("{no_link} messages without a readable /verify-email/ link"));
    }
    if recovered.is_none() {
        notes.push(format!("not drained after {}: {done} of {n} jobs done, {total} messages", secs(deadline)));
    }
    if failed > 0 {
        notes.push(format!("{failed} jobs ended Failed/Killed"));
    }
    let figures = format!(
        "{n} mails: killed at {at_kill} ({} in, {rate:.0}/s), {} jobs held by the dead worker; delivered {total} ({distinct} distinct, {} dead links), sent_emails {sent_rows}, users with 2 tokens {multi_token}; backlog done {} after restart; recovered {} after the kill; drained in {}",
        secs(before_kill),
        held.len(),
        dead_links.len(),
        backlog_done.map(secs).unwrap_or_else(|| "—".into()),
        recovered.map(secs).unwrap_or_else(|| "never".into()),
        secs(drained)
    );
    Ok(Outcome::new(NAME, if ok { Verdict::Pass } else { Verdict::Fail }, figures, notes))
}

// ---- drills 2 and 4 share a seeded database -------------------------------------------

static WEB_DB_READY: OnceLock<Res<String>> = OnceLock::new();

/// `drills_web`, migrated and seeded (demo authors and stories); the path of a published
/// story page.
fn web_database(env: &Env) -> Res<String> {
    WEB_DB_READY
        .get_or_init(|| {
            env.fresh_database(WEB_DB)?;
            let dir = env.tmp.join(WEB_DB);
            println!("seeding {WEB_DB} (web seed)");
            // `web seed` refuses to run in production (demo accounts with known
            // passwords), so this one command runs as development.
            let status =
                env.app_cmd(&env.web, &dir, &env.url(WEB_DB)).env("APP_ENV", "development").arg("seed").status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("web seed failed ({status})"));
            }
            let pool = env.pool(WEB_DB)?;
            let id: Option<i64> = env
                .rt
                .block_on(sqlx::query_scalar("SELECT id FROM stories WHERE status = 'published' ORDER BY id LIMIT 1").fetch_optional(&pool))
                .map_err(|e| e.to_string())?;
            env.rt.block_on(pool.close());
            Ok(format!("/s/{}", id.ok_or("the seed made no published story")?))
        })
        .clone()
}

fn web_proc(env: &Env, label: &str, port: u16, extra: &[(&str, String)]) -> Res<Proc> {
    let dir = env.tmp.join(WEB_DB);
    let mut c = env.app_cmd(&env.web, &dir, &env.url(WEB_DB));
    c.env("PORT", port.to_string()).env("BASE_URL", format!("http://127.0.0.1:{port}")).arg("serve");
    for (k, v) in extra {
        c.env(k, v);
    }
    Proc::spawn(label, c, &dir.join(format!("{label}.log").replace(' ', "-")))
}

// ---- drill 2: web-sigterm -------------------------------------------------------------

fn web_sigterm(env: &Env) -> Res<Outcome> {
    const NAME: &str = "web-sigterm";
    let caddy = ensure_tool("caddy", "caddy")?;
    ensure_tool("wrk", "wrk")?;
    let story = web_database(env)?;
    let (port_a, port_b, port_lb) = (free_port(), free_port(), free_port());
    let mut a = web_proc(env, "web-a", port_a, &[])?;
    let mut b = web_proc(env, "web-b", port_b, &[])?;
    wait_healthy(port_a, &mut a, Duration::from_secs(30))?;
    wait_healthy(port_b, &mut b, Duration::from_secs(30))?;

    let dir = env.tmp.join("caddy");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let caddyfile = dir.join("Caddyfile");
    let config = format!(
        r#"{{
	admin off
	auto_https off
	log {{
		level WARN
	}}
}}

http://127.0.0.1:{port_lb} {{
	reverse_proxy 127.0.0.1:{port_a} 127.0.0.1:{port_b} {{
		lb_policy round_robin
		# A request that fails on one upstream is retried on the other (GETs, or any
		# request that could not connect) for up to 5 s.
		lb_try_duration 5s
		lb_try_interval 100ms
		# Active checks: out of rotation once /health fails, back once it answers 200.
		health_uri /health
		health_interval 1s
		health_timeout 2s
		health_status 200
		# Passive checks: one failed request takes an upstream out for 10 s.
		fail_duration 10s
		max_fails 1
		unhealthy_status 502 503 504
	}}
}}
"#
    );
    std::fs::write(&caddyfile, &config).map_err(|e| e.to_string())?;
    let mut c = Command::new(&caddy);
    c.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .current_dir(&dir)
        .stdin(Stdio::null());
    let mut lb = Proc::spawn("caddy", c, &dir.join("caddy.log"))?;
    wait_healthy(port_lb, &mut lb, Duration::from_secs(20))?;
    // Let the first active checks see both upstreams healthy.
    std::thread::sleep(Duration::from_secs(2));
    println!("web-a :{port_a}, web-b :{port_b}, caddy :{port_lb}; wrk 16 s on / and {story}; SIGTERM web-a at 5 s, start it again at 9 s");

    let paths = vec!["/".to_string(), story.clone()];
    let t0 = Instant::now();
    let wrk = start_wrk(env, port_lb, &paths, 16, 16)?;
    sleep_until(t0, Duration::from_secs(5));
    a.signal(libc::SIGTERM);
    let term = Instant::now();
    let exit = a.wait(Duration::from_secs(30));
    let shutdown = term.elapsed();
    let exit_text = match exit {
        Some(s) => format!("exited {} after {}", s.code().map(|c| c.to_string()).unwrap_or_else(|| format!("{s}")), secs(shutdown)),
        None => "still running after 30 s".into(),
    };
    println!("  SIGTERM web-a: {exit_text}");
    sleep_until(t0, Duration::from_secs(9));
    let mut a2 = web_proc(env, "web-a", port_a, &[])?;
    let up = wait_healthy(port_a, &mut a2, Duration::from_secs(30));
    let restart_text = match &up {
        Ok(d) => format!("started again, /health 200 after {}", secs(*d)),
        Err(e) => format!("restart failed: {e}"),
    };
    println!("  web-a {restart_text}");
    let report = wrk.join().map_err(|_| "wrk thread panicked")??;
    println!("  wrk: {}", report.summary());

    // Caddy's own account of upstream errors (its log is JSON lines at WARN and above).
    let caddy_log = std::fs::read_to_string(dir.join("caddy.log")).unwrap_or_default();
    let errors: Vec<&str> = caddy_log.lines().filter(|l| l.contains("\"level\":\"error\"")).collect();
    let mut notes = Vec::new();
    if !errors.is_empty() {
        println!("  caddy logged {} errors; first: {}", errors.len(), errors[0]);
        notes.push(format!("caddy logged {} proxy errors, e.g. {}", errors.len(), errors[0].chars().take(300).collect::<String>()));
    }
    if exit.is_none_or(|s| !s.success()) {
        notes.push(format!("web-a after SIGTERM: {exit_text}"));
    }
    if up.is_err() {
        notes.push(restart_text.clone());
    }
    if !report.clean() {
        notes.push(format!("wrk output:\n{}", report.raw.trim()));
    }
    lb.stop(Duration::from_secs(5));
    a2.stop(Duration::from_secs(30));
    b.stop(Duration::from_secs(30));
    let ok = report.clean() && exit.is_some_and(|s| s.success()) && up.is_ok();
    let figures = format!(
        "{:.0} req/s, {} requests, non-2xx/3xx {}, socket errors {}; web-a {exit_text}; {restart_text}",
        report.rps,
        report.requests,
        report.non_2xx_3xx,
        report.socket_errors()
    );
    Ok(Outcome::new(NAME, if ok { Verdict::Pass } else { Verdict::Fail }, figures, notes))
}

// ---- drill 5: rolling-restart ---------------------------------------------------------

/// `bin/stack` as a child; stopped with SIGTERM and time to stop its PostgreSQL (the
/// general cleanup would SIGKILL it after 5 s and leave the clusters running).
struct Stack(Proc);

impl Drop for Stack {
    fn drop(&mut self) {
        self.0.stop(Duration::from_secs(90));
    }
}

/// Runs `bin/stack restart KIND`: how long it took, and its output.
fn stack_restart(env: &Env, kind: &str) -> (Duration, Res<String>) {
    let t = Instant::now();
    let out = Command::new(env.root.join("bin/stack"))
        .args(["restart", kind])
        .current_dir(&env.root)
        .stdin(Stdio::null())
        .process_group(0)
        .output();
    let took = t.elapsed();
    let result = match out {
        Ok(o) => {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            if o.status.success() { Ok(text) } else { Err(format!("bin/stack restart {kind} failed ({}): {}", o.status, text.trim())) }
        }
        Err(e) => Err(format!("running bin/stack restart {kind}: {e}")),
    };
    (took, result)
}

/// One `KEY='value'` of var/stack/env (bin/stack writes every value single-quoted).
fn stack_env(root: &Path, key: &str) -> Res<String> {
    let text = std::fs::read_to_string(root.join("var/stack/env")).map_err(|e| format!("var/stack/env: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('\'').to_string())
        .ok_or_else(|| format!("{key} is not in var/stack/env"))
}

/// Messages in the sink's Maildir (var/stack/mail) addressed to `To: PREFIX…`: count per
/// recipient.
fn maildir_recipients(root: &Path, prefix: &str) -> HashMap<String, u32> {
    let mut seen = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(root.join("var/stack/mail").join(sub)) else { continue };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            let head = text.split("\n\n").next().unwrap_or("");
            if let Some(to) = head.lines().find_map(|l| l.strip_prefix("To: ")) {
                // `addr`, `<addr>` or `Name <addr>`.
                let to = match (to.find('<'), to.rfind('>')) {
                    (Some(a), Some(b)) if a < b => to[a + 1..b].to_string(),
                    _ => to.trim().to_string(),
                };
                if to.starts_with(prefix) {
                    *seen.entry(to).or_default() += 1;
                }
            }
        }
    }
    seen
}

fn rolling_restart(env: &Env) -> Res<Outcome> {
    const NAME: &str = "rolling-restart";
    const LOAD_SECS: u64 = 45;
    ensure_tool("wrk", "wrk")?;
    let port = free_port();
    let dir = env.tmp.join(NAME);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = dir.join("stack.log");
    let mut c = Command::new(env.root.join("bin/stack"));
    // The release binaries were just built (Env::prepare); bin/stack builds them otherwise.
    c.args(["--web", "2", "--workers", "2", "--seed", "--no-build"])
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .current_dir(&env.root)
        .stdin(Stdio::null());
    println!("starting bin/stack --web 2 --workers 2 --seed on :{port} (log {})", log.display());
    let mut stack = Stack(Proc::spawn("bin/stack", c, &log)?);
    // First run: installs Caddy, honcho and aiosmtpd, makes both clusters.
    let up = wait_healthy(port, &mut stack.0, Duration::from_secs(300))?;
    println!("  /health through Caddy after {}", secs(up));

    let db_url = stack_env(&env.root, "DATABASE_URL")?;
    let pool = env.rt.block_on(PgPoolOptions::new().max_connections(2).connect(&db_url)).map_err(|e| format!("stack database: {e}"))?;
    let story: i64 = env
        .rt
        .block_on(sqlx::query_scalar("SELECT id FROM stories WHERE status = 'published' ORDER BY id LIMIT 1").fetch_optional(&pool))
        .map_err(|e| e.to_string())?
        .ok_or("the seed made no published story")?;
    let paths = vec!["/".to_string(), format!("/s/{story}"), format!("/s/{story}/c/1")];
    // Let Caddy's first active checks see every web process healthy.
    std::thread::sleep(Duration::from_secs(2));
    println!("wrk {LOAD_SECS} s, 8 connections on {paths:?} through Caddy; restart web at 3 s, then worker (mails enqueued meanwhile)");

    let t0 = Instant::now();
    let wrk = start_wrk(env, port, &paths, 8, LOAD_SECS)?;
    sleep_until(t0, Duration::from_secs(3));
    let (web_took, web_out) = stack_restart(env, "web");
    match &web_out {
        Ok(out) => print!("{}", out.lines().map(|l| format!("  {l}\n")).collect::<String>()),
        Err(e) => println!("  {e}"),
    }

    // Verification mails enqueued as signup does, all through the worker restart: each
    // must reach the sink exactly once.
    let tag = format!("rr{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() % 1_000_000).unwrap_or(0));
    let enqueueing = Arc::new(AtomicBool::new(true));
    let enqueued = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (pool, tag, on, count) = (pool.clone(), tag.clone(), enqueueing.clone(), enqueued.clone());
        let handle = env.rt.handle().clone();
        std::thread::spawn(move || {
            handle.block_on(async move {
                let mut i = 0usize;
                // Until told to stop, and at least a few batches.
                while on.load(Ordering::SeqCst) || i < 100 {
                    let mut tx = pool.begin().await?;
                    for _ in 0..10 {
                        let user = app::accounts::users::insert(
                            &mut tx,
                            &app::accounts::users::NewUser {
                                username: &format!("{tag}u{i}"),
                                email: &format!("{tag}u{i}@example.com"),
                                password_hash: "x",
                            },
                        )
                        .await?;
                        app::jobs::enqueue(&mut tx, &app::jobs::mail::SendVerificationEmail::new(user.id), None)
                            .await
                            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                        i += 1;
                    }
                    tx.commit().await?;
                    count.store(i, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (worker_took, worker_out) = stack_restart(env, "worker");
    match &worker_out {
        Ok(out) => print!("{}", out.lines().map(|l| format!("  {l}\n")).collect::<String>()),
        Err(e) => println!("  {e}"),
    }
    std::thread::sleep(Duration::from_millis(500));
    enqueueing.store(false, Ordering::SeqCst);
    let produced = producer.join().map_err(|_| "enqueue thread panicked")?.map_err(|e| format!("enqueueing: {e}"));
    let n = enqueued.load(Ordering::SeqCst);
    let restarts_done = t0.elapsed();
    println!("  restarts done at {} into the load; {n} mails enqueued during the worker restart", secs(restarts_done));
    let report = wrk.join().map_err(|_| "wrk thread panicked")??;
    println!("  wrk: {}", report.summary());

    // Every mail delivered, once: wait for the queue to drain, then count.
    let prefix = format!("{tag}u");
    let drain = Instant::now();
    let mut got = maildir_recipients(&env.root, &prefix);
    while got.len() < n && drain.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        got = maildir_recipients(&env.root, &prefix);
    }
    // A duplicate would land after the first copy: give one more moment.
    std::thread::sleep(Duration::from_secs(1));
    got = maildir_recipients(&env.root, &prefix);
    let delivered: u32 = got.values().sum();
    let twice = got.values().filter(|&&c| c > 1).count();
    let sent_rows: i64 = env
        .rt
        .block_on(
            sqlx::query_scalar("SELECT count(*) FROM sent_emails WHERE recipient LIKE $1")
                .bind(format!("%{prefix}%"))
                .fetch_one(&pool),
        )
        .unwrap_or(-1);
    env.rt.block_on(pool.close());
    println!("  mail: {n} enqueued, {} recipients reached, {delivered} messages, {twice} twice, sent_emails {sent_rows}", got.len());

    let mut notes = Vec::new();
    for r in [&web_out, &worker_out] {
        if let Err(e) = r {
            notes.push(e.clone());
        }
    }
    if let Err(e) = &produced {
        notes.push(e.clone());
    }
    if restarts_done > Duration::from_secs(LOAD_SECS) {
        notes.push(format!("the restarts took longer than the {LOAD_SECS} s of load"));
    }
    if !report.clean() {
        notes.push(format!("wrk output:\n{}", report.raw.trim()));
    }
    let mail_ok = n > 0 && got.len() == n && twice == 0 && sent_rows == n as i64;
    if !mail_ok {
        notes.push(format!("mail: {n} enqueued, {} reached, {twice} twice, sent_emails {sent_rows}", got.len()));
    }
    drop(stack);
    let ok = report.clean() && web_out.is_ok() && worker_out.is_ok() && produced.is_ok() && mail_ok;
    let figures = format!(
        "{} requests ({:.0} req/s), non-2xx/3xx {}, socket errors {}, latency p50 {} p99 {} max {}; restart web (2 processes) {}, restart worker (2) {}; {n} mails during the worker restart: {delivered} delivered, {twice} twice",
        report.requests,
        report.rps,
        report.non_2xx_3xx,
        report.socket_errors(),
        report.p50,
        report.p99,
        report.max,
        secs(web_took),
        secs(worker_took)
    );
    Ok(Outcome::new(NAME, if ok { Verdict::Pass } else { Verdict::Fail }, figures, notes))
}

// ---- drill 3: redis-stop --------------------------------------------------------------

/// A request over HTTP/1.1 with `Connection: close`: status, headers, body.
fn http_req(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str, timeout: Duration) -> Res<(u16, Vec<(String, String)>, String)> {
    let mut all = vec![("Accept", "*/*")];
    all.extend_from_slice(headers);
    bench::http::request(port, method, path, &all, body, timeout).map(|r| {
        let text = r.text();
        (r.status, r.headers, text)
    })
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(500)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// A private redis-server on `port` (no persistence), as the drill's child.
fn redis_server(env: &Env, port: u16) -> Res<Proc> {
    let dir = env.tmp.join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut c = Command::new("redis-server");
    c.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null());
    let mut p = Proc::spawn("redis-server", c, &dir.join("redis.log"))?;
    let t = Instant::now();
    while !redis_ping(port) {
        if !p.alive() || t.elapsed() > Duration::from_secs(10) {
            return Err(format!("redis-server on :{port} did not answer PING:\n{}", p.log_tail(10)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(p)
}

/// `/health`: (overall status, `checks.redis.status`, the redis check in compact JSON).
fn redis_health(port: u16) -> (String, String, String) {
    match http_get(port, "/health", Duration::from_secs(5)) {
        Ok((code, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => {
                let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("?");
                let redis = v.pointer("/checks/redis").cloned().unwrap_or(serde_json::Value::Null);
                let rs = redis.get("status").and_then(|s| s.as_str()).unwrap_or("?").to_string();
                (format!("{code} {status}"), rs, redis.to_string())
            }
            Err(_) => (format!("{code} (not JSON)"), "?".into(), body.chars().take(120).collect()),
        },
        Err(e) => (format!("error: {e}"), "?".into(), String::new()),
    }
}

/// The Redis, cache-fallback and rate-limit-fallback lines of `/metrics`.
fn redis_metrics(port: u16) -> Res<Vec<String>> {
    metrics_where(port, |l| {
        (l.starts_with("quire_redis_") && !l.starts_with("quire_redis_call_seconds_bucket"))
            || (l.starts_with("quire_cache_") && l.contains("fallback"))
            || l.starts_with("quire_ratelimit_fallbacks_total")
            || l.starts_with("quire_cache_invalidations_total")
    })
}

/// The sample lines of `/metrics` (comments dropped) that `keep` wants.
fn metrics_where(port: u16, keep: impl Fn(&str) -> bool) -> Res<Vec<String>> {
    let (code, body) = http_get(port, "/metrics", Duration::from_secs(5))?;
    if code != 200 {
        return Err(format!("/metrics answered {code}"));
    }
    Ok(body.lines().filter(|l| !l.starts_with('#')).filter(|l| keep(l)).map(str::to_string).collect())
}

/// Counts of the rate-limited POST load, by outcome.
#[derive(Default, Debug)]
struct PostCounts {
    ok: u64,
    limited: u64,
    server_errors: u64,
    other: u64,
    socket_errors: u64,
    first_bad: Option<String>,
}

/// Redis stopped under load: two `web serve` and a worker with `REDIS_URL`, wrk on each
/// web process (cached anonymous pages: home, a story, its first chapter) and a client
/// POSTing the rate-limited forgot-password form (an unknown address: no mail) to both,
/// 20 s; redis-server is killed (SIGKILL) at 5 s and started again on the same port at
/// 12 s. PASS when no request got a 5xx or a socket error (429 is the limit working),
/// /health said `degraded` with `checks.redis` `down` during the outage and `ok` after,
/// and both processes report `quire_redis_up 1` again by themselves.
fn redis_stop(env: &Env) -> Res<Outcome> {
    const NAME: &str = "redis-stop";
    const SECS: u64 = 20;
    ensure_tool("wrk", "wrk")?;
    ensure_tool("redis-server", "redis-server")?;
    let story = web_database(env)?;
    let rport = free_port();
    let mut redis = redis_server(env, rport)?;
    let url = format!("redis://127.0.0.1:{rport}/");
    let (pa, pb) = (free_port(), free_port());
    let mut a = web_proc(env, "web-redis-a", pa, &[("REDIS_URL", url.clone())])?;
    let mut b = web_proc(env, "web-redis-b", pb, &[("REDIS_URL", url.clone())])?;
    let dir = env.tmp.join(WEB_DB);
    let mut wc = env.app_cmd(&env.worker, &dir, &env.url(WEB_DB));
    wc.env("REDIS_URL", &url);
    let mut worker = Proc::spawn("worker", wc, &dir.join("worker-redis.log"))?;
    wait_healthy(pa, &mut a, Duration::from_secs(30))?;
    wait_healthy(pb, &mut b, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    let ports = [pa, pb];
    let show = |when: &str| -> Vec<(String, String)> {
        ports
            .iter()
            .map(|&p| {
                let (status, rs, json) = redis_health(p);
                println!("  /health {when} :{p}: {status}, checks.redis {json}");
                (status, rs)
            })
            .collect()
    };
    let show_metrics = |when: &str| -> Vec<Res<Vec<String>>> {
        ports
            .iter()
            .map(|&p| {
                let m = redis_metrics(p);
                match &m {
                    Ok(lines) => println!("  /metrics {when} :{p}:\n    {}", lines.join("\n    ")),
                    Err(e) => println!("  /metrics {when} :{p}: {e}"),
                }
                m
            })
            .collect()
    };
    let before = show("before");
    let metrics_before = show_metrics("before");

    // The forgot-password form: an anonymous cookie and its CSRF token from each process.
    let mut forms = Vec::new();
    for &p in &ports {
        let (code, headers, body) = http_req(p, "GET", "/password/forgot", &[], "", Duration::from_secs(5))?;
        let cookie = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next())
            .find(|c| c.starts_with("quire_anon="))
            .map(str::to_string);
        let csrf = body.split("name=\"csrf_token\" value=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
        match (code, cookie, csrf) {
            (200, Some(c), Some(t)) => forms.push((p, c, t)),
            (code, ..) => return Err(format!("GET /password/forgot on :{p} answered {code} without a quire_anon cookie or a csrf_token")),
        }
    }

    let pages = vec!["/".to_string(), story.clone(), format!("{story}/c/1")];
    println!("web :{pa} and :{pb} with REDIS_URL {url}; wrk {SECS} s on each (/, {story}, {story}/c/1) and POST /password/forgot to both; kill redis-server at 5 s, start it at 12 s");
    let t0 = Instant::now();
    let wrk_a = start_wrk(env, pa, &pages, 8, SECS)?;
    let wrk_b = start_wrk(env, pb, &pages, 8, SECS)?;
    let posts = Arc::new(Mutex::new(PostCounts::default()));
    let end = t0 + Duration::from_secs(SECS);
    let posters: Vec<_> = forms
        .into_iter()
        .map(|(p, cookie, csrf)| {
            let posts = posts.clone();
            std::thread::spawn(move || {
                let body = format!("csrf_token={csrf}&email=nobody-redis-drill%40quire.invalid");
                while Instant::now() < end && !STOPPING.load(Ordering::SeqCst) {
                    let r = http_req(p, "POST", "/password/forgot", &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &cookie)], &body, Duration::from_secs(10));
                    let mut c = posts.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok((s, _, _)) if s < 400 => c.ok += 1,
                        Ok((429, _, _)) => c.limited += 1,
                        Ok((s, _, body)) => {
                            if s >= 500 { c.server_errors += 1 } else { c.other += 1 }
                            c.first_bad.get_or_insert_with(|| format!(":{p} {s}: {}", body.chars().take(200).collect::<String>()));
                        }
                        Err(e) => {
                            c.socket_errors += 1;
                            c.first_bad.get_or_insert_with(|| format!(":{p}: {e}"));
                        }
                    }
                    drop(c);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    sleep_until(t0, Duration::from_secs(5));
    redis.signal(libc::SIGKILL);
    redis.wait(Duration::from_secs(5));
    let killed = Instant::now();
    println!("  redis-server killed (SIGKILL) at {}", secs(t0.elapsed()));
    // How long until /health says so; what it and /metrics say meanwhile.
    let mut noticed: Option<Duration> = None;
    while t0.elapsed() < Duration::from_secs(11) {
        if ports.iter().all(|&p| redis_health(p).1 == "down") {
            noticed = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = show("during");
    sleep_until(t0, Duration::from_secs(11));
    let metrics_during = show_metrics("during");
    sleep_until(t0, Duration::from_secs(12));
    let mut redis2 = redis_server(env, rport)?;
    let started = Instant::now();
    println!("  redis-server started again on :{rport} at {}", secs(t0.elapsed()));
    // Reconnected by itself: /health ok and quire_redis_up 1 on both, within 30 s.
    let mut back: Option<Duration> = None;
    while started.elapsed() < Duration::from_secs(30) {
        let up = ports.iter().all(|&p| redis_health(p).1 == "ok" && metric(&redis_metrics(p), "quire_redis_up") == Some(1.0));
        if up {
            back = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let wa = wrk_a.join().map_err(|_| "wrk thread panicked")??;
    let wb = wrk_b.join().map_err(|_| "wrk thread panicked")??;
    for p in posters {
        let _ = p.join();
    }
    println!("  wrk :{pa}: {}", wa.summary());
    println!("  wrk :{pb}: {}", wb.summary());
    let post = std::mem::take(&mut *posts.lock().unwrap_or_else(|e| e.into_inner()));
    println!("  POST /password/forgot: {} answered 2xx/3xx, {} 429, {} 5xx, {} other 4xx, {} socket errors", post.ok, post.limited, post.server_errors, post.other, post.socket_errors);
    let after = show("after");
    let metrics_after = show_metrics("after");
    let alive = a.alive() && b.alive();
    let web_errors: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|p| std::fs::read_to_string(&p.log).unwrap_or_default().lines().filter(|l| l.contains("ERROR")).take(2).map(|l| l.chars().take(300).collect::<String>()).collect::<Vec<_>>())
        .collect();
    a.stop(Duration::from_secs(30));
    b.stop(Duration::from_secs(30));
    worker.stop(Duration::from_secs(35));
    redis2.stop(Duration::from_secs(5));

    let delta = |name: &str| -> f64 {
        (0..2).map(|i| metric(&metrics_after[i], name).unwrap_or(0.0) - metric(&metrics_before[i], name).unwrap_or(0.0)).sum()
    };
    let fallbacks: f64 = (0..2)
        .map(|i| {
            let sum = |m: &Res<Vec<String>>| -> f64 {
                m.as_ref().map(|l| l.iter().filter(|l| l.starts_with("quire_cache_fallbacks_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()).unwrap_or(0.0)
            };
            sum(&metrics_after[i]) - sum(&metrics_before[i])
        })
        .sum();
    let up_during: Vec<Option<f64>> = metrics_during.iter().map(|m| metric(m, "quire_redis_up")).collect();
    let up_after: Vec<Option<f64>> = metrics_after.iter().map(|m| metric(m, "quire_redis_up")).collect();

    let ok_before = before.iter().all(|(s, r)| s == "200 ok" && r == "ok");
    let ok_during = during.iter().all(|(s, r)| s == "200 degraded" && r == "down");
    // Reconnected by itself: both processes saw Redis ok with the breaker closed
    // (`quire_redis_up 1`) after the restart (`back`), and /health says ok at the end.
    // The breaker's state at the end is printed, not judged: a single slow call (5 ms
    // deadline) opens it, and only traffic probes it closed again.
    let ok_after = back.is_some() && after.iter().all(|(s, r)| s == "200 ok" && r == "ok");
    let no_5xx = wa.clean() && wb.clean() && post.server_errors == 0 && post.socket_errors == 0 && post.other == 0 && post.ok + post.limited > 0;
    let mut notes = Vec::new();
    if !ok_before {
        notes.push(format!("/health before the stop was not ok with Redis ok: {before:?}"));
    }
    if !ok_during {
        notes.push(format!("/health during the outage: {during:?} (expected 200 degraded, checks.redis down)"));
    }
    if !ok_after {
        notes.push(format!("after Redis came back: /health {after:?}, quire_redis_up {up_after:?}, both up again: {}", back.map(secs).unwrap_or_else(|| "not within 30 s".into())));
    } else if up_after.iter().any(|u| *u != Some(1.0)) {
        notes.push(format!(
            "at the end (no load) quire_redis_up is {up_after:?} although Redis answers /health's PING: the breaker opened again after the restart (a call over its deadline) and, with no traffic, nothing probes it closed"
        ));
    }
    if let Some(bad) = &post.first_bad {
        notes.push(format!("first bad POST answer: {bad}"));
    }
    if !web_errors.is_empty() {
        notes.push(format!("web logged errors, e.g. {}", web_errors.join(" | ")));
    }
    for (p, r) in [(pa, &wa), (pb, &wb)] {
        if !r.clean() {
            notes.push(format!("wrk output (:{p}):\n{}", r.raw.trim()));
        }
    }
    let pass = no_5xx && ok_before && ok_during && ok_after && alive;
    let figures = format!(
        "GET {:.0} + {:.0} req/s, {} requests, non-2xx/3xx {}, socket errors {}, p99 {} / {}; POST forgot {} ok, {} 429, {} 5xx; /health during [{}] after [{}]; down noticed {}, reconnected {} after the restart (quire_redis_up during {:?}, after {:?}); during the drill: cache fallbacks {fallbacks:.0}, rate-limit fallbacks {:.0}, Redis calls failed {:.0}, timed out {:.0}, skipped (breaker open) {:.0}, reconnects {:.0}",
        wa.rps,
        wb.rps,
        wa.requests + wb.requests,
        wa.non_2xx_3xx + wb.non_2xx_3xx,
        wa.socket_errors() + wb.socket_errors(),
        wa.p99,
        wb.p99,
        post.ok,
        post.limited,
        post.server_errors,
        during.iter().map(|(s, r)| format!("{s}, redis {r}")).collect::<Vec<_>>().join("; "),
        after.iter().map(|(s, r)| format!("{s}, redis {r}")).collect::<Vec<_>>().join("; "),
        noticed.map(secs).unwrap_or_else(|| "never".into()),
        back.map(secs).unwrap_or_else(|| "never (30 s)".into()),
        up_during,
        up_after,
        delta("quire_ratelimit_fallbacks_total"),
        delta("quire_redis_calls_total{result=\"error\"}"),
        delta("quire_redis_calls_total{result=\"timeout\"}"),
        delta("quire_redis_calls_total{result=\"skipped\"}"),
        delta("quire_redis_reconnects_total"),
    );
    Ok(Outcome::new(NAME, if pass { Verdict::Pass } else { Verdict::Fail }, figures, notes))
}

// ---- drill 4: replica-stop ------------------------------------------------------------

/// `/health`'s status and its `checks.replicas`: in full (compact JSON) for the log, and
/// brief for the table ("degraded: replica-1 down, out of rotation"), or why not.
fn health_state(port: u16) -> (String, String) {
    match http_get(port, "/health", Duration::from_secs(5)) {
        Ok((code, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => {
                let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("?").to_string();
                let Some(replicas) = v.pointer("/checks/replicas") else {
                    return (format!("{code} {status} (no checks.replicas)"), format!("{code} {status}"));
                };
                let list: Vec<&serde_json::Value> = match replicas {
                    serde_json::Value::Array(a) => a.iter().collect(),
                    serde_json::Value::Object(m) if m.contains_key("status") => vec![replicas],
                    serde_json::Value::Object(m) => m.values().collect(),
                    _ => vec![],
                };
                let brief: Vec<String> = list
                    .iter()
                    .map(|r| {
                        let field = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
                        let rotation = match r.get("in_rotation").and_then(|x| x.as_bool()) {
                            Some(true) => ", in rotation",
                            Some(false) => ", out of rotation",
                            None => "",
                        };
                        format!("{} {}{rotation}", field("name"), field("status"))
                    })
                    .collect();
                (format!("{code} {status} replicas={replicas}"), format!("{code} {status}: {}", brief.join("; ")))
            }
            Err(_) => {
                let t = format!("{code} (not JSON) {}", body.chars().take(120).collect::<String>());
                (t.clone(), t)
            }
        },
        Err(e) => (format!("error: {e}"), format!("error: {e}")),
    }
}

/// One Prometheus sample's value by its full name with labels, e.g.
/// `quire_db_queries_total{pool="primary"}`.
fn metric(lines: &Res<Vec<String>>, name: &str) -> Option<f64> {
    lines.as_ref().ok()?.iter().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

fn has_replicas_check(port: u16) -> bool {
    http_get(port, "/health", Duration::from_secs(5))
        .ok()
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.pointer("/checks/replicas").is_some())
}

/// Every `status` under `checks.replicas` says "ok" (whatever its shape: one object, a
/// list, or an object per replica). None when /health has no such check.
fn replicas_ok(port: u16) -> Option<bool> {
    fn statuses<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("status", serde_json::Value::String(s)) => out.push(s),
                        _ => statuses(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| statuses(x, out)),
            _ => {}
        }
    }
    let (_, body) = http_get(port, "/health", Duration::from_secs(5)).ok()?;
    let v = serde_json::from_str::<serde_json::Value>(&body).ok()?;
    let replicas = v.pointer("/checks/replicas")?;
    let mut all = Vec::new();
    statuses(replicas, &mut all);
    Some(!all.is_empty() && all.iter().all(|s| *s == "ok"))
}

/// The lines of `/metrics` about pools, replicas or queries (comments dropped).
fn metrics_lines(port: u16) -> Res<Vec<String>> {
    metrics_where(port, |l| {
        let l = l.to_ascii_lowercase();
        l.contains("replica") || l.contains("pool") || l.contains("db_") || l.contains("quer")
    })
}

fn replica_stop(env: &Env) -> Res<Outcome> {
    const NAME: &str = "replica-stop";
    ensure_tool("wrk", "wrk")?;
    let story = web_database(env)?;
    println!("starting streaming replica {REPLICA} of {CLUSTER} (pg_ensure_replica)");
    register_cluster(REPLICA);
    // Always a fresh copy: an old one may need WAL the primary no longer has (there is no
    // replication slot), and would start but never stream.
    let out = lib_sh(
        &env.root,
        &format!(
            "pg_setup; pg_clear_stale {REPLICA}; rm -rf \"$(pg_data_dir {REPLICA})\"; pg_ensure_replica {CLUSTER} {REPLICA} test 0; echo \"PG_PORT=$PG_PORT\""
        ),
    )?;
    let replica_port = parse_port(&out)?;
    let replica_url = format!("postgres://quire@127.0.0.1:{replica_port}/{WEB_DB}");
    println!("  {REPLICA} on 127.0.0.1:{replica_port}");

    let port = free_port();
    let mut web = web_proc(env, "web-replica", port, &[("DATABASE_REPLICA_URLS", replica_url.clone())])?;
    // A worker too, so that /health's own verdict ("ok" with a live worker) shows what
    // the replica changes.
    let dir = env.tmp.join(WEB_DB);
    let mut worker = Proc::spawn("worker", env.app_cmd(&env.worker, &dir, &env.url(WEB_DB)), &dir.join("worker.log"))?;
    wait_healthy(port, &mut web, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    let routing = has_replicas_check(port);
    let (health_before, brief_before) = health_state(port);
    let metrics_before = metrics_lines(port);
    println!("  /health before:  {health_before}");
    match &metrics_before {
        Ok(lines) if lines.is_empty() => println!("  /metrics before: no pool/replica/query lines"),
        Ok(lines) => println!("  /metrics before:\n    {}", lines.join("\n    ")),
        Err(e) => println!("  /metrics before: {e}"),
    }

    println!("web :{port} reading through {replica_url}; wrk 22 s on / and {story}; stop the replica at 5 s, start it at 12 s");
    let paths = vec!["/".to_string(), story.clone()];
    let t0 = Instant::now();
    let wrk = start_wrk(env, port, &paths, 8, 22)?;
    sleep_until(t0, Duration::from_secs(5));
    let stop_took = pgctl(&env.root, REPLICA, "stop")?;
    println!("  replica stopped (bin/pgctl {REPLICA} stop, {})", secs(stop_took));
    let stopped = Instant::now();
    // How long until /health notices; what it says meanwhile.
    let mut noticed: Option<Duration> = None;
    let mut during: Option<(String, String)> = None;
    while t0.elapsed() < Duration::from_secs(12) {
        if noticed.is_none() && replicas_ok(port) == Some(false) {
            noticed = Some(stopped.elapsed());
            let state = health_state(port);
            println!("  /health during:  {} (noticed {} after bin/pgctl stop returned)", state.0, secs(stopped.elapsed()));
            during = Some(state);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, brief_during) = during.unwrap_or_else(|| {
        let state = health_state(port);
        println!("  /health during:  {}", state.0);
        state
    });
    let start_took = pgctl(&env.root, REPLICA, "start")?;
    let replica_started = Instant::now();
    println!("  replica started (bin/pgctl {REPLICA} start, {})", secs(start_took));
    // How long until /health reports the replica back.
    let mut back: Option<Duration> = None;
    while routing && replica_started.elapsed() < Duration::from_secs(30) {
        if replicas_ok(port) == Some(true) {
            back = Some(replica_started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    sleep_until(t0, Duration::from_secs(18));
    let (health_after, brief_after) = health_state(port);
    println!(
        "  /health after:   {health_after}{}",
        back.map(|d| format!(" (replica back in rotation {} after its start)", secs(d))).unwrap_or_default()
    );
    let report = wrk.join().map_err(|_| "wrk thread panicked")??;
    println!("  wrk: {}", report.summary());
    let metrics_after = metrics_lines(port);
    match &metrics_after {
        Ok(lines) if lines.is_empty() => println!("  /metrics after: no pool/replica/query lines"),
        Ok(lines) => println!("  /metrics after:\n    {}", lines.join("\n    ")),
        Err(e) => println!("  /metrics after: {e}"),
    }
    let alive = web.alive();
    let web_errors: Vec<String> =
        std::fs::read_to_string(&web.log).unwrap_or_default().lines().filter(|l| l.contains("ERROR") || l.contains("\"level\":\"ERROR\"")).take(3).map(|l| l.chars().take(300).collect()).collect();
    web.stop(Duration::from_secs(30));
    worker.stop(Duration::from_secs(35));

    let mut notes = Vec::new();
    if !routing {
        notes.push(
            "this build has no checks.replicas in /health: DATABASE_REPLICA_URLS is not used yet (reads go to the primary), so the drill proves nothing about replica failover".into(),
        );
    } else {
        if noticed.is_none() {
            notes.push("/health never reported the stopped replica as down".into());
        }
        if back.is_none() {
            notes.push("/health did not report the replica back within 30 s of its start".into());
        }
    }
    match &metrics_after {
        Ok(lines) if lines.is_empty() => notes.push("/metrics has no per-pool query counters yet".into()),
        Err(e) => notes.push(format!("/metrics: {e}")),
        _ => {}
    }
    if !web_errors.is_empty() {
        notes.push(format!("web logged errors, e.g. {}", web_errors.join(" | ")));
    }
    if !report.clean() {
        notes.push(format!("wrk output:\n{}", report.raw.trim()));
    }
    let ok = report.clean() && alive;
    let figures = format!(
        "{}{:.0} req/s, {} requests, non-2xx/3xx {}, socket errors {}; /health before [{brief_before}] during [{brief_during}] after [{brief_after}]{}{}",
        if routing { "" } else { "(replica unused by this build) " },
        report.rps,
        report.requests,
        report.non_2xx_3xx,
        report.socket_errors(),
        match (noticed, back) {
            (Some(n), Some(b)) => format!("; /health saw the replica down {} after the stop returned, back in rotation {} after the start returned", secs(n), secs(b)),
            (Some(n), None) => format!("; /health saw the replica down {} after the stop returned, not back", secs(n)),
            _ => String::new(),
        },
        pool_figures(&metrics_before, &metrics_after)
    );
    Ok(Outcome::new(NAME, if ok { Verdict::Pass } else { Verdict::Fail }, figures, notes))
}

/// Query counts per pool during the drill, fallbacks and retries, from `/metrics`.
fn pool_figures(before: &Res<Vec<String>>, after: &Res<Vec<String>>) -> String {
    let delta = |name: &str| Some(metric(after, name)? - metric(before, name).unwrap_or(0.0));
    let mut parts = Vec::new();
    if let Ok(lines) = after {
        for l in lines.iter().filter(|l| l.starts_with("quire_db_queries_total{")) {
            let name = l.split_whitespace().next().unwrap_or("");
            let pool = name.split('"').nth(1).unwrap_or(name);
            if let Some(d) = delta(name) {
                parts.push(format!("{pool} {d:.0}"));
            }
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    let mut s = format!("; queries during the drill: {}", parts.join(", "));
    if let Some(d) = delta("quire_db_read_fallbacks_total{reason=\"no_replica_in_rotation\"}") {
        let _ = write!(s, ", reads sent to the primary with no replica in rotation {d:.0}");
    }
    if let Some(d) = delta("quire_db_read_retries_total") {
        let _ = write!(s, ", replica reads retried on the primary {d:.0}");
    }
    s
}

// ---- machine and RESULTS.md -----------------------------------------------------------


fn results_section(machine: &Machine, options: &Options, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## {} — fault drills — {} ({} cores), load average {} at start\n",
        today_utc(),
        machine.cpu,
        machine.cores,
        machine.load
    );
    let _ = writeln!(
        s,
        "`cargo run --release -p bench --bin drills{}` (bench/src/bin/drills.rs): release `web` and `worker` with `APP_ENV=production`, a private PostgreSQL cluster (test profile), everything on this machine.\n",
        if options.drills.len() == ALL_DRILLS.len() { String::new() } else { format!(" -- {}", options.drills.join(" ")) }
    );
    let _ = writeln!(s, "| drill | result | figures |");
    let _ = writeln!(s, "|---|---|---|");
    for o in outcomes {
        let _ = writeln!(s, "| {} | {} | {} |", o.drill, o.verdict.label(), o.figures.replace('|', "\\|"));
    }
    let notes: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.notes.iter().filter(|n| !n.starts_with("wrk output")).map(move |n| format!("- {}: {}", o.drill, n.replace('\n', " "))))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\n{}", notes.join("\n"));
    }
    s
}


// ---- drill 6: backup-restore ----------------------------------------------------------

const BACKUP_CLUSTER: &str = "drills-backup";
const RESTORED: &str = "drills-backup-restored";
const RESTORED_LATEST: &str = "drills-backup-latest";
const BACKUP_DB: &str = "drills_backup";
/// bin/backup's default archive_timeout: the RPO bound the drill checks.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One write of the drill's writer: its sequence number, when the INSERT (an autocommit
/// transaction) was sent and when its commit was acknowledged. The server's commit
/// timestamp lies between the two (same machine, same clock).
#[derive(Clone, Copy)]
struct DrillWrite {
    seq: i64,
    sent: chrono::DateTime<chrono::Utc>,
    acked: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct WriterLog {
    acked: Vec<DrillWrite>,
    /// Sent but failed or unanswered (the primary died under it): committed or not, nobody
    /// was told it was, so it is neither required nor forbidden after a restore.
    uncertain: Vec<i64>,
    errors: usize,
}

/// Inserts into `backup_drill` one row at a time until `stop`, reconnecting after errors.
fn start_writer(url: String, stop: Arc<AtomicBool>, log: Arc<Mutex<WriterLog>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn: Option<sqlx::PgConnection> = None;
            let mut seq: i64 = 0;
            while !stop.load(Ordering::SeqCst) {
                if conn.is_none() {
                    match tokio::time::timeout(Duration::from_secs(2), sqlx::PgConnection::connect(&url)).await {
                        Ok(Ok(c)) => conn = Some(c),
                        _ => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                seq += 1;
                let sent = chrono::Utc::now();
                let res = tokio::time::timeout(
                    Duration::from_secs(5),
                    sqlx::query("INSERT INTO backup_drill (seq, pad) VALUES ($1, repeat('x', 200))").bind(seq).execute(&mut *c),
                )
                .await;
                let acked = chrono::Utc::now();
                match res {
                    Ok(Ok(_)) => log.lock().unwrap().acked.push(DrillWrite { seq, sent, acked }),
                    _ => {
                        let mut l = log.lock().unwrap();
                        l.uncertain.push(seq);
                        l.errors += 1;
                        drop(l);
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                // About 100 commits a second: a steady trickle, like users commenting.
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        });
    })
}

/// Runs a bin/ script of the checkout; its stdout (echoed, indented) when it succeeds.
fn run_script(root: &Path, script: &str, args: &[&str]) -> Res<(String, Duration)> {
    let t = Instant::now();
    let out = Command::new(root.join("bin").join(script))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .output()
        .map_err(|e| format!("bin/{script}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for line in stdout.lines() {
        println!("  {line}");
    }
    if !out.status.success() {
        return Err(format!("bin/{script} {} failed ({})", args.join(" "), out.status));
    }
    Ok((stdout, t.elapsed()))
}

fn psql_on(bindir: &str, port: u16, db: &str, sql: &str) -> Res<String> {
    let out = Command::new(Path::new(bindir).join("psql"))
        .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "quire", "-d", db, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!("psql on :{port}/{db} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `seq`s of `backup_drill` in a restored cluster.
fn restored_seqs(bindir: &str, port: u16) -> Res<std::collections::HashSet<i64>> {
    psql_on(bindir, port, BACKUP_DB, "SELECT seq FROM backup_drill")?
        .lines()
        .map(|l| l.trim().parse::<i64>().map_err(|e| format!("seq {l:?}: {e}")))
        .collect()
}

fn restored_port(stdout: &str) -> Res<u16> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("URL=postgres://quire@127.0.0.1:"))
        .and_then(|rest| rest.split('/').next()?.parse().ok())
        .ok_or_else(|| "bin/restore printed no URL= line".to_string())
}

fn du(path: &Path) -> String {
    Command::new("du")
        .args(["-sh"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn backup_restore(env: &Env) -> Res<Outcome> {
    const NAME: &str = "backup-restore";
    let root = &env.root;
    let backups = root.join("var/backups").join(BACKUP_CLUSTER);
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();

    // A fresh primary (dev profile: fsync and synchronous commit on, like production).
    for c in [BACKUP_CLUSTER, RESTORED, RESTORED_LATEST] {
        register_cluster(c);
    }
    let _ = std::fs::remove_dir_all(&backups);
    let out = lib_sh(
        root,
        &format!(
            "pg_setup; for c in {BACKUP_CLUSTER} {RESTORED} {RESTORED_LATEST}; do pg_clear_stale $c; rm -rf \"$(pg_data_dir $c)\"; done; \
             pg_ensure_cluster {BACKUP_CLUSTER} dev; echo \"PG_PORT=$PG_PORT\"; echo \"BINDIR=$PG_BINDIR\"; echo \"DATA=$(pg_data_dir {BACKUP_CLUSTER})\""
        ),
    )?;
    let port = parse_port(&out)?;
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned).ok_or(format!("bin/lib.sh did not say {k}"));
    let bindir = field("BINDIR=")?;
    let data_dir = PathBuf::from(field("DATA=")?);
    let url = |db: &str| format!("postgres://quire@127.0.0.1:{port}/{db}");

    // The load benchmark's data: bench::seed (5,000 users, 10,000 stories, 50,000 chapters).
    psql_on(&bindir, port, "postgres", &format!("CREATE DATABASE {BACKUP_DB}"))?;
    let dir = env.tmp.join(BACKUP_DB);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let status = env.app_cmd(&env.web, &dir, &url(BACKUP_DB)).arg("migrate").status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("web migrate failed ({status})"));
    }
    println!("seeding {BACKUP_DB} with bench::seed (the load benchmark's data)");
    let t = Instant::now();
    let seed = dir.join("seed.sql");
    std::fs::write(&seed, bench::seed::seed_sql(bench::seed::Corpus::Repeated)).map_err(|e| e.to_string())?;
    let status = Command::new(Path::new(&bindir).join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "quire", "-d", BACKUP_DB, "-f"])
        .arg(&seed)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("psql: {e}"))?;
    if !status.success() {
        return Err("seeding failed".into());
    }
    let seed_took = t.elapsed();
    let db_size = psql_on(&bindir, port, "postgres", &format!("SELECT pg_size_pretty(pg_database_size('{BACKUP_DB}'))"))?;
    let stories = psql_on(&bindir, port, BACKUP_DB, "SELECT count(*) FROM stories")?;
    println!("  seeded in {} ({stories} stories, database {db_size})", secs(seed_took));
    psql_on(
        &bindir,
        port,
        BACKUP_DB,
        "CREATE TABLE backup_drill (seq bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp(), pad text NOT NULL)",
    )?;

    // Archiving on (restarts the primary once), then the writer, then the base backup.
    println!("bin/backup --cluster {BACKUP_CLUSTER} --setup-only");
    let (_, setup_took) = run_script(root, "backup", &["--cluster", BACKUP_CLUSTER, "--setup-only"])?;
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(WriterLog::default()));
    let writer = start_writer(url(BACKUP_DB), stop.clone(), log.clone());
    let writing = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    println!("bin/backup --cluster {BACKUP_CLUSTER} (base backup while the writer writes)");
    let (_, backup_took) = match run_script(root, "backup", &["--cluster", BACKUP_CLUSTER]) {
        Ok(r) => r,
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            let _ = writer.join();
            return Err(e);
        }
    };
    let backup_size = du(&backups.join("base"));
    std::thread::sleep(Duration::from_secs(10));
    let target = chrono::Utc::now();
    println!("  target time T = {} ({} writes acked so far)", ts(target), log.lock().unwrap().acked.len());
    // Past T for longer than archive_timeout, so a segment holding commits after T is
    // archived (recovery to T needs to see one) and the last one is not.
    std::thread::sleep(ARCHIVE_TIMEOUT + Duration::from_secs(15));

    // Destroy the primary: immediate shutdown (a crash), then its data directory.
    let destroyed = Instant::now();
    let destroyed_at = chrono::Utc::now();
    pgctl(root, BACKUP_CLUSTER, "kill")?;
    std::fs::remove_dir_all(&data_dir).map_err(|e| format!("deleting {}: {e}", data_dir.display()))?;
    println!("  primary killed and {} deleted at {}", data_dir.display(), ts(destroyed_at));
    stop.store(true, Ordering::SeqCst);
    let _ = writer.join();
    let log = std::mem::take(&mut *log.lock().unwrap());
    let rate = log.acked.len() as f64 / writing.elapsed().as_secs_f64();
    let wal_files = std::fs::read_dir(backups.join("wal")).map(|d| d.count()).unwrap_or(0);
    let wal_size = du(&backups.join("wal"));

    // Restore to T, then serve: RTO is destruction → /health 200 on the restored data.
    println!("bin/restore --to '{}' --into {RESTORED}", ts(target));
    let from = backups.display().to_string();
    let (out, restore_took) = run_script(root, "restore", &["--to", &ts(target), "--from", &from, "--into", RESTORED, "--force"])?;
    let rport = restored_port(&out)?;
    let web_port = free_port();
    let mut cmd = env.app_cmd(&env.web, &dir, &format!("postgres://quire@127.0.0.1:{rport}/{BACKUP_DB}"));
    cmd.env("PORT", web_port.to_string()).env("BASE_URL", format!("http://127.0.0.1:{web_port}")).arg("serve");
    let mut web = Proc::spawn("web-restored", cmd, &dir.join("web-restored.log"))?;
    wait_healthy(web_port, &mut web, Duration::from_secs(300))?;
    let rto = destroyed.elapsed();
    let page = http_get(web_port, "/s/9000", Duration::from_secs(10)).map(|(s, _)| s).unwrap_or(0);
    println!("  RTO {} (restore {}), /s/9000 answers {page}", secs(rto), secs(restore_took));
    web.stop(Duration::from_secs(20));

    let got = restored_seqs(&bindir, rport)?;
    let before: Vec<&DrillWrite> = log.acked.iter().filter(|w| w.acked < target).collect();
    let after: Vec<&DrillWrite> = log.acked.iter().filter(|w| w.sent > target).collect();
    let straddling = log.acked.len() - before.len() - after.len();
    let missing_before = before.iter().filter(|w| !got.contains(&w.seq)).count();
    let present_after = after.iter().filter(|w| got.contains(&w.seq)).count();
    let known: std::collections::HashSet<i64> = log.acked.iter().map(|w| w.seq).chain(log.uncertain.iter().copied()).collect();
    let unknown = got.iter().filter(|s| !known.contains(s)).count();
    println!(
        "  restored to T: {} rows; committed before T {} (missing {missing_before}), after T {} (present {present_after}), across T {straddling}",
        got.len(),
        before.len(),
        after.len()
    );
    lib_sh(root, &format!("pg_setup; pg_stop_cluster {RESTORED}; rm -rf \"$(pg_data_dir {RESTORED})\" \"$(pg_socket_dir {RESTORED})\""))?;

    // RPO: everything archived, replayed; what the writer was told was committed and is
    // not there was lost with the primary's disk.
    println!("bin/restore --to latest --into {RESTORED_LATEST}");
    let (out, latest_took) = run_script(root, "restore", &["--to", "latest", "--from", &from, "--into", RESTORED_LATEST, "--force"])?;
    let latest = restored_seqs(&bindir, restored_port(&out)?)?;
    let lost: Vec<&DrillWrite> = log.acked.iter().filter(|w| !latest.contains(&w.seq)).collect();
    let hole = log.acked.iter().filter(|w| !latest.contains(&w.seq)).map(|w| w.seq).min().is_some_and(|first_lost| latest.iter().any(|&s| s > first_lost));
    let rpo = lost.iter().map(|w| w.sent).min().map(|first| (destroyed_at - first).to_std().unwrap_or_default()).unwrap_or_default();
    println!(
        "  restored to latest in {}: {} rows; {} acked writes lost (the last {} before the destruction)",
        secs(latest_took),
        latest.len(),
        lost.len(),
        secs(rpo)
    );
    lib_sh(root, &format!("pg_setup; pg_stop_cluster {RESTORED_LATEST}; rm -rf \"$(pg_data_dir {RESTORED_LATEST})\" \"$(pg_socket_dir {RESTORED_LATEST})\""))?;
    let _ = std::fs::remove_dir_all(&backups);

    let mut notes = Vec::new();
    if missing_before > 0 {
        notes.push(format!("{missing_before} writes committed before T are missing after the restore to T"));
    }
    if present_after > 0 || unknown > 0 {
        notes.push(format!("{present_after} writes sent after T (and {unknown} unknown rows) are present after the restore to T"));
    }
    if hole {
        notes.push("the latest restore has a hole: a lost write followed by a kept one".into());
    }
    if log.errors > 1 {
        notes.push(format!("the writer saw {} errors (one is expected: the destruction)", log.errors));
    }
    if page != 200 {
        notes.push(format!("the restored site answered {page} for /s/9000"));
    }
    let ok = missing_before == 0
        && present_after == 0
        && unknown == 0
        && !hole
        && !before.is_empty()
        && !after.is_empty()
        && page == 200
        && rto <= Duration::from_secs(300)
        && rpo <= Duration::from_secs(60);
    let figures = format!(
        "bench::seed ({stories} stories, {db_size}, seeded in {}); archiving on in {}, base backup {} ({backup_size}) while writing {rate:.0} commits/s; \
         {} writes acked, T after {}: restore to T {} and RTO (destroy → /health 200 on the restored data) {} (target ≤ 5 min); \
         committed before T {} missing {missing_before}, after T {} present {present_after}, across T {straddling}; \
         restore to latest {}: lost {} acked writes = RPO {} (target ≤ 1 min, archive_timeout {} s); WAL archive {wal_files} files, {wal_size}",
        secs(seed_took),
        secs(setup_took),
        secs(backup_took),
        log.acked.len(),
        before.len(),
        secs(restore_took),
        secs(rto),
        before.len(),
        after.len(),
        secs(latest_took),
        lost.len(),
        secs(rpo),
        ARCHIVE_TIMEOUT.as_secs()
    );
    Ok(Outcome::new(NAME, if ok { Verdict::Pass } else { Verdict::Fail }, figures, notes))
}
