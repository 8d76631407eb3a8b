//! Recently looked-up sessions, per process. Only `SessionStore` touches it, so every
//! path that ends a session also evicts it here.

use super::store::Found;
use crate::tokens;

/// Recently looked-up sessions, per process, for `CACHE_TTL`. A logged-in page then
/// costs one round trip, like an anonymous one (bench/load: the lookup was a quarter of
/// the logged-in story page). What it costs: a session revoked or deleted through
/// another web process keeps working here for up to `CACHE_TTL`; through this process,
/// never (logout, revocation and password changes evict at once). After a write the
/// visitor carries `web::cookies::WROTE_COOKIE` for longer than the TTL, so no process serves them a
/// cached (older) view of their own account.
pub struct SessionCache {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (std::time::Instant, Found)>>,
}

pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
const CACHE_MAX: usize = 50_000;

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache { entries: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, (std::time::Instant, Found)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, token: &str) -> Option<Found> {
        let map = self.lock();
        map.get(&tokens::hash_token(token)).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, f)| f.clone())
    }

    pub(super) fn put(&self, token: &str, found: &Found) {
        let mut map = self.lock();
        if map.len() >= CACHE_MAX {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
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
