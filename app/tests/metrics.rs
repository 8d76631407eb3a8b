//! `/metrics` through the real app: requests counted by route pattern (rendered and
//! cached pages alike), pools and the queue read from the real database, the access
//! rule (`METRICS_TOKEN`, production), and the alert rules and the dashboard naming
//! only metrics it exports.

mod common;

use std::collections::BTreeSet;

use common::TestApp;

/// The value of the series `series` (name with labels, exactly as written), if present.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test]
async fn requests_are_counted_by_route_pattern_method_and_status() {
    let app = TestApp::with_config(|c| c.cache_enabled = false).await;
    let before = app.get("/metrics").await.body;
    let series = r#"quire_http_requests_total{route="/s/:id",method="GET",status="4xx"}"#;
    let base = value(&before, series).unwrap_or(0.0);
    app.get("/s/424242").await.assert_status(404);
    app.get("/s/535353").await.assert_status(404);
    app.get("/no/such/page").await.assert_status(404);
    app.get("/login").await.assert_status(200);
    let m = app.get("/metrics").await.body;
    assert_eq!(value(&m, series), Some(base + 2.0), "two story ids, one series:\n{m}");
    assert!(!m.contains("424242") && !m.contains("/no/such"), "never a raw path");
    assert!(value(&m, r#"quire_http_requests_total{route="unmatched",method="GET",status="4xx"}"#).is_some_and(|n| n >= 1.0), "{m}");
    assert!(value(&m, r#"quire_http_requests_total{route="/login",method="GET",status="2xx"}"#).is_some_and(|n| n >= 1.0), "{m}");
    // The histogram of the same series, with the 500 ms bucket the P95 alert reads.
    let count = value(&m, r#"quire_http_request_duration_seconds_count{route="/s/:id",method="GET",status="4xx"}"#);
    assert_eq!(count, Some(base + 2.0));
    let under_10s = value(&m, r#"quire_http_request_duration_seconds_bucket{route="/s/:id",method="GET",status="4xx",le="10"}"#);
    assert_eq!(under_10s, Some(base + 2.0), "{m}");
    assert!(value(&m, r#"quire_http_request_duration_seconds_bucket{route="/s/:id",method="GET",status="4xx",le="0.5"}"#).is_some());
    assert!(value(&m, r#"quire_http_responses_total{code="404"}"#).is_some_and(|n| n >= 3.0));
    // The pools, the process.
    assert!(value(&m, r#"quire_db_pool_max_connections{pool="primary"}"#).is_some_and(|n| n >= 1.0), "{m}");
    assert!(value(&m, r#"quire_db_pool_connections{pool="primary",state="in_use"}"#).is_some());
    assert!(value(&m, "quire_process_resident_memory_bytes").is_some_and(|b| b > 1e6), "{m}");
    assert!(value(&m, "quire_http_connections_open").is_some());
}

/// Pages the page cache answers never reach the router: they still count under their
/// route's pattern, the same series as when rendered.
#[tokio::test]
async fn cached_pages_count_under_their_route() {
    let app = TestApp::new().await;
    let series = r#"quire_http_requests_total{route="/",method="GET",status="2xx"}"#;
    let base = value(&app.get("/metrics").await.body, series).unwrap_or(0.0);
    let visitor = app.new_browser();
    // The first visit renders and stores the page; a later one is served from the cache.
    let mut requests = 0.0;
    let mut hit = false;
    for _ in 0..20 {
        let r = visitor.get("/").await;
        r.assert_status(200);
        requests += 1.0;
        if r.header("x-cache") == Some("hit") {
            hit = true;
            break;
        }
    }
    assert!(hit, "the home page is served from the cache");
    let m = app.get("/metrics").await.body;
    assert_eq!(value(&m, series), Some(base + requests), "{m}");
}

#[tokio::test]
async fn the_queue_is_counted_by_state_with_the_oldest_pending_age() {
    let app = TestApp::new().await;
    // A mail job waiting since two minutes ago, and one scheduled an hour ahead.
    app.signup("mia", "mia@example.com", "correct horse battery").await.assert_status(303);
    sqlx::query("UPDATE apalis.jobs SET run_at = now() - interval '2 minutes'").execute(&app.db.pool).await.unwrap();
    app.new_browser().signup("noa", "noa@example.com", "correct horse battery").await.assert_status(303);
    sqlx::query("UPDATE apalis.jobs SET run_at = now() + interval '1 hour' WHERE run_at > now() - interval '1 minute'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let m = app.get("/metrics").await.body;
    assert_eq!(value(&m, "quire_jobs_scrape_ok"), Some(1.0), "{m}");
    assert_eq!(value(&m, r#"quire_jobs{queue="mail",state="Pending"}"#), Some(1.0), "{m}");
    assert_eq!(value(&m, r#"quire_jobs{queue="mail",state="Scheduled"}"#), Some(1.0), "{m}");
    assert_eq!(value(&m, r#"quire_jobs{queue="media",state="Pending"}"#), Some(0.0), "every queue, zeros too");
    let age = value(&m, r#"quire_jobs_oldest_pending_seconds{queue="mail"}"#).unwrap();
    assert!((119.0..300.0).contains(&age), "oldest pending is two minutes old: {age}");
    assert_eq!(value(&m, r#"quire_jobs_oldest_pending_seconds{queue="media"}"#), Some(0.0));
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set_and_are_hidden_in_production_without() {
    const TOKEN: &str = "a-metrics-token-for-tests";
    let app = TestApp::with_config(|c| c.metrics_token = Some(TOKEN.into())).await;
    let none = app.get("/metrics").await;
    none.assert_status(401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"metrics\""));
    assert!(!none.body.contains("quire_"));
    app.get_with("/metrics", &[("authorization", "Bearer wrong-token-wrong-token")]).await.assert_status(401);
    app.get_with("/metrics", &[("authorization", &format!("Bearer {TOKEN}"))]).await.assert_status(200).assert_contains("quire_http_requests_total");

    let production = TestApp::with_config(|c| c.app_env = app::config::AppEnv::Production).await;
    let hidden = production.get("/metrics").await;
    hidden.assert_status(404);
    assert!(!hidden.body.contains("quire_"));
    // This machine's own direct request (a drill, a local Prometheus) is answered.
    production.get_from("127.0.0.1:40000", "/metrics").await.assert_status(200).assert_contains("quire_http_requests_total");
    let guarded = TestApp::with_config(|c| {
        c.app_env = app::config::AppEnv::Production;
        c.metrics_token = Some(TOKEN.into());
    })
    .await;
    guarded.get("/metrics").await.assert_status(401);
    guarded.get_with("/metrics", &[("authorization", &format!("Bearer {TOKEN}"))]).await.assert_status(200);
}

#[test]
fn metrics_token_and_port_are_read_and_checked() {
    use std::ffi::OsString;
    let env = |pairs: &[(&str, &str)]| {
        let mut v: Vec<(OsString, OsString)> = vec![
            ("APP_ENV".into(), "development".into()),
            ("DATABASE_URL".into(), "postgres://u@localhost/quire".into()),
            ("SECRET_KEY".into(), "k".repeat(40).into()),
        ];
        v.extend(pairs.iter().map(|(k, val)| (OsString::from(k), OsString::from(val))));
        app::config::Config::read_env(v)
    };
    let c = env(&[("METRICS_TOKEN", "0123456789abcdef"), ("METRICS_PORT", "9187")]).unwrap();
    assert_eq!(c.metrics_token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(c.metrics_port, Some(9187));
    assert!(env(&[("METRICS_TOKEN", "short")]).unwrap_err().to_string().starts_with("METRICS_TOKEN"));
    assert!(env(&[("METRICS_TOKEN", "has a space in it, long enough")]).is_err());
    assert!(env(&[("METRICS_PORT", "http")]).unwrap_err().to_string().starts_with("METRICS_PORT"));
}

/// `quire_*` names in a text, histogram series reduced to their family.
fn quire_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"quire_[a-z0-9_]+").unwrap();
    re.find_iter(text)
        .map(|m| {
            let n = m.as_str();
            ["_bucket", "_count", "_sum"].iter().find_map(|s| n.strip_suffix(s)).unwrap_or(n).to_string()
        })
        .collect()
}

/// The worker's families (served on its METRICS_PORT, checked by worker/tests/metrics.rs).
fn is_worker_metric(name: &str) -> bool {
    name.starts_with("quire_job_") || name.starts_with("quire_mail_")
}

#[tokio::test]
async fn alert_rules_and_the_dashboard_name_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // With Redis when bin/test runs one: its families are exported only then.
    let redis = common::redis_url();
    let app = TestApp::with_config(|c| c.redis_url = redis.clone()).await;
    let m = app.get("/metrics").await.body;
    let exported: BTreeSet<String> = m.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).map(str::to_string).collect();

    let alerts = std::fs::read_to_string(root.join("ops/alerts.yml")).unwrap();
    let used = quire_names(&alerts);
    for family in ["quire_http_requests_total", "quire_http_request_duration_seconds", "quire_db_pool_connections", "quire_jobs_oldest_pending_seconds"] {
        assert!(used.contains(family), "alerts.yml uses {family}");
    }
    let optional = |n: &str| is_worker_metric(n) || (redis.is_none() && n.starts_with("quire_redis_"));
    let missing: Vec<_> = used.iter().filter(|n| !optional(n) && !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "ops/alerts.yml names metrics /metrics does not export: {missing:?}");
    assert!(alerts.contains("node_filesystem_avail_bytes"), "the disk rule reads node_exporter");

    let text = std::fs::read_to_string(root.join("ops/grafana/quire.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("ops/grafana/quire.json is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()).filter_map(|t| t["expr"].as_str()).collect();
    assert!(panels.len() >= 8 && exprs.len() >= 8, "a panel per subject");
    let used = quire_names(&exprs.join("\n"));
    let missing: Vec<_> = used.iter().filter(|n| !optional(n) && !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "the dashboard names metrics /metrics does not export: {missing:?}");
    for family in ["quire_db_replica_lag_seconds", "quire_process_resident_memory_bytes", "quire_cache_requests_total", "quire_jobs"] {
        assert!(used.contains(family), "the dashboard shows {family}");
    }
}
