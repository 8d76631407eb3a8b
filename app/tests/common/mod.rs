//! Test harness: a fresh database per test, cloned from a migrated template, and an
//! in-process app with a cookie-keeping client. Tests talk to the real PostgreSQL that
//! `bin/test` runs (its admin URL is `DATABASE_URL`).
#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Mutex,
};

use app::{config::Config, db::Db, web::AppState};
use poem::{Endpoint, EndpointExt, http::StatusCode, test::TestClient};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};

/// The real Redis `bin/test` starts (`QUIRE_TEST_REDIS_URL`), or None (tests that need
/// one say they are skipped).
pub fn redis_url() -> Option<String> {
    std::env::var("QUIRE_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL server (bin/test sets it up)")
}

pub fn with_db(url: &str, db: &str) -> String {
    let base = match url.rfind('/') {
        Some(i) if url[..i].contains("//") && !url[i..].contains('@') => &url[..i],
        _ => url,
    };
    let (base, query) = match url.split_once('?') {
        Some((_, q)) => (base.split('?').next().unwrap_or(base), format!("?{q}")),
        None => (base, String::new()),
    };
    format!("{base}/{db}{query}")
}

/// Admin URL (database `postgres`) of the delayed streaming replica of the test server.
pub fn replica_admin_url() -> Option<String> {
    std::env::var("QUIRE_TEST_REPLICA_URL").ok().filter(|s| !s.is_empty())
}

/// Waits until the replica at `replica_admin` has replayed the primary's position `lsn`.
pub async fn wait_replayed(replica_admin: &str, lsn: u64, timeout: std::time::Duration) {
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(mut c) = PgConnection::connect(replica_admin).await {
            let replayed: Option<i64> = sqlx::query_scalar("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&mut c)
                .await
                .unwrap_or(None);
            let _ = c.close().await;
            if replayed.is_some_and(|r| r as u64 >= lsn) {
                return;
            }
        }
        assert!(t0.elapsed() < timeout, "replica did not replay {lsn} within {timeout:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The template's name changes whenever a migration does, so a stale template is never used.
fn template_name() -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("migrations dir").flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        hasher.update(std::fs::read(&f).expect("read migration"));
    }
    let hex: String = hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("quire_tpl_{hex}")
}

async fn ensure_template(admin: &mut PgConnection) -> String {
    let name = template_name();
    // One test process migrates the template; the others wait on the lock.
    sqlx::query("SELECT pg_advisory_lock(7291)").execute(&mut *admin).await.expect("lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut *admin)
        .await
        .expect("query template");
    if !exists {
        let building = format!("{name}_building");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {building}"))).execute(&mut *admin).await.expect("drop");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}"))).execute(&mut *admin).await.expect("create template");
        let pool = PgPool::connect(&with_db(&admin_url(), &building)).await.expect("connect template");
        app::db::migrate(&pool).await.expect("migrate template");
        pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {name}"))).execute(&mut *admin).await.expect("rename");
    }
    sqlx::query("SELECT pg_advisory_unlock(7291)").execute(&mut *admin).await.expect("unlock");
    name
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    /// The original (not a `new_browser` copy) drops the database when the test ends.
    owner: bool,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        // Drop can't await: a short-lived thread with its own runtime does the cleanup.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await.ok()
            })
        })
        .join();
    }
}

impl TestDb {
    pub async fn new() -> TestDb {
        let mut admin = PgConnection::connect(&admin_url()).await.expect("connect to the test server");
        let template = ensure_template(&mut admin).await;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        // Cloning a template is a file copy: far faster than migrating each database.
        let mut tries = 0;
        loop {
            match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}"))).execute(&mut admin).await {
                Ok(_) => break,
                // Concurrent clones of one template can collide briefly: retry.
                Err(e) if tries < 20 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        let url = with_db(&admin_url(), &name);
        let pool = PgPoolOptions::new().max_connections(8).connect(&url).await.expect("connect test db");
        TestDb { name, url, pool, owner: true }
    }

    pub fn db(&self) -> Db {
        Db::from_pool(self.pool.clone())
    }
}

