//! Dispatch: each queue row holds an `Envelope` naming its job; `dispatch` deserialises
//! the arguments into the job's type and runs its handler inside a span that carries
//! the request id of the request that enqueued it.

pub mod mail;
pub mod maintenance;
pub mod media;

use std::sync::Arc;

use apalis_core::error::{AbortError, BoxDynError};
use app::{
    config::Config,
    db::Db,
    jobs::{Envelope, Job},
    templates::Templates,
};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::mailer::Mailer;

/// What every handler may use.
///
/// Handlers read and write through `db.primary()`: a job is enqueued in the same
/// transaction as the rows it is about, and a replica may not have replayed them yet. A
/// job that only reads data known to be old (a nightly export, say) may choose
/// `db.replica()` explicitly; none does today.
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

/// A job's handler. Implemented here, in the worker, for the payload types of `app::jobs`.
pub trait Run: Job + DeserializeOwned {
    fn run(self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;
}

async fn run_typed<J: Run>(args: serde_json::Value, ctx: &JobContext) -> Result<(), JobError> {
    let job: J = serde_json::from_value(args).map_err(|e| JobError::Permanent(format!("bad arguments for {}: {e}", J::NAME)))?;
    job.run(ctx).await
}

pub async fn run_envelope(envelope: Envelope, ctx: &JobContext) -> Result<(), JobError> {
    use app::jobs::{mail::*, maintenance::*, media::*};
    match envelope.name.as_str() {
        SendVerificationEmail::NAME => run_typed::<SendVerificationEmail>(envelope.args, ctx).await,
        SendPasswordReset::NAME => run_typed::<SendPasswordReset>(envelope.args, ctx).await,
        PurgeExpired::NAME => run_typed::<PurgeExpired>(envelope.args, ctx).await,
        Noop::NAME => run_typed::<Noop>(envelope.args, ctx).await,
        ProcessImage::NAME => run_typed::<ProcessImage>(envelope.args, ctx).await,
        DeleteMedia::NAME => run_typed::<DeleteMedia>(envelope.args, ctx).await,
        other => Err(JobError::Permanent(format!("unknown job `{other}`"))),
    }
}

/// The apalis service function: one call per job run (retries call it again).
pub async fn dispatch(
    envelope: Envelope,
    ctx: apalis_core::task::data::Data<Arc<JobContext>>,
    attempt: apalis_core::task::attempt::Attempt,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        job = %envelope.name,
        request_id = envelope.request_id.as_deref().unwrap_or("-"),
        attempt = attempt.current(),
    );
    async move {
        let started = std::time::Instant::now();
        let result = run_envelope(envelope, &ctx).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(()) => {
                tracing::info!(ms, "job done");
                Ok(())
            }
            Err(JobError::Retry(e)) => {
                tracing::warn!(ms, error = format!("{e:#}"), "job failed; will retry if attempts remain");
                Err(e.into())
            }
            Err(JobError::Permanent(msg)) => {
                tracing::error!(ms, error = %msg, "job failed permanently");
                Err(AbortError::new(msg).into())
            }
        }
    }
    .instrument(span)
    .await
}
