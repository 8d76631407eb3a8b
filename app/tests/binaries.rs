//! The `web` binary as an operator runs it: configuration errors, serving, JSON logs
//! carrying request ids, and a graceful stop on SIGTERM.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn web() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_web"));
    // A clean environment: only what each test sets.
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_variable_and_exit_2() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("APP_ENV", "production"), ("DATABASE_URL", "postgres://x@127.0.0.1/x")], "SECRET_KEY"),
        (&[("APP_ENV", "production"), ("SECRET_KEY", "0123456789abcdef0123456789abcdef")], "DATABASE_URL"),
        (&[("APP_ENV", "staging")], "APP_ENV"),
        (&[("PORT", "eighty"), ("DATABASE_URL", "postgres://x@127.0.0.1/x")], "PORT"),
        (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("SMTP_URL", "http://mail")], "SMTP_URL"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("SECRET_KEY", "short")], "SECRET_KEY"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("BASE_URL", "localhost")], "BASE_URL"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("DATABASE_REPLICA_URLS", "postgres://r@h/x,redis://h")], "DATABASE_REPLICA_URLS"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("DATABASE_REPLICA_MAX_LAG", "soon")], "DATABASE_REPLICA_MAX_LAG"),
        (&[("DATABASE_URL", "postgres://x@127.0.0.1/x"), ("DATABASE_POOL_SIZE", "0")], "DATABASE_POOL_SIZE"),
    ];
    let dir = std::env::temp_dir().join("quire-config-test");
    std::fs::create_dir_all(&dir).unwrap();
    for (vars, name) in cases {
        let out = web().current_dir(&dir).arg("serve").envs(vars.iter().copied()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(name), "names {name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = web().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn http_get(port: u16, path: &str, request_id: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test]
async fn serve_logs_json_with_request_ids_and_stops_gracefully_on_sigterm() {
    let db = common::TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("quire-web-{port}.log"));
    let mut child = web()
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .env("MEDIA_ROOT", std::env::temp_dir())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "web serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = http_get(port, "/health", "probe-1");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let resp = http_get(port, "/login", "bin-test-req-7");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(30), "did not stop within the grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");

    let logs = std::fs::read_to_string(&log).unwrap();
    let line = logs.lines().find(|l| l.contains("bin-test-req-7")).expect("a log line with the request id");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert!(v.to_string().contains("\"request_id\":\"bin-test-req-7\""), "{line}");
    assert!(logs.contains("SIGTERM"), "logs the signal: {logs}");
}
