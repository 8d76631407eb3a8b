//! The job registry: each job's name mapped to its handler and its own policy (attempts,
//! timeout, backoff), built once at start-up.
//!
//! A queue row holds an [`Envelope`] naming its job. Before, the worker matched that name
//! against a hand-written list, so a job someone forgot to list only failed once one was
//! queued; now every job is registered by type (`register::<J>()`), the name and policy
//! come from the type's own `Job` constants, and `tests/registry.rs` fails when a job type
//! of `app::jobs` is missing.
//!
//! The same entry drives both halves of a run:
//! - [`Registry::run`] (called once per attempt) deserialises the arguments, runs the
//!   handler under the job's `TIMEOUT`, turns a panic into a permanent failure, and after
//!   the last attempt gives the job its [`Run::exhausted`] hook;
//! - [`RetryByJob`] (the worker's tower retry policy) decides whether and when another
//!   attempt follows, from the job's `MAX_ATTEMPTS` and backoff.

use std::{
    any::Any,
    collections::HashMap,
    convert::Infallible,
    fmt,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::layers::retry::{HasherRng, Policy};
use apalis_core::{
    error::{AbortError, BoxDynError},
    task::{Task, attempt::Attempt, from_request::FromRequest, status::Status},
    worker::context::WorkerContext,
};
use app::jobs::Envelope;
use futures::{FutureExt, future::BoxFuture};
use tower::util::rng::Rng;
use tracing::Instrument;

use super::{JobContext, JobError, Run};

/// How long a job's [`Run::exhausted`] hook may take (it records a failure; it should be
/// one UPDATE).
pub const EXHAUSTED_TIMEOUT: Duration = Duration::from_secs(30);

type Handler = for<'a> fn(serde_json::Value, &'a JobContext) -> BoxFuture<'a, Result<(), JobError>>;

/// One registered job type: its policy, copied from its `Job` constants, and its
/// handlers with the type erased.
pub struct Entry {
    pub name: &'static str,
    pub queue: &'static str,
    pub max_attempts: usize,
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    run: Handler,
    exhausted: Handler,
    /// Its runs, for the worker's `/metrics`.
    stats: Arc<crate::metrics::JobStats>,
}

impl Entry {
    pub fn stats(&self) -> &crate::metrics::JobStats {
        &self.stats
    }

    /// Runs in all for a job row. The row stores the budget the job was enqueued with,
    /// and PostgreSQL fetches a failed row again while its attempts are below it; the
    /// smaller of the two applies, so a budget lowered in a later deploy applies to jobs
    /// already queued too.
    pub fn attempt_budget(&self, stored: Option<usize>) -> usize {
        stored.map_or(self.max_attempts, |s| s.min(self.max_attempts)).max(1)
    }

    /// The wait before the retry that follows run number `attempt` (1-based):
    /// `backoff_min` doubled per earlier retry, plus `jitter` (0..1) of a quarter of it
    /// more, never above `backoff_max`. `floor_cap` lowers `backoff_min` (tests).
    pub fn backoff(&self, attempt: usize, floor_cap: Duration, jitter: f64) -> Duration {
        backoff_delay(self.backoff_min.min(floor_cap), self.backoff_max, attempt, jitter)
    }
}

/// See [`Entry::backoff`].
pub fn backoff_delay(min: Duration, max: Duration, attempt: usize, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31) as u32;
    let base = min.saturating_mul(1u32 << doublings).min(max);
    base.saturating_add(base.mul_f64(0.25 * jitter.clamp(0.0, 1.0))).min(max)
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

fn run_typed<J: Run>(args: serde_json::Value, ctx: &JobContext) -> BoxFuture<'_, Result<(), JobError>> {
    Box::pin(async move { decode::<J>(args)?.run(ctx).await })
}

fn exhausted_typed<J: Run>(args: serde_json::Value, ctx: &JobContext) -> BoxFuture<'_, Result<(), JobError>> {
    Box::pin(async move { decode::<J>(args)?.exhausted(ctx).await })
}

fn decode<J: Run>(args: serde_json::Value) -> Result<J, JobError> {
    // Bad arguments stay bad: retrying cannot help.
    serde_json::from_value(args).map_err(|e| JobError::Permanent(format!("bad arguments for {}: {e}", J::NAME)))
}

