//! Read routing over streaming replicas.
//!
//! - A **health loop** in every process samples the primary's WAL position and each
//!   replica's replayed position about once a second. A replica that is unreachable, not
//!   a standby, or further behind than `DATABASE_REPLICA_MAX_LAG` leaves the rotation, and
//!   rejoins at the first good sample.
//! - **Read-your-writes**: a request runs inside a `ReadScope` whose `floor` is the WAL
//!   position of that visitor's last write (kept in their session, or a signed cookie for
//!   anonymous visitors; see `sessions`). A replica serves the request's reads only if the
//!   loop has seen it replay at least that far — a conservative test, since positions
//!   only grow — and otherwise the primary does.
//! - Choice among eligible replicas is round-robin.
//! - **Circuit breaker**: the first read that fails on a replica because the server is
//!   gone (connection broken or refused, no connection within the pool's short acquire
//!   timeout while the replica answered nothing else) takes it out of rotation at once,
//!   and reads still in flight on it give up and go to the primary, so no later request
//!   waits for a dead replica. Only the health loop's next good probe puts it back.
//!
//! Lag is measured in time, not bytes: we keep the primary's recent positions with the
//! instant we saw them, and a replica's lag is how long ago the primary first passed the
//! position the replica has replayed. An idle primary therefore never makes a caught-up
//! replica look old (which `now() - pg_last_xact_replay_timestamp()` would).

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::Notify;

/// A WAL position (`pg_lsn`) as a byte offset.
pub type Lsn = u64;

/// How often the health loop samples, and how long one sample may take.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Primary positions remembered for measuring lag (one per probe).
const HISTORY: usize = 600;

// ---- per-request scope ---------------------------------------------------------------

tokio::task_local! {
    static SCOPE: Arc<ReadScope>;
}

/// What one request needs from routing: the lowest WAL position its reads may see
/// (`floor`), whether it wrote, and which pools answered its reads.
#[derive(Debug, Default)]
pub struct ReadScope {
    floor: AtomicU64,
    wrote: AtomicBool,
    /// Bit 0: the primary answered a read; bit i+1: replica i did.
    used: AtomicU32,
    /// i+1 when replica i served this request's first read: later reads stay there if
    /// they can, so one page is read from one snapshot-ish position. 0: none yet.
    sticky: AtomicU32,
}

impl ReadScope {
    pub fn new(floor: Lsn) -> Arc<ReadScope> {
        Arc::new(ReadScope { floor: AtomicU64::new(floor), ..ReadScope::default() })
    }

    /// Runs `fut` (the rest of the request) inside this scope.
    pub async fn run<F: Future>(self: &Arc<Self>, fut: F) -> F::Output {
        SCOPE.scope(self.clone(), fut).await
    }

    /// Marks the current request as one that wrote, for a GET that changes state (a
    /// verification link, say); unsafe methods count as writes anyway.
    pub fn note_write() {
        let _ = SCOPE.try_with(|s| s.wrote.store(true, Relaxed));
    }

    pub fn wrote(&self) -> bool {
        self.wrote.load(Relaxed)
    }

    /// Whether the current request noted a write (false outside a scope).
    pub fn current_wrote() -> bool {
        SCOPE.try_with(|s| s.wrote()).unwrap_or(false)
    }

    /// Raises the current request's floor to `lsn` (the session middleware calls this
    /// once it knows who the visitor is).
    pub fn raise_floor(lsn: Lsn) {
        let _ = SCOPE.try_with(|s| s.floor.fetch_max(lsn, Relaxed));
    }

    pub fn floor(&self) -> Lsn {
        self.floor.load(Relaxed)
    }

    /// Which pools answered this request's reads, e.g. `replica-1` or `primary`.
    pub fn served_by(&self) -> String {
        let used = self.used.load(Relaxed);
        let mut names = Vec::new();
        if used & 1 != 0 {
            names.push("primary".to_string());
        }
        for i in 0..31 {
            if used & (1 << (i + 1)) != 0 {
                names.push(replica_name(i));
            }
        }
        names.join(",")
    }

    fn mark(bit: u32) {
        let _ = SCOPE.try_with(|s| s.used.fetch_or(1 << bit.min(31), Relaxed));
    }

    /// (floor, sticky replica) of the current request; (0, None) outside a request.
    fn current() -> (Lsn, Option<usize>) {
        SCOPE
            .try_with(|s| (s.floor(), s.sticky.load(Relaxed).checked_sub(1).map(|i| i as usize)))
            .unwrap_or((0, None))
    }

