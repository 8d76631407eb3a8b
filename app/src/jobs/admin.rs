//! The one module that reads and changes apalis' tables for operators: counts by queue
//! and state, throughput and failures over the last hour, the oldest pending job, the
//! workers and their heartbeats, the failed jobs, retry and discard, and the retention
//! purge. Handlers (`admin::jobs`) and the worker's maintenance job call these functions;
//! nothing else writes SQL against `apalis.*` for operators.
//!
//! What the states mean (apalis' `status` column, as this worker writes it — see
//! `worker/src/runtime.rs` and `worker/src/acks.rs`):
//! - `Pending`: waiting to be fetched (`run_at` in the future: scheduled, e.g. a backoff);
//! - `Queued`: fetched by a worker (`lock_by`), waiting in its buffer for a free slot;
//! - `Running`: running (apalis' own locking; this worker skips it, see `lock_tasks`);
//! - `Done`: finished;
//! - `Failed` with `attempts < max_attempts`: **retrying** — a worker stopped between two
//!   runs; PostgreSQL hands it out again (`apalis.get_jobs` fetches such rows);
//! - `Failed` with `attempts >= max_attempts`: **failed** — every run failed, the job
//!   gave up and is kept with its error; nothing will run it again;
//! - `Killed`: **failed permanently** at once (bad arguments, unknown job, a panic, a
//!   refused recipient): also kept, also never run again.
//!
//! "Failed" on the dashboard, and what retry and discard accept, is the last two:
//! [`FAILED_SQL`]. Retrying one makes it `Pending` again with its attempts reset to 0
//! (a full budget, as a fresh job) and wakes the queue's workers; discarding deletes the
//! row. Anything else is refused with [`ActionError::NotFailed`].
//!
//! Fast with a million finished jobs: every query reads one of the partial indexes of
//! migration `jobs_dashboard` (finished jobs by `done_at`; the small set of unfinished
//! ones; the failed ones by when they failed), never the whole table.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

/// The condition for a job that gave up (see the module's notes). Every query that means
/// "failed" uses this text, so it matches the predicate of `apalis_jobs_failed_idx`.
pub const FAILED_SQL: &str = "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";

/// Finished jobs are deleted this long after they finished.
pub const DONE_RETENTION: Duration = Duration::days(7);
/// Failed jobs are kept longer: someone may want to look at them, or retry them.
pub const FAILED_RETENTION: Duration = Duration::days(30);
/// Mail idempotency keys (`sent_emails`): longer than any job that could send lives.
pub const SENT_EMAILS_RETENTION: Duration = Duration::days(30);
/// Workers rows unseen this long, holding no job row, are deleted.
pub const WORKER_RETENTION: Duration = Duration::days(7);
/// Rows deleted per statement, and statements per purge run at most (so one run stays
/// well inside the maintenance job's timeout; the next run, 15 minutes later, goes on).
pub const PURGE_BATCH: i64 = 5_000;
pub const PURGE_MAX_BATCHES: usize = 100;

/// A worker that has not heartbeaten for this long is shown as silent (they beat every
/// 10 s and are declared dead after 30 s; `/health` warns after 60 s).
pub const WORKER_ALIVE_SECS: f64 = 60.0;
/// Workers silent for longer than this are not listed.
pub const WORKER_LIST_SECS: i64 = 15 * 60;
/// Failed jobs per page.
pub const PAGE_SIZE: i64 = 50;
/// At most this many jobs per bulk action (each writes an audit row).
pub const MAX_BULK: usize = 500;
/// The throughput chart: this many buckets of `BUCKET_SECS`, the last one the current.
pub const BUCKETS: usize = 12;
pub const BUCKET_SECS: i64 = 300;

/// The states the dashboard counts, in the order it shows them.
pub const STATES: &[&str] = &["Scheduled", "Pending", "Queued", "Running", "Retrying", "Failed", "Killed"];

/// One queue's counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueCounts {
    pub queue: String,
    /// State (one of [`STATES`]) → number of jobs.
    pub states: BTreeMap<String, i64>,
    /// How long the oldest runnable pending job has waited, in seconds.
    pub oldest_pending_secs: Option<f64>,
}