/// Which run of a job this is, as the worker knows it.
#[derive(Debug, Clone, Copy)]
pub struct RunInfo {
    /// 1 for the first run.
    pub attempt: usize,
    /// The budget stored in the job's row, if it came from one.
    pub stored_max_attempts: Option<usize>,
}

impl RunInfo {
    /// A run outside the queue (tests, tools): the first of the job's own budget.
    pub const FIRST: RunInfo = RunInfo { attempt: 1, stored_max_attempts: None };
}

/// Job name → entry.
#[derive(Default)]
pub struct Registry {
    entries: HashMap<&'static str, Entry>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.names().collect();
        names.sort_unstable();
        f.debug_tuple("Registry").field(&names).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds job type `J` under `J::NAME`.
    ///
    /// # Panics
    /// When `J::NAME` is already registered, or `J`'s policy makes no sense (no attempt,
    /// a zero timeout, a backoff minimum above its maximum): programming errors, caught
    /// when the worker builds its registry at start-up, before it takes any job.
    #[track_caller]
    pub fn register<J: Run>(mut self) -> Self {
        assert!(!self.entries.contains_key(J::NAME), "job name `{}` registered twice", J::NAME);
        assert!(J::MAX_ATTEMPTS >= 1, "job `{}`: MAX_ATTEMPTS must be at least 1", J::NAME);
        assert!(!J::TIMEOUT.is_zero(), "job `{}`: TIMEOUT must not be zero", J::NAME);
        assert!(J::BACKOFF_MIN <= J::BACKOFF_MAX, "job `{}`: BACKOFF_MIN must not exceed BACKOFF_MAX", J::NAME);
        self.entries.insert(
            J::NAME,
            Entry {
                name: J::NAME,
                queue: J::QUEUE,
                max_attempts: J::MAX_ATTEMPTS,
                timeout: J::TIMEOUT,
                backoff_min: J::BACKOFF_MIN,
                backoff_max: J::BACKOFF_MAX,
                run: run_typed::<J>,
                exhausted: exhausted_typed::<J>,
                stats: Arc::default(),
            },
        );
        self
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.keys().copied()
    }

