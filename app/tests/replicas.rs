//! Read routing against the real streaming replica `bin/test` starts, which replays 2 s
//! behind its primary (`recovery_min_apply_delay`), so stale reads are real here.
//!
//! Every response of a development app names the pools that answered its reads in
//! `X-Read-Pool` (`primary`, `replica-1`), which is how these tests see routing.
//!
//! The tests share that one replica and one of them stops it, so they run one at a time:
//! a nextest test group (.config/nextest.toml) and, under plain `cargo test`, `SERIAL`.

mod common;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pool_of(r: &Resp) -> String {
    r.header("x-read-pool").unwrap_or("").to_string()
}

/// The replica app, or None (with a note) when this run has no replica.
async fn replica_app() -> Option<TestApp> {
    let app = TestApp::with_replica(Duration::from_secs(10)).await;
    if app.is_none() {
        eprintln!("SKIPPED: QUIRE_TEST_REPLICA_URL is not set (bin/test sets it when it runs its own PostgreSQL)");
    }
    app
}

/// Polls `path` as `b` until `done(response)` or `timeout`.
async fn eventually(b: &TestApp, path: &str, timeout: Duration, done: impl Fn(&Resp) -> bool) -> Resp {
    let t0 = Instant::now();
    loop {
        let r = b.get(path).await;
        if done(&r) {
            return r;
        }
        assert!(t0.elapsed() < timeout, "{path} never became as expected; last: {} {}\n{}", r.status, pool_of(&r), r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn verified_writer(app: &TestApp, name: &str) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    b
}

#[tokio::test]
async fn a_writer_reads_back_at_once_while_others_may_see_the_replica() {
    let _serial = SERIAL.lock().await;
    let Some(app) = replica_app().await else { return };
    // Let the replica catch up with the signup's writes, so the test starts unpinned.
    let w = verified_writer(&app, "ada").await;
    let reader = app.new_browser();
    eventually(&reader, "/u/ada", Duration::from_secs(15), |r| r.status == 200 && pool_of(r) == "replica-1").await;

    // Write: a story with a chapter, published.
    let r = w.post_form("/stories", &[("title", "Fresh Ink"), ("summary", "Wet pages."), ("tags", "")]).await;
    r.assert_status(303);
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "One"), ("body", "Hello there.")]).await.assert_status(303);
    w.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
    let published_at = Instant::now();

    // The writer sees it at once, from the primary: the replica is 2 s behind.
    let mine = w.get(&format!("/s/{id}")).await;
    mine.assert_status(200).assert_contains("Fresh Ink");
    assert_eq!(pool_of(&mine), "primary", "the writer's read must not go to a replica that lacks the write");
    let chapter = w.get(&format!("/s/{id}/c/1")).await;
    chapter.assert_status(200).assert_contains("Hello there.");

    // Another visitor, at the same moment, is served by the replica, which does not have
    // the story yet (it may have caught up if this machine was very slow).
    let theirs = reader.get(&format!("/s/{id}")).await;
    assert_eq!(pool_of(&theirs), "replica-1");
    if published_at.elapsed() < Duration::from_millis(1500) {
        assert_eq!(theirs.status.as_u16(), 404, "the replica should not have replayed the story yet");
    }
    // ... and once it has replayed, they see it too, from the replica.
    let r = eventually(&reader, &format!("/s/{id}"), Duration::from_secs(15), |r| r.status == 200).await;
    assert_eq!(pool_of(&r), "replica-1");
    r.assert_contains("Fresh Ink");
    // Pinning stops once the replica has caught up with the writer.
    let r = eventually(&w, &format!("/s/{id}"), Duration::from_secs(15), |r| pool_of(r) == "replica-1").await;
    r.assert_status(200).assert_contains("Fresh Ink");

    // A profile change: read back at once by its author, stale for a moment for others.
    w.post_form("/settings", &[("display_name", "Ada Lovelace"), ("bio", "Counting engines.")]).await.assert_status(303);
    let changed_at = Instant::now();
    let mine = w.get("/u/ada").await;
    mine.assert_status(200).assert_contains("Ada Lovelace");
    assert_eq!(pool_of(&mine), "primary");
    let theirs = reader.get("/u/ada").await;
    assert_eq!(pool_of(&theirs), "replica-1");
    if changed_at.elapsed() < Duration::from_millis(1500) {
        assert!(!theirs.body.contains("Ada Lovelace"), "the replica should still show the old name");
    }
    eventually(&reader, "/u/ada", Duration::from_secs(15), |r| r.body.contains("Ada Lovelace")).await;

    // The counters saw both pools.
    let stats = app.state.db.stats();
    assert!(stats.replicas[0].1 > 0 && stats.primary_queries > 0 && stats.fallback_pinned > 0, "{stats:?}");
    let metrics = app.get("/metrics").await;
    metrics.assert_status(200).assert_contains("quire_db_queries_total{pool=\"replica-1\"}");
}