impl QueueCounts {
    pub fn get(&self, state: &str) -> i64 {
        self.states.get(state).copied().unwrap_or(0)
    }
}

/// Counts for every queue in `queues` (also the ones with no job), plus any other queue
/// found in the table. One statement, an index-only scan of the unfinished jobs' partial
/// index. Finished jobs are not counted here (there may be millions, up to
/// `DONE_RETENTION` of them: counting costs a scan of them all, 38 ms for 130,000 in
/// bench/admin_jobs); [`throughput`] gives those of the last hour.
pub async fn counts(conn: &mut PgConnection, queues: &[&str]) -> Result<Vec<QueueCounts>, sqlx::Error> {
    let rows: Vec<(String, String, i64, Option<f64>)> = sqlx::query_as(
        "SELECT job_type,
                CASE WHEN status = 'Pending' AND run_at > now() THEN 'Scheduled'
                     WHEN status = 'Failed' AND attempts < max_attempts THEN 'Retrying'
                     ELSE status END AS state,
                count(*)::int8,
                extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'Pending' AND run_at <= now()))::float8
           FROM apalis.jobs
          WHERE status <> 'Done'
          GROUP BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_queue: BTreeMap<String, QueueCounts> =
        queues.iter().map(|q| (q.to_string(), QueueCounts { queue: q.to_string(), ..QueueCounts::default() })).collect();
    for (queue, state, n, oldest) in rows {
        let entry = by_queue.entry(queue.clone()).or_insert_with(|| QueueCounts { queue, ..QueueCounts::default() });
        *entry.states.entry(state).or_default() += n;
        if let Some(age) = oldest {
            entry.oldest_pending_secs = Some(entry.oldest_pending_secs.map_or(age, |a: f64| a.max(age)));
        }
    }
    // The known queues first, in their own order, then any other.
    let mut out: Vec<QueueCounts> = queues.iter().filter_map(|q| by_queue.remove(*q)).collect();
    out.extend(by_queue.into_values());
    Ok(out)
}

/// Jobs finished and failed per bucket over the last hour, for one queue.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub queue: String,
    /// `BUCKETS` counts, oldest first.
    pub done: Vec<i64>,
    pub failed: Vec<i64>,
}

/// The buckets' start times (oldest first) and each queue's counts in them (every queue
/// of `queues`, zeros included). "Failed" counts jobs that gave up in the bucket (a run
/// that failed and will be retried is not a failure yet).
pub async fn throughput(conn: &mut PgConnection, queues: &[&str]) -> Result<(Vec<DateTime<Utc>>, Vec<Throughput>), sqlx::Error> {
    let sql = format!(
        "WITH b AS (SELECT date_bin('{BUCKET_SECS} seconds', now(), timestamptz '2000-01-01 00:00:00+00') - interval '{} seconds' AS since),
         ev AS (
           SELECT job_type, done_at AS at, true AS ok FROM apalis.jobs, b WHERE status = 'Done' AND done_at >= b.since
           UNION ALL
           SELECT job_type, coalesce(done_at, run_at), false FROM apalis.jobs, b
            WHERE {FAILED_SQL} AND coalesce(done_at, run_at) >= b.since
         )
         SELECT b.since, ev.job_type, floor(extract(epoch FROM ev.at - b.since) / {BUCKET_SECS})::int4,
                count(ev.at) FILTER (WHERE ev.ok)::int8, count(ev.at) FILTER (WHERE NOT ev.ok)::int8
           FROM b LEFT JOIN ev ON true
          GROUP BY 1, 2, 3",
        (BUCKETS as i64 - 1) * BUCKET_SECS
    );
    let rows: Vec<(DateTime<Utc>, Option<String>, Option<i32>, i64, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn).await?;
    let since = rows.first().map(|r| r.0).unwrap_or_else(Utc::now);
    let starts = (0..BUCKETS).map(|i| since + Duration::seconds(i as i64 * BUCKET_SECS)).collect();
    let mut by_queue: BTreeMap<String, Throughput> = queues
        .iter()
        .map(|q| (q.to_string(), Throughput { queue: q.to_string(), done: vec![0; BUCKETS], failed: vec![0; BUCKETS] }))
        .collect();
    for (_, queue, bucket, done, failed) in rows {
        let (Some(queue), Some(bucket)) = (queue, bucket) else { continue };
        // A finish stamped a moment after `now()` (another connection's clock) joins the last.
        let i = (bucket.max(0) as usize).min(BUCKETS - 1);
        let t = by_queue
            .entry(queue.clone())
            .or_insert_with(|| Throughput { queue, done: vec![0; BUCKETS], failed: vec![0; BUCKETS] });
        t.done[i] += done;
        t.failed[i] += failed;
    }
    let mut out: Vec<Throughput> = queues.iter().filter_map(|q| by_queue.remove(*q)).collect();
    out.extend(by_queue.into_values());
    Ok((starts, out))
}