pub struct TestApp {
    pub db: TestDb,
    owns_mail_dir: bool,
    pub state: AppState,
    pub client: TestClient<poem::endpoint::BoxEndpoint<'static>>,
    pub mail_dir: PathBuf,
    cookies: Mutex<HashMap<String, String>>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: poem::http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body:\n{}", self.body);
        self
    }
    #[track_caller]
    pub fn assert_contains(&self, text: &str) -> &Self {
        assert!(self.body.contains(text), "expected {text:?} in body:\n{}", self.body);
        self
    }
}

pub fn mail_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quire-test-mail-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("mail dir");
    dir
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> TestApp {
        // Log lines (errors above all) show with a failing test's output.
        app::telemetry::init(app::config::LogFormat::Pretty);
        let db = TestDb::new().await;
        let handle = db.db();
        Self::assemble(db, handle, tweak)
    }

    /// An app whose reads may go to the real streaming replica `bin/test` starts (it
    /// replays 2 s behind the primary, on purpose). None when no replica is configured
    /// (`QUIRE_TEST_REPLICA_URL` unset): the caller reports the test as skipped.
    pub async fn with_replica(max_lag: std::time::Duration) -> Option<TestApp> {
        // These apps test read routing itself: pages rendered, not served from the page
        // cache (app/tests/cache.rs tests the cache with the replica).
        Self::with_replica_and(max_lag, |c| c.cache_enabled = false).await
    }

    /// `with_replica`, with the configuration tweaked.
    pub async fn with_replica_and(max_lag: std::time::Duration, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let replica_admin = replica_admin_url()?;
        app::telemetry::init(app::config::LogFormat::Pretty);
        let db = TestDb::new().await;
        // The replica must have replayed CREATE DATABASE before we can connect to it there.
        let lsn = app::db::routing::primary_lsn(&db.pool).await.expect("primary lsn");
        wait_replayed(&replica_admin, lsn, std::time::Duration::from_secs(60)).await;
        let replica_url = with_db(&replica_admin, &db.name);
        let pool = app::db::routing::replica_pool(&replica_url, 4).expect("replica pool");
        let handle = Db::with_replicas(db.pool.clone(), vec![(replica_url, pool)], max_lag).await;
        Some(Self::assemble(db, handle, tweak))
    }

    fn assemble(db: TestDb, handle: Db, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mail_dir = mail_dir();
        let mut config = Config::for_tests(&db.url, mail_dir.clone());
        tweak(&mut config);
        let state = AppState::new(config, handle).expect("app state");
        let client = TestClient::new(TestPeer(app::web::app(state.clone())).boxed());
        TestApp { db, owns_mail_dir: true, state, client, mail_dir, cookies: Mutex::new(HashMap::new()) }
    }

    /// A second browser against the same app and database (no shared cookies).
    pub fn new_browser(&self) -> TestApp {
        TestApp {
            db: TestDb { name: self.db.name.clone(), url: self.db.url.clone(), pool: self.db.pool.clone(), owner: false },
            owns_mail_dir: false,
            state: self.state.clone(),
            client: TestClient::new(TestPeer(app::web::app(self.state.clone())).boxed()),
            mail_dir: self.mail_dir.clone(),
            cookies: Mutex::new(HashMap::new()),
        }
    }

    /// A second web *process* on the same database: its own AppState, so its own session
    /// cache and live broker (unlike `new_browser`, which shares this one's). Returns once
    /// its broker listens.
    pub async fn another_process(&self) -> TestApp {
        self.another_process_with(|_| {}).await
    }

    /// `another_process` with its configuration tweaked (a shared Redis, say).
    pub async fn another_process_with(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_tests(&self.db.url, self.mail_dir.clone());
        tweak(&mut config);
        let state = AppState::new(config, Db::from_pool(self.db.pool.clone())).expect("app state");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state.live.listener_pid().is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        TestApp {
            db: TestDb { name: self.db.name.clone(), url: self.db.url.clone(), pool: self.db.pool.clone(), owner: false },
            owns_mail_dir: false,
            client: TestClient::new(TestPeer(app::web::app(state.clone())).boxed()),
            state,
            mail_dir: self.mail_dir.clone(),
            cookies: Mutex::new(HashMap::new()),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies.lock().unwrap().insert(name.into(), value.into());
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&self, resp: poem::test::TestResponse) -> Resp {
        let resp = resp.0;
        let status = resp.status();
        let headers = resp.headers().clone();
        {
            let mut jar = self.cookies.lock().unwrap();
            for sc in headers.get_all("set-cookie") {
                let Ok(sc) = sc.to_str() else { continue };
                let Ok(c) = cookie::Cookie::parse(sc.to_string()) else { continue };
                let removed = c.max_age().is_some_and(|m| m.is_zero()) || c.value().is_empty();
                if removed {
                    jar.remove(c.name());
                } else {
                    jar.insert(c.name().to_string(), c.value().to_string());
                }
            }
        }
        let body = resp.into_body().into_string().await.unwrap_or_default();
        Resp { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[]).await
    }

    /// A GET whose TCP peer is `peer` (`IP:PORT`), as if it came over a socket from there.
    pub async fn get_from(&self, peer: &str, path: &str) -> Resp {
        self.get_with(path, &[(TEST_PEER, peer)]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.get(path).header("cookie", self.cookie_header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.finish(req.send().await).await
    }

    /// A GET whose body is kept as bytes (a compressed one, say).
    pub async fn get_bytes(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, poem::http::HeaderMap, Vec<u8>) {
        let mut req = self.client.get(path).header("cookie", self.cookie_header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.0;
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.into_body().into_vec().await.unwrap_or_default())
    }

    /// POSTs raw bytes with the given content type (no token added).
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.post(path).header("cookie", self.cookie_header()).content_type(content_type.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.finish(req.body(body).send().await).await
    }

    /// POSTs a form exactly as given (include `csrf_token` yourself, or not).
    pub async fn post_form_raw(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(fields).expect("encode form");
        self.post_raw(path, "application/x-www-form-urlencoded", body.into_bytes(), &[]).await
    }

    /// POSTs a form with this browser's CSRF token, as a real form would.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let token = self.csrf_token().await;
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", &token)];
        all.extend_from_slice(fields);
        self.post_form_raw(path, &all).await
    }

    /// The token a page would embed, read from a rendered page like a browser would.
    pub async fn csrf_token(&self) -> String {
        let page = self.get("/password/forgot").await;
        extract_csrf(&page.body).expect("csrf token in page")
    }

    pub async fn signup(&self, username: &str, email: &str, password: &str) -> Resp {
        self.post_form("/signup", &[("username", username), ("email", email), ("password", password)]).await
    }

    pub async fn login(&self, login: &str, password: &str) -> Resp {
        self.post_form("/login", &[("login", login), ("password", password)]).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&self.db.pool).await.expect("count query")
    }

    pub fn endpoint(&self) -> impl Endpoint {
        app::web::app(self.state.clone())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.owns_mail_dir {
            let _ = std::fs::remove_dir_all(&self.mail_dir);
        }
    }
}

