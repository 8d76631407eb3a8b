//! Periodic jobs. Every worker process ticks, but each tick enqueues with an idempotency
//! key naming the period, so however many workers run, each period's job runs once.

use std::time::Duration;

use app::{
    db::Db,
    jobs::{EnqueueError, UNIQUE_VIOLATION, maintenance::PurgeExpired},
};

pub const PURGE_EVERY: Duration = Duration::from_secs(15 * 60);

pub async fn run(db: Db) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        let period = chrono_period(PURGE_EVERY);
        let key = format!("purge_expired:{period}");
        match schedule(&db, &key).await {
            Ok(()) => tracing::debug!(%key, "scheduled"),
            // A duplicate key means another worker scheduled this period already.
            Err(e) if is_duplicate(&e) => tracing::debug!(%key, "already scheduled"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not schedule periodic job"),
        }
    }
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

fn chrono_period(every: Duration) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() / every.as_secs().max(1)
}