/// One worker process (its queue workers grouped: apalis registers one per queue, named
/// `queue@process`).
#[derive(Debug, Clone, Serialize)]
pub struct Worker {
    pub process: String,
    pub queues: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds since the most recent heartbeat of any of its queue workers.
    pub last_seen_secs: f64,
    pub alive: bool,
}

/// The workers seen in the last `WORKER_LIST_SECS`, most recently seen first.
pub async fn workers(db: impl PgExecutor<'_>) -> Result<Vec<Worker>, sqlx::Error> {
    let rows: Vec<(String, String, Option<DateTime<Utc>>, f64)> = sqlx::query_as(
        "SELECT id, worker_type, started_at, extract(epoch FROM now() - last_seen)::float8
           FROM apalis.workers
          WHERE last_seen > now() - make_interval(secs => $1)
          ORDER BY id",
    )
    .bind(WORKER_LIST_SECS as f64)
    .fetch_all(db)
    .await?;
    let mut by_process: BTreeMap<String, Worker> = BTreeMap::new();
    for (id, queue, started_at, secs) in rows {
        let process = match id.split_once('@') {
            Some((_, process)) => process.to_string(),
            None => id.clone(),
        };
        let w = by_process.entry(process.clone()).or_insert_with(|| Worker {
            process,
            queues: Vec::new(),
            started_at,
            last_seen_secs: secs,
            alive: false,
        });
        w.queues.push(queue);
        w.last_seen_secs = w.last_seen_secs.min(secs);
        w.started_at = match (w.started_at, started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut out: Vec<Worker> = by_process.into_values().collect();
    for w in &mut out {
        w.alive = w.last_seen_secs < WORKER_ALIVE_SECS;
        w.queues.sort();
        w.queues.dedup();
    }
    out.sort_by(|a, b| a.last_seen_secs.total_cmp(&b.last_seen_secs).then_with(|| a.process.cmp(&b.process)));
    Ok(out)
}

/// A failed job, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FailedJob {
    pub id: String,
    pub queue: String,
    /// The job's name from its envelope (`app::jobs::Job::NAME`), or "?" when unreadable.
    pub name: String,
    /// `Failed` (gave up after its attempts) or `Killed` (failed permanently at once).
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub failed_at: DateTime<Utc>,
    pub error: String,
}

/// Where a page of failed jobs starts: after this (failed_at, id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub failed_at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// `micros.id`: exact (PostgreSQL keeps microseconds) and URL-safe (ids are ULIDs).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.failed_at.timestamp_micros(), self.id)
    }

    /// None for anything malformed (the page then starts at the top).
    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('.')?;
        let failed_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        Some(Cursor { failed_at, id: id.to_string() })
    }
}

type FailedRow = (String, String, String, i32, i32, DateTime<Utc>, Option<String>, Vec<u8>);

fn failed_job(row: FailedRow) -> FailedJob {
    let (id, queue, status, attempts, max_attempts, failed_at, error, job) = row;
    FailedJob { id, queue, name: job_name(&job), status, attempts, max_attempts, failed_at, error: error.unwrap_or_default() }
}

/// The envelope's `name`, read leniently: a row that is not our JSON still lists.
pub fn job_name(job: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    serde_json::from_slice::<Named>(job).map(|n| n.name).unwrap_or_else(|_| "?".into())
}

