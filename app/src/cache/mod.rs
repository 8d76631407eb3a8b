//! The two-level cache: L1 a bounded cache in each process (moka), L2 Redis shared by all
//! (`l2`), one API: `get_or_load(kind, key, tags, loader)`.
//!
//! - **Single flight**: concurrent misses on one key in one process run the loader once;
//!   the others wait for its value (`flights`).
//! - **TTLs per kind** (`Kind`): how long a value may live at most, whatever happens.
//! - **Tags** (`tags`): a value names what it was built from; `invalidate(tags)` after a
//!   write makes every value built from them stale, here at once and in every other
//!   process within milliseconds (`bus`), with no key scanned.
//! - **Loaders read the primary**: a value built from a replica that has not replayed
//!   the write that invalidated it would be stored as current. The callers see to it
//!   (`web::page_cache` pins its fills to the primary).
//! - **Redis down** is not an outage: lookups skip L2 (the client's breaker answers at
//!   once), values come from L1 or the loader, invalidations go through PostgreSQL
//!   (`bus::Fallback`) and are replayed to Redis when it is back.

pub mod bus;
pub mod l2;
pub mod stats;
pub mod tags;

use std::{
    any::Any,
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, sync::Cache as Moka};
pub use stats::Kind;
pub use tags::Tag;
use tags::{Snapshot, Versions};

use crate::redis_client::Redis;

/// A value the cache can hold: in L1 as is, in L2 as bytes.
pub trait Cacheable: Send + Sync + 'static {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized;
    /// Roughly how many bytes it holds (L1 is bounded in bytes).
    fn weight(&self) -> usize;
}

/// A serde value cached as JSON.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Cacheable for Json<T> {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok().map(Json)
    }
    fn weight(&self) -> usize {
        // Cheap estimate: the encoding is what L2 holds; L1 holds about as much.
        256
    }
}

/// What a loader returns: a value to cache (with the tags it found while loading, e.g.
/// the stories on a listing), or something to hand back uncached (an error page, a
/// redirect, a value too personal to share).
pub enum Fill<V, R> {
    Store { value: V, tags: Vec<Tag> },
    Pass(R),
}

/// What `get_or_load` gives back.
pub enum Got<V, R> {
    Value(Arc<V>),
    Pass(R),
}

/// L1's default size in bytes.
pub const DEFAULT_L1_BYTES: u64 = 256 * 1024 * 1024;
/// After Redis comes back, L2 is not read for this long: processes that wrote while it
/// was down replay their invalidations first (`pending`).
const L2_QUARANTINE: Duration = Duration::from_secs(2);
/// Invalidations remembered for Redis while it is down; beyond this, L2 is emptied when
/// it is back (a rare, bounded scan, instead of unbounded memory).
const PENDING_MAX: usize = 100_000;

struct L1Entry {
    value: Arc<dyn Any + Send + Sync>,
    snapshot: Snapshot,
    ttl: Duration,
    weight: u32,
}

struct PerEntryTtl;

impl Expiry<String, Arc<L1Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _k: &String, e: &Arc<L1Entry>, _at: Instant) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// One load in progress: the others wait on `done` and take `value`.
struct Flight {
    done: tokio::sync::Notify,
    finished: AtomicBool,
    value: Mutex<Option<Arc<L1Entry>>>,
}

#[derive(Clone)]
pub struct Cache(Arc<Inner>);

struct Inner {
    /// This process's name in invalidation messages (its own are not applied twice).
    origin: String,
    l1: Option<Moka<String, Arc<L1Entry>>>,
    versions: Versions,
    redis: Option<Redis>,
    scripts: l2::Scripts,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// Where invalidations go when Redis cannot take them (PostgreSQL), and whether this
    /// process hears that feed.
    fallback: std::sync::OnceLock<bus::Fallback>,
    /// The Redis subscription is up (its messages reach `versions`).
    subscribed: AtomicBool,
    /// The subscription was up once: a later one follows a gap.
    ever_subscribed: AtomicBool,
    l2_after: Mutex<Instant>,
    pending: Mutex<(HashSet<Tag>, bool)>,
    enabled: bool,
}

/// How a cache is built.
pub struct Options {
    /// Keep values in this process (web: yes; the worker only invalidates).
    pub l1_bytes: Option<u64>,
    pub redis: Option<Redis>,
    /// `CACHE=off`: every lookup loads (benchmarks of the uncached pages).
    pub enabled: bool,
}

