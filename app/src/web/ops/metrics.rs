//! `/metrics`: Prometheus text format, for one web process (counters are per process;
//! Prometheus sums them across processes):
//!
//! - **HTTP**: requests and their latency by route *pattern* (`/s/:id`, never the raw
//!   path, so the number of series is bounded by the route table), method and status
//!   class, responses by exact status code, and the connections open (`web::server`);
//! - **pools**: connections in use and idle per pool (primary, each replica), the
//!   maximum, and acquires that timed out; the router's counters (queries handed to each
//!   pool, reads that fell back to the primary and why, reads retried on the primary, each
//!   replica's lag, rotation state and breaker trips);
//! - **queue**: jobs by queue and state, and the oldest runnable pending job's age per
//!   queue, from one index-only statement cached for `QUEUE_TTL` (every web process
//!   reports the same numbers: alert on `max`, not `sum`). Job runs and mail are counted
//!   where they happen, in the worker, which serves its own `/metrics` on `METRICS_PORT`
//!   (`serve_standalone`, called by `worker::metrics`);
//! - the live broker, the view counter, the cache and Redis, the process's memory.
//!
//! **Access**: with `METRICS_TOKEN` set, only `Authorization: Bearer <token>` is
//! answered (401 otherwise); without it, development answers everyone and production
//! only this machine's direct requests (loopback peer, no proxy header, as `/dev/mail`),
//! 404 for the rest — the numbers name routes, queues and load, nothing for the public.
//!
//! The request counting (`RequestMetrics`) costs a request two clock reads, a read lock
//! on the route table's map (a hash of the pattern poem already matched) and a handful
//! of relaxed atomic increments: no allocation once a route has been seen.

use std::{
    collections::HashMap,
    fmt::Write,
    sync::{
        Arc, LazyLock, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, handler,
    http::{Method, StatusCode, header},
    PathPattern,
    web::Data,
};

use crate::{
    jobs::admin::{self, QueueCounts},
    metrics::{Histogram, REQUEST_BUCKETS_US, head},
    web::AppState,
};

/// How long the queue's counts are reused: a scrape every few seconds from several
/// Prometheus servers costs the database one statement per `QUEUE_TTL` at most.
pub const QUEUE_TTL: Duration = Duration::from_secs(5);
/// Distinct route patterns counted at most; past it (a bug: a pattern per path) requests
/// count under `route="other"` rather than growing memory and series without bound.
pub const MAX_ROUTES: usize = 512;
/// The route label of requests no route matched (404s of unknown paths, hostile input).
pub const UNMATCHED: &str = "unmatched";

// ---- access ---------------------------------------------------------------------------

/// Whether `req` may read the metrics, given `METRICS_TOKEN` and the environment: Err is
/// the response to give instead.
pub fn check_access(req: &Request, token: Option<&str>, production: bool) -> Result<(), Response> {
    match token {
        // This machine's own direct requests (a drill, a Prometheus beside the process) may
        // still read them; anything through a proxy (Caddy adds X-Forwarded-For) may not.
        None if production && !super::dev_mail::from_this_machine(req) => Err(StatusCode::NOT_FOUND.into_response()),
        None => Ok(()),
        Some(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
                _ => Err(Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")
                    .body("metrics need the bearer token (METRICS_TOKEN)\n")),
            }
        }
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(out: String) -> Response {
    out.with_content_type("text/plain; version=0.0.4; charset=utf-8").into_response()
}

// ---- HTTP requests --------------------------------------------------------------------

const METHODS: [&str; 3] = ["GET", "POST", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One route's latency histograms, by method and status class.
struct RouteStats {
    by: Vec<Histogram>,
}

impl RouteStats {
    fn new() -> RouteStats {
        RouteStats { by: (0..METHODS.len() * CLASSES.len()).map(|_| Histogram::new(REQUEST_BUCKETS_US)).collect() }
    }
}

struct HttpStats {
    routes: RwLock<HashMap<Arc<str>, RouteStats>>,
    unmatched: RouteStats,
    other: RouteStats,
    /// Responses by exact status code (100–599; anything else under 0).
    codes: [AtomicU64; 600],
}

static HTTP: LazyLock<HttpStats> = LazyLock::new(|| HttpStats {
    routes: RwLock::new(HashMap::new()),
    unmatched: RouteStats::new(),
    other: RouteStats::new(),
    codes: [const { AtomicU64::new(0) }; 600],
});

fn record(pattern: Option<&Arc<str>>, method: &Method, status: u16, elapsed: Duration) {
    let m = match *method {
        // HEAD is answered by the GET route.
        Method::GET | Method::HEAD => 0,
        Method::POST => 1,
        _ => 2,
    };
    let c = usize::from((status / 100).clamp(1, 5) - 1);
    let i = m * CLASSES.len() + c;
    let http = &*HTTP;
    http.codes[if (100..600).contains(&status) { usize::from(status) } else { 0 }].fetch_add(1, Relaxed);
    // "" is the pages' nest matched with no route inside it: a 404, or a request refused
    // before routing (the CSRF check's 403 wraps the route table).
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        http.unmatched.by[i].observe(elapsed);
        return;
    };
    // The common case: a pattern seen before, under the read lock (a poisoned lock only
    // means another thread panicked while holding it; the map is still usable).
    {
        let routes = http.routes.read().unwrap_or_else(|e| e.into_inner());
        if let Some(stats) = routes.get(&**pattern) {
            stats.by[i].observe(elapsed);
            return;
        }
    }
    let mut routes = http.routes.write().unwrap_or_else(|e| e.into_inner());
    if routes.len() >= MAX_ROUTES && !routes.contains_key(&**pattern) {
        http.other.by[i].observe(elapsed);
        return;
    }
    routes.entry(pattern.clone()).or_insert_with(RouteStats::new).by[i].observe(elapsed);
}

/// Times and counts every request by the route pattern poem matched (`PathPattern` on
/// the response, or on the error before it becomes a page), method and status.
pub struct RequestMetrics;

impl<E: Endpoint> Middleware<E> for RequestMetrics {
    type Output = RequestMetricsEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        RequestMetricsEndpoint { inner }
    }
}

pub struct RequestMetricsEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for RequestMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let method = req.method().clone();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let elapsed = started.elapsed();
        match &result {
            Ok(resp) => record(resp.data::<PathPattern>().map(|p| &p.0), &method, resp.status().as_u16(), elapsed),
            Err(err) => record(err.data::<PathPattern>().map(|p| &p.0), &method, err.status().as_u16(), elapsed),
        }
        result
    }
}