const FAILED_COLUMNS: &str = "id, job_type, status, attempts, max_attempts, coalesce(done_at, run_at) AS failed_at,
       coalesce(last_result ->> 'Err', last_result::text), job";

/// One page of failed jobs (optionally of one queue), newest failure first, and the
/// cursor of the next page if there is one.
pub async fn failed(
    db: impl PgExecutor<'_>,
    queue: Option<&str>,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<(Vec<FailedJob>, Option<Cursor>), sqlx::Error> {
    // Two spellings rather than `$n IS NULL OR …`, so the keyset condition is a plain
    // range on the index the planner can start from.
    let keyset = if after.is_some() { "AND (coalesce(done_at, run_at), id) < ($2, $3)" } else { "AND $2::timestamptz IS NULL AND $3::text IS NULL" };
    let sql = format!(
        "SELECT {FAILED_COLUMNS} FROM apalis.jobs
          WHERE {FAILED_SQL} AND ($1::text IS NULL OR job_type = $1) {keyset}
          ORDER BY coalesce(done_at, run_at) DESC, id DESC
          LIMIT $4"
    );
    let rows: Vec<FailedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(queue)
        .bind(after.map(|c| c.failed_at))
        .bind(after.map(|c| c.id.as_str()))
        .bind(limit + 1)
        .fetch_all(db)
        .await?;
    let mut jobs: Vec<FailedJob> = rows.into_iter().map(failed_job).collect();
    let next = if jobs.len() as i64 > limit {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| Cursor { failed_at: j.failed_at, id: j.id.clone() })
    } else {
        None
    };
    Ok((jobs, next))
}

/// Why a retry or discard was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no such job")]
    NotFound,
    /// The job exists but has not failed: it is waiting, running, retrying by itself, or
    /// done. Only failed jobs can be retried or discarded.
    #[error("job {id} is {state}, not failed")]
    NotFailed { id: String, state: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A job a retry or discard changed, with its state before (for the audit log).
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub id: String,
    pub queue: String,
    pub name: String,
    pub before: serde_json::Value,
}

/// The state the dashboard would show for a row (see the module's notes).
pub fn state_of(status: &str, attempts: i32, max_attempts: i32, run_at_future: bool) -> &'static str {
    match status {
        "Pending" if run_at_future => "Scheduled",
        "Pending" => "Pending",
        "Queued" => "Queued",
        "Running" => "Running",
        "Done" => "Done",
        "Failed" if attempts < max_attempts => "Retrying",
        "Failed" => "Failed",
        "Killed" => "Killed",
        _ => "unknown",
    }
}

type LockedRow = (String, String, String, i32, i32, bool, Option<String>, Vec<u8>);

/// Locks the rows of `ids` that exist (FOR UPDATE: two admins retrying at once serialise
/// here, and the second sees the first's result).
async fn lock(conn: &mut PgConnection, ids: &[String]) -> Result<Vec<LockedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, job_type, status, attempts, max_attempts, run_at > now(), coalesce(last_result ->> 'Err', last_result::text), job
           FROM apalis.jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Locks every failed job of `queue` (at most `limit`), oldest failure first.
async fn lock_failed_in_queue(conn: &mut PgConnection, queue: &str, limit: usize) -> Result<Vec<LockedRow>, sqlx::Error> {
    let sql = format!(
        "SELECT id, job_type, status, attempts, max_attempts, run_at > now(), coalesce(last_result ->> 'Err', last_result::text), job
           FROM apalis.jobs WHERE {FAILED_SQL} AND job_type = $1
          ORDER BY coalesce(done_at, run_at), id LIMIT $2 FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(queue).bind(limit as i64).fetch_all(conn).await
}

fn changed(row: &LockedRow) -> Changed {
    let (id, queue, status, attempts, max_attempts, _, error, job) = row;
    Changed {
        id: id.clone(),
        queue: queue.clone(),
        name: job_name(job),
        before: serde_json::json!({
            "status": status,
            "state": state_of(status, *attempts, *max_attempts, false),
            "attempts": attempts,
            "max_attempts": max_attempts,
            "queue": queue,
            "name": job_name(job),
            // Bounded: an audit row must stay small whatever a job's error said.
            "error": error.as_deref().map(|e| e.chars().take(2000).collect::<String>()),
        }),
    }
}

fn is_failed(row: &LockedRow) -> bool {
    let (_, _, status, attempts, max_attempts, ..) = row;
    status == "Killed" || (status == "Failed" && attempts >= max_attempts)
}

/// What a bulk action did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changed: Vec<Changed>,
    /// Asked for, found, but not failed (left alone): (id, state).
    pub not_failed: Vec<(String, String)>,
    /// Asked for, not found (discarded or purged meanwhile).
    pub missing: Vec<String>,
}

