//! Rate limits for the auth endpoints, per IP and per account.
//!
//! Fixed windows counted in process for now (single node only); the `RateLimiter` API is
//! async so a Redis-backed store can replace the map without touching callers.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::error::Error;

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn per_minutes(max: u32, minutes: u64) -> Limit {
        Limit { max, window: Duration::from_secs(minutes * 60) }
    }
}

/// The limits applied by the account pages.
pub mod limits {
    use super::Limit;
    pub const LOGIN_PER_IP: Limit = Limit::per_minutes(30, 15);
    pub const LOGIN_PER_ACCOUNT: Limit = Limit::per_minutes(10, 15);
    pub const SIGNUP_PER_IP: Limit = Limit::per_minutes(10, 60);
    pub const SIGNUP_PER_ACCOUNT: Limit = Limit::per_minutes(5, 60);
    pub const FORGOT_PER_IP: Limit = Limit::per_minutes(10, 60);
    pub const FORGOT_PER_ACCOUNT: Limit = Limit::per_minutes(3, 60);
    pub const RESEND_PER_ACCOUNT: Limit = Limit::per_minutes(3, 60);
    /// Covers and avatars stored (each costs storage and a processing job).
    pub const UPLOADS_PER_ACCOUNT: Limit = Limit::per_minutes(20, 60);
    /// Chapters added (each is up to 500 000 characters, rendered and stored).
    pub const CHAPTERS_PER_ACCOUNT: Limit = Limit::per_minutes(30, 60);
}

#[derive(Clone, Default)]
pub struct RateLimiter {
    windows: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl RateLimiter {
    pub fn in_process() -> RateLimiter {
        RateLimiter::default()
    }

    /// Counts one hit on `key`; over the limit is `Error::TooManyRequests` with the
    /// seconds until the window resets.
    pub async fn hit(&self, key: &str, limit: Limit) -> Result<(), Error> {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bound memory: forget windows that have ended.
            map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(3600));
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= limit.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > limit.max {
            let left = limit.window.saturating_sub(now.duration_since(entry.0));
            return Err(Error::TooManyRequests { retry_after_secs: left.as_secs().max(1) });
        }
        Ok(())
    }
}