fn http_metrics(out: &mut String) {
    let http = &*HTTP;
    let routes = http.routes.read().unwrap_or_else(|e| e.into_inner());
    let mut named: Vec<(&str, &RouteStats)> = routes.iter().map(|(p, s)| (&**p, s)).collect();
    named.sort_unstable_by_key(|(p, _)| *p);
    named.push((UNMATCHED, &http.unmatched));
    named.push(("other", &http.other));
    let series = || {
        named.iter().flat_map(|(route, stats)| {
            stats.by.iter().enumerate().filter(|(_, h)| h.count() > 0).map(move |(i, h)| {
                let labels = format!(
                    "route=\"{}\",method=\"{}\",status=\"{}\"",
                    escape(route),
                    METHODS[i / CLASSES.len()],
                    CLASSES[i % CLASSES.len()]
                );
                (labels, h)
            })
        })
    };
    head(out, "quire_http_requests_total", "counter", "Requests answered, by route pattern, method (GET includes HEAD) and status class.");
    for (labels, h) in series() {
        let _ = writeln!(out, "quire_http_requests_total{{{labels}}} {}", h.count());
    }
    head(out, "quire_http_request_duration_seconds", "histogram", "Time to the response's head, by route pattern, method and status class.");
    for (labels, h) in series() {
        h.write(out, "quire_http_request_duration_seconds", &labels);
    }
    head(out, "quire_http_responses_total", "counter", "Responses by exact status code.");
    for (code, n) in http.codes.iter().enumerate() {
        let n = n.load(Relaxed);
        if n > 0 {
            let _ = writeln!(out, "quire_http_responses_total{{code=\"{code}\"}} {n}");
        }
    }
    let (open, accepted, max) = crate::web::server::connections();
    head(out, "quire_http_connections_open", "gauge", "HTTP connections open in this process.");
    let _ = writeln!(out, "quire_http_connections_open {open}");
    head(out, "quire_http_connections_max", "gauge", "MAX_CONNECTIONS: connections served at once at most (more wait in the backlog).");
    let _ = writeln!(out, "quire_http_connections_max {max}");
    head(out, "quire_http_connections_total", "counter", "HTTP connections accepted.");
    let _ = writeln!(out, "quire_http_connections_total {accepted}");
}