    fn stick(i: usize) {
        let _ = SCOPE.try_with(|s| s.sticky.compare_exchange(0, i as u32 + 1, Relaxed, Relaxed));
    }
}

// ---- replicas ------------------------------------------------------------------------

fn replica_name(i: usize) -> String {
    format!("replica-{}", i + 1)
}

/// How long a read waits for a replica connection before it gives up and goes to the
/// primary. It bounds the one read that discovers a replica is gone: sqlx retries a
/// refused connect (it takes it for a server starting up) and waits on a hung one until
/// this deadline, so a stopped and a hung replica both cost that first read this long,
/// and no read after it anything (the breaker). A healthy replica connects in a few ms
/// (TCP plus SCRAM) and a saturated pool does not trip the breaker (see
/// `Router::failed`), so 250 ms leaves a wide margin on a loaded machine while capping
/// the worst read at a quarter of the old one-second wait.
pub const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(250);

/// A lazily connected pool for a replica: the process starts even when a replica is
/// down. Waiting for a connection is capped at `REPLICA_ACQUIRE_TIMEOUT`, because a read
/// that cannot get one goes to the primary instead (see `replica_read!`).
pub fn replica_pool(url: &str, size: u32) -> Result<PgPool, sqlx::Error> {
    Ok(replica_pool_with(url.parse()?, size))
}

/// `replica_pool` from parsed options (`Db::connect` names its connections).
pub fn replica_pool_with(options: PgConnectOptions, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(REPLICA_ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options)
}

/// host:port/database of a URL, without credentials, for /health and logs.
fn describe(url: &str) -> String {
    match url.parse::<PgConnectOptions>() {
        Ok(o) => format!("{}:{}/{}", o.get_host(), o.get_port(), o.get_database().unwrap_or("")),
        Err(_) => "(unparsable URL)".into(),
    }
}

#[derive(Debug)]
pub struct Replica {
    name: String,
    target: String,
    pool: PgPool,
    in_rotation: AtomicBool,
    /// Where the last probe left it: "starting", "ok", "lagging", "down", "not_standby".
    state: Mutex<(&'static str, Option<String>)>,
    replay_lsn: AtomicU64,
    lag_ms: AtomicU64,
    queries: AtomicU64,
    /// Times a failed read took this replica out of rotation (the breaker opened).
    trips: AtomicU64,
    /// When this replica last answered a read (success or an ordinary SQL error), in µs
    /// since `born`: tells a saturated pool (others are being answered) from a dead server.
    answered_us: AtomicU64,
    born: Instant,
    /// Wakes the reads in flight on this replica when it goes down, so they retry on the
    /// primary instead of waiting for a connection, or an answer, that will not come.
    gone: Notify,
}

impl Replica {
    pub fn new(index: usize, url: &str, pool: PgPool) -> Replica {
        Replica {
            name: replica_name(index),
            target: describe(url),
            pool,
            in_rotation: AtomicBool::new(false),
            state: Mutex::new(("starting", None)),
            replay_lsn: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            answered_us: AtomicU64::new(0),
            born: Instant::now(),
            gone: Notify::new(),
        }
    }

    fn us_since_born(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.born).as_micros() as u64
    }

    fn note_answer(&self) {
        let now = self.us_since_born(Instant::now());
        // Load first: most reads find the value already recent enough to skip the write.
        if self.answered_us.load(Relaxed) < now {
            self.answered_us.fetch_max(now, Relaxed);
        }
    }

    /// Whether the replica answered any read after `t`.
    fn answered_since(&self, t: Instant) -> bool {
        self.answered_us.load(Relaxed) > self.us_since_born(t)
    }

