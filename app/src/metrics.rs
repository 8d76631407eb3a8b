//! Pieces of the Prometheus text format both binaries write: a lock-free histogram, the
//! `# HELP`/`# TYPE` head, the connection pools, the process's memory. The web's
//! `/metrics` (`web::ops::metrics`) and the worker's listener (`worker::metrics`) are made
//! of these, so a histogram or a pool reads the same wherever it comes from.
//!
//! Everything here is atomics written on the hot path and read at scrape time: recording
//! one observation is a few relaxed increments, with no lock and no allocation.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use sqlx::PgPool;

/// Bucket bounds (µs) of request latency: dense around the 500 ms the P95 alert is about.
pub const REQUEST_BUCKETS_US: &[u64] =
    &[5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];
/// Bucket bounds (µs) of a job's run: mail takes milliseconds, an image seconds, an
/// export up to the two-minute timeout.
pub const JOB_BUCKETS_US: &[u64] =
    &[1_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000, 120_000_000];

/// Acquires that waited the whole acquire timeout (5 s) for a connection and gave up
/// (`sqlx::Error::PoolTimedOut`, counted where it becomes a 503: `error`). sqlx keeps
/// no count of the tasks waiting for a connection, so this is what says "requests
/// queued for the pool"; `quire_db_pool_connections` says how close it is.
pub static POOL_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// A Prometheus histogram over fixed bounds. Buckets are kept per bucket (one increment
/// per observation) and made cumulative when written.
pub struct Histogram {
    bounds_us: &'static [u64],
    /// One per bound, plus the overflow (+Inf only).
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = self.bounds_us.iter().position(|b| us <= *b).unwrap_or(self.bounds_us.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// `name_bucket{labels,le=…}` for every bound and +Inf, `name_sum`, `name_count`.
    /// `labels` is `key="value",…` without braces (may be empty).
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds_us.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
        }
        // +Inf is the count read once, so a scrape racing an observation never shows a
        // bucket above +Inf.
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", count.max(cumulative));
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {:.6}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {}", count.max(cumulative));
    }
}

pub fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Each pool's connections (open, in use, idle), its maximum, and the acquires that
/// timed out. `pools` is (name, pool): `primary`, then each replica by its name.
pub fn pools(out: &mut String, pools: &[(String, PgPool)]) {
    head(out, "quire_db_pool_connections", "gauge", "Connections of each pool: in use (lent to a query) and idle.");
    for (name, pool) in pools {
        let open = pool.size() as u64;
        let idle = (pool.num_idle() as u64).min(open);
        let _ = writeln!(out, "quire_db_pool_connections{{pool=\"{name}\",state=\"in_use\"}} {}", open - idle);
        let _ = writeln!(out, "quire_db_pool_connections{{pool=\"{name}\",state=\"idle\"}} {idle}");
    }
    head(out, "quire_db_pool_max_connections", "gauge", "DATABASE_POOL_SIZE of each pool: connections it opens at most.");
    for (name, pool) in pools {
        let _ = writeln!(out, "quire_db_pool_max_connections{{pool=\"{name}\"}} {}", pool.options().get_max_connections());
    }
    head(out, "quire_db_pool_acquire_timeouts_total", "counter", "Queries that waited the whole acquire timeout for a connection and were refused (answered 503).");
    let _ = writeln!(out, "quire_db_pool_acquire_timeouts_total {}", POOL_TIMEOUTS.load(Relaxed));
}

/// Resident memory of this process in bytes: `/proc/self/statm`'s second field (pages).
/// None off Linux.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the running system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096))
}

/// RSS, open file descriptors and start time: what an operator looks at first when a
/// process misbehaves.
pub fn process(out: &mut String) {
    if let Some(rss) = rss_bytes() {
        head(out, "quire_process_resident_memory_bytes", "gauge", "Resident memory of this process (/proc/self/statm).");
        let _ = writeln!(out, "quire_process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        head(out, "quire_process_open_fds", "gauge", "File descriptors open in this process (sockets included).");
        let _ = writeln!(out, "quire_process_open_fds {}", fds.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_writes_cumulative_buckets() {
        let h = Histogram::new(&[1_000, 10_000]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(5_000));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "route=\"/\"");
        assert!(out.contains("x_seconds_bucket{route=\"/\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{route=\"/\",le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{route=\"/\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{route=\"/\"} 1.005500\n"), "{out}");
        assert!(out.contains("x_seconds_count{route=\"/\"} 3\n"), "{out}");
        let mut bare = String::new();
        h.write(&mut bare, "y", "");
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 3\n") && bare.contains("y_count 3\n"), "{bare}");
    }

    #[test]
    fn rss_is_read() {
        assert!(rss_bytes().is_some_and(|b| b > 1 << 20));
    }
}