/// A label value as the text format wants it (patterns are ours, but `"` and `\` would
/// break the line).
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['"', '\\', '\n']) {
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        v.into()
    }
}

// ---- the job queue --------------------------------------------------------------------

/// The last counts of the queue, reused for `QUEUE_TTL`; one per `AppState` (its
/// database), and concurrent scrapes wait for one statement rather than each run it.
#[derive(Default)]
pub struct QueueGauge {
    last: tokio::sync::Mutex<Option<(Instant, Result<Vec<QueueCounts>, String>)>>,
}

impl QueueGauge {
    async fn get(&self, pool: &sqlx::PgPool) -> Result<Vec<QueueCounts>, String> {
        let mut last = self.last.lock().await;
        if let Some((at, counts)) = &*last
            && at.elapsed() < QUEUE_TTL
        {
            return counts.clone();
        }
        let fresh = async {
            let mut conn = pool.acquire().await?;
            admin::counts(&mut conn, crate::jobs::ALL_QUEUES).await
        };
        let counts = match tokio::time::timeout(Duration::from_secs(2), fresh).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        *last = Some((Instant::now(), counts.clone()));
        counts
    }
}

async fn queue_metrics(out: &mut String, state: &AppState) {
    // Not `db.primary()`: that counts a query handed to the primary, and a scrape is not one.
    let pools = state.db.pools();
    let Some((_, primary)) = pools.first() else { return };
    let counts = state.queue_gauge.get(primary).await;
    head(out, "quire_jobs_scrape_ok", "gauge", "1 when the queue's counts below could be read (cached for a few seconds).");
    let _ = writeln!(out, "quire_jobs_scrape_ok {}", u8::from(counts.is_ok()));
    let Ok(counts) = counts else { return };
    head(out, "quire_jobs", "gauge", "Unfinished jobs by queue and state (Scheduled: pending with run_at ahead; Retrying: failed with attempts left; Failed/Killed: gave up).");
    for q in &counts {
        for s in admin::STATES {
            let _ = writeln!(out, "quire_jobs{{queue=\"{}\",state=\"{s}\"}} {}", escape(&q.queue), q.get(s));
        }
    }
    head(out, "quire_jobs_oldest_pending_seconds", "gauge", "Age of the oldest job waiting to run (pending, due) in each queue; 0 when none waits.");
    for q in &counts {
        let _ = writeln!(out, "quire_jobs_oldest_pending_seconds{{queue=\"{}\"}} {:.3}", escape(&q.queue), q.oldest_pending_secs.unwrap_or(0.0).max(0.0));
    }
}

// ---- the page -------------------------------------------------------------------------

#[handler]
pub async fn metrics(req: &Request, Data(state): Data<&AppState>) -> Response {
    if let Err(refused) = check_access(req, state.config.metrics_token.as_deref(), state.config.is_production()) {
        return refused;
    }
    let mut out = String::with_capacity(16 * 1024);
    http_metrics(&mut out);
    crate::metrics::pools(&mut out, &state.db.pools());
    router_metrics(&mut out, state);
    queue_metrics(&mut out, state).await;
    crate::metrics::process(&mut out);
    text(out)
}

/// Another process's `/metrics` on a listener of its own (the worker's, on
/// `METRICS_PORT`), under the same access rule; `render` writes the page.
pub async fn serve_standalone(
    listener: tokio::net::TcpListener,
    token: Option<String>,
    production: bool,
    render: impl Fn() -> String + Send + Sync + 'static,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use poem::EndpointExt;
    let ep = poem::Route::new().at(
        "/metrics",
        poem::get(poem::endpoint::make_sync(move |req: Request| match check_access(&req, token.as_deref(), production) {
            Ok(()) => text(render()),
            Err(refused) => refused,
        })),
    );
    crate::web::server::run(listener, ep.map_to_response().boxed(), crate::config::HttpLimits::default(), signal, Duration::from_secs(1)).await
}