    /// Sets the state; returns whether the replica was in rotation before. Going down
    /// wakes the reads in flight on it (see `Router::guard`).
    fn set_state(&self, state: &'static str, error: Option<String>, in_rotation: bool) -> bool {
        let was = self.in_rotation.swap(in_rotation, Relaxed);
        if state == "down" {
            self.gone.notify_waiters();
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if was != in_rotation || s.0 != state {
            let lag_s = self.lag_ms.load(Relaxed) as f64 / 1000.0;
            if in_rotation {
                tracing::info!(replica = %self.name, target = %self.target, lag_s, "replica in rotation");
            } else {
                tracing::warn!(replica = %self.name, target = %self.target, state, lag_s, error = error.as_deref().unwrap_or(""), "replica out of rotation");
            }
        }
        *s = (state, error);
        was
    }
}

/// A replica as /health shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    pub name: String,
    pub target: String,
    /// "ok" (in rotation), "lagging", "down", "not_standby" or "starting".
    pub status: &'static str,
    pub in_rotation: bool,
    pub lag_seconds: f64,
    pub replay_lsn: Lsn,
    pub queries: u64,
    /// Times a failed read took it out of rotation at once (the circuit breaker).
    pub breaker_trips: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// Queries handed to the primary: writes, current reads, and reads that fell back.
    pub primary_queries: u64,
    /// (replica name, queries handed to it, lag in seconds, in rotation, breaker trips)
    pub replicas: Vec<(String, u64, f64, bool, u64)>,
    /// Reads sent to the primary because no replica had replayed the visitor's last write.
    pub fallback_pinned: u64,
    /// Reads sent to the primary because no replica was in rotation.
    pub fallback_unavailable: u64,
    /// Reads that failed on a replica and were run again on the primary.
    pub retried_on_primary: u64,
}

// ---- the router ----------------------------------------------------------------------

#[derive(Debug)]
pub struct Router {
    replicas: Vec<Replica>,
    max_lag: Duration,
    next: AtomicUsize,
    primary_queries: AtomicU64,
    fallback_pinned: AtomicU64,
    fallback_unavailable: AtomicU64,
    retried: AtomicU64,
    stopped: AtomicBool,
    stop: Notify,
}

