//! How invalidations reach every process: Redis pub/sub (`l2::channel`) when Redis is
//! configured and up, else PostgreSQL (`Fallback`: the live area's control channel, a
//! NOTIFY every web process already listens to, replayed from its table after a
//! reconnect). A message is `origin tag tag …`; a process ignores its own (it applied
//! them when it sent them).
//!
//! A subscription that drops may have missed messages: when it is back, the process
//! empties its L1 (`Versions::clear`) before trusting it again, and reads no L2 for a
//! moment while the others replay what they could not send (`Cache::replay_pending`).

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use futures::StreamExt;

use super::{Cache, Tag, stats};
use crate::redis_client::{Redis, Unavailable};

/// The other way invalidations travel, set by the process that has it (web: the live
/// broker's control channel).
#[derive(Clone)]
pub struct Fallback {
    pub publish: Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
    /// This process hears the fallback's messages now.
    pub hearing: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The control event name invalidations travel under in the live area's channel.
pub const CONTROL_EVENT: &str = "cache_invalidate";

pub fn message(origin: &str, tags: &[Tag]) -> String {
    let mut m = String::with_capacity(origin.len() + tags.len() * 8);
    m.push_str(origin);
    for t in tags {
        m.push(' ');
        m.push_str(t.as_str());
    }
    m
}

pub fn parse(message: &str) -> Option<(&str, Vec<Tag>)> {
    let mut parts = message.split(' ');
    let origin = parts.next().filter(|o| !o.is_empty())?;
    Some((origin, parts.filter_map(Tag::parse).collect()))
}

/// Runs the Redis subscription for `cache` for as long as the process lives, re-subscribing
/// after every drop.
pub(super) fn subscribe(cache: &Cache) {
    let Some(redis) = cache.0.redis.clone() else { return };
    let weak = Arc::downgrade(&cache.0);
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let cache = Cache(inner);
            match listen(&cache, &redis).await {
                Ok(()) => {}
                Err(error) => tracing::debug!(%error, "cache subscription failed"),
            }
            if cache.0.subscribed.swap(false, Relaxed) {
                tracing::warn!("cache invalidation feed from redis lost; L1 trusted only with the PostgreSQL feed until it is back");
            }
            drop(cache);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

async fn listen(cache: &Cache, redis: &Redis) -> redis::RedisResult<()> {
    let connect = async {
        let mut ps = redis.client().get_async_pubsub().await?;
        ps.subscribe(super::l2::channel(redis)).await?;
        Ok::<_, redis::RedisError>(ps)
    };
    let ps = match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(r) => r?,
        Err(_) => return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out"))),
    };
    // Whatever was published while we were not subscribed is lost: start over, and let
    // the others replay what Redis missed before reading L2 again. (Not at start-up:
    // this process has nothing cached and missed nothing it holds: what it loaded
    // before is not in L1, which was not trusted then.)
    if cache.0.ever_subscribed.swap(true, Relaxed) {
        cache.0.versions.clear();
        stats::FEED_GAPS.fetch_add(1, Relaxed);
        *cache.0.l2_after.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + super::L2_QUARANTINE;
    }
    cache.0.subscribed.store(true, Relaxed);
    tracing::info!("cache invalidation feed from redis up");
    let mut messages = ps.into_on_message();
    // Kept for as long as it delivers, whatever the command connection's breaker says
    // (a slow call under load must not empty every L1). A Redis that dies closes the
    // socket; one that hangs cannot take the writers' invalidations either, and they go
    // through PostgreSQL, which web processes always hear (`live::follow_cache`).
    while let Some(msg) = messages.next().await {
        if let Ok(text) = msg.get_payload::<String>() {
            cache.apply_message(&text);
        }
    }
    Ok(())
}

/// Empties L2 (every entry key of the namespace): only after more invalidations were missed than could
/// be remembered, a rare and bounded scan.
pub(super) async fn flush_l2(redis: &Redis) -> Result<(), Unavailable> {
    let mut cursor: u64 = 0;
    let pattern = format!("{}c:*", redis.namespace());
    loop {
        let pattern = pattern.clone();
        let (next, keys): (u64, Vec<String>) = redis
            .call(|mut c| async move { redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query_async(&mut c).await })
            .await?;
        if !keys.is_empty() {
            redis.call(|mut c| async move { redis::cmd("UNLINK").arg(&keys).query_async::<i64>(&mut c).await }).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_its_origin_and_tags() {
        let m = message("abc", &[Tag::story(1), Tag::listing()]);
        assert_eq!(m, "abc s1 listing");
        let (origin, tags) = parse(&m).unwrap();
        assert_eq!(origin, "abc");
        assert_eq!(tags, vec![Tag::story(1), Tag::listing()]);
        assert!(parse("").is_none());
    }
}
