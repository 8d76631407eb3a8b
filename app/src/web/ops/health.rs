//! `/health`: `{"status": "ok" | "degraded" | "down", "checks": {...}}`. 200 unless the
//! primary database is unreachable (503), so a load balancer only drops a process that
//! cannot serve at all, or 503 `"draining"` while the process stops or restarts. `boot`
//! names this process image (`shutdown::boot_id`): it changes when a restart completes.

use std::time::Duration;

use poem::{IntoResponse, Response, handler, http::StatusCode, web::{Data, Json}};
use serde_json::json;

use crate::web::AppState;

/// A queue whose oldest runnable job has waited longer than this is "degraded".
const QUEUE_AGE_WARN_SECS: f64 = 300.0;
/// Workers heartbeat every 10 s; silence for this long means none is running.
const HEARTBEAT_WARN_SECS: f64 = 60.0;

/// Redis as /health shows it (None without `REDIS_URL`): a PING of its own (100 ms at
/// most), so the answer is now, not the breaker's last verdict.
async fn redis_check(state: &AppState) -> Option<serde_json::Value> {
    let redis = state.cache.redis()?;
    let stats = redis.stats();
    Some(match redis.ping(Duration::from_millis(100)).await {
        Ok(()) => json!({ "status": "ok", "target": stats.target, "breaker": if stats.up { "closed" } else { "open" } }),
        Err(error) => json!({ "status": "down", "target": stats.target, "error": error, "fallback": "in-process cache and rate limits" }),
    })
}

#[handler]
pub async fn health(Data(state): Data<&AppState>) -> Response {
    let boot = crate::shutdown::boot_id();
    // Stopping or restarting (SIGHUP): still serving, but the load balancer should send
    // new requests elsewhere before this process stops accepting.
    if crate::shutdown::draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "draining", "boot": boot, "checks": {} }))).into_response();
    }
    let pool = state.db.primary();
    let check = async {
        let (oldest, heartbeat): (Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT
               (SELECT extract(epoch FROM now() - min(run_at))::float8 FROM apalis.jobs
                 WHERE status = 'Pending' AND run_at <= now()),
               (SELECT extract(epoch FROM now() - max(last_seen))::float8 FROM apalis.workers)",
        )
        .fetch_one(pool)
        .await?;
        Ok::<_, sqlx::Error>((oldest, heartbeat))
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok((oldest, heartbeat))) => {
            let queue_ok = oldest.is_none_or(|s| s < QUEUE_AGE_WARN_SECS);
            let workers_ok = heartbeat.is_some_and(|s| s < HEARTBEAT_WARN_SECS);
            // A replica out of rotation costs capacity, not correctness (reads go to the
            // primary), so it makes the process degraded, never down.
            let replicas = state.db.replica_status();
            let replicas_ok = replicas.iter().all(|r| r.in_rotation);
            // Redis down costs speed and shared limits, not correctness: degraded.
            let redis = redis_check(&state).await;
            let redis_ok = redis.as_ref().is_none_or(|r| r["status"] == "ok");
            let status = if queue_ok && workers_ok && replicas_ok && redis_ok { "ok" } else { "degraded" };
            let body = json!({
                "status": status,
                "boot": boot,
                "checks": {
                    "primary": { "status": "ok" },
                    "replicas": replicas,
                    "queue": { "status": if queue_ok { "ok" } else { "degraded" }, "oldest_pending_secs": oldest.unwrap_or(0.0) },
                    "workers": { "status": if workers_ok { "ok" } else { "degraded" }, "last_heartbeat_secs": heartbeat },
                    "redis": redis.unwrap_or_else(|| json!({ "status": "not_configured" })),
                }
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        failed => {
            let error = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            tracing::error!(%error, "health: primary unreachable");
            let body = json!({ "status": "down", "boot": boot, "checks": { "primary": { "status": "down" }, "replicas": state.db.replica_status() } });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
