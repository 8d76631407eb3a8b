//! Kinds of cached data (each with its TTL) and what the cache counts about them, for
//! `/metrics` and `/admin`. Counters are per process; Prometheus sums them.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

#[derive(Default)]
pub struct KindStats {
    pub l1_hits: AtomicU64,
    pub l2_hits: AtomicU64,
    /// Waited for another request's load of the same key (single flight).
    pub coalesced: AtomicU64,
    pub misses: AtomicU64,
    /// L1 entries found stale (a tag changed) and dropped.
    pub stale: AtomicU64,
    pub loads: AtomicU64,
    pub load_time_us: AtomicU64,
    pub l2_time_us: AtomicU64,
    /// L2 lookups or stores that Redis did not answer (served from the loader instead).
    pub fallbacks: AtomicU64,
    /// Lookups with the cache off (`CACHE=off`) or not applicable.
    pub bypass: AtomicU64,
}

impl KindStats {
    const fn new() -> KindStats {
        KindStats {
            l1_hits: AtomicU64::new(0),
            l2_hits: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            load_time_us: AtomicU64::new(0),
            l2_time_us: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            bypass: AtomicU64::new(0),
        }
    }

    /// Hits (any level, and waits on a load) over lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.l1_hits.load(Relaxed) + self.l2_hits.load(Relaxed) + self.coalesced.load(Relaxed);
        let total = hits + self.misses.load(Relaxed);
        (total > 0).then(|| hits as f64 / total as f64)
    }
}

/// A kind of cached value: its name (in keys and metrics), TTL, and whether it goes to
/// L2 too.
pub struct Kind {
    pub name: &'static str,
    pub ttl: Duration,
    pub l2: bool,
    pub stats: KindStats,
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.name == other.name
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Kind {
    const fn new(name: &'static str, ttl_secs: u64, l2: bool) -> Kind {
        Kind { name, ttl: Duration::from_secs(ttl_secs), l2, stats: KindStats::new() }
    }
}

// Anonymous pages, whole and compressed (`web::page_cache`). TTLs bound how long an
// entry lives if no write touches it; writes invalidate long before. Listings expire
// sooner: their "3 hours ago" ages.
pub static HOME: Kind = Kind::new("home", 60, true);
pub static STORY: Kind = Kind::new("story", 600, true);
pub static CHAPTER: Kind = Kind::new("chapter", 3600, true);
pub static PROFILE: Kind = Kind::new("profile", 300, true);
pub static TAG: Kind = Kind::new("tag", 120, true);
pub static SEARCH: Kind = Kind::new("search", 60, true);
/// The story page as plain logged-in readers share it, cut where they differ
/// (`web::stitched`).
pub static MEMBER_STORY: Kind = Kind::new("member_story", 600, true);
/// One reader's state on one story: liked, saved, following, progress.
pub static VIEWER: Kind = Kind::new("viewer", 600, true);

pub static ALL: [&Kind; 8] = [&HOME, &STORY, &CHAPTER, &PROFILE, &TAG, &SEARCH, &MEMBER_STORY, &VIEWER];

pub static INVALIDATIONS_SENT: AtomicU64 = AtomicU64::new(0);
pub static INVALIDATIONS_RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Invalidations that Redis did not take (sent through PostgreSQL, replayed later).
pub static INVALIDATION_FALLBACKS: AtomicU64 = AtomicU64::new(0);
/// Times the L1 was emptied because its invalidation feed had a gap.
pub static FEED_GAPS: AtomicU64 = AtomicU64::new(0);

/// Hits over lookups across every kind (`/admin`).
pub fn overall_hit_ratio() -> Option<f64> {
    let (mut hits, mut total) = (0u64, 0u64);
    for k in ALL {
        let h = k.stats.l1_hits.load(Relaxed) + k.stats.l2_hits.load(Relaxed) + k.stats.coalesced.load(Relaxed);
        hits += h;
        total += h + k.stats.misses.load(Relaxed);
    }
    (total > 0).then(|| hits as f64 / total as f64)
}