#[tokio::test]
async fn a_login_is_seen_at_once_and_anonymous_writes_pin_by_cookie() {
    let _serial = SERIAL.lock().await;
    let Some(app) = replica_app().await else { return };
    let w = verified_writer(&app, "bea").await;
    // Log in on a fresh browser: the session row is a few ms old, yet the next page knows
    // who this is (sessions are always looked up on the primary).
    let b = app.new_browser();
    b.login("bea", PW).await.assert_status(303);
    b.get("/settings").await.assert_status(200).assert_contains("bea@example.com");
    drop(w);

    // An anonymous write (a password-reset request) pins that visitor by a signed cookie.
    let anon = app.new_browser();
    anon.post_form("/password/forgot", &[("email", "bea@example.com")]).await;
    let lsn = anon.cookie("quire_lsn").expect("an anonymous write sets the quire_lsn cookie");
    assert!(!lsn.is_empty());
    let r = anon.get("/").await;
    assert_eq!(pool_of(&r), "primary", "pinned right after the write");
    // Once the replica has replayed it, the pin is dropped (cookie expired) and reads
    // return to the replica.
    let r = eventually(&anon, "/", Duration::from_secs(15), |r| pool_of(r) == "replica-1").await;
    r.assert_status(200);
    assert!(anon.cookie("quire_lsn").is_none_or(|v| v.is_empty()), "the pin cookie should be gone");
}

fn pgctl() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bin/pgctl")
}

