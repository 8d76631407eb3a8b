//! Acknowledging finished jobs in batches, off the fetch path.
//!
//! apalis-postgres records a job's outcome (`Done`, or `Failed` with its error) through
//! an event channel that its fetch loop drains before pulling each next job: every
//! flush is a transaction (BEGIN, UPDATE, COMMIT) that the loop waits for, and since a
//! no-op job finishes at once, a flush came every few jobs. `bench/jobs` measured
//! 0.15 transactions and 0.5 statements per job with a fetch batch of 20, and the drain
//! bound by commit latency: ~840 jobs/s with durable commits on this machine.
//!
//! Here, as River does, each queue worker gets an *acker*: a task that receives outcomes
//! over a channel and writes whatever has accumulated with ONE statement ([`ACK_SQL`]).
//! While one write is in flight the next batch accumulates, so batches grow with the
//! load; on an idle queue a lone outcome is written at once. The fetch loop never waits
//! for it.
//!
//! The statement writes what apalis-postgres's `handle_results` writes (status, attempts,
//! `last_result`, `done_at`) but costs PostgreSQL less per job: the outcomes travel as
//! four arrays rather than a JSON document taken apart row by row, and there is no
//! `SELECT … FOR UPDATE` of the rows first — that locked each row (a WAL record per job)
//! only to update it in the next step, which locks it anyway. The `lock_by` guard lives
//! in the UPDATE's own WHERE, which PostgreSQL re-checks on the newest row version if
//! another transaction changed the row meanwhile (orphan recovery re-queuing it), so the
//! guarantee is the same. One acker per worker writes its own jobs one batch at a time,
//! and the other writers of those rows (orphan recovery) skip locked rows, so skipping
//! the ordered lock-taking opens no deadlock.
//!
//! What stays the same:
//! - what is written: the same status/attempt/result columns, guarded by
//!   `lock_by = <this worker>` so a job re-queued by orphan recovery is not overwritten;
//! - crash safety: an outcome not yet written when the process dies leaves the job held
//!   by a dead worker, re-queued after the heartbeat timeout — as before, where it
//!   waited in the channel;
//! - graceful shutdown: the backend wrapper [`FlushOnClose`] holds the worker's close
//!   until every outcome sent has been written (and the acker retries a failed write
//!   with backoff rather than dropping it).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::{Backend, BackendConfig, TaskResult, WireFormatBackend},
    error::BoxDynError,
    task::Task,
    worker::context::WorkerContext,
};
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tower::{Layer, Service};

/// At most this many outcomes per UPDATE (one JSON array parameter).
pub const MAX_ACK_BATCH: usize = 2000;

/// Counters shared by the layer (sent), the acker (written) and `FlushOnClose`.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    written: AtomicU64,
    changed: Notify,
}

/// One per queue worker: the sending side, for [`AckLayer`] and [`FlushOnClose`].
#[derive(Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<TaskResult<serde_json::Value>>,
    progress: Arc<Progress>,
}

impl Acker {
    /// Spawns the writing task for worker `worker_name` (the `lock_by` of its jobs).
    pub fn spawn(pool: PgPool, worker_name: String) -> Acker {
        // Unbounded is bounded in practice: outcomes come from jobs the worker fetched,
        // at most its concurrency ahead of the writes... plus what finishes while a write
        // is in flight, which is exactly what the next write takes.
        let (tx, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::default());
        tokio::spawn(write_loop(pool, worker_name, rx, progress.clone()));
        Acker { tx, progress }
    }

    pub fn layer(&self) -> AckLayer {
        AckLayer { acker: self.clone() }
    }

    fn send(&self, result: TaskResult<serde_json::Value>) {
        self.progress.sent.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(result).is_err() {
            // The acker is gone (only after its channel closed): count it as handled so
            // shutdown does not wait forever; the job is re-queued as an orphan later.
            self.progress.written.fetch_add(1, Ordering::SeqCst);
            tracing::error!("job outcome dropped: acker stopped");
        }
    }

