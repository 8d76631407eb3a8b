//! Periodic jobs, run as a role like Celery beat: of all the worker processes, only the
//! one holding the scheduler's PostgreSQL advisory lock (session-level, on a connection
//! of its own) enqueues them; the others wait on the lock and one takes over as soon as
//! the leader's connection ends (its process died, was stopped, or lost the database).
//!
//! What runs when (the default [`Schedule`]):
//! - the purge of expired rows (`PurgeExpired`), once per 15-minute period;
//! - the trending recompute (`RecomputeTrending`), once per 10-minute period;
//! - the daily digest (`DailyDigest`), once per UTC day, at the first tick after
//!   `DIGEST_HOUR_UTC`.
//!
//! The leader ticks every `TICK_EVERY` and enqueues a job when a new period starts. Each
//! job still carries an idempotency key naming its period (`trending:{n}`, …), the
//! second guard: a new leader's first tick meets the period its predecessor already
//! enqueued as a duplicate, and so do workers of the previous release during a rolling
//! deploy (they tick without the lock, with the same keys). Periods are counted from the
//! Unix epoch, so every process agrees on them without talking to the others.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use app::{
    db::Db,
    jobs::{EnqueueError, UNIQUE_VIOLATION, maintenance::PurgeExpired, notify::DailyDigest, trending::RecomputeTrending},
};
use sqlx::{Connection, PgConnection};

pub const PURGE_EVERY: Duration = Duration::from_secs(15 * 60);
pub const TRENDING_EVERY: Duration = Duration::from_secs(10 * 60);
/// How often the leader looks at the clock. A tick that starts no period costs no query,
/// so it can be short: a job is enqueued at most this long after its period starts.
pub const TICK_EVERY: Duration = Duration::from_secs(60);
/// The digest goes out at the first tick after this hour (UTC): morning in Europe,
/// early enough for the Americas' evening.
pub const DIGEST_HOUR_UTC: u64 = 7;
/// The scheduler's advisory lock ("QuireSch" in ASCII). Advisory locks are per database,
/// so this only has to be unique among Quire's own locks.
pub const LEADER_LOCK: i64 = 0x5175_6972_6553_6368;

/// The periods of the schedule. Production uses `Schedule::default()`; tests pass
/// periods of a few hundred milliseconds.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub tick: Duration,
    pub purge_every: Duration,
    pub trending_every: Duration,
    /// The digest's period (a day) and how far into it the digest is sent.
    pub digest_every: Duration,
    pub digest_after: Duration,
    /// How long to wait before trying again when the leader's connection failed (or no
    /// connection could be made).
    pub retry: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            tick: TICK_EVERY,
            purge_every: PURGE_EVERY,
            trending_every: TRENDING_EVERY,
            digest_every: Duration::from_secs(86_400),
            digest_after: Duration::from_secs(DIGEST_HOUR_UTC * 3600),
            retry: Duration::from_secs(5),
        }
    }
}

/// What a scheduler did, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Times this process became the leader.
    pub terms: AtomicU64,
    /// Jobs it enqueued.
    pub enqueued: AtomicU64,
    /// Enqueues refused as duplicates (the period was enqueued already).
    pub duplicates: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Runs the production schedule in this process, as leader or standby, until dropped
/// (abort the task to stop it: its lock connection closes, and another worker takes over).
pub async fn run(db: Db) {
    run_with(db, Schedule::default(), Arc::default()).await
}

pub async fn run_with(db: Db, schedule: Schedule, stats: Arc<Stats>) {
    loop {
        if let Err(e) = lead(&db, &schedule, &stats).await {
            tracing::warn!(error = format!("{e:#}"), "scheduler: lost or could not open its connection; trying again");
        }
        tokio::time::sleep(schedule.retry).await;
    }
}