impl Router {
    pub fn new(replicas: Vec<Replica>, max_lag: Duration) -> Router {
        Router {
            replicas,
            max_lag,
            next: AtomicUsize::new(0),
            primary_queries: AtomicU64::new(0),
            fallback_pinned: AtomicU64::new(0),
            fallback_unavailable: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    pub fn pool(&self, i: usize) -> &PgPool {
        &self.replicas[i].pool
    }

    /// (name, pool) of each replica, for `/metrics`.
    pub fn replica_pools(&self) -> Vec<(String, PgPool)> {
        self.replicas.iter().map(|r| (r.name.clone(), r.pool.clone())).collect()
    }

    pub fn count_primary(&self) {
        self.primary_queries.fetch_add(1, Relaxed);
    }

    /// The replica for the current request's next read, or None for the primary.
    pub fn pick(&self) -> Option<usize> {
        let n = self.replicas.len();
        if n == 0 {
            self.count_primary();
            return None;
        }
        let (floor, sticky) = ReadScope::current();
        let start = sticky.unwrap_or_else(|| self.next.fetch_add(1, Relaxed));
        let mut pinned = false;
        for k in 0..n {
            let i = (start + k) % n;
            let r = &self.replicas[i];
            if !r.in_rotation.load(Relaxed) {
                continue;
            }
            if r.replay_lsn.load(Relaxed) < floor {
                pinned = true;
                continue;
            }
            r.queries.fetch_add(1, Relaxed);
            ReadScope::mark(i as u32 + 1);
            ReadScope::stick(i);
            return Some(i);
        }
        if pinned { &self.fallback_pinned } else { &self.fallback_unavailable }.fetch_add(1, Relaxed);
        self.count_primary();
        ReadScope::mark(0);
        None
    }

    /// Runs `read` on replica `i` (picked at `picked`), giving up with `PoolClosed` —
    /// which `replica_read!` retries on the primary — as soon as the replica goes down:
    /// a read waiting for a connection (sqlx keeps retrying a refused connect until the
    /// acquire deadline) or for an answer from a hung server stops waiting when another
    /// read trips the breaker or a probe fails.
    pub async fn guard<T, F>(&self, i: usize, read: F) -> Result<T, sqlx::Error>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let r = &self.replicas[i];
        // Registered before the check below, so a trip between the two still wakes us.
        let gone = r.gone.notified();
        if !r.in_rotation.load(Relaxed) {
            return Err(sqlx::Error::PoolClosed);
        }
        tokio::select! {
            biased;
            res = read => {
                if !matches!(&res, Err(e) if worth_retrying(e)) {
                    r.note_answer();
                }
                res
            }
            () = gone => Err(sqlx::Error::PoolClosed),
        }
    }

    /// A read picked at `picked` failed on replica `i`: count the retry on the primary
    /// and, unless the replica is merely busy, open the breaker — out of rotation until
    /// the health loop's next good probe.
    ///
    /// A pool timeout is ambiguous: either every connection was busy (the replica is
    /// answering other reads: leave it in), or no connection could be opened (refused or
    /// hung: nothing was answered since this read began). A standby's recovery-conflict
    /// cancellation (40001) is about that query, not the server.
    pub fn failed(&self, i: usize, picked: Instant, err: &sqlx::Error) {
        self.retried.fetch_add(1, Relaxed);
        ReadScope::mark(0);
        let r = &self.replicas[i];
        if !r.in_rotation.load(Relaxed) {
            // Already out (a read in flight that gave up, or a second failure): the first
            // failure's reason stays on /health.
            return;
        }
        let busy = match err {
            sqlx::Error::PoolTimedOut => r.answered_since(picked),
            _ => sql_state(err).is_some_and(|c| c == "40001"),
        };
        if !busy && r.set_state("down", Some(err.to_string()), false) {
            r.trips.fetch_add(1, Relaxed);
        }
    }

    pub fn all_reached(&self, lsn: Lsn) -> bool {
        self.replicas.iter().all(|r| r.replay_lsn.load(Relaxed) >= lsn)
    }

    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|r| {
                let (status, error) = r.state.lock().map(|s| s.clone()).unwrap_or(("down", None));
                ReplicaStatus {
                    name: r.name.clone(),
                    target: r.target.clone(),
                    status,
                    in_rotation: r.in_rotation.load(Relaxed),
                    lag_seconds: r.lag_ms.load(Relaxed) as f64 / 1000.0,
                    replay_lsn: r.replay_lsn.load(Relaxed),
                    queries: r.queries.load(Relaxed),
                    breaker_trips: r.trips.load(Relaxed),
                    error,
                }
            })
            .collect()
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            primary_queries: self.primary_queries.load(Relaxed),
            replicas: self
                .replicas
                .iter()
                .map(|r| {
                    (r.name.clone(), r.queries.load(Relaxed), r.lag_ms.load(Relaxed) as f64 / 1000.0, r.in_rotation.load(Relaxed), r.trips.load(Relaxed))
                })
                .collect(),
            fallback_pinned: self.fallback_pinned.load(Relaxed),
            fallback_unavailable: self.fallback_unavailable.load(Relaxed),
            retried_on_primary: self.retried.load(Relaxed),
        }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Relaxed);
        self.stop.notify_waiters();
    }

    pub async fn close(&self) {
        for r in &self.replicas {
            r.pool.close().await;
        }
    }

    /// Applies one probe result to replica `i`. `trips` is its breaker count and
    /// `started` the instant when the probe began.
    fn record(&self, i: usize, result: Result<Probe, ProbeFailure>, history: &VecDeque<(Instant, Lsn)>, trips: u64, started: Instant) {
        let r = &self.replicas[i];
        match result {
            Ok(Probe { in_recovery: false, .. }) => {
                // A promoted (or mistaken) replica: its positions say nothing about ours.
                r.set_state("not_standby", Some("server is not in recovery (not a standby)".into()), false);
            }
            Ok(Probe { replay_lsn, .. }) => {
                // Stored as read, not maximised: replay only moves forward, unless the
                // replica was rebuilt from an older copy, and then the lower value is
                // the truth read-your-writes must go by.
                r.replay_lsn.store(replay_lsn, Relaxed);
                let lag = lag_behind(replay_lsn, history, Instant::now());
                r.lag_ms.store(lag.as_millis() as u64, Relaxed);
                if r.trips.load(Relaxed) != trips {
                    // A read failed on it while this probe ran: that failure is newer than
                    // this answer, so the breaker stays open until the next probe.
                } else if lag <= self.max_lag {
                    r.set_state("ok", None, true);
                } else {
                    r.set_state("lagging", Some(format!("{:.1} s behind (limit {:.0} s)", lag.as_secs_f64(), self.max_lag.as_secs_f64())), false);
                }
            }
            // No connection in time while reads were being answered: a busy pool, not a
            // dead server. Keep the last verdict.
            Err(ProbeFailure { timed_out: true, .. }) if r.answered_since(started) => {}
            Err(ProbeFailure { message, .. }) => {
                r.set_state("down", Some(message), false);
            }
        }
    }
}

/// How long ago the primary first moved past `replayed`: zero when the replica has
/// replayed everything the primary had at the last sample.
fn lag_behind(replayed: Lsn, history: &VecDeque<(Instant, Lsn)>, now: Instant) -> Duration {
    let Some(&(_, latest)) = history.back() else { return Duration::ZERO };
    if replayed >= latest {
        return Duration::ZERO;
    }
    let since = history.iter().find(|(_, lsn)| *lsn > replayed).map(|(t, _)| *t).unwrap_or(now);
    now.saturating_duration_since(since)
}

