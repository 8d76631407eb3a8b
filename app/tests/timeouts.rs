//! The server's limits on a real listener (poem's TestClient has no sockets): slowloris,
//! idle keep-alive, the per-request deadline (also on slow bodies and uploads), the
//! connection cap, and an exhausted database pool answering 503 rather than 500.

mod common;

use std::time::{Duration, Instant};

use app::{config::Config, db::Db, web::AppState};
use common::{TestApp, TestDb};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};

const PW: &str = "correct horse battery";

/// Serves `state` on a random local port until the returned sender is dropped.
async fn listen(state: AppState) -> (u16, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app::web::serve_on(listener, state, async move {
        let _ = rx.await;
    }));
    (port, tx)
}

/// One request on a fresh connection (`Connection: close`); the whole raw response.
async fn request(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(port: u16, path: &str) -> String {
    request(port, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await
}

/// Reads until the peer closes (Ok(0) or an error); how long that took, or None when it
/// stayed open for `max`.
async fn wait_closed(s: &mut TcpStream, max: Duration) -> Option<(Duration, Vec<u8>)> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = max.checked_sub(t0.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((t0.elapsed(), seen)),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slowloris_is_cut_off_within_10s_while_other_connections_are_served() {
    let app = TestApp::new().await; // default limits
    let (port, _stop) = listen(app.state.clone()).await;

    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let t0 = Instant::now();
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut buf = [0u8; 1024];
        for byte in head.iter().cycle() {
            if s.write_all(&[*byte]).await.is_err() {
                return t0.elapsed();
            }
            // A second between bytes, watching for the server closing the connection.
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Err(_) => {}
                Ok(_) => return t0.elapsed(), // closed (or an error response and close)
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "the slow client was never cut off");
        }
        unreachable!()
    });

    // Meanwhile, everyone else is served normally.
    let t0 = Instant::now();
    let mut served = 0;
    while !slow.is_finished() && t0.elapsed() < Duration::from_secs(20) {
        let resp = get(port, "/").await;
        assert!(resp.starts_with("HTTP/1.1 200"), "a normal request during the slow one: {resp}");
        served += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cut_after = slow.await.expect("slow client task");
    assert!(cut_after < Duration::from_secs(10), "cut off after {cut_after:?}");
    assert!(cut_after > Duration::from_secs(3), "not cut off before the timeout: {cut_after:?}");
    assert!(served >= 3, "served {served} normal requests meanwhile");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::with_config(|c| c.http.header_read_timeout = Duration::from_secs(2)).await;
    let (port, _stop) = listen(app.state.clone()).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut first = [0u8; 64];
    let n = s.read(&mut first).await.expect("response");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));
    let (after, _) = wait_closed(&mut s, Duration::from_secs(10)).await.expect("the idle connection is closed");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
}

#[tokio::test]
async fn a_connection_with_nothing_moving_is_closed_after_the_idle_timeout() {
    // A client that starts a request body and then goes quiet, with no request deadline
    // to save us: the idle timeout closes it.
    let app = TestApp::with_config(|c| {
        c.http.idle_timeout = Duration::from_secs(2);
        c.http.request_timeout = Duration::from_secs(60);
    })
    .await;
    let (port, _stop) = listen(app.state.clone()).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogin=")
        .await
        .expect("write");
    let (after, _) = wait_closed(&mut s, Duration::from_secs(10)).await.expect("the quiet connection is closed");
    assert!(after >= Duration::from_millis(1500) && after < Duration::from_secs(5), "closed after {after:?}");
}

/// An app whose pool has one connection, which the test can hold.
async fn one_connection_app(acquire_timeout: Duration, tweak: impl FnOnce(&mut Config)) -> (TestDb, sqlx::PgPool, AppState) {
    let db = TestDb::new().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect(&db.url)
        .await
        .expect("pool");
    let mut config = Config::for_tests(&db.url, common::mail_dir());
    tweak(&mut config);
    let state = AppState::new(config, Db::from_pool(pool.clone())).expect("state");
    (db, pool, state)
}

