//! The worker's `/metrics` (on `METRICS_PORT`): runs of a real job through the real
//! runtime, counted by job and outcome with their run time, mail sent, served over HTTP
//! under the bearer token; and the dashboard's worker panels name what it exports.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::TestApp;
use support::{job_context, start_worker, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use worker::{mailer::Mailer, runtime::Options};

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// One HTTP/1.1 request to `addr`, the whole response as text.
async fn get(addr: std::net::SocketAddr, authorization: Option<&str>) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: worker\r\n{auth}Connection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn job_runs_and_mail_are_counted_and_served_with_the_token() {
    let app = TestApp::new().await;
    let options = Options { queues: vec!["mail".into()], ..Options::default() };
    let registry = options.registry.clone();
    let worker = start_worker(job_context(&app, Mailer::files(app.mail_dir.clone())), options);
    app.signup("wim", "wim@example.com", "correct horse battery").await.assert_status(303);
    wait_for("the mail job done", Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await == 1
    })
    .await;
    worker.abort();

    let m = worker::metrics::render(&registry, &app.db.db());
    let done = r#"quire_job_runs_total{job="send_verification_email",outcome="done"}"#;
    assert_eq!(value(&m, done), Some(1.0), "{m}");
    assert_eq!(value(&m, r#"quire_job_runs_total{job="send_verification_email",outcome="killed"}"#), Some(0.0));
    assert_eq!(value(&m, r#"quire_job_run_seconds_count{job="send_verification_email"}"#), Some(1.0), "{m}");
    assert_eq!(value(&m, r#"quire_job_run_seconds_bucket{job="send_verification_email",le="+Inf"}"#), Some(1.0));
    assert!(value(&m, "quire_mail_sent_total").is_some_and(|n| n >= 1.0), "{m}");
    assert_eq!(value(&m, r#"quire_mail_failed_total{reason="recipient"}"#), Some(0.0));
    assert!(value(&m, r#"quire_db_pool_max_connections{pool="primary"}"#).is_some());
    assert!(value(&m, "quire_process_resident_memory_bytes").is_some());

    // Over HTTP, as Prometheus scrapes it.
    const TOKEN: &str = "worker-metrics-token-0123";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reg, db) = (registry.clone(), app.db.db());
    let server = tokio::spawn(app::web::ops::metrics::serve_standalone(
        listener,
        Some(TOKEN.into()),
        true,
        move || worker::metrics::render(&reg, &db),
        std::future::pending(),
    ));
    let refused = get(addr, None).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(!refused.contains("quire_job"));
    let served = get(addr, Some(&format!("Bearer {TOKEN}"))).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.contains(done), "{served}");
    server.abort();

    // The dashboard's worker panels and the alert rules' runbooks name only what this
    // exports (app/tests/metrics.rs checks the web's names).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("ops/grafana/quire.json")).unwrap()
        + &std::fs::read_to_string(root.join("ops/alerts.yml")).unwrap();
    let exported: Vec<&str> = m.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let mut checked = 0;
    for name in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("quire_job_") || w.starts_with("quire_mail_")) {
        let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(exported.contains(&family), "the dashboard or alerts.yml names {name}, which the worker does not export");
        checked += 1;
    }
    assert!(checked >= 2, "the dashboard shows the worker's jobs and mail");
}