/// Which jobs a bulk action is for.
#[derive(Debug, Clone)]
pub enum Selection {
    Ids(Vec<String>),
    /// Every failed job of the queue (at most `MAX_BULK` per call).
    Queue(String),
}

async fn select(conn: &mut PgConnection, which: &Selection) -> Result<Outcome, sqlx::Error> {
    let rows = match which {
        Selection::Ids(ids) => lock(conn, ids).await?,
        Selection::Queue(q) => lock_failed_in_queue(conn, q, MAX_BULK).await?,
    };
    let mut out = Outcome::default();
    if let Selection::Ids(ids) = which {
        out.missing = ids.iter().filter(|id| !rows.iter().any(|r| &r.0 == *id)).cloned().collect();
        out.missing.sort();
        out.missing.dedup();
    }
    for row in &rows {
        if is_failed(row) {
            out.changed.push(changed(row));
        } else {
            out.not_failed.push((row.0.clone(), state_of(&row.2, row.3, row.4, row.5).to_string()));
        }
    }
    Ok(out)
}

/// Makes the jobs of `out` runnable again: `Pending`, attempts 0 (a whole new budget),
/// due now, unlocked; and wakes their queues' workers (the notification an insert sends).
async fn apply_retry(conn: &mut PgConnection, out: &Outcome) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = out.changed.iter().map(|c| c.id.as_str()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH u AS (
           UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), done_at = NULL, lock_by = NULL, lock_at = NULL
            WHERE id = ANY($1) RETURNING id, job_type, run_at
         )
         SELECT pg_notify('apalis::job::insert', json_build_object('job_type', job_type, 'id', id, 'run_at', run_at)::text) FROM u",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_discard(conn: &mut PgConnection, out: &Outcome) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = out.changed.iter().map(|c| c.id.as_str()).collect();
    if !ids.is_empty() {
        sqlx::query("DELETE FROM apalis.jobs WHERE id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Retries the failed jobs of `which` (see [`apply_retry`]); the others are left alone
/// and listed. Run it in the caller's transaction (with the audit rows).
pub async fn retry_many(conn: &mut PgConnection, which: &Selection) -> Result<Outcome, sqlx::Error> {
    let out = select(conn, which).await?;
    apply_retry(conn, &out).await?;
    Ok(out)
}

/// Deletes the failed jobs of `which`; the others are left alone and listed.
pub async fn discard_many(conn: &mut PgConnection, which: &Selection) -> Result<Outcome, sqlx::Error> {
    let out = select(conn, which).await?;
    apply_discard(conn, &out).await?;
    Ok(out)
}

/// The one job of a single action, or why it is refused (nothing is changed then).
fn single(out: &Outcome) -> Result<Changed, ActionError> {
    if let Some((id, state)) = out.not_failed.first() {
        return Err(ActionError::NotFailed { id: id.clone(), state: state.clone() });
    }
    out.changed.first().cloned().ok_or(ActionError::NotFound)
}

/// Retries one failed job; refuses one that is not failed (422 on the page) and one that
/// does not exist (404).
pub async fn retry(conn: &mut PgConnection, id: &str) -> Result<Changed, ActionError> {
    let out = select(conn, &Selection::Ids(vec![id.to_string()])).await?;
    let job = single(&out)?;
    apply_retry(conn, &out).await?;
    Ok(job)
}

/// Discards (deletes) one failed job; refuses one that is not failed or does not exist.
pub async fn discard(conn: &mut PgConnection, id: &str) -> Result<Changed, ActionError> {
    let out = select(conn, &Selection::Ids(vec![id.to_string()])).await?;
    let job = single(&out)?;
    apply_discard(conn, &out).await?;
    Ok(job)
}

/// What one purge run deleted.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Purged {
    pub done_jobs: u64,
    pub failed_jobs: u64,
    pub sent_emails: u64,
    pub workers: u64,
}

/// Deletes rows of `sql` (a `DELETE … WHERE id IN (SELECT … ORDER BY <indexed> LIMIT $1)`
/// statement taking the batch size: the ORDER BY makes it walk the index from the oldest
/// rather than scan the table for rows past their retention) batch by batch, each its own short statement, until one
/// deletes less than a batch or `PURGE_MAX_BATCHES` ran.
async fn purge_batches(db: &sqlx::PgPool, sql: &str) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    for _ in 0..PURGE_MAX_BATCHES {
        let n = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(PURGE_BATCH).execute(db).await?.rows_affected();
        total += n;
        if (n as i64) < PURGE_BATCH {
            break;
        }
    }
    Ok(total)
}

