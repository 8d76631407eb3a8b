//! The shared Redis (`REDIS_URL`): one multiplexed connection per process that reconnects
//! by itself (`redis::aio::ConnectionManager`), a deadline on every call, and a breaker so
//! a Redis that is down costs a request nothing.
//!
//! Redis is an optimisation and a coordinator, never the system of record: every caller
//! (the cache, the rate limiter) has an in-process fallback, so a failed call is an
//! `Err(Unavailable)` to fall back on, not an error page.
//!
//! - **Deadline**: each call is given `timeout` (a few milliseconds by default: Redis on
//!   the same network answers in well under one), so a slow Redis can hold a request no
//!   longer than that.
//! - **Breaker**: a refused or broken connection, or `TRIP_AFTER` calls in a row
//!   without an answer in time (one slow answer on a busy machine is not an outage),
//!   marks Redis down; while down, calls return at once without touching the network,
//!   and a background probe PINGs every `PROBE_INTERVAL` until it answers, when calls
//!   resume. `/health` reports the state.
//! - **Metrics**: calls, errors, skipped calls (breaker open) and a latency histogram,
//!   for `/metrics`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How often a down Redis is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// The default deadline of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);
/// Calls in a row past their deadline that open the breaker.
pub const TRIP_AFTER: u32 = 3;

/// Latency buckets of the histogram, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 8] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// A call that did not get an answer in time, failed, or was not tried (breaker open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redis unavailable")
    }
}

impl std::error::Error for Unavailable {}

#[derive(Clone)]
pub struct Redis(Arc<Inner>);

/// The configured Redis (`REDIS_URL`), or None: one node, in process. Its keys live
/// under a namespace of this deployment's own, derived from the database it serves
/// (host, port and name; no credentials), so one Redis can serve several deployments
/// (staging beside production, every test's app) without one reading another's pages.
pub fn connect(config: &crate::config::Config) -> anyhow::Result<Option<Redis>> {
    match &config.redis_url {
        None => Ok(None),
        Some(url) => {
            let redis = Redis::open(url, config.redis_timeout).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
            Ok(Some(redis.with_namespace(&namespace_of(&config.database_url))))
        }
    }
}

/// `q:` and eight hex digits of the database's address.
fn namespace_of(database_url: &str) -> String {
    use sha2::Digest;
    let target = match database_url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(o) => format!("{}:{}/{}", o.get_host(), o.get_port(), o.get_database().unwrap_or("")),
        Err(_) => database_url.to_string(),
    };
    let digest = sha2::Sha256::digest(target.as_bytes());
    format!("q:{}:", digest.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>())
}

struct Inner {
    /// Prefix of every key and channel of this deployment (`connect`).
    namespace: String,
    client: redis::Client,
    manager: ConnectionManager,
    /// host:port, without credentials, for /health.
    target: String,
    timeout: Duration,
    up: AtomicBool,
    /// Set when the state changes (for /health: since when).
    last_error: Mutex<Option<String>>,
    stats: Stats,
    probing: AtomicBool,
    /// Calls in a row that timed out.
    late: std::sync::atomic::AtomicU32,
}

#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    reconnects: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
}

/// What /metrics and /health show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RedisStats {
    pub target: String,
    pub up: bool,
    pub last_error: Option<String>,
    pub calls: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub skipped: u64,
    pub reconnects: u64,
    pub latency_sum_us: u64,
    pub latency_buckets: Vec<(u64, u64)>,
}

