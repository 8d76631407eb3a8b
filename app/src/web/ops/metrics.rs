//! `/metrics`: Prometheus text format. For now the database router's counters: queries
//! handed to each pool, reads that fell back to the primary (and why), reads retried on
//! the primary, and each replica's lag and rotation state. Counters are per process;
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
    for (name, queries, _, _) in &stats.replicas {
        let _ = writeln!(out, "quire_db_queries_total{{pool=\"{name}\"}} {queries}");
    }
    head(&mut out, "quire_db_read_fallbacks_total", "counter", "Reads that went to the primary although replicas are configured.");
    let _ = writeln!(out, "quire_db_read_fallbacks_total{{reason=\"read_your_writes\"}} {}", stats.fallback_pinned);
    let _ = writeln!(out, "quire_db_read_fallbacks_total{{reason=\"no_replica_in_rotation\"}} {}", stats.fallback_unavailable);
    head(&mut out, "quire_db_read_retries_total", "counter", "Reads that failed on a replica and ran again on the primary.");
    let _ = writeln!(out, "quire_db_read_retries_total {}", stats.retried_on_primary);
    head(&mut out, "quire_db_replica_lag_seconds", "gauge", "Replay lag of each replica, as last measured.");
    for (name, _, lag, _) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_lag_seconds{{replica=\"{name}\"}} {lag}");
    }
    head(&mut out, "quire_db_replica_in_rotation", "gauge", "1 when the replica serves reads.");
    for (name, _, _, up) in &stats.replicas {
        let _ = writeln!(out, "quire_db_replica_in_rotation{{replica=\"{name}\"}} {}", u8::from(*up));
    }
    out.with_content_type("text/plain; version=0.0.4; charset=utf-8").into_response()
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
