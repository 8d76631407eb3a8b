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
    const DB: (&str, &str) = ("DATABASE_URL", "postgres://x@127.0.0.1/x");
    const DEV: (&str, &str) = ("APP_ENV", "development");
    const KEY: (&str, &str) = ("SECRET_KEY", "0123456789abcdef0123456789abcdef");
    const PROD: (&str, &str) = ("APP_ENV", "production");
    const BASE: (&str, &str) = ("BASE_URL", "https://quire.example.com");
    const SMTP: (&str, &str) = ("SMTP_URL", "smtps://u:p@smtp.example.com");
    const FROM: (&str, &str) = ("MAIL_FROM", "Quire <no-reply@quire.example.com>");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[PROD, DB], "SECRET_KEY"),
        (&[PROD, KEY], "DATABASE_URL"),
        (&[PROD, DB, KEY, SMTP, FROM], "BASE_URL"),
        (&[PROD, DB, KEY, BASE, FROM], "SMTP_URL"),
        (&[PROD, DB, KEY, BASE, SMTP], "MAIL_FROM"),
        (&[PROD, DB, KEY, BASE, SMTP, ("MAIL_FROM", "no-reply@")], "MAIL_FROM"),
        (&[PROD, DB, KEY, BASE, FROM, ("SMTP_URL", "smtp://u:p@smtp.example.com?tls=opportunistic")], "SMTP_URL"),
        (&[("APP_ENV", "staging")], "APP_ENV"),
        // A platform's variables without APP_ENV: refuse rather than run in development.
        (&[("PORT", "8000"), DB, KEY], "APP_ENV"),
        (&[DB], "APP_ENV"),
        (&[DEV, ("PORT", "eighty"), DB], "PORT"),
        (&[DEV, ("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        (&[DEV, DB, ("SMTP_URL", "http://mail")], "SMTP_URL"),
        (&[DEV, DB, ("SMTP_URL", "smtp://mail.example.com?tls=sometimes")], "SMTP_URL"),
        (&[DEV, DB, ("MAIL_FROM", "Quire")], "MAIL_FROM"),
        (&[DEV, DB, ("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (&[DEV, DB, ("SECRET_KEY", "short")], "SECRET_KEY"),
        (&[DEV, DB, ("BASE_URL", "localhost")], "BASE_URL"),
        (&[DEV, DB, ("DATABASE_REPLICA_URLS", "postgres://r@h/x,redis://h")], "DATABASE_REPLICA_URLS"),
        (&[DEV, DB, ("DATABASE_REPLICA_MAX_LAG", "soon")], "DATABASE_REPLICA_MAX_LAG"),
        (&[DEV, DB, ("DATABASE_POOL_SIZE", "0")], "DATABASE_POOL_SIZE"),
        (&[DEV, DB, ("MEDIA_URL", "minio://media")], "MEDIA_URL"),
        (&[DEV, DB, ("MEDIA_URL", "s3://media"), ("AWS_ENDPOINT_URL", "http://s3.internal:9000")], "AWS_ENDPOINT_URL"),
        (&[DEV, DB, ("MEDIA_URL", "s3://media"), ("AWS_ACCESS_KEY_ID", "AKID")], "AWS_SECRET_ACCESS_KEY"),
    ];
    // Its own directory: development cases generate var/secret_key there.
    let dir = std::env::temp_dir().join(format!("quire-config-test-{}", uuid::Uuid::new_v4().simple()));
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
    let _ = std::fs::remove_dir_all(&dir);
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
        .env("APP_ENV", "development")
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

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quire-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `child` accepts connections on `port`, or panics with its exit status.
async fn wait_listening(child: &mut std::process::Child, port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("web serve exited: {status:?}");
        }
        assert!(start.elapsed() < Duration::from_secs(20), "web serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// GET `path` over a real TCP connection to `ip:port`, with extra header lines.
fn get_at(ip: std::net::IpAddr, port: u16, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect((ip, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// An address of this machine that is not loopback (the one its default route leaves
/// from; a UDP "connect" sends nothing), if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").or_else(|_| s.connect("8.8.8.8:53")).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test]
async fn a_platform_environment_without_app_env_never_serves_dev_mail_it_refuses_to_start() {
    // What Heroku and its kin give a Procfile process: PORT and DATABASE_URL (a working
    // database), and here a forgotten APP_ENV and no SMTP_URL — formerly a development
    // server with a public /dev/mail.
    let db = common::TestDb::new().await;
    let port = free_port();
    let dir = temp_dir("platform");
    let out = web()
        .current_dir(&dir)
        .arg("serve")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("APP_ENV=production"), "says what to set: {stderr}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn web_seed_is_refused_in_production() {
    let dir = temp_dir("seed");
    let out = web()
        .current_dir(&dir)
        .arg("seed")
        .env("APP_ENV", "production")
        // Never reached: the refusal comes before any connection.
        .env("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .env("BASE_URL", "https://quire.example.com")
        .env("SMTP_URL", "smtps://u:p@smtp.example.com")
        .env("MAIL_FROM", "Quire <no-reply@quire.example.com>")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("seed") && stderr.contains("production"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dev_mail_answers_only_loopback_peers_even_in_development() {
    let db = common::TestDb::new().await;
    let port = free_port();
    let dir = temp_dir("devmail");
    std::fs::create_dir_all(dir.join("var/mail")).unwrap();
    std::fs::write(
        dir.join("var/mail/m1.eml"),
        "From: Quire <no-reply@localhost>\r\nTo: a@example.com\r\nSubject: Reset your password\r\n\r\nhttp://localhost/password/reset/secret\r\n",
    )
    .unwrap();
    let mut child = web()
        .current_dir(&dir)
        .arg("serve")
        .env("APP_ENV", "development")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .env("MEDIA_ROOT", dir.join("media"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut child, port).await;
    let local = std::net::IpAddr::from([127, 0, 0, 1]);

    let r = get_at(local, port, "/dev/mail", "");
    assert!(r.starts_with("HTTP/1.1 200") && r.contains("Reset your password"), "loopback sees the outbox: {r}");
    assert!(get_at(local, port, "/dev/mail/m1", "").starts_with("HTTP/1.1 200"));
    // Through a proxy on this machine the peer is loopback too, but on behalf of anyone.
    let r = get_at(local, port, "/dev/mail", "X-Forwarded-For: 127.0.0.1\r\n");
    assert!(r.starts_with("HTTP/1.1 404") && !r.contains("Reset your password"), "{r}");

    match non_loopback_ip() {
        Some(ip) => {
            for path in ["/dev/mail", "/dev/mail/m1", "/dev/mail/m1/html"] {
                // A forged header does not make a remote peer local.
                for extra in ["", "X-Forwarded-For: 127.0.0.1\r\n"] {
                    let r = get_at(ip, port, path, extra);
                    assert!(r.starts_with("HTTP/1.1 404"), "{path} from {ip} {extra:?}: {r}");
                    assert!(!r.contains("Reset your password") && !r.contains("password/reset"), "{r}");
                }
            }
            // The rest of the site does answer there.
            assert!(get_at(ip, port, "/login", "").starts_with("HTTP/1.1 200"));
        }
        None => eprintln!("skipped the remote-peer half: this machine has no non-loopback address"),
    }
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dev_mail_in_process_needs_a_loopback_socket_peer() {
    // The in-process client has no socket: its requests are not local either.
    let app = common::TestApp::new().await;
    app.get("/dev/mail").await.assert_status(404);
    app.get_from("192.0.2.44:5000", "/dev/mail").await.assert_status(404);
    app.get_from("127.0.0.1:5000", "/dev/mail").await.assert_status(200);
    app.get_from("[::1]:5000", "/dev/mail").await.assert_status(200);
    app.get_with("/dev/mail", &[(common::TEST_PEER, "127.0.0.1:5000"), ("forwarded", "for=127.0.0.1")]).await.assert_status(404);
}

#[cfg(unix)]
#[tokio::test]
async fn the_generated_development_key_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let db = common::TestDb::new().await;
    let dir = temp_dir("key");
    let migrate = |dir: &std::path::Path| {
        let out = web().current_dir(dir).arg("migrate").env("APP_ENV", "development").env("DATABASE_URL", &db.url).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let key_file = dir.join("var/secret_key");

    // Generated: 0600, whatever the umask would have given.
    migrate(&dir);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(key.trim().len() >= 32);
    assert!(std::fs::read_dir(dir.join("var")).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with('.')), "no temporary file left");
    // Reused as it is on the next start.
    migrate(&dir);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

    // A key written before this rule (0644) is kept and tightened, with a warning.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = migrate(&dir);
    assert!(stderr.contains("secret_key") && stderr.contains("600"), "{stderr}");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Status line and body of GET `path`, or None when nothing answers (between images).
fn try_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn boot_of(body: &str) -> String {
    // The body may be chunked: the JSON object is on one line between the chunk sizes.
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["boot"].as_str().unwrap_or_else(|| panic!("no boot id: {v}")).to_string()
}

#[tokio::test]
async fn sighup_drains_then_re_executes_in_place_under_the_same_pid() {
    let db = common::TestDb::new().await;
    let port = free_port();
    let media = temp_dir("sighup");
    let mut child = web()
        .arg("serve")
        .env("APP_ENV", "development")
        .env("DATABASE_URL", &db.url)
        .env("PORT", port.to_string())
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .env("MEDIA_ROOT", &media)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut child, port).await;
    let (status, body) = try_get(port, "/health").expect("health answers");
    assert!(status.contains(" 200"), "{status} {body}");
    let first = boot_of(&body);

    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    // Draining: /health says so at once, while pages are still served.
    let hup = Instant::now();
    let (status, body) = loop {
        let got = try_get(port, "/health").expect("still serving while draining");
        if got.0.contains(" 503") || hup.elapsed() > Duration::from_secs(1) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.contains(" 503") && body.contains("\"draining\""), "{status} {body}");
    let (status, _) = try_get(port, "/login").expect("pages still served while draining");
    assert!(status.contains(" 200"), "{status}");

    // The new image: same process (never exited), a new boot id, healthy.
    let second = loop {
        assert!(child.try_wait().unwrap().is_none(), "the process exited instead of re-executing");
        if let Some((status, body)) = try_get(port, "/health")
            && status.contains(" 200")
        {
            break boot_of(&body);
        }
        assert!(hup.elapsed() < Duration::from_secs(30), "no healthy new image within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(first, second, "a new boot id after the restart");
    assert!(hup.elapsed() >= Duration::from_secs(2), "it drained for 2 s first");

    // The new image still stops on SIGTERM.
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(30), "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(media);
}