/// The database router's counters, the live broker, the view counter and the cache.
fn router_metrics(out: &mut String, state: &AppState) {
    let stats = state.db.stats();
    head(out, "quire_db_queries_total", "counter", "Queries handed to each database pool.");
    let _ = writeln!(out, "quire_db_queries_total{{pool=\"primary\"}} {}", stats.primary_queries);
    for (name, queries, ..) in &stats.replicas {
        let _ = writeln!(out, "quire_db_queries_total{{pool=\"{name}\"}} {queries}");
    }
    head(out, "quire_db_read_fallbacks_total", "counter", "Reads that went to the primary although replicas are configured.");
    let _ = writeln!(out, "quire_db_read_fallbacks_total{{reason=\"read_your_writes\"}} {}", stats.fallback_pinned);
    let _ = writeln!(out, "quire_db_read_fallbacks_total{{reason=\"no_replica_in_rotation\"}} {}", stats.fallback_unavailable);
    head(out, "quire_db_read_retries_total", "counter", "Reads that failed on a replica and ran again on the primary.");
    let _ = writeln!(out, "quire_db_read_retries_total {}", stats.retried_on_primary);
    head(out, "quire_db_replica_lag_seconds", "gauge", "Replay lag of each replica, as last measured.");
    for (name, _, lag, ..) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_lag_seconds{{replica=\"{name}\"}} {lag}");
    }
    head(out, "quire_db_replica_in_rotation", "gauge", "1 when the replica serves reads.");
    for (name, _, _, up, _) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_in_rotation{{replica=\"{name}\"}} {}", u8::from(*up));
    }
    head(out, "quire_db_replica_breaker_trips_total", "counter", "Times a failed read took the replica out of rotation at once (back only after a good health probe).");
    for (name, _, _, _, trips) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_breaker_trips_total{{replica=\"{name}\"}} {trips}");
    }
    let live = state.live.stats();
    head(out, "quire_live_streams_open", "gauge", "Server-Sent Events streams open in this process.");
    let _ = writeln!(out, "quire_live_streams_open {}", live.open_streams);
    head(out, "quire_live_streams_max", "gauge", "LIVE_MAX_STREAMS: streams this process accepts at most.");
    let _ = writeln!(out, "quire_live_streams_max {}", live.max_streams);
    head(out, "quire_live_listening", "gauge", "1 while this process's LISTEN connection is up.");
    let _ = writeln!(out, "quire_live_listening {}", u8::from(live.listening));
    head(out, "quire_live_events_total", "counter", "Live events read and fanned out by this process.");
    let _ = writeln!(out, "quire_live_events_total {}", live.delivered);
    head(out, "quire_live_listener_reconnects_total", "counter", "Times the LISTEN connection was lost and re-established.");
    let _ = writeln!(out, "quire_live_listener_reconnects_total {}", live.reconnects);
    head(out, "quire_stats_views_flushed_total", "counter", "Chapter views this process counted and wrote to the database.");
    let _ = writeln!(out, "quire_stats_views_flushed_total {}", state.views.flushed_views());
    head(out, "quire_stats_views_pending", "gauge", "Entries (chapter-days and readers) counted in memory, waiting for the next flush.");
    let _ = writeln!(out, "quire_stats_views_pending {}", state.views.pending());
    head(out, "quire_stats_views_dropped_total", "counter", "Views or readers not counted because the in-memory batch was full.");
    let _ = writeln!(out, "quire_stats_views_dropped_total {}", state.views.dropped());
    cache_metrics(out, state);
}

