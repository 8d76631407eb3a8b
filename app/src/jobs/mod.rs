//! Job payloads, enqueued by the web side and run by the `worker` binary.
//!
//! In the style of crates.io's `crates_io_worker`: a job is a serde type with a name, a
//! queue, a priority and an attempt budget; its handler lives in the worker crate.
//! Enqueueing takes a connection, so the job joins the caller's transaction and commits
//! (or rolls back) together with the state change that caused it.

pub mod admin;
pub mod export;
pub mod mail;
pub mod maintenance;
pub mod media;
pub mod notify;
pub mod trending;

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::PgConnection;

pub use apalis_core;

/// Queue names. A worker process runs the queues it is told to (`worker --queues mail`).
pub const QUEUE_MAIL: &str = "mail";
pub const QUEUE_MEDIA: &str = "media";
pub const QUEUE_DEFAULT: &str = "default";
pub const ALL_QUEUES: &[&str] = &[QUEUE_MAIL, QUEUE_MEDIA, QUEUE_DEFAULT];

pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name stored with the job; the worker dispatches on it.
    const NAME: &'static str;
    const QUEUE: &'static str;
    /// Higher runs first within a queue.
    const PRIORITY: usize = 0;
    /// Runs in all, first one included; afterwards the job is kept as failed.
    const MAX_ATTEMPTS: usize = 5;
    /// How long one run may take before it is abandoned and counted as a failed attempt.
    const TIMEOUT: Duration = Duration::from_secs(120);
    /// The wait before the first retry; each further retry waits twice as long (plus up
    /// to a quarter more, at random, so jobs that failed together do not retry together),
    /// never more than `BACKOFF_MAX`.
    const BACKOFF_MIN: Duration = Duration::from_secs(1);
    const BACKOFF_MAX: Duration = Duration::from_secs(60);
}

/// What a queue row holds: the job's name, its arguments, and the id of the request that
/// enqueued it, so the worker's log lines can be joined to the request's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub name: String,
    pub args: serde_json::Value,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("serialising job: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("inserting job: {0}")]
    Queue(#[from] apalis_postgres::Error),
}

impl EnqueueError {
    /// The database's own error, when the insert reached PostgreSQL and it refused.
    pub fn database_error(&self) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
        match self {
            EnqueueError::Queue(apalis_postgres::Error::Database(e)) => e.as_database_error(),
            _ => None,
        }
    }

    /// True when a job with the same idempotency key is already queued: PostgreSQL's
    /// `unique_violation` (SQLSTATE 23505), not a match on the message's wording.
    pub fn is_duplicate(&self) -> bool {
        self.database_error().and_then(|e| e.code()).as_deref() == Some(UNIQUE_VIOLATION)
    }
}

/// SQLSTATE `unique_violation`.
pub const UNIQUE_VIOLATION: &str = "23505";

/// Inserts `job` on `conn` — pass `&mut *tx` to make it part of a transaction.
pub async fn enqueue<J: Job>(conn: &mut PgConnection, job: &J, request_id: Option<&str>) -> Result<(), EnqueueError> {
    enqueue_with_key(conn, job, request_id, None).await
}

/// Like `enqueue`, with an idempotency key: a second job with the same key is not queued
/// twice (used by the periodic scheduler, where several workers may tick at once).
pub async fn enqueue_with_key<J: Job>(
    conn: &mut PgConnection,
    job: &J,
    request_id: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<(), EnqueueError> {
    let envelope = Envelope {
        name: J::NAME.to_string(),
        args: serde_json::to_value(job)?,
        request_id: request_id.map(str::to_string),
    };
    let mut task = TaskBuilder::new(serde_json::to_vec(&envelope)?)
        .priority(J::PRIORITY)
        .max_attempts(J::MAX_ATTEMPTS);
    if let Some(key) = idempotency_key {
        task = task.idempotency_key(key);
    }
    apalis_postgres::queries::push_tasks(conn, J::QUEUE, vec![task.build()]).await?;
    Ok(())
}

/// Inserts all of `jobs` with one statement (a multi-row `INSERT … SELECT unnest(…)`),
/// for callers that enqueue many jobs at once: far cheaper than `enqueue` in a loop.
pub async fn enqueue_many<J: Job>(conn: &mut PgConnection, jobs: &[J], request_id: Option<&str>) -> Result<(), EnqueueError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let tasks = jobs
        .iter()
        .map(|job| {
            let envelope = Envelope {
                name: J::NAME.to_string(),
                args: serde_json::to_value(job)?,
                request_id: request_id.map(str::to_string),
            };
            Ok(TaskBuilder::new(serde_json::to_vec(&envelope)?).priority(J::PRIORITY).max_attempts(J::MAX_ATTEMPTS).build())
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    apalis_postgres::queries::push_tasks(conn, J::QUEUE, tasks).await?;
    Ok(())
}
