//! Job handlers and dispatch: each queue row holds an `Envelope` naming its job;
//! `dispatch` finds the job in the [`Registry`], which deserialises the arguments into
//! the job's type and runs its handler under the job's own policy.

pub mod export;
pub mod mail;
pub mod maintenance;
pub mod media;
pub mod notify;
pub mod registry;
pub mod trending;

use std::sync::{Arc, LazyLock};

use apalis_core::error::{AbortError, BoxDynError};
use app::{
    config::Config,
    db::Db,
    jobs::{Envelope, Job},
    templates::Templates,
};
use serde::de::DeserializeOwned;

pub use self::registry::{Registry, RunCounter, RunInfo};
use crate::mailer::Mailer;

/// What every handler may use.
///
/// Handlers read and write through `db.primary()`: a job is enqueued in the same
/// transaction as the rows it is about, and a replica may not have replayed them yet. A
/// job that only reads data known to be old (a nightly export, say) may choose
/// a replica explicitly (`app::replica_read!`); none does today.
pub struct JobContext {
    pub db: Db,
    pub storage: app::storage::Storage,
    pub config: Arc<Config>,
    pub templates: Templates,
    pub mailer: Mailer,
}

/// Why a job failed: `Retry` is retried with backoff, `Permanent` is kept as failed
/// at once (retrying a job with bad input would fail the same way).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Retry(#[from] anyhow::Error),
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retry(e.into())
    }
}

/// A job's handler. Implemented here, in the worker, for the payload types of `app::jobs`,
/// and registered in [`all`].
pub trait Run: Job + DeserializeOwned {
    fn run(self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called once when the job's last attempt failed with a retryable error (or timed
    /// out), just before it is kept as failed: the place to tell the user, for jobs whose
    /// pages wait on them. Nothing by default.
    fn exhausted(self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        std::future::ready(Ok(()))
    }
}

/// Every job the worker runs. A job type of `app::jobs` missing here fails
/// `tests/registry.rs`; one registered twice panics here, at start-up.
pub fn all() -> Registry {
    use app::jobs::{export::*, mail::*, maintenance::*, media::*, notify::*, trending::*};
    Registry::new()
        .register::<SendVerificationEmail>()
        .register::<SendPasswordReset>()
        .register::<PurgeExpired>()
        .register::<Noop>()
        .register::<ProcessImage>()
        .register::<DeleteMedia>()
        .register::<Notify>()
        .register::<SendNotificationEmails>()
        .register::<DailyDigest>()
        .register::<SendDigests>()
        .register::<RecomputeTrending>()
        .register::<BuildExport>()
        .register::<SendExportReady>()
}

/// The process's registry, built on first use (the worker builds it before starting).
pub fn registry() -> Arc<Registry> {
    static REGISTRY: LazyLock<Arc<Registry>> = LazyLock::new(|| Arc::new(all()));
    REGISTRY.clone()
}

/// Runs `envelope` once, outside the queue, as its first attempt (tests and tools).
pub async fn run_envelope(envelope: Envelope, ctx: &JobContext) -> Result<(), JobError> {
    registry().run(envelope, ctx, RunInfo::FIRST).await
}

/// The apalis service function: one call per job run (retries call it again).
pub async fn dispatch(
    envelope: Envelope,
    ctx: apalis_core::task::data::Data<Arc<JobContext>>,
    registry: apalis_core::task::data::Data<Arc<Registry>>,
    counter: RunCounter,
) -> Result<(), BoxDynError> {
    match registry.run(envelope, &ctx, counter.info()).await {
        Ok(()) => Ok(()),
        Err(JobError::Retry(e)) => Err(e.into()),
        // Not retried by the policy, recorded as `Killed` with the message.
        Err(JobError::Permanent(msg)) => Err(AbortError::new(msg).into()),
    }
}
