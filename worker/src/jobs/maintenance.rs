//! Housekeeping.

use app::{accounts::users, jobs::maintenance::PurgeExpired, sessions};

use super::{JobContext, JobError, Run};

impl Run for PurgeExpired {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let db = ctx.db.primary();
        let sessions = sessions::purge_expired(db).await?;
        let tokens = users::purge_spent_tokens(db).await?;
        tracing::info!(sessions, tokens, "purged expired rows");
        Ok(())
    }
}