    /// Resolves once every outcome sent so far has been written.
    async fn flushed(progress: Arc<Progress>) {
        loop {
            let notified = progress.changed.notified();
            if progress.written.load(Ordering::SeqCst) >= progress.sent.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

async fn write_loop(
    pool: PgPool,
    worker_name: String,
    mut rx: mpsc::UnboundedReceiver<TaskResult<serde_json::Value>>,
    progress: Arc<Progress>,
) {
    let mut batch = Vec::with_capacity(64);
    // Waits for the first outcome, then takes whatever else is already there.
    while rx.recv_many(&mut batch, MAX_ACK_BATCH).await > 0 {
        let mut delay = Duration::from_millis(50);
        loop {
            // A single statement is its own transaction: no BEGIN/COMMIT round trips.
            match write_outcomes(&pool, &batch, &worker_name).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, jobs = batch.len(), "writing job outcomes failed; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        progress.written.fetch_add(batch.len() as u64, Ordering::SeqCst);
        progress.changed.notify_waiters();
        batch.clear();
    }
}

/// Records a batch of outcomes for jobs held by `$5` (see the module comment). The
/// result is kept as apalis-postgres keeps it: `{"Ok": value}` or `{"Err": "message"}`.
pub const ACK_SQL: &str = "UPDATE apalis.jobs AS j
    SET status = a.status, attempts = a.attempt, last_result = a.result, done_at = now()
   FROM unnest($1::text[], $2::int4[], $3::text[], $4::jsonb[]) AS a(id, attempt, status, result)
  WHERE j.id = a.id AND j.lock_by = $5";

async fn write_outcomes(pool: &PgPool, batch: &[TaskResult<serde_json::Value>], worker_name: &str) -> Result<(), sqlx::Error> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut attempts = Vec::with_capacity(batch.len());
    let mut statuses = Vec::with_capacity(batch.len());
    let mut results = Vec::with_capacity(batch.len());
    for outcome in batch {
        ids.push(outcome.task_id.to_string());
        attempts.push(i32::try_from(outcome.attempt).unwrap_or(i32::MAX));
        statuses.push(outcome.status.to_string());
        results.push(match &outcome.result {
            Ok(v) => serde_json::json!({ "Ok": v }),
            Err(e) => serde_json::json!({ "Err": e }),
        });
    }
    sqlx::query(ACK_SQL).bind(ids).bind(attempts).bind(statuses).bind(results).bind(worker_name).execute(pool).await?;
    Ok(())
}

/// Tower layer: after a job's last run (retries included) sends its outcome to the acker.
#[derive(Clone)]
pub struct AckLayer {
    acker: Acker,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;
    fn layer(&self, inner: S) -> AckService<S> {
        AckService { inner, acker: self.acker.clone() }
    }
}

#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    acker: Acker,
}

impl<S, Args> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: serde::Serialize + Send,
    Args: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let ctx = task.ctx().clone();
        let fut = self.inner.call(task);
        let acker = self.acker.clone();
        Box::pin(async move {
            let res = fut.await.map_err(Into::into);
            // As apalis's own persistence layer records it: the status the lifecycle
            // layer set for the last run, the attempt count, the result or error text.
            if let Some(task_id) = ctx.task_id().cloned() {
                let result = match &res {
                    Ok(r) => serde_json::to_value(r).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                acker.send(TaskResult { task_id, attempt: ctx.attempt(), status: ctx.status(), result });
            }
            res
        })
    }
}

/// Wraps the worker's backend so that closing it (graceful shutdown, after the running
/// jobs finished) also waits until the acker has written every outcome.
pub struct FlushOnClose<B> {
    inner: B,
    progress: Arc<Progress>,
    waiting: Option<BoxFuture<'static, ()>>,
}

impl<B> FlushOnClose<B> {
    pub fn new(inner: B, acker: &Acker) -> Self {
        FlushOnClose { inner, progress: acker.progress.clone(), waiting: None }
    }
}

impl<B: Backend> Backend for FlushOnClose<B> {
    type Task = B::Task;
    type Error = B::Error;

    fn poll_ready(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx, worker)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        self.inner.poll_next(cx, worker)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        // First the backend's own close (hands unstarted jobs back to the queue).
        match self.inner.poll_close(cx, worker) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let progress = self.progress.clone();
        let waiting = self.waiting.get_or_insert_with(|| Box::pin(Acker::flushed(progress)));
        waiting.as_mut().poll(cx).map(Ok)
    }
}

impl<B: BackendConfig> BackendConfig for FlushOnClose<B> {
    type Args = B::Args;
    type Id = B::Id;
    type Kind = B::Kind;
    type Config = B::Config;
    type Layer = B::Layer;

    fn config(&self) -> &Self::Config {
        self.inner.config()
    }

    fn middleware(&mut self, worker: &mut WorkerContext) -> Self::Layer {
        self.inner.middleware(worker)
    }
}

impl<B: WireFormatBackend> WireFormatBackend for FlushOnClose<B> {
    type Codec = B::Codec;
    type Compact = B::Compact;

    fn codec(&self) -> &Self::Codec {
        self.inner.codec()
    }
}
