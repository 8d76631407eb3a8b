//! The trending recompute.

use app::jobs::trending::RecomputeTrending;

use super::{JobContext, JobError, Run};

impl Run for RecomputeTrending {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        // Delete and insert in one transaction: the home page never sees an empty table.
        let mut tx = ctx.db.primary().begin().await?;
        let stories = app::trending::db::recompute(&mut tx).await?;
        tx.commit().await?;
        crate::invalidate::invalidate(ctx, &[app::cache::Tag::trending()]).await;
        tracing::info!(stories, "trending recomputed");
        Ok(())
    }
}