fn replica_ctl(action: &str) {
    let name = std::env::var("QUIRE_TEST_REPLICA_NAME").expect("QUIRE_TEST_REPLICA_NAME (bin/test sets it)");
    let out = std::process::Command::new(pgctl()).args([&name, action]).output().expect("run bin/pgctl");
    assert!(out.status.success(), "bin/pgctl {name} {action}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn health(app: &TestApp) -> serde_json::Value {
    let r = app.get("/health").await;
    serde_json::from_str(&r.body).expect("health JSON")
}

#[tokio::test]
async fn stopping_the_replica_under_reads_costs_no_errors_and_it_rejoins() {
    let _serial = SERIAL.lock().await;
    let Some(app) = replica_app().await else { return };
    let w = verified_writer(&app, "cyd").await;
    let r = w.post_form("/stories", &[("title", "Steady"), ("summary", "Holds up."), ("tags", "")]).await;
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "One"), ("body", "Still here.")]).await.assert_status(303);
    w.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
    let app = Arc::new(app);
    let reader = app.new_browser();
    eventually(&reader, &format!("/s/{id}"), Duration::from_secs(15), |r| r.status == 200 && pool_of(r) == "replica-1").await;
    // (No worker runs in tests, so the overall status is "degraded" already; the replica's
    // own entry is what changes.)
    assert_eq!(health(&app).await["checks"]["replicas"][0]["status"], "ok");

    // Four readers request pages without pause while the replica is stopped.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for n in 0..4 {
        let (app, stop) = (app.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let b = app.new_browser();
            let (mut ok, mut failed, mut on_replica, mut on_primary) = (0u32, Vec::new(), 0u32, 0u32);
            let paths = [format!("/s/{id}"), format!("/s/{id}/c/1"), "/".to_string(), "/u/cyd".to_string()];
            let mut i = n;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = b.get(&paths[i % paths.len()]).await;
                i += 1;
                if r.status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("{} {}", r.status, paths[(i - 1) % paths.len()]));
                }
                match pool_of(&r).as_str() {
                    "replica-1" => on_replica += 1,
                    _ => on_primary += 1,
                }
            }
            (ok, failed, on_replica, on_primary)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t_stop = Instant::now();
    replica_ctl("stop");
    // Out of rotation within the health loop's period; /health says degraded.
    let t0 = Instant::now();
    loop {
        let h = health(&app).await;
        if h["checks"]["replicas"][0]["in_rotation"] == false {
            assert_eq!(h["status"], "degraded", "{h}");
            assert_eq!(h["checks"]["replicas"][0]["status"], "down", "{h}");
            assert_eq!(h["checks"]["primary"]["status"], "ok");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "health never said degraded: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_for = t_stop.elapsed();
    replica_ctl("start");
    // Back in rotation once it answers again.
    let t0 = Instant::now();
    loop {
        let h = health(&app).await;
        if h["checks"]["replicas"][0]["in_rotation"] == true {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "replica never rejoined: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut on_replica, mut on_primary) = (0, Vec::new(), 0, 0);
    for h in readers {
        let (o, f, r, p) = h.await.unwrap();
        ok += o;
        failed.extend(f);
        on_replica += r;
        on_primary += p;
    }
    eprintln!("replica down for {down_for:?}: {ok} ok, {} failed; {on_replica} on the replica, {on_primary} on the primary", failed.len());
    assert!(failed.is_empty(), "requests failed while the replica went away: {failed:?}");
    assert!(ok > 50, "too few requests to mean anything: {ok}");
    assert!(on_replica > 0 && on_primary > 0, "reads should have used both pools");
    let r = eventually(&reader, &format!("/s/{id}"), Duration::from_secs(15), |r| pool_of(r) == "replica-1").await;
    r.assert_status(200);
    assert_eq!(health(&app).await["checks"]["replicas"][0]["status"], "ok");
}

#[tokio::test]
async fn without_replicas_nothing_changes() {
    let app = TestApp::new().await;
    let w = verified_writer(&app, "dee").await;
    let r = w.get("/u/dee").await;
    r.assert_status(200);
    assert_eq!(r.header("x-read-pool"), None);
    let anon = app.new_browser();
    anon.post_form("/password/forgot", &[("email", "dee@example.com")]).await;
    assert_eq!(anon.cookie("quire_lsn"), None);
    let h = health(&app).await;
    assert_eq!(h["status"].as_str().map(|s| s != "down"), Some(true));
    assert_eq!(h["checks"]["replicas"], serde_json::json!([]));
}

// ---- circuit breaker -------------------------------------------------------------------

/// What the fault proxy in front of the replica does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Forwards both ways: the replica as it is.
    None,
    /// Cuts every connection and stops listening: connects are refused, as with a
    /// stopped server.
    Refuse,
    /// Keeps connections, old and new, open but forwards nothing: a hung server (or a
    /// network that drops packets).
    Hang,
}

/// A TCP proxy in front of the test replica that can stop answering on demand, without
/// stopping the replica the other tests share.
struct FaultProxy {
    port: u16,
    mode: tokio::sync::watch::Sender<Fault>,
}

impl FaultProxy {
    async fn start(upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (mode, rx) = tokio::sync::watch::channel(Fault::None);
        tokio::spawn(proxy_accept(listener, port, upstream, rx));
        FaultProxy { port, mode }
    }

    fn set(&self, fault: Fault) {
        self.mode.send_replace(fault);
    }
}

async fn proxy_accept(listener: tokio::net::TcpListener, port: u16, upstream: std::net::SocketAddr, mut mode: tokio::sync::watch::Receiver<Fault>) {
    let mut listener = Some(listener);
    loop {
        let Some(l) = &listener else {
            // Nothing listens until the fault is lifted; then the same port again
            // (tokio sets SO_REUSEADDR, so the old connections do not block it).
            if mode.wait_for(|m| *m != Fault::Refuse).await.is_err() {
                return;
            }
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        let refuse = tokio::select! {
            r = l.accept() => {
                if let Ok((sock, _)) = r {
                    tokio::spawn(proxy_serve(sock, upstream, mode.clone()));
                }
                false
            }
            r = mode.changed() => {
                if r.is_err() {
                    return;
                }
                *mode.borrow() == Fault::Refuse
            }
        };
        if refuse {
            listener = None;
        }
    }
}

async fn proxy_serve(mut client: tokio::net::TcpStream, upstream: std::net::SocketAddr, mut mode: tokio::sync::watch::Receiver<Fault>) {
    let now = *mode.borrow();
    let hang = match now {
        Fault::None => {
            let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                r = mode.wait_for(|m| *m != Fault::None) => r.map(|m| *m == Fault::Hang).unwrap_or(false),
            }
        }
        Fault::Hang => true,
        Fault::Refuse => false,
    };
    if hang {
        let _ = mode.wait_for(|m| *m != Fault::Hang).await;
    }
    // Dropping the socket ends the connection for the client.
}

/// One read through `replica_read!` in its own request scope: which pools answered, and
/// the result.
async fn one_read(db: &app::db::Db) -> (String, Result<i32, sqlx::Error>) {
    let scope = app::db::ReadScope::new(0);
    let res = scope.run(async { app::replica_read!(*db, pool => sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool)) }).await;
    (scope.served_by(), res)
}

async fn until_in_rotation(db: &app::db::Db, within: Duration) {
    let t0 = Instant::now();
    while !db.replica_status()[0].in_rotation {
        assert!(t0.elapsed() < within, "replica not in rotation within {within:?}: {:?}", db.replica_status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dead_replica_costs_one_short_wait_then_none_and_a_good_probe_brings_it_back() {
    let _serial = SERIAL.lock().await;
    let Some(admin) = common::replica_admin_url() else {
        eprintln!("SKIPPED: QUIRE_TEST_REPLICA_URL is not set (bin/test sets it when it runs its own PostgreSQL)");
        return;
    };
    let db = common::TestDb::new().await;
    let lsn = app::db::routing::primary_lsn(&db.pool).await.expect("primary lsn");
    common::wait_replayed(&admin, lsn, Duration::from_secs(60)).await;
    let replica_url = common::with_db(&admin, &db.name);
    let opts: sqlx::postgres::PgConnectOptions = replica_url.parse().expect("replica URL");
    let upstream = format!("{}:{}", opts.get_host(), opts.get_port());
    let proxy = FaultProxy::start(upstream.parse().expect("replica host:port")).await;
    let proxied = replica_url.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, replica_url);
    let pool = app::db::routing::replica_pool(&proxied, 4).expect("replica pool");
    let handle = app::db::Db::with_replicas(db.pool.clone(), vec![(proxied, pool)], Duration::from_secs(10)).await;
    until_in_rotation(&handle, Duration::from_secs(15)).await;

    for fault in [Fault::Refuse, Fault::Hang] {
        // Warm the pool, as under load: the replica's connections are open when it dies.
        for _ in 0..4 {
            let (served, res) = one_read(&handle).await;
            assert_eq!((served.as_str(), res.ok()), ("replica-1", Some(1)));
        }
        let trips = handle.replica_status()[0].breaker_trips;
        proxy.set(fault);
        let mut waits = Vec::new();
        let mut first_served = String::new();
        for n in 0..20 {
            let t = Instant::now();
            let (served, res) = one_read(&handle).await;
            waits.push(t.elapsed());
            assert_eq!(res.ok(), Some(1), "{fault:?}: read {n} failed");
            assert!(served.contains("primary"), "{fault:?}: read {n} served by {served}");
            if n == 0 {
                first_served = served;
            } else {
                assert_eq!(served, "primary", "{fault:?}: read {n} still tried the replica");
            }
        }
        eprintln!("{fault:?}: first read {:?} (served by {first_served}), the next 19 at most {:?}", waits[0], waits[1..].iter().max());
        // The first read pays at most the replica pool's acquire timeout (250 ms), not
        // the old second; none after it waits for the replica at all.
        assert!(waits[0] < Duration::from_millis(700), "{fault:?}: first read took {:?}", waits[0]);
        for (n, w) in waits.iter().enumerate().skip(1) {
            assert!(*w < Duration::from_millis(100), "{fault:?}: read {n} took {w:?} with the breaker open");
        }
        let s = handle.replica_status()[0].clone();
        assert!(!s.in_rotation && s.status == "down", "{fault:?}: {s:?}");
        if first_served.contains("replica-1") {
            // The read found the replica dead (rather than the health probe): it tripped.
            assert_eq!(s.breaker_trips, trips + 1, "{fault:?}: {s:?}");
        }
        // Still out a probe later: nothing but a good probe puts it back.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!handle.replica_status()[0].in_rotation);
        assert_eq!(one_read(&handle).await.0, "primary");

        proxy.set(Fault::None);
        until_in_rotation(&handle, Duration::from_secs(10)).await;
        let (served, res) = one_read(&handle).await;
        assert_eq!((served.as_str(), res.ok()), ("replica-1", Some(1)), "{fault:?}: back in rotation");
    }
    let stats = handle.stats();
    assert!(stats.replicas[0].4 >= 1 && stats.retried_on_primary >= 1, "{stats:?}");
    handle.close().await;
}