impl Cache {
    pub fn new(options: Options) -> Cache {
        let l1 = options.l1_bytes.map(|bytes| {
            Moka::builder().max_capacity(bytes).weigher(|_k: &String, e: &Arc<L1Entry>| e.weight).expire_after(PerEntryTtl).build()
        });
        let cache = Cache(Arc::new(Inner {
            origin: crate::tokens::random_token()[..12].to_string(),
            l1,
            versions: Versions::default(),
            redis: options.redis,
            scripts: l2::Scripts::default(),
            flights: Mutex::new(HashMap::new()),
            fallback: std::sync::OnceLock::new(),
            subscribed: AtomicBool::new(false),
            ever_subscribed: AtomicBool::new(false),
            l2_after: Mutex::new(Instant::now()),
            pending: Mutex::new((HashSet::new(), false)),
            enabled: options.enabled,
        }));
        if cache.0.redis.is_some() && cache.0.l1.is_some() {
            bus::subscribe(&cache);
        }
        cache
    }

    /// A cache with no Redis and no cross-process feed (tests, tools).
    pub fn local() -> Cache {
        Cache::new(Options { l1_bytes: Some(DEFAULT_L1_BYTES), redis: None, enabled: true })
    }

    pub fn enabled(&self) -> bool {
        self.0.enabled
    }

    pub fn redis(&self) -> Option<&Redis> {
        self.0.redis.as_ref()
    }

    /// Where invalidations go when Redis cannot take them, and how to tell that this
    /// process hears them (`bus::Fallback`).
    /// Set once, at start-up.
    pub fn set_fallback(&self, fallback: bus::Fallback) {
        let _ = self.0.fallback.set(fallback);
    }

    /// L1 may be trusted only while this process hears every invalidation: through
    /// Redis, or (Redis down or absent) through the PostgreSQL feed.
    fn l1_trusted(&self) -> bool {
        if self.0.subscribed.load(Relaxed) {
            return true;
        }
        // Alone (no Redis, no other feed): nothing to hear, every invalidation is local.
        if self.0.redis.is_none() && self.0.fallback.get().is_none() {
            return true;
        }
        let redis_down = self.0.redis.as_ref().is_none_or(|r| !r.is_up());
        redis_down && self.0.fallback.get().is_some_and(|f| (f.hearing)())
    }

    /// Redis for L2, if it may be read now: up, not just back (`L2_QUARANTINE`), and
    /// holding every invalidation this process sent (one that failed — perhaps after
    /// Redis applied it, perhaps not — leaves its entries suspect until it is replayed).
    fn l2(&self) -> Option<&Redis> {
        let redis = self.0.redis.as_ref()?;
        if !redis.is_up() || Instant::now() < *self.0.l2_after.lock().unwrap_or_else(|e| e.into_inner()) || self.has_pending() {
            return None;
        }
        Some(redis)
    }

    fn has_pending(&self) -> bool {
        let p = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        !p.0.is_empty() || p.1
    }