pub fn extract_csrf(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// In-process requests have no socket, so poem gives them the peer "unknown". A request
/// carrying this header (`IP:PORT`) reaches the app with that socket peer instead, the
/// header removed: tests of what depends on the real peer (`/dev/mail` answers loopback
/// only) without a network. Test harness only; the app never reads it.
pub const TEST_PEER: &str = "x-test-socket-peer";

struct TestPeer<E>(E);

impl<E: Endpoint> Endpoint for TestPeer<E> {
    type Output = E::Output;

    async fn call(&self, req: poem::Request) -> poem::Result<Self::Output> {
        let peer = req.headers().get(TEST_PEER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<std::net::SocketAddr>().ok());
        let Some(peer) = peer else { return self.0.call(req).await };
        let (parts, body) = req.into_parts();
        let mut http = poem::http::Request::new(());
        *http.method_mut() = parts.method;
        *http.uri_mut() = parts.uri;
        *http.version_mut() = parts.version;
        *http.headers_mut() = parts.headers;
        *http.extensions_mut() = parts.extensions;
        http.headers_mut().remove(TEST_PEER);
        let (http, ()) = http.into_parts();
        let parts = poem::RequestParts::from((
            http,
            poem::web::LocalAddr(poem::Addr::default()),
            poem::web::RemoteAddr(poem::Addr::SocketAddr(peer)),
            poem::http::uri::Scheme::HTTP,
        ));
        self.0.call(poem::Request::from_parts(parts, body)).await
    }
}

/// A multipart form as our pages send it: the CSRF token first, then `fields`, then
/// the file `(field, filename, bytes)` if any. Returns the content type and the body.
pub fn multipart(token: &str, fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----quiretestboundary7MA4YWxk";
    let mut body = Vec::new();
    let mut part = |name: &str, filename: Option<&str>, data: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    };
    part("csrf_token", None, token.as_bytes());
    for (k, v) in fields {
        part(k, None, v.as_bytes());
    }
    if let Some((name, filename, data)) = file {
        part(name, Some(filename), data);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Every route pattern with whether it answers GET and an unsafe method (POST, PUT,
/// PATCH, DELETE), read from the router's own `.at(...)` calls
/// (poem does not expose its table at run time), plus the nested `/static` and `/media`.
pub fn route_table() -> Vec<(String, bool, bool)> {
    let src = [
        include_str!("../../src/accounts/pages.rs"),
        include_str!("../../src/web/mod.rs"),
        include_str!("../../src/web/ops/dev_mail.rs"),
        include_str!("../../src/stories/pages/mod.rs"),
        include_str!("../../src/media/pages.rs"),
        include_str!("../../src/feeds/pages.rs"),
        include_str!("../../src/social/pages.rs"),
        include_str!("../../src/notifications/pages.rs"),
        include_str!("../../src/live/pages.rs"),
        include_str!("../../src/stats/pages.rs"),
        include_str!("../../src/search/pages.rs"),
        include_str!("../../src/moderation/pages.rs"),
        include_str!("../../src/exports/pages.rs"),
        include_str!("../../src/admin/pages/users.rs"),
        include_str!("../../src/admin/pages/audit.rs"),
        include_str!("../../src/admin/pages/jobs.rs"),
    ];
    let mut found = Vec::new();
    for file in src {
        for line in file.lines() {
            let Some(at) = line.find(".at(\"") else { continue };
            let rest = &line[at + 5..];
            let Some(pattern) = rest.split('"').next() else { continue };
            let pattern = if pattern == "/*key" { "/media/*key".to_string() } else { pattern.to_string() };
            let get = rest.contains("get(");
            let post = ["post(", ".put(", ".delete(", ".patch("].iter().any(|m| rest.contains(m));
            found.push((pattern, get, post));
        }
    }
    found.push(("/static/*path".into(), true, false));
    found
}

/// A verified user with `role` (reader, writer, moderator, admin), logged in in a browser
/// of their own, signed up with `password`.
pub async fn user_with_role(app: &TestApp, name: &str, role: &str, password: &str) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), password).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now(), role = $2::user_role WHERE username = $1")
        .bind(name)
        .bind(role)
        .execute(&app.db.pool)
        .await
        .expect("set role");
    b
}