#[tokio::test]
async fn a_handler_slower_than_the_deadline_answers_503_with_the_error_page() {
    // The home page waits for a database connection the test holds; the pool would wait
    // 30 s, the request deadline is 1 s.
    let (_db, pool, state) =
        one_connection_app(Duration::from_secs(30), |c| c.http.request_timeout = Duration::from_secs(1)).await;
    let (port, _stop) = listen(state).await;
    let held = pool.acquire().await.expect("hold the only connection");
    let t0 = Instant::now();
    let resp = get(port, "/").await;
    let took = t0.elapsed();
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("retry-after: "), "{resp}");
    assert!(resp.contains("<html") && resp.contains("very busy"), "the normal error page: {resp}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "answered after {took:?}");
    drop(held);
    // The connection comes back to the pool and the page works again.
    assert!(get(port, "/").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_exhausted_database_pool_answers_503_with_retry_after_not_500() {
    let (_db, pool, state) = one_connection_app(Duration::from_millis(300), |_| {}).await;
    let (port, _stop) = listen(state).await;
    let held = pool.acquire().await.expect("hold the only connection");
    let resp = get(port, "/").await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("retry-after: 2"), "{resp}");
    assert!(resp.contains("very busy"), "{resp}");
    drop(held);
}

#[tokio::test]
async fn a_body_sent_slowly_is_cut_off_by_the_request_deadline() {
    let app = TestApp::with_config(|c| c.http.request_timeout = Duration::from_secs(2)).await;
    let (port, _stop) = listen(app.state.clone()).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let t0 = Instant::now();
    s.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n")
        .await
        .expect("write");
    let trickle = tokio::spawn(async move {
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            for _ in 0..200 {
                if w.write_all(b"a").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut out)).await;
        writer.abort();
        out
    });
    let out = trickle.await.expect("client");
    let took = t0.elapsed();
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
}

#[tokio::test]
async fn a_slow_upload_gets_the_upload_deadline_then_503() {
    let app = TestApp::with_config(|c| {
        c.http.request_timeout = Duration::from_secs(1);
        c.http.upload_timeout = Duration::from_secs(3);
    })
    .await;
    app.signup("tess", "tess@example.com", PW).await.assert_status(303);
    let token = app.csrf_token().await;
    let cookie = app.cookie("quire_session").expect("session cookie");
    let (port, _stop) = listen(app.state.clone()).await;

    let boundary = "XyZbOuNdArY";
    let first = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"bio\"\r\n\r\n"
    );
    let head = format!(
        "POST /settings HTTP/1.1\r\nHost: x\r\nCookie: quire_session={cookie}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{first}",
        first.len() + 10_000
    );
    let s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    w.write_all(head.as_bytes()).await.expect("write");
    let writer = tokio::spawn(async move {
        for _ in 0..10_000 {
            if w.write_all(b"b").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut out)).await;
    writer.abort();
    let took = t0.elapsed();
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(took >= Duration::from_millis(2800), "the upload deadline (3 s), not the request one (1 s): {took:?}");
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = TestApp::with_config(|c| {
        c.http.max_connections = 2;
        c.http.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let (port, _stop) = listen(app.state.clone()).await;
    let first = TcpStream::connect(("127.0.0.1", port)).await.expect("connect 1");
    let _second = TcpStream::connect(("127.0.0.1", port)).await.expect("connect 2");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The third connects (the kernel's backlog) but is not served while two are open.
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.expect("connect 3");
    third.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
}

#[test]
fn bad_timeout_settings_stop_the_binary_with_one_line_naming_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("REQUEST_TIMEOUT_SECS", "soon", "REQUEST_TIMEOUT_SECS"),
        ("UPLOAD_TIMEOUT_SECS", "0", "UPLOAD_TIMEOUT_SECS"),
        ("HEADER_READ_TIMEOUT_SECS", "-1", "HEADER_READ_TIMEOUT_SECS"),
        ("IDLE_TIMEOUT_SECS", "10", "IDLE_TIMEOUT_SECS"), // shorter than the request deadline
        ("MAX_CONNECTIONS", "0", "MAX_CONNECTIONS"),
        ("MAX_CONNECTIONS", "lots", "MAX_CONNECTIONS"),
    ];
    let dir = std::env::temp_dir().join("quire-config-test");
    std::fs::create_dir_all(&dir).expect("dir");
    for (var, value, named) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_web"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_ENV", "development")
            .env("DATABASE_URL", "postgres://x@127.0.0.1/x")
            // A key of its own: no development key file is read or written.
            .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
            .env(var, value)
            .current_dir(&dir)
            .arg("serve")
            .output()
            .expect("run web");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named), "names {named}: {stderr}");
    }
}
