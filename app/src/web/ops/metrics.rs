//! `/metrics`: Prometheus text format. The live broker's streams and listener, and the database router's counters: queries
//! handed to each pool, reads that fell back to the primary (and why), reads retried on
//! the primary, and each replica's lag, rotation state and circuit-breaker trips. Counters are per process;
//! Prometheus sums them across processes.

use std::fmt::Write;

use poem::{IntoResponse, Response, handler, web::Data};

use crate::web::AppState;

#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    let stats = state.db.stats();
    let mut out = String::with_capacity(1024);
    head(&mut out, "quire_db_queries_total", "counter", "Queries handed to each database pool.");
    let _ = writeln!(out, "quire_db_queries_total{{pool=\"primary\"}} {}", stats.primary_queries);
    for (name, queries, ..) in &stats.replicas {
        let _ = writeln!(out, "quire_db_queries_total{{pool=\"{name}\"}} {queries}");
    }
    head(&mut out, "quire_db_read_fallbacks_total", "counter", "Reads that went to the primary although replicas are configured.");
    let _ = writeln!(out, "quire_db_read_fallbacks_total{{reason=\"read_your_writes\"}} {}", stats.fallback_pinned);
    let _ = writeln!(out, "quire_db_read_fallbacks_total{{reason=\"no_replica_in_rotation\"}} {}", stats.fallback_unavailable);
    head(&mut out, "quire_db_read_retries_total", "counter", "Reads that failed on a replica and ran again on the primary.");
    let _ = writeln!(out, "quire_db_read_retries_total {}", stats.retried_on_primary);
    head(&mut out, "quire_db_replica_lag_seconds", "gauge", "Replay lag of each replica, as last measured.");
    for (name, _, lag, ..) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_lag_seconds{{replica=\"{name}\"}} {lag}");
    }
    head(&mut out, "quire_db_replica_in_rotation", "gauge", "1 when the replica serves reads.");
    for (name, _, _, up, _) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_in_rotation{{replica=\"{name}\"}} {}", u8::from(*up));
    }
    head(&mut out, "quire_db_replica_breaker_trips_total", "counter", "Times a failed read took the replica out of rotation at once (back only after a good health probe).");
    for (name, _, _, _, trips) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_breaker_trips_total{{replica=\"{name}\"}} {trips}");
    }
    let live = state.live.stats();
    head(&mut out, "quire_live_streams_open", "gauge", "Server-Sent Events streams open in this process.");
    let _ = writeln!(out, "quire_live_streams_open {}", live.open_streams);
    head(&mut out, "quire_live_streams_max", "gauge", "LIVE_MAX_STREAMS: streams this process accepts at most.");
    let _ = writeln!(out, "quire_live_streams_max {}", live.max_streams);
    head(&mut out, "quire_live_listening", "gauge", "1 while this process's LISTEN connection is up.");
    let _ = writeln!(out, "quire_live_listening {}", u8::from(live.listening));
    head(&mut out, "quire_live_events_total", "counter", "Live events read and fanned out by this process.");
    let _ = writeln!(out, "quire_live_events_total {}", live.delivered);
    head(&mut out, "quire_live_listener_reconnects_total", "counter", "Times the LISTEN connection was lost and re-established.");
    let _ = writeln!(out, "quire_live_listener_reconnects_total {}", live.reconnects);
    head(&mut out, "quire_stats_views_flushed_total", "counter", "Chapter views this process counted and wrote to the database.");
    let _ = writeln!(out, "quire_stats_views_flushed_total {}", state.views.flushed_views());
    head(&mut out, "quire_stats_views_pending", "gauge", "Entries (chapter-days and readers) counted in memory, waiting for the next flush.");
    let _ = writeln!(out, "quire_stats_views_pending {}", state.views.pending());
    head(&mut out, "quire_stats_views_dropped_total", "counter", "Views or readers not counted because the in-memory batch was full.");
    let _ = writeln!(out, "quire_stats_views_dropped_total {}", state.views.dropped());
    cache_metrics(&mut out, &state);
    out.with_content_type("text/plain; version=0.0.4; charset=utf-8").into_response()
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

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