    /// One run of the job `envelope` names, inside a span that carries the request id of
    /// the request that enqueued it, with its outcome logged.
    pub async fn run(&self, envelope: Envelope, ctx: &JobContext, info: RunInfo) -> Result<(), JobError> {
        let span = tracing::info_span!(
            "job",
            job = %envelope.name,
            request_id = envelope.request_id.as_deref().unwrap_or("-"),
            attempt = info.attempt,
        );
        async move {
            let started = Instant::now();
            let result = self.run_once(envelope, ctx, info).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            match &result {
                Ok(()) => tracing::info!(ms, "job done"),
                Err(JobError::Retry(e)) => tracing::warn!(ms, error = format!("{e:#}"), "job failed; will retry if attempts remain"),
                Err(JobError::Permanent(msg)) => tracing::error!(ms, error = %msg, "job failed permanently"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn run_once(&self, envelope: Envelope, ctx: &JobContext, info: RunInfo) -> Result<(), JobError> {
        let Some(entry) = self.get(&envelope.name) else {
            crate::metrics::UNKNOWN.record(crate::metrics::Outcome::Killed, Duration::ZERO, false);
            return Err(JobError::Permanent(format!("unknown job `{}`", envelope.name)));
        };
        let started = Instant::now();
        let last = info.attempt >= entry.attempt_budget(info.stored_max_attempts);
        // Only the last run needs the arguments again afterwards (for `exhausted`).
        let spare_args = last.then(|| envelope.args.clone());
        let run = AssertUnwindSafe((entry.run)(envelope.args, ctx)).catch_unwind();
        // The timeout drops the handler's future; work it handed to other threads must
        // bound itself (see `crate::limiter` for the image decodes).
        let (result, timed_out) = match tokio::time::timeout(entry.timeout, run).await {
            Ok(Ok(result)) => (result, false),
            Ok(Err(panic)) => (Err(JobError::Permanent(format!("panicked: {}", panic_message(&*panic)))), false),
            Err(_) => (Err(JobError::Retry(anyhow::anyhow!("timed out after {:?}", entry.timeout))), true),
        };
        {
            use crate::metrics::Outcome;
            let outcome = match &result {
                Ok(()) => Outcome::Done,
                Err(JobError::Retry(_)) if last => Outcome::Failed,
                Err(JobError::Retry(_)) => Outcome::Retry,
                Err(JobError::Permanent(_)) => Outcome::Killed,
            };
            entry.stats.record(outcome, started.elapsed(), timed_out);
        }
        if let (Err(JobError::Retry(e)), Some(args)) = (&result, spare_args) {
            tracing::warn!(error = format!("{e:#}"), attempts = info.attempt, "last attempt failed; giving up");
            match tokio::time::timeout(EXHAUSTED_TIMEOUT, (entry.exhausted)(args, ctx)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "recording that the job gave up failed"),
                Err(_) => tracing::error!("recording that the job gave up timed out"),
            }
        }
        result
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The apalis extractor for [`RunInfo`]: the attempt counter (read when the run starts,
/// after apalis counted it) and the budget stored in the row.
pub struct RunCounter {
    attempt: Attempt,
    stored_max_attempts: Option<usize>,
}

impl RunCounter {
    pub fn info(&self) -> RunInfo {
        RunInfo { attempt: self.attempt.current().max(1), stored_max_attempts: self.stored_max_attempts }
    }
}

impl FromRequest<Task<Envelope>> for RunCounter {
    type Error = Infallible;
    async fn from_request(task: &Task<Envelope>) -> Result<Self, Infallible> {
        Ok(RunCounter { attempt: task.raw_attempt().clone(), stored_max_attempts: task.max_attempts() })
    }
}

/// The worker's retry policy: after a failed run, looks the job up by its envelope's
/// name and retries while the job's attempt budget lasts, after the job's backoff.
///
/// No retry after a permanent failure (an `AbortError`: bad input, an unknown job, a
/// panic), nor while the worker shuts down (the row stays failed with attempts left, so
/// PostgreSQL hands it to the next worker).
#[derive(Clone)]
pub struct RetryByJob {
    registry: Arc<Registry>,
    floor_cap: Duration,
    rng: HasherRng,
}

impl RetryByJob {
    /// `floor_cap` caps every job's `BACKOFF_MIN` (tests shorten waits; `Duration::MAX`
    /// keeps each job's own).
    pub fn new(registry: Arc<Registry>, floor_cap: Duration) -> Self {
        RetryByJob { registry, floor_cap, rng: HasherRng::default() }
    }
}

fn is_abort<E: Any>(err: &E) -> bool {
    let any = err as &dyn Any;
    any.downcast_ref::<AbortError>().is_some() || any.downcast_ref::<BoxDynError>().is_some_and(|e| e.downcast_ref::<AbortError>().is_some())
}

impl<Res, Err: Any> Policy<Task<Envelope>, Res, Err> for RetryByJob {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, req: &mut Task<Envelope>, result: &mut Result<Res, Err>) -> Option<Self::Future> {
        let Err(err) = result else { return None };
        if req.data().get::<WorkerContext>().is_none_or(|w| w.is_shutting_down()) {
            return None;
        }
        if req.status() == Status::Killed || is_abort(err) {
            return None;
        }
        let entry = self.registry.get(&req.args.name)?;
        let attempt = req.attempt();
        if attempt >= entry.attempt_budget(req.max_attempts()) {
            return None;
        }
        Some(tokio::time::sleep(entry.backoff(attempt, self.floor_cap, self.rng.next_f64())))
    }

    fn clone_request(&mut self, req: &Task<Envelope>) -> Option<Task<Envelope>> {
        // A clone shares the original's execution context, so the attempt count and status
        // apalis keeps there carry over to the next run.
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=8).map(|a| backoff_delay(min, max, a, 0.0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff_delay(min, max, 2, 1.0), Duration::from_millis(2500), "jitter adds up to a quarter");
        assert_eq!(backoff_delay(min, max, 7, 1.0), max, "jitter never exceeds the maximum");
        assert_eq!(backoff_delay(min, max, usize::MAX, 0.5), max, "no overflow on huge attempt counts");
    }
}
