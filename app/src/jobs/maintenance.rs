//! Periodic housekeeping jobs, enqueued by the worker's scheduler.

use serde::{Deserialize, Serialize};

use super::{Job, QUEUE_DEFAULT};

/// Deletes sessions past their idle or absolute expiry, and spent or expired tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PurgeExpired {}

impl Job for PurgeExpired {
    const NAME: &'static str = "purge_expired";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    const MAX_ATTEMPTS: usize = 3;
}

/// Does nothing. `bench/jobs` enqueues thousands of these to measure the queue's own
/// cost per job; it also makes a harmless smoke test of a deployed worker.
///
/// With `probe` set, the handler logs one line (`"noop probe"`) carrying the probe number
/// and the wall-clock time it started (`started_us`, µs since the Unix epoch), from which
/// the benchmark computes enqueue-to-start latency.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Noop {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<u64>,
}

impl Job for Noop {
    const NAME: &'static str = "noop";
    const QUEUE: &'static str = QUEUE_DEFAULT;
}
