//! Housekeeping.

use app::{
    accounts::users,
    jobs::maintenance::{Noop, PurgeExpired},
    sessions,
};

use super::{JobContext, JobError, Run};

impl Run for PurgeExpired {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let db = ctx.db.primary();
        let sessions = sessions::store::purge_expired(db).await?;
        let tokens = users::purge_spent_tokens(db).await?;
        let live_events = app::live::purge_old(db).await?;
        let (view_days, reader_days) = app::stats::db::purge_old(db).await?;
        // Finished and failed jobs, mail idempotency keys and long-gone workers past their
        // retention (README "Jobs dashboard and retention"), in bounded batches.
        let queue = app::jobs::admin::purge(db).await?;
        tracing::info!(
            sessions,
            tokens,
            live_events,
            view_days,
            reader_days,
            done_jobs = queue.done_jobs,
            failed_jobs = queue.failed_jobs,
            sent_emails = queue.sent_emails,
            workers = queue.workers,
            "purged expired rows"
        );
        // Data exports past their 24 hours: files deleted, rows marked expired; stray files removed.
        let (exports, stray_files) = super::export::purge_expired(ctx).await?;
        tracing::info!(exports, stray_files, "purged expired exports");
        Ok(())
    }
}

impl Run for Noop {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        if let Some(probe) = self.probe {
            // The wall clock, not an Instant: the benchmark compares it with the time it
            // committed the job, in another process.
            let started_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
            tracing::info!(probe, started_us, "noop probe");
        }
        Ok(())
    }
}
