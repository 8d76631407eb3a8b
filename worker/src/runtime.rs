//! The worker runtime: one apalis worker per queue, all in one monitor.
//!
//! Each queue worker:
//! - wakes on LISTEN/NOTIFY when a job is inserted, and polls every `POLL_INTERVAL` as a
//!   fallback (a lost notification costs at most that much latency);
//! - retries a failed run with exponential backoff up to the job's attempt budget, then
//!   leaves it `Failed` with its error in `last_result`;
//! - times out a run after `JOB_TIMEOUT`; turns a panic into a permanent failure;
//! - heartbeats every `HEARTBEAT`; jobs held by a worker silent for `HEARTBEAT ×
//!   MISSED_HEARTBEATS` (30 s, well under the 60 s promised) are re-queued by any live
//!   worker of the same queue;
//! - on SIGTERM stops fetching, lets running jobs finish (up to `SHUTDOWN_GRACE`), and
//!   hands fetched-but-unstarted jobs back to the queue.

use std::{sync::Arc, time::Duration};

use apalis::layers::retry::{BackoffRetryPolicy, HasherRng, backoff::ExponentialBackoffMaker};
use apalis::prelude::*;
use apalis_postgres::{Config as PgConfig, PostgresStorage, Pubsub};
use app::jobs::Envelope;
use tower::retry::backoff::MakeBackoff;

use crate::{
    acks::{Acker, FlushOnClose},
    jobs::{JobContext, dispatch},
};

pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);
pub const HEARTBEAT: Duration = Duration::from_secs(10);
pub const MISSED_HEARTBEATS: usize = 3;
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Runs in all for a job (the payload's `MAX_ATTEMPTS` is stored too; this bounds the
/// in-process retry loop and must agree with it).
pub const MAX_ATTEMPTS: usize = 5;
pub const RETRY_MIN_DELAY: Duration = Duration::from_secs(1);
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// Jobs fetched per poll (one UPDATE … RETURNING). Fetched jobs wait in this
    /// worker's buffer, held by it, until a concurrency slot frees: large batches make
    /// short jobs cheap (bench/jobs: 840 jobs/s at 20, ~13,000 at 500), but would let one
    /// worker hoard slow jobs, so the media queue fetches no more than it can run.
    pub batch_size: usize,
    pub retry_min_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queues: app::jobs::ALL_QUEUES.iter().map(|q| q.to_string()).collect(),
            concurrency: 8,
            batch_size: 500,
            retry_min_delay: RETRY_MIN_DELAY,
        }
    }
}

/// A unique name per process and queue: a restarted worker must not inherit the
/// registration (and so the held jobs) of the one that died.
fn worker_name(queue: &str) -> String {
    let host = std::env::var("HOSTNAME").or_else(|_| std::env::var("DYNO")).unwrap_or_else(|_| "local".into());
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
            let backoff = ExponentialBackoffMaker::new(options.retry_min_delay, RETRY_MAX_DELAY, 0.25, HasherRng::default())
                .expect("valid backoff bounds")
                .make_backoff();
            WorkerBuilder::new(name)
                .backend(backend)
                // Outermost first: the outcome is recorded once, after the last run; a
                // job holds one concurrency slot across its retries; each run gets its
                // own timeout; tracing sees the real attempt number.
                .layer(acker.layer())
                .concurrency(options.concurrency)
                .retry(BackoffRetryPolicy::new(MAX_ATTEMPTS - 1, backoff))
                .timeout(JOB_TIMEOUT)
                .enable_tracing()
                .catch_panic()
                .parallelize(tokio::spawn)
                .data(ctx.clone())
                .build(dispatch)
        });
    }
    monitor
}