impl Redis {
    /// A handle on `url`; connects lazily (the process starts with Redis down) and
    /// reconnects by itself. Fails only on a malformed URL.
    pub fn open(url: &str, timeout: Duration) -> Result<Redis, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            // Our deadline (`call`) governs; the connection's own is for a Redis that
            // stopped answering altogether, so a late answer does not cost the link.
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(250));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let info = client.get_connection_info();
        let target = format!("{}", info.addr());
        let redis = Redis(Arc::new(Inner {
            namespace: "q:".into(),
            client,
            manager,
            target,
            timeout,
            // Unknown until the first call or probe: optimistic, so the first call tries.
            up: AtomicBool::new(true),
            last_error: Mutex::new(None),
            stats: Stats::default(),
            probing: AtomicBool::new(false),
            late: std::sync::atomic::AtomicU32::new(0),
        }));
        Ok(redis)
    }

    /// The same connection with keys under `namespace` (before any clone is shared).
    pub fn with_namespace(self, namespace: &str) -> Redis {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                inner.namespace = namespace.to_string();
                Redis(Arc::new(inner))
            }
            Err(shared) => {
                tracing::warn!("redis namespace set on a shared handle: keeping the default");
                Redis(shared)
            }
        }
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn is_up(&self) -> bool {
        self.0.up.load(Relaxed)
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.0.client
    }

    /// Runs one command (or pipeline, or script) on the shared connection within the
    /// deadline. Down: `Err(Unavailable)` at once.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.0.timeout, f).await
    }

    /// `call` with a deadline of its own: for work no request waits on (storing a
    /// filled page in the background), which may take longer than a lookup.
    pub async fn call_within<T, F, Fut>(&self, deadline: Duration, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            self.0.stats.skipped.fetch_add(1, Relaxed);
            self.probe_in_background();
            return Err(Unavailable);
        }
        self.0.stats.calls.fetch_add(1, Relaxed);
        let started = Instant::now();
        let outcome = tokio::time::timeout(deadline, f(self.0.manager.clone())).await;
        self.observe(started.elapsed());
        match outcome {
            Ok(Ok(v)) => {
                self.0.late.store(0, Relaxed);
                Ok(v)
            }
            Ok(Err(e)) if e.is_timeout() => {
                self.0.stats.timeouts.fetch_add(1, Relaxed);
                if self.0.late.fetch_add(1, Relaxed) + 1 >= TRIP_AFTER {
                    self.mark_down(e.to_string());
                }
                Err(Unavailable)
            }
            Ok(Err(e)) => {
                self.0.stats.errors.fetch_add(1, Relaxed);
                self.mark_down(e.to_string());
                Err(Unavailable)
            }
            Err(_) => {
                self.0.stats.timeouts.fetch_add(1, Relaxed);
                if self.0.late.fetch_add(1, Relaxed) + 1 >= TRIP_AFTER {
                    self.mark_down(format!("{TRIP_AFTER} calls in a row without an answer within {} ms", deadline.as_millis()));
                }
                Err(Unavailable)
            }
        }
    }

    /// PING, with a deadline of its own (for /health and the probe).
    pub async fn ping(&self, deadline: Duration) -> Result<(), String> {
        let mut conn = self.0.manager.clone();
        match tokio::time::timeout(deadline, redis::cmd("PING").query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
        }
    }

    fn observe(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let s = &self.0.stats;
        s.latency_sum_us.fetch_add(us, Relaxed);
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            s.latency_buckets[i].fetch_add(1, Relaxed);
        }
    }

    fn mark_down(&self, error: String) {
        if self.0.up.swap(false, Relaxed) {
            // Logged once per outage, without the URL (it may carry a password).
            tracing::warn!(target = %self.0.target, %error, "redis down: falling back to in-process cache and limits");
        }
        *self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.probe_in_background();
    }

    /// One probe loop at a time: PING until Redis answers, then mark it up.
    fn probe_in_background(&self) {
        if self.0.probing.swap(true, Relaxed) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                if this.ping(Duration::from_millis(250)).await.is_ok() {
                    this.0.stats.reconnects.fetch_add(1, Relaxed);
                    this.0.late.store(0, Relaxed);
                    // Probing ends before the breaker closes: a failure right after
                    // starts a new probe instead of finding this one still running.
                    this.0.probing.store(false, Relaxed);
                    this.0.up.store(true, Relaxed);
                    tracing::info!(target = %this.0.target, "redis back");
                    return;
                }
            }
        });
    }

    pub fn stats(&self) -> RedisStats {
        let s = &self.0.stats;
        RedisStats {
            target: self.0.target.clone(),
            up: self.is_up(),
            last_error: self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            calls: s.calls.load(Relaxed),
            errors: s.errors.load(Relaxed),
            timeouts: s.timeouts.load(Relaxed),
            skipped: s.skipped.load(Relaxed),
            reconnects: s.reconnects.load(Relaxed),
            latency_sum_us: s.latency_sum_us.load(Relaxed),
            latency_buckets: LATENCY_BUCKETS_US.iter().zip(&s.latency_buckets).map(|(b, c)| (*b, c.load(Relaxed))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_database_gets_its_own_namespace_and_credentials_do_not_change_it() {
        let a = super::namespace_of("postgres://u:p@db:5432/quire");
        assert_eq!(a, super::namespace_of("postgres://other:secret@db:5432/quire"));
        assert_ne!(a, super::namespace_of("postgres://u:p@db:5432/quire_staging"));
        assert!(a.starts_with("q:") && a.ends_with(':') && a.len() == 11, "{a}");
    }
}
