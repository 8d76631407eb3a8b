//! Recently looked-up sessions, per process. Only `SessionStore` touches it, so every
//! path that ends a session also evicts it here.

use super::store::Found;
use crate::tokens;

/// Recently looked-up sessions, per process, for `CACHE_TTL`. A logged-in page then
/// costs one round trip, like an anonymous one (bench/load: the lookup was a quarter of
/// the logged-in story page). Revocation is immediate everywhere: every path that ends
/// a session or changes what it carries (logout, revocation, password change, ban, role
/// change, deletion) announces it on the live control channel when it commits
/// (`sessions::announce_changed`), every web process evicts on that, and a process
/// whose control channel is down does not use this cache at all. The TTL bounds only
/// what is not announced: the unread count and the name in the navigation. After a write the
/// visitor carries `web::cookies::WROTE_COOKIE` for longer than the TTL, so no process serves them a
/// cached (older) view of their own account.
pub struct SessionCache {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (std::time::Instant, Found)>>,
    ttl: std::time::Duration,
    max: usize,
}

pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
const CACHE_MAX: usize = 50_000;

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache::with_limits(CACHE_TTL, CACHE_MAX)
    }
}

impl SessionCache {
    /// A cache holding entries for `ttl`, at most `max` of them (tests use small ones).
    fn with_limits(ttl: std::time::Duration, max: usize) -> SessionCache {
        SessionCache { entries: std::sync::Mutex::new(std::collections::HashMap::new()), ttl, max }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, (std::time::Instant, Found)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, token: &str) -> Option<Found> {
        let map = self.lock();
        map.get(&tokens::hash_token(token)).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, f)| f.clone())
    }

    pub(super) fn put(&self, token: &str, found: &Found) {
        let mut map = self.lock();
        // Full: drop what has expired; still full (a burst of new sessions), start over
        // rather than grow. Below the cap nothing is scanned: expired entries are only
        // ever skipped by `get`.
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(tokens::hash_token(token), (std::time::Instant::now(), found.clone()));
    }

    pub(super) fn forget(&self, token: &str) {
        self.lock().remove(&tokens::hash_token(token));
    }

    /// Drops every cached session of `user_id` (revocation, password change).
    pub(super) fn forget_user(&self, user_id: i64) {
        self.lock().retain(|_, (_, f)| f.user.id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SessionCache;
    use crate::sessions::{CurrentUser, store::Found};

    fn found(id: i64) -> Found {
        let user = CurrentUser {
            id,
            username: format!("u{id}"),
            display_name: String::new(),
            email: String::new(),
            role: crate::policy::Role::Writer,
            email_verified: true,
            unread: 0,
        };
        Found { public_id: id, user, read_lsn: 0 }
    }

    fn len(cache: &SessionCache) -> usize {
        cache.lock().len()
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = SessionCache::with_limits(Duration::from_millis(40), 10);
        cache.put("a", &found(1));
        assert_eq!(cache.get("a").map(|f| f.user.id), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("a").is_none());
    }

    /// Below the cap nothing is dropped; at the cap the expired go first, and only a
    /// cache still full of live entries is cleared.
    #[test]
    fn the_cap_drops_expired_entries_first_and_clears_only_when_all_are_live() {
        let ttl = Duration::from_millis(40);
        let cache = SessionCache::with_limits(ttl, 4);
        cache.put("old1", &found(1));
        cache.put("old2", &found(2));
        std::thread::sleep(Duration::from_millis(60));
        cache.put("new3", &found(3));
        assert_eq!(len(&cache), 3, "below the cap, expired entries stay until the cap is reached");
        cache.put("new4", &found(4));
        assert_eq!(len(&cache), 4);
        // At the cap: the two expired entries go, the live ones stay, the new one joins.
        cache.put("new5", &found(5));
        assert_eq!(len(&cache), 3);
        for t in ["new3", "new4", "new5"] {
            assert!(cache.get(t).is_some(), "{t} kept");
        }
        // Full of live entries: cleared, then the new one.
        cache.put("new6", &found(6));
        assert_eq!(len(&cache), 4);
        cache.put("new7", &found(7));
        assert_eq!(len(&cache), 1);
        assert!(cache.get("new7").is_some());
    }
}
