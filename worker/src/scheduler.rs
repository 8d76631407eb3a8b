//! Periodic jobs. Every worker process ticks, but each tick enqueues with an idempotency
//! key naming the period, so however many workers run, each period's job runs once.

use std::time::Duration;

use app::{db::Db, jobs::maintenance::PurgeExpired};

pub const PURGE_EVERY: Duration = Duration::from_secs(15 * 60);

pub async fn run(db: Db) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        let period = chrono_period(PURGE_EVERY);
        let key = format!("purge_expired:{period}");
        let result = async {
            let mut conn = db.primary().acquire().await?;
            app::jobs::enqueue_with_key(&mut conn, &PurgeExpired {}, None, Some(&key)).await?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => tracing::debug!(%key, "scheduled"),
            // A duplicate key means another worker scheduled this period already.
            Err(e) if format!("{e:#}").contains("duplicate key") => tracing::debug!(%key, "already scheduled"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not schedule periodic job"),
        }
    }
}

fn chrono_period(every: Duration) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() / every.as_secs().max(1)
}