/// The retention purge (run by the periodic maintenance job): finished jobs older than
/// `DONE_RETENTION`, failed ones older than `FAILED_RETENTION`, `sent_emails` older than
/// `SENT_EMAILS_RETENTION`, and worker rows long gone that no job refers to any more.
/// In batches of `PURGE_BATCH`, each its own statement, so no lock is held for long.
pub async fn purge(db: &sqlx::PgPool) -> Result<Purged, sqlx::Error> {
    let done_jobs = purge_batches(
        db,
        &format!(
            "DELETE FROM apalis.jobs WHERE id IN (
               SELECT id FROM apalis.jobs WHERE status = 'Done' AND done_at < now() - interval '{} days'
                ORDER BY done_at LIMIT $1)",
            DONE_RETENTION.num_days()
        ),
    )
    .await?;
    let failed_jobs = purge_batches(
        db,
        &format!(
            "DELETE FROM apalis.jobs WHERE id IN (
               SELECT id FROM apalis.jobs WHERE {FAILED_SQL} AND coalesce(done_at, run_at) < now() - interval '{} days'
                ORDER BY coalesce(done_at, run_at) LIMIT $1)",
            FAILED_RETENTION.num_days()
        ),
    )
    .await?;
    let sent_emails = purge_batches(
        db,
        &format!(
            "DELETE FROM sent_emails WHERE job_key IN (
               SELECT job_key FROM sent_emails WHERE sent_at < now() - interval '{} days' ORDER BY sent_at LIMIT $1)",
            SENT_EMAILS_RETENTION.num_days()
        ),
    )
    .await?;
    let workers = purge_batches(
        db,
        &format!(
            "DELETE FROM apalis.workers WHERE id IN (
               SELECT w.id FROM apalis.workers w
                WHERE w.last_seen < now() - interval '{} days'
                  -- Not while it holds a job (orphan recovery needs its row); finished
                  -- jobs may name a purged worker (apalis_jobs_held_idx, migration 20261205).
                  AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id AND (j.status = 'Queued' OR j.status = 'Running'))
                LIMIT $1)",
            WORKER_RETENTION.num_days()
        ),
    )
    .await?;
    Ok(Purged { done_jobs, failed_jobs, sent_emails, workers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = Cursor { failed_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), id: "01JABCDEF".into() };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "x", "12", "12.", "abc.01J", "12.a b", "12.a'b"] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn states_follow_apalis_status_and_attempts() {
        assert_eq!(state_of("Failed", 2, 5, false), "Retrying");
        assert_eq!(state_of("Failed", 5, 5, false), "Failed");
        assert_eq!(state_of("Killed", 1, 5, false), "Killed");
        assert_eq!(state_of("Pending", 0, 5, true), "Scheduled");
        assert_eq!(state_of("Pending", 0, 5, false), "Pending");
    }

    #[test]
    fn job_names_are_read_leniently() {
        assert_eq!(job_name(br#"{"name":"noop","args":{}}"#), "noop");
        assert_eq!(job_name(b"\xff not json"), "?");
    }
}
