//! The worker runtime: one apalis worker per queue, all in one monitor.
//!
//! Each queue worker:
//! - wakes on LISTEN/NOTIFY when a job is inserted, and polls every `POLL_INTERVAL` as a
//!   fallback (a lost notification costs at most that much latency);
//! - runs each job under its own policy, looked up in the job registry by the name in
//!   its envelope (see `crate::jobs::registry`): a run is timed out after the job's
//!   `TIMEOUT`; a failed run is retried after the job's backoff while its `MAX_ATTEMPTS`
//!   last, then the job is left `Failed` with its error in `last_result`; a permanent
//!   failure (bad arguments, an unknown job, a panic) is left `Killed` at once;
//! - heartbeats every `HEARTBEAT`; jobs held by a worker silent for `HEARTBEAT ×
//!   MISSED_HEARTBEATS` (30 s, well under the 60 s promised) are re-queued by any live
//!   worker of the same queue;
//! - on SIGTERM stops fetching, lets running jobs finish (up to `SHUTDOWN_GRACE`), and
//!   hands fetched-but-unstarted jobs back to the queue.

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_postgres::{Config as PgConfig, PostgresStorage, Pubsub};
use app::jobs::Envelope;

use crate::{
    acks::{Acker, FlushOnClose},
    jobs::{JobContext, Registry, dispatch, registry::RetryByJob},
};

pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const HEARTBEAT: Duration = Duration::from_secs(10);
pub const MISSED_HEARTBEATS: usize = 3;
/// Below the 30 s after which Heroku follows SIGTERM with SIGKILL (docker-compose.yml gives
/// the same 30 s with `stop_grace_period`), leaving time to hand unstarted jobs back and
/// close the pools before the kill.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

#[derive(Debug, Clone)]
pub struct Options {
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// Jobs fetched per poll (one UPDATE … RETURNING). Fetched jobs wait in this
    /// worker's buffer, held by it, until a concurrency slot frees: large batches make
    /// short jobs cheap (bench/jobs: 840 jobs/s at 20, ~13,000 at 500), but would let one
    /// worker hoard slow jobs, so the media queue fetches no more than it can run.
    pub batch_size: usize,
    /// Caps every job's `BACKOFF_MIN`, so tests can make retries quick; the default,
    /// `Duration::MAX`, leaves each job's own backoff.
    pub retry_min_delay: Duration,
    /// The jobs this worker can run, with their policies (tests add test-only jobs).
    pub registry: Arc<Registry>,
    /// Whether this process takes part in the scheduler role (`crate::scheduler`); read
    /// by the binary, which starts the scheduler, not by `monitor`.
    pub scheduler: Role,
}

/// A worker process's part in running the periodic jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Runs its queues and stands by for the schedule (leads when it gets the lock).
    #[default]
    Both,
    /// Runs its queues only (`--no-scheduler`).
    Off,
    /// Runs the schedule only, no queue (`--scheduler-only`): a Celery-beat-like process.
    Only,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queues: app::jobs::ALL_QUEUES.iter().map(|q| q.to_string()).collect(),
            concurrency: 8,
            batch_size: 500,
            retry_min_delay: Duration::MAX,
            registry: crate::jobs::registry(),
            scheduler: Role::Both,
        }
    }
}

/// A unique name per process and queue: a restarted worker must not inherit the
/// registration (and so the held jobs) of the one that died.
fn worker_name(queue: &str) -> String {
    // DYNO first: on Heroku it says which process this is (`worker.2`); HOSTNAME there
    // is a random id.
    let host = std::env::var("DYNO").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "local".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{queue}@{host}:{}:{}", std::process::id(), &nonce[..8])
}

pub fn monitor(ctx: Arc<JobContext>, options: &Options) -> Monitor {
    let mut monitor = Monitor::new().shutdown_timeout(SHUTDOWN_GRACE);
    for queue in &options.queues {
        let queue = queue.clone();
        let ctx = ctx.clone();
        let mut options = options.clone();
        if queue == app::jobs::QUEUE_MEDIA {
            // Image decoding is CPU- and memory-heavy: at most one job per core.
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
            options.concurrency = options.concurrency.min(cores);
            options.batch_size = options.batch_size.min(options.concurrency);
        }
        monitor = monitor.register(move |_| {
            let pool = ctx.db.primary().clone();
            let name = worker_name(&queue);
            let config = PgConfig::default()
                .queue(&queue)
                .batch_size(options.batch_size)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS)
                // Outcomes are written by our acker (see crate::acks), in batches and off
                // the fetch path, instead of apalis's per-poll event transactions.
                .persist_results(false)
                // No `Queued` → `Running` UPDATE per job: the fetch already marks the job
                // as held by this worker (`lock_by`), which is all that orphan recovery,
                // shutdown hand-back and the outcome write rely on.
                .lock_tasks(false);
            let acker = Acker::spawn(pool.clone(), name.clone());
            let wake = Strategy::new().stream(Pubsub::new(pool.clone(), queue.clone())).interval(POLL_INTERVAL);
            let backend = PostgresStorage::<Envelope>::new(&pool).with_config(config).poll_with_strategy(wake);
            let backend = FlushOnClose::new(backend, &acker);
            let retry = RetryByJob::new(options.registry.clone(), options.retry_min_delay);
            WorkerBuilder::new(name)
                .backend(backend)
                // Outermost first: the outcome is recorded once, after the last run; a
                // job holds one concurrency slot across its retries; tracing sees the
                // real attempt number. Each run's timeout is the job's own, applied in
                // `dispatch` (a tower timeout here would be one for every job).
                .layer(acker.layer())
                .concurrency(options.concurrency)
                .retry(retry)
                .enable_tracing()
                .catch_panic()
                .parallelize(tokio::spawn)
                .data(ctx.clone())
                .data(options.registry.clone())
                .build(dispatch)
        });
    }
    monitor
}