/// Waits for the lock on a connection of its own (outside the pool: the lock must live
/// exactly as long as this connection), then runs the schedule on that connection until
/// it fails. Enqueueing on the lock's own connection means a leader whose session ended
/// (and whose lock another worker may now hold) cannot enqueue anything more.
async fn lead(db: &Db, schedule: &Schedule, stats: &Stats) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&db.primary().connect_options()).await?;
    // Blocks while another worker leads; returns as soon as its session ends.
    sqlx::query("SELECT pg_advisory_lock($1)").bind(LEADER_LOCK).execute(&mut conn).await?;
    stats.terms.fetch_add(1, Ordering::Relaxed);
    tracing::info!("scheduler: this worker now runs the periodic jobs");
    let mut last = Last::default();
    let mut tick = tokio::time::interval(schedule.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = unix_millis();
        let trending = now / millis(schedule.trending_every);
        if last.trending != Some(trending) && enqueue(&mut conn, stats, &RecomputeTrending {}, &format!("trending:{trending}")).await? {
            last.trending = Some(trending);
        }
        let purge = now / millis(schedule.purge_every);
        if last.purge != Some(purge) && enqueue(&mut conn, stats, &PurgeExpired {}, &format!("purge_expired:{purge}")).await? {
            last.purge = Some(purge);
        }
        let day = now / millis(schedule.digest_every);
        let digest_due = now % millis(schedule.digest_every) >= millis(schedule.digest_after);
        if digest_due
            && last.digest != Some(day)
            && enqueue(&mut conn, stats, &DailyDigest { day: day as i64 }, &format!("daily_digest:{day}")).await?
        {
            last.digest = Some(day);
        }
    }
}

/// The last period of each job the leader enqueued (or found enqueued).
#[derive(Default)]
struct Last {
    trending: Option<u64>,
    purge: Option<u64>,
    digest: Option<u64>,
}

/// Enqueues `job` under `key`: true once the period is taken care of (enqueued now, or a
/// duplicate of an earlier enqueue). Any other failure is logged and tried again at the
/// next tick, and returned only when the connection itself is gone, so that this process
/// gives up the lead instead of ticking on a dead session.
async fn enqueue<J: app::jobs::Job>(conn: &mut PgConnection, stats: &Stats, job: &J, key: &str) -> anyhow::Result<bool> {
    match app::jobs::enqueue_with_key(conn, job, None, Some(key)).await {
        Ok(()) => {
            stats.enqueued.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%key, "scheduled");
            Ok(true)
        }
        Err(e) if e.is_duplicate() => {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%key, "already scheduled");
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(%key, error = format!("{e:#}"), "could not schedule periodic job");
            conn.ping().await?;
            Ok(false)
        }
    }
}

/// Enqueues day `day`'s digest (days since the Unix epoch, UTC), once: the key
/// `daily_digest:{day}` makes every other worker's attempt a duplicate.
pub async fn schedule_digest(db: &Db, day: i64) -> anyhow::Result<()> {
    let mut conn = db.primary().acquire().await?;
    app::jobs::enqueue_with_key(&mut conn, &DailyDigest { day }, None, Some(&format!("daily_digest:{day}"))).await?;
    Ok(())
}

/// Enqueues the trending recompute of 10-minute period `period` (`unix_secs / 600`),
/// once: the key `trending:{period}` makes every other worker's attempt a duplicate.
pub async fn schedule_trending(db: &Db, period: u64) -> anyhow::Result<()> {
    let mut conn = db.primary().acquire().await?;
    app::jobs::enqueue_with_key(&mut conn, &RecomputeTrending {}, None, Some(&format!("trending:{period}"))).await?;
    Ok(())
}

/// Enqueues this period's purge under `key`.
pub async fn schedule(db: &Db, key: &str) -> anyhow::Result<()> {
    let mut conn = db.primary().acquire().await?;
    app::jobs::enqueue_with_key(&mut conn, &PurgeExpired {}, None, Some(key)).await?;
    Ok(())
}

/// True when `e` is PostgreSQL's `unique_violation` (SQLSTATE 23505), wherever it sits
/// in the chain: wrapped in an `EnqueueError` (→ `apalis_postgres::Error` → `sqlx::Error`)
/// or a bare `sqlx::Error`. The SQLSTATE is stable; the message's wording is not (it
/// changes with `lc_messages`, for one).
pub fn is_duplicate(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<EnqueueError>() {
            return e.is_duplicate();
        }
        let db_error = match cause.downcast_ref::<apalis_postgres::Error>() {
            Some(apalis_postgres::Error::Database(e)) => e.as_database_error(),
            _ => cause.downcast_ref::<sqlx::Error>().and_then(sqlx::Error::as_database_error),
        };
        db_error.and_then(|d| d.code()).as_deref() == Some(UNIQUE_VIOLATION)
    })
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// A period in milliseconds, never 0 (a zero period would divide by zero).
fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}