/// A published story by `b` (a writer), tagged "sea, storm", with `chapters` chapters,
/// through the real forms; its id.
pub async fn published_story(b: &TestApp, title: &str, chapters: usize) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", "A summary."), ("tags", "sea, storm")]).await;
    r.assert_status(303);
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    for n in 1..=chapters {
        b.post_form(&format!("/s/{id}/chapters"), &[("title", &format!("Part {n}")), ("body", "Some words here.")]).await.assert_status(303);
    }
    b.post_form(&format!("/s/{id}/edit"), &[("title", title), ("summary", "A summary."), ("tags", "sea, storm"), ("status", "published")])
        .await
        .assert_status(303);
    id
}

/// A new verified writer `pat` (as only confirmed addresses upload) posting a story with
/// `png` as its cover: their browser, and the answer to the POST.
pub async fn post_story_with_cover(app: &TestApp, png: &[u8]) -> (TestApp, Resp) {
    let w = app.new_browser();
    w.signup("pat", "pat@example.com", "correct horse battery").await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = 'pat'").execute(&app.db.pool).await.unwrap();
    let token = w.csrf_token().await;
    let (ct, body) = multipart(&token, &[("title", "Pictured"), ("summary", ""), ("tags", "")], Some(("cover", "cover.png", png)));
    let r = w.post_raw("/stories", &ct, body, &[]).await;
    (w, r)
}
