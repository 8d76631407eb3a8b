//! The trending recompute, enqueued by the worker's scheduler every 10 minutes with an
//! idempotency key naming the period (`trending:{unix_secs / 600}`), so however many
//! workers tick, each period's job is queued, and run, once.

use serde::{Deserialize, Serialize};

use super::{Job, QUEUE_DEFAULT};

/// Replaces the `trending` table's contents (`trending::db::recompute`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecomputeTrending {}

impl Job for RecomputeTrending {
    const NAME: &'static str = "recompute_trending";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    // A missed period is harmless: the next one, 10 minutes later, recomputes anyway.
    const MAX_ATTEMPTS: usize = 2;
}
