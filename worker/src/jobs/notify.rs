//! The notification job's handler.

use app::jobs::notify::Notify;

use super::{JobContext, JobError, Run};

impl Run for Notify {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        // Filled in by the notifications area.
        tracing::debug!(activity = ?self.activity, "notify");
        Ok(())
    }
}