/// The cache by kind and level, invalidations, Redis calls and the limiter's fallbacks.
fn cache_metrics(out: &mut String, state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::cache::stats;
    head(out, "quire_cache_requests_total", "counter", "Cache lookups by kind and outcome: hit at l1 or l2, coalesced onto another request's load, miss (loaded), bypass (cache off).");
    for k in stats::ALL {
        let s = &k.stats;
        for (outcome, n) in [("l1", &s.l1_hits), ("l2", &s.l2_hits), ("coalesced", &s.coalesced), ("miss", &s.misses), ("bypass", &s.bypass)] {
            let _ = writeln!(out, "quire_cache_requests_total{{kind=\"{}\",result=\"{outcome}\"}} {}", k.name, n.load(Relaxed));
        }
    }
    head(out, "quire_cache_hit_ratio", "gauge", "Hits (any level) over lookups since start, by kind.");
    for k in stats::ALL {
        if let Some(r) = k.stats.hit_ratio() {
            let _ = writeln!(out, "quire_cache_hit_ratio{{kind=\"{}\"}} {r:.4}", k.name);
        }
    }
    head(out, "quire_cache_stale_total", "counter", "L1 entries found stale (a tag changed) and dropped.");
    head(out, "quire_cache_load_seconds_total", "counter", "Time spent in loaders (misses), by kind.");
    head(out, "quire_cache_loads_total", "counter", "Loader runs, by kind.");
    head(out, "quire_cache_l2_seconds_total", "counter", "Time spent on L2 lookups, by kind.");
    head(out, "quire_cache_fallbacks_total", "counter", "L2 lookups or stores Redis did not answer (served without it).");
    for k in stats::ALL {
        let s = &k.stats;
        let _ = writeln!(out, "quire_cache_stale_total{{kind=\"{}\"}} {}", k.name, s.stale.load(Relaxed));
        let _ = writeln!(out, "quire_cache_load_seconds_total{{kind=\"{}\"}} {:.6}", k.name, s.load_time_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "quire_cache_loads_total{{kind=\"{}\"}} {}", k.name, s.loads.load(Relaxed));
        let _ = writeln!(out, "quire_cache_l2_seconds_total{{kind=\"{}\"}} {:.6}", k.name, s.l2_time_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "quire_cache_fallbacks_total{{kind=\"{}\"}} {}", k.name, s.fallbacks.load(Relaxed));
    }
    head(out, "quire_cache_invalidations_total", "counter", "Tags invalidated: sent by this process, received from others, and sends Redis did not take (went through PostgreSQL).");
    let _ = writeln!(out, "quire_cache_invalidations_total{{direction=\"sent\"}} {}", stats::INVALIDATIONS_SENT.load(Relaxed));
    let _ = writeln!(out, "quire_cache_invalidations_total{{direction=\"received\"}} {}", stats::INVALIDATIONS_RECEIVED.load(Relaxed));
    let _ = writeln!(out, "quire_cache_invalidations_total{{direction=\"fallback\"}} {}", stats::INVALIDATION_FALLBACKS.load(Relaxed));
    head(out, "quire_cache_feed_gaps_total", "counter", "Times L1 was emptied because the invalidation feed from Redis had a gap.");
    let _ = writeln!(out, "quire_cache_feed_gaps_total {}", stats::FEED_GAPS.load(Relaxed));
    head(out, "quire_cache_l1_bytes", "gauge", "Bytes held in this process's L1.");
    let _ = writeln!(out, "quire_cache_l1_bytes {}", state.cache.l1_bytes());
    head(out, "quire_ratelimit_fallbacks_total", "counter", "Rate-limit hits counted in process because Redis did not answer.");
    let _ = writeln!(out, "quire_ratelimit_fallbacks_total {}", crate::ratelimit::FALLBACKS.load(Relaxed));
    if let Some(redis) = state.cache.redis() {
        let r = redis.stats();
        head(out, "quire_redis_up", "gauge", "1 while Redis answers (the breaker is closed).");
        let _ = writeln!(out, "quire_redis_up {}", u8::from(r.up));
        head(out, "quire_redis_calls_total", "counter", "Redis calls made, and those that failed, timed out or were skipped (breaker open).");
        let _ = writeln!(out, "quire_redis_calls_total{{result=\"made\"}} {}", r.calls);
        let _ = writeln!(out, "quire_redis_calls_total{{result=\"error\"}} {}", r.errors);
        let _ = writeln!(out, "quire_redis_calls_total{{result=\"timeout\"}} {}", r.timeouts);
        let _ = writeln!(out, "quire_redis_calls_total{{result=\"skipped\"}} {}", r.skipped);
        head(out, "quire_redis_reconnects_total", "counter", "Times Redis came back after being down.");
        let _ = writeln!(out, "quire_redis_reconnects_total {}", r.reconnects);
        head(out, "quire_redis_call_seconds", "histogram", "Redis call latency.");
        let mut cumulative = 0;
        for (le_us, n) in &r.latency_buckets {
            cumulative += n;
            let _ = writeln!(out, "quire_redis_call_seconds_bucket{{le=\"{}\"}} {cumulative}", *le_us as f64 / 1e6);
        }
        let _ = writeln!(out, "quire_redis_call_seconds_bucket{{le=\"+Inf\"}} {}", r.calls);
        let _ = writeln!(out, "quire_redis_call_seconds_sum {:.6}", r.latency_sum_us as f64 / 1e6);
        let _ = writeln!(out, "quire_redis_call_seconds_count {}", r.calls);
    }
}

