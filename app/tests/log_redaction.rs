//! Secret tokens in URLs (reset and verification links, export downloads, unsubscribe
//! links, `?token=`) never reach the logs of the real `web` binary.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test]
async fn tokens_in_urls_are_not_written_to_the_json_log() {
    let db = common::TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let log = std::env::temp_dir().join(format!("quire-web-redact-{port}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_web"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("serve")
        .env("APP_ENV", "development")
        .env("DATABASE_URL", &db.url)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .env("MEDIA_ROOT", std::env::temp_dir())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start web");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "web serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let secrets = ["ResetTok3nSecretValue", "VerifyTok3nSecretValue", "ExportTok3nSecretValue", "UnsubTok3nSecretValue", "QueryTok3nSecretValue"];
    for path in [
        format!("/password/reset/{}", secrets[0]),
        format!("/verify-email/{}", secrets[1]),
        format!("/exports/{}", secrets[2]),
        format!("/unsubscribe/{}", secrets[3]),
        format!("/login?token={}&next=%2Fpassword%2Freset%2F{}", secrets[4], secrets[0]),
    ] {
        let resp = http_get(port, &path);
        assert!(resp.starts_with("HTTP/1.1 "), "{path}: {resp}");
    }
    let _ = http_get(port, "/password/forgot");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let stopped = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(stopped.elapsed() < Duration::from_secs(30), "did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = std::fs::read_to_string(&log).expect("read log");
    let _ = std::fs::remove_file(&log);
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
    // The requests were logged, with the token segment redacted.
    assert!(logs.contains("/password/reset/…"), "{logs}");
    assert!(logs.contains("/verify-email/…"), "{logs}");
    assert!(logs.contains("\"path\":\"/password/forgot\""), "other paths are logged as they are: {logs}");
}
