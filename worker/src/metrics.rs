//! The worker's `/metrics`, served on `METRICS_PORT` when it is set (the worker has no
//! other HTTP listener): every job run by job and outcome with its run time, mail sent
//! and refused, the pool, the process's memory. Same text format, same histogram and
//! same access rule (`METRICS_TOKEN`; in production without one, this machine only) as the web's —
//! `app::web::ops::metrics::serve_standalone` serves it.
//!
//! Why here and not derived from `apalis.jobs` in the web's `/metrics`: a row keeps when
//! a job was fetched and finished, not how long it ran (a fetched job may wait in the
//! worker's buffer first), a retried run leaves no row of its own, and finished rows
//! are purged after a week, so counts read from the table go down. Counted in the
//! process, a run is timed exactly and every counter only grows. What the table does
//! say well — how many jobs wait, and since when — the web's `/metrics` reads from it.

use std::{
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use app::metrics::{Histogram, JOB_BUCKETS_US, head};

use crate::jobs::Registry;

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed; attempts remain, it will run again after its backoff.
    Retry,
    /// Failed on its last attempt: the job gave up.
    Failed,
    /// Failed permanently (bad arguments, a panic, a refused recipient): never retried.
    Killed,
}

const OUTCOMES: [(Outcome, &str); 4] =
    [(Outcome::Done, "done"), (Outcome::Retry, "retry"), (Outcome::Failed, "failed"), (Outcome::Killed, "killed")];

/// One job type's runs.
pub struct JobStats {
    run_time: Histogram,
    outcomes: [AtomicU64; 4],
    timeouts: AtomicU64,
}

impl Default for JobStats {
    fn default() -> Self {
        JobStats { run_time: Histogram::new(JOB_BUCKETS_US), outcomes: Default::default(), timeouts: AtomicU64::new(0) }
    }
}

impl JobStats {
    pub fn record(&self, outcome: Outcome, elapsed: Duration, timed_out: bool) {
        self.run_time.observe(elapsed);
        let i = OUTCOMES.iter().position(|(o, _)| *o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Relaxed);
        if timed_out {
            self.timeouts.fetch_add(1, Relaxed);
        }
    }
}

/// Runs of envelopes naming no registered job (always `killed`).
pub static UNKNOWN: std::sync::LazyLock<JobStats> = std::sync::LazyLock::new(JobStats::default);

/// Mail handed to the SMTP server (or the development outbox), and mail that was not:
/// refused for its recipient (permanent) or failed otherwise (retried).
pub static MAIL_SENT: AtomicU64 = AtomicU64::new(0);
pub static MAIL_REFUSED: AtomicU64 = AtomicU64::new(0);
pub static MAIL_FAILED: AtomicU64 = AtomicU64::new(0);

/// The page: jobs of `registry`, mail, the pools of `db`, the process.
pub fn render(registry: &Registry, db: &app::db::Db) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let mut jobs: Vec<(&str, &JobStats)> = registry.names().filter_map(|n| registry.get(n).map(|e| (n, e.stats()))).collect();
    jobs.sort_unstable_by_key(|(n, _)| *n);
    jobs.push(("unknown", &UNKNOWN));
    head(&mut out, "quire_job_runs_total", "counter", "Job runs by job and outcome: done, retry (failed, will run again), failed (gave up after its last attempt), killed (failed permanently).");
    for (name, s) in &jobs {
        for (i, (_, label)) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(out, "quire_job_runs_total{{job=\"{name}\",outcome=\"{label}\"}} {}", s.outcomes[i].load(Relaxed));
        }
    }
    head(&mut out, "quire_job_timeouts_total", "counter", "Job runs abandoned at the job's timeout (also counted as retry or failed).");
    for (name, s) in &jobs {
        let _ = writeln!(out, "quire_job_timeouts_total{{job=\"{name}\"}} {}", s.timeouts.load(Relaxed));
    }
    head(&mut out, "quire_job_run_seconds", "histogram", "Run time of one job run (an attempt), by job.");
    for (name, s) in &jobs {
        s.run_time.write(&mut out, "quire_job_run_seconds", &format!("job=\"{name}\""));
    }
    head(&mut out, "quire_mail_sent_total", "counter", "Mails the SMTP server (or the development outbox) accepted.");
    let _ = writeln!(out, "quire_mail_sent_total {}", MAIL_SENT.load(Relaxed));
    head(&mut out, "quire_mail_failed_total", "counter", "Mails not sent: refused for the recipient (not retried), or failed otherwise (retried).");
    let _ = writeln!(out, "quire_mail_failed_total{{reason=\"recipient\"}} {}", MAIL_REFUSED.load(Relaxed));
    let _ = writeln!(out, "quire_mail_failed_total{{reason=\"other\"}} {}", MAIL_FAILED.load(Relaxed));
    app::metrics::pools(&mut out, &db.pools());
    app::metrics::process(&mut out);
    out
}

/// Serves `render` on `METRICS_PORT` (all interfaces, as the web's `PORT`) until the
/// task is aborted; None when no port is configured.
pub async fn listen(config: &app::config::Config, registry: Arc<Registry>, db: app::db::Db) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(port) = config.metrics_port else { return Ok(None) };
    let addr = format!("0.0.0.0:{port}");
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| anyhow::anyhow!("METRICS_PORT: cannot listen on {addr}: {e}"))?;
    if config.is_production() && config.metrics_token.is_none() {
        tracing::warn!(%addr, "METRICS_PORT is set but METRICS_TOKEN is not: in production /metrics answers only this machine's direct requests (404 to others)");
    }
    tracing::info!(%addr, "serving /metrics");
    let token = config.metrics_token.clone();
    let production = config.is_production();
    Ok(Some(tokio::spawn(async move {
        let render = move || render(&registry, &db);
        if let Err(error) = app::web::ops::metrics::serve_standalone(listener, token, production, render, std::future::pending()).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    })))
}
