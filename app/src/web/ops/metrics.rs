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
    out.with_content_type("text/plain; version=0.0.4; charset=utf-8").into_response()
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
