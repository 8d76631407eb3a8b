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