// ---- SQL and the loop ----------------------------------------------------------------

/// The primary's WAL insert position: at least the commit record of every transaction
/// that has committed, even with `synchronous_commit = off` (the write position may lag).
pub async fn primary_lsn(pool: &PgPool) -> Result<Lsn, sqlx::Error> {
    let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint").fetch_one(pool).await?;
    Ok(lsn.max(0) as Lsn)
}

struct Probe {
    in_recovery: bool,
    replay_lsn: Lsn,
}

struct ProbeFailure {
    message: String,
    /// No connection or no answer in time (as opposed to an error).
    timed_out: bool,
}

async fn probe(pool: &PgPool) -> Result<Probe, ProbeFailure> {
    let q = sqlx::query_as::<_, (bool, Option<i64>)>(
        "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(pool);
    match tokio::time::timeout(PROBE_TIMEOUT, q).await {
        Ok(Ok((in_recovery, lsn))) => Ok(Probe { in_recovery, replay_lsn: lsn.unwrap_or(0).max(0) as Lsn }),
        Ok(Err(e)) => Err(ProbeFailure { timed_out: matches!(e, sqlx::Error::PoolTimedOut), message: e.to_string() }),
        Err(_) => Err(ProbeFailure { message: format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()), timed_out: true }),
    }
}

async fn round(primary: &PgPool, router: &Router, history: &mut VecDeque<(Instant, Lsn)>) {
    // Primary first: a replica sampled after it that has replayed as far is caught up.
    if let Ok(Ok(lsn)) = tokio::time::timeout(PROBE_TIMEOUT, primary_lsn(primary)).await {
        history.push_back((Instant::now(), lsn));
        while history.len() > HISTORY {
            history.pop_front();
        }
    }
    let trips: Vec<u64> = router.replicas.iter().map(|r| r.trips.load(Relaxed)).collect();
    let started = Instant::now();
    let probes = router.replicas.iter().map(|r| probe(&r.pool));
    let results = futures::future::join_all(probes).await;
    for (i, result) in results.into_iter().enumerate() {
        router.record(i, result, history, trips[i], started);
    }
}

/// Runs one round now (so a new process starts with its replicas placed), then one per
/// `PROBE_INTERVAL` in the background until `Router::stop`.
pub async fn start_health_loop(primary: PgPool, router: Arc<Router>) {
    let mut history = VecDeque::with_capacity(HISTORY);
    round(&primary, &router, &mut history).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = router.stop.notified() => break,
            }
            if router.stopped.load(Relaxed) || primary.is_closed() {
                break;
            }
            round(&primary, &router, &mut history).await;
        }
    });
}

fn sql_state(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Errors that mean "this server could not answer", not "this query is wrong": the
/// connection broke or was refused, the server is shutting down or overloaded, or a
/// standby cancelled the query over a recovery conflict. Such a read is worth one more
/// try on the primary.
pub fn worth_retrying(err: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match err {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(_) => sql_state(err).is_some_and(|c| c.starts_with("08") || c.starts_with("57") || c.starts_with("53") || c == "40001"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_time_since_the_primary_passed_the_replayed_position() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let history: VecDeque<_> = [(t0, 100), (t0 + Duration::from_secs(4), 200), (t0 + Duration::from_secs(8), 300)].into();
        assert_eq!(lag_behind(300, &history, now), Duration::ZERO);
        assert_eq!(lag_behind(400, &history, now), Duration::ZERO);
        assert_eq!(lag_behind(250, &history, now), Duration::from_secs(2));
        assert_eq!(lag_behind(150, &history, now), Duration::from_secs(6));
        assert_eq!(lag_behind(50, &history, now), Duration::from_secs(10));
        assert_eq!(lag_behind(0, &VecDeque::new(), now), Duration::ZERO);
    }

    #[test]
    fn only_server_failures_are_retried() {
        assert!(worth_retrying(&sqlx::Error::PoolTimedOut));
        assert!(worth_retrying(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        assert!(!worth_retrying(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn served_by_names_pools() {
        let s = ReadScope::new(0);
        s.used.store(0b101, Relaxed);
        assert_eq!(s.served_by(), "primary,replica-2");
    }
}
