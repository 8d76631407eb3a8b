//! Periodic jobs. Every worker process ticks, but each tick enqueues with an idempotency
//! key naming the period, so however many workers run, each period's job runs once:
//! the purge every 15 minutes, the trending recompute every 10, the daily digest once
//! per UTC day (at the first tick after `DIGEST_HOUR_UTC`). The tick (`TICK_EVERY`, 5
//! minutes) divides both periods, so each period is seen by at least one tick; the
//! extra ticks inside a period only meet the key's duplicate.

use std::time::Duration;

use app::{
    db::Db,
    jobs::{EnqueueError, UNIQUE_VIOLATION, maintenance::PurgeExpired, notify::DailyDigest, trending::RecomputeTrending},
};

pub const PURGE_EVERY: Duration = Duration::from_secs(15 * 60);
pub const TRENDING_EVERY: Duration = Duration::from_secs(10 * 60);
/// Divides both periods above.
pub const TICK_EVERY: Duration = Duration::from_secs(5 * 60);
/// The digest goes out at the first tick after this hour (UTC): morning in Europe,
/// early enough for the Americas' evening.
pub const DIGEST_HOUR_UTC: u64 = 7;

pub async fn run(db: Db) {
    let mut tick = tokio::time::interval(TICK_EVERY);
    loop {
        tick.tick().await;
        let period = chrono_period(TRENDING_EVERY);
        match schedule_trending(&db, period).await {
            Ok(()) => tracing::debug!(period, "trending scheduled"),
            Err(e) if is_duplicate(&e) => tracing::debug!(period, "trending already scheduled"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not schedule the trending recompute"),
        }
        let period = chrono_period(PURGE_EVERY);
        let key = format!("purge_expired:{period}");
        match schedule(&db, &key).await {
            Ok(()) => tracing::debug!(%key, "scheduled"),
            // A duplicate key means another worker scheduled this period already.
            Err(e) if is_duplicate(&e) => tracing::debug!(%key, "already scheduled"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not schedule periodic job"),
        }
        let secs = unix_secs();
        if secs % 86_400 >= DIGEST_HOUR_UTC * 3600 {
            let day = (secs / 86_400) as i64;
            match schedule_digest(&db, day).await {
                Ok(()) => tracing::info!(day, "daily digest scheduled"),
                Err(e) if is_duplicate(&e) => tracing::debug!(day, "daily digest already scheduled"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "could not schedule the daily digest"),
            }
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

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn chrono_period(every: Duration) -> u64 {
    unix_secs() / every.as_secs().max(1)
}
