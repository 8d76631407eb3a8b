//! Cache invalidation from jobs (a cover or avatar turned ready, trending recomputed):
//! through Redis when `REDIS_URL` is set, else through PostgreSQL's control channel, the
//! same way web processes send theirs (`app::cache`). The worker keeps no cache itself.

use std::sync::{Arc, OnceLock};

use app::cache::{Cache, Options, Tag};

use crate::jobs::JobContext;

/// One Redis client per process (its connection is shared by every job).
static REDIS: OnceLock<Option<app::redis_client::Redis>> = OnceLock::new();

pub async fn invalidate(ctx: &JobContext, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    let redis = REDIS
        .get_or_init(|| match app::redis_client::connect(&ctx.config) {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "REDIS_URL unusable; invalidating through PostgreSQL");
                None
            }
        })
        .clone();
    let cache = Cache::new(Options { l1_bytes: None, redis, enabled: true });
    cache.set_fallback(app::live::cache_fallback(ctx.db.primary().clone(), Arc::new(|| false)));
    cache.invalidate(tags).await;
}