    /// The value under `key` of `kind`, built from `tags` (and whatever tags the loader
    /// adds), from L1, else L2, else `loader` (once per process however many ask).
    pub async fn get_or_load<V, R, F>(&self, kind: &'static Kind, key: &str, tags: &[Tag], loader: F) -> Got<V, R>
    where
        V: Cacheable,
        F: Future<Output = Fill<V, R>>,
    {
        if !self.0.enabled {
            kind.stats.bypass.fetch_add(1, Relaxed);
            return match loader.await {
                Fill::Store { value, .. } => Got::Value(Arc::new(value)),
                Fill::Pass(r) => Got::Pass(r),
            };
        }
        let l1_key = format!("{}:{key}", kind.name);
        let trusted = self.0.l1.is_some() && self.l1_trusted();
        if trusted && let Some(v) = self.l1_get::<V>(kind, &l1_key) {
            kind.stats.l1_hits.fetch_add(1, Relaxed);
            return Got::Value(v);
        }
        // Join the load in flight, or lead one (also when L1 is not trusted: what the
        // leader loads now is as fresh for those who asked meanwhile).
        let (flight, leader) = {
            let mut flights = self.0.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&l1_key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight { done: tokio::sync::Notify::new(), finished: AtomicBool::new(false), value: Mutex::new(None) });
                    flights.insert(l1_key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let notified = flight.done.notified();
            if !flight.finished.load(Relaxed) {
                notified.await;
            }
            let shared = flight.value.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(entry) = shared
                && let Ok(v) = entry.value.clone().downcast::<V>()
            {
                kind.stats.coalesced.fetch_add(1, Relaxed);
                return Got::Value(v);
            }
            // The leader's result was not for sharing (an error page, say): our own.
            return self.load(kind, key, tags, loader).await.map_stored();
        }
        // The leader clears the flight however the load ends (even if cancelled).
        let _guard = FlightGuard { cache: self, key: &l1_key, flight: &flight };
        match self.load(kind, key, tags, loader).await {
            Loaded::Stored(entry, v, keep) => {
                if let Some(l1) = self.0.l1.as_ref().filter(|_| trusted && keep) {
                    l1.insert(l1_key.clone(), entry.clone());
                }
                *flight.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
                Got::Value(v)
            }
            Loaded::Passed(r) => Got::Pass(r),
        }
    }

    fn l1_get<V: Cacheable>(&self, kind: &Kind, key: &str) -> Option<Arc<V>> {
        let l1 = self.0.l1.as_ref()?;
        let entry = l1.get(key)?;
        if !self.0.versions.is_current(&entry.snapshot) {
            kind.stats.stale.fetch_add(1, Relaxed);
            l1.invalidate(key);
            return None;
        }
        entry.value.clone().downcast::<V>().ok()
    }

    /// L2, else the loader; stores what it loaded in L2.
    async fn load<V, R, F>(&self, kind: &'static Kind, key: &str, tags: &[Tag], loader: F) -> Loaded<V, R>
    where
        V: Cacheable,
        F: Future<Output = Fill<V, R>>,
    {
        // Before anything is read: an invalidation from now on makes what we build stale.
        // Tags found later (by the loader, or recorded in L2) were not in the snapshot
        // then: if anything was invalidated meanwhile, the value is served but not kept.
        let changes = self.0.versions.changes();
        let mut snapshot = self.0.versions.snapshot(tags);
        if let Some(redis) = &self.0.redis
            && self.has_pending()
        {
            self.replay_pending(redis).await;
        }
        let mut redis_versions: Option<Vec<String>> = None;
        if let Some(redis) = self.l2().filter(|_| kind.l2) {
            let started = Instant::now();
            match self.0.scripts.get(redis, kind.name, key, tags).await {
                Ok(found) => {
                    kind.stats.l2_time_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                    if let Some(v) = found.body.as_deref().and_then(V::decode) {
                        kind.stats.l2_hits.fetch_add(1, Relaxed);
                        self.0.versions.extend(&mut snapshot, &found.tags);
                        let keep = self.0.versions.changes() == changes;
                        let v = Arc::new(v);
                        return Loaded::Stored(self.entry(kind, v.clone(), snapshot), v, keep);
                    }
                    redis_versions = Some(found.versions);
                }
                Err(_) => {
                    kind.stats.fallbacks.fetch_add(1, Relaxed);
                }
            }
        }
        kind.stats.misses.fetch_add(1, Relaxed);
        let started = Instant::now();
        let filled = loader.await;
        kind.stats.loads.fetch_add(1, Relaxed);
        kind.stats.load_time_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let (value, found_tags) = match filled {
            Fill::Store { value, tags } => (value, tags),
            Fill::Pass(r) => return Loaded::Passed(r),
        };
        self.0.versions.extend(&mut snapshot, &found_tags);
        let keep = self.0.versions.changes() == changes;
        let value = Arc::new(value);
        if let (Some(redis), Some(known)) = (self.l2().filter(|_| keep), redis_versions) {
            // The tags the loader found: their Redis versions now (a write to one of them
            // between the load's reads and this moment is the one window L2 leaves open;
            // the kind's TTL bounds it).
            let extra: Vec<Tag> = found_tags.iter().filter(|t| !tags.contains(t)).cloned().collect();
            if let Ok(more) = self.0.scripts.versions(redis, &extra).await {
                let pairs: Vec<(Tag, String)> = tags.iter().cloned().zip(known).chain(extra.into_iter().zip(more)).collect();
                let bytes = value.encode();
                // In the background: the versions are fixed now, so storing later is as
                // correct, and the request does not wait on a whole page's upload.
                let (cache, key) = (self.clone(), key.to_string());
                tokio::spawn(async move {
                    let Some(redis) = cache.0.redis.as_ref() else { return };
                    if cache.0.scripts.put(redis, kind.name, &key, &pairs, bytes, kind.ttl.as_secs()).await.is_err() {
                        kind.stats.fallbacks.fetch_add(1, Relaxed);
                    }
                });
            }
        }
        Loaded::Stored(self.entry(kind, value.clone(), snapshot), value, keep)
    }

    fn entry<V: Cacheable>(&self, kind: &Kind, value: Arc<V>, snapshot: Snapshot) -> Arc<L1Entry> {
        let weight = (value.weight() + 128).min(u32::MAX as usize) as u32;
        Arc::new(L1Entry { value, snapshot, ttl: kind.ttl, weight })
    }

    /// After a write has committed: everything built from `tags` is stale, here at once,
    /// in L2 and every other process within milliseconds.
    pub async fn invalidate(&self, tags: &[Tag]) {
        if tags.is_empty() {
            return;
        }
        self.0.versions.bump(tags);
        stats::INVALIDATIONS_SENT.fetch_add(tags.len() as u64, Relaxed);
        let message = bus::message(&self.0.origin, tags);
        if let Some(redis) = &self.0.redis {
            self.replay_pending(redis).await;
            if self.0.scripts.invalidate(redis, tags, &message).await.is_ok() {
                return;
            }
            stats::INVALIDATION_FALLBACKS.fetch_add(1, Relaxed);
            let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.0.len() + tags.len() > PENDING_MAX {
                pending.1 = true;
                pending.0.clear();
            } else {
                pending.0.extend(tags.iter().cloned());
            }
        }
        // No Redis, or it did not take it: the other processes hear it through
        // PostgreSQL.
        if let Some(f) = self.0.fallback.get() {
            (f.publish)(message).await;
        }
    }

    /// Invalidations that could not reach Redis while it was down, sent now.
    async fn replay_pending(&self, redis: &Redis) {
        let (tags, overflowed) = {
            let mut p = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.0.is_empty() && !p.1 {
                return;
            }
            (std::mem::take(&mut p.0).into_iter().collect::<Vec<_>>(), std::mem::take(&mut p.1))
        };
        if !redis.is_up() {
            let mut p = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.0.extend(tags);
            p.1 |= overflowed;
            return;
        }
        let ok = if overflowed {
            bus::flush_l2(redis).await.is_ok()
        } else {
            let message = bus::message(&self.0.origin, &tags);
            self.0.scripts.invalidate(redis, &tags, &message).await.is_ok()
        };
        if !ok {
            let mut p = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.0.extend(tags);
            p.1 |= overflowed;
        }
    }

    /// A message from another process (Redis or PostgreSQL).
    pub fn apply_message(&self, message: &str) {
        if let Some((origin, tags)) = bus::parse(message)
            && origin != self.0.origin
        {
            stats::INVALIDATIONS_RECEIVED.fetch_add(tags.len() as u64, Relaxed);
            self.0.versions.bump(&tags);
        }
    }

    pub fn l1_bytes(&self) -> u64 {
        self.0.l1.as_ref().map(|c| c.weighted_size()).unwrap_or(0)
    }

    pub fn subscribed(&self) -> bool {
        self.0.subscribed.load(Relaxed)
    }
}

enum Loaded<V, R> {
    /// The entry, its value, and whether it may be kept (`load`).
    Stored(Arc<L1Entry>, Arc<V>, bool),
    Passed(R),
}

impl<V, R> Loaded<V, R> {
    fn map_stored(self) -> Got<V, R> {
        match self {
            Loaded::Stored(_, v, _) => Got::Value(v),
            Loaded::Passed(r) => Got::Pass(r),
        }
    }
}

struct FlightGuard<'a> {
    cache: &'a Cache,
    key: &'a str,
    flight: &'a Arc<Flight>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.0.flights.lock().unwrap_or_else(|e| e.into_inner()).remove(self.key);
        self.flight.finished.store(true, Relaxed);
        self.flight.done.notify_waiters();
    }
}
