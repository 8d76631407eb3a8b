//! CSRF on every unsafe route, security headers on every response, request ids, and the
//! transactional enqueue.

mod common;

use common::TestApp;
use poem::http::Method;

const PW: &str = "correct horse battery";

/// Every unsafe route of the app, with a concrete path. `every_unsafe_route_is_listed`
/// checks this list against the router itself, so a new route cannot be forgotten.
const UNSAFE_ROUTES: &[(&str, &str)] = &[
    ("/signup", "/signup"),
    ("/login", "/login"),
    ("/logout", "/logout"),
    ("/verify-email/resend", "/verify-email/resend"),
    ("/password/forgot", "/password/forgot"),
    ("/password/reset/:token", "/password/reset/sometoken"),
    ("/settings", "/settings"),
    ("/settings/sessions/:id/revoke", "/settings/sessions/1/revoke"),
    ("/settings/password", "/settings/password"),
    ("/settings/email", "/settings/email"),
    ("/settings/delete", "/settings/delete"),
    ("/stories", "/stories"),
    ("/s/:id/edit", "/s/1/edit"),
    ("/s/:id/chapters", "/s/1/chapters"),
    ("/u/:username/follow", "/u/tess/follow"),
    ("/u/:username/unfollow", "/u/tess/unfollow"),
    ("/s/:id/like", "/s/1/like"),
    ("/s/:id/unlike", "/s/1/unlike"),
    ("/s/:id/save", "/s/1/save"),
    ("/s/:id/unsave", "/s/1/unsave"),
    ("/s/:id/comments", "/s/1/comments"),
    ("/s/:id/comments/:cid/delete", "/s/1/comments/1/delete"),
    ("/notifications/read", "/notifications/read"),
    ("/settings/notifications", "/settings/notifications"),
    ("/s/:id/report", "/s/1/report"),
    ("/s/:id/comments/:cid/report", "/s/1/comments/1/report"),
    ("/u/:username/report", "/u/tess/report"),
    ("/mod/reports/:id/resolve", "/mod/reports/1/resolve"),
    ("/mod/hidden/:kind/:id/unhide", "/mod/hidden/story/1/unhide"),
    ("/admin/users/:username/ban", "/admin/users/tess/ban"),
    ("/admin/users/:username/unban", "/admin/users/tess/unban"),
    ("/admin/users/:username/role", "/admin/users/tess/role"),
    ("/settings/export", "/settings/export"),
    ("/admin/jobs/retry", "/admin/jobs/retry"),
    ("/admin/jobs/discard", "/admin/jobs/discard"),
    ("/admin/jobs/:id/retry", "/admin/jobs/1/retry"),
    ("/admin/jobs/:id/discard", "/admin/jobs/1/discard"),
];

/// Unsafe routes that take no CSRF token on purpose: RFC 8058 one-click unsubscribe
/// (the mail client POSTs it; the signed token in the URL is the credential).
const CSRF_EXEMPT: &[&str] = &["/unsubscribe/:token"];

/// The unsafe routes of the router's own table (`common::route_table`).
fn routes_with_post() -> Vec<String> {
    common::route_table().into_iter().filter(|(_, _, unsafe_method)| *unsafe_method).map(|(pattern, _, _)| pattern).collect()
}

#[test]
fn every_unsafe_route_is_listed() {
    let mut in_router = routes_with_post();
    in_router.sort();
    let mut listed: Vec<String> = UNSAFE_ROUTES.iter().map(|(r, _)| r.to_string()).chain(CSRF_EXEMPT.iter().map(|r| r.to_string())).collect();
    listed.sort();
    assert_eq!(in_router, listed, "UNSAFE_ROUTES must list every POST/PUT/PATCH/DELETE route");
}

#[tokio::test]
async fn every_unsafe_route_rejects_a_missing_or_wrong_csrf_token() {
    let app = TestApp::new().await;
    // Logged in, so handlers that require a user would otherwise act.
    app.signup("tess", "tess@example.com", PW).await.assert_status(303);
    let sessions_before = app.count("SELECT count(*) FROM sessions").await;
    let good = app.csrf_token().await;
    for (_, path) in UNSAFE_ROUTES {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            // No token at all.
            let r = app.client.request(method.clone(), *path).header("cookie", format!("quire_session={}", app.cookie("quire_session").unwrap()))
                .content_type("application/x-www-form-urlencoded").body("display_name=pwned").send().await;
            assert_eq!(r.0.status().as_u16(), 403, "{method} {path} without a token");
        }
        // A wrong token in the form, and in the header.
        let r = app.post_form_raw(path, &[("csrf_token", "wrong"), ("display_name", "pwned")]).await;
        r.assert_status(403).assert_contains("did not come from this site");
        let r = app.post_raw(path, "application/x-www-form-urlencoded", b"display_name=pwned".to_vec(), &[("x-csrf-token", "wrong")]).await;
        r.assert_status(403);
        // Another visitor's valid token does not work with this session.
        let other = app.new_browser();
        let theirs = other.csrf_token().await;
        assert_ne!(theirs, good);
        app.post_form_raw(path, &[("csrf_token", &theirs)]).await.assert_status(403);
    }
    // Nothing changed: still logged in, profile untouched.
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, sessions_before);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE display_name = 'pwned'").await, 0);
    // And the right token works (the check is not simply rejecting everything).
    app.post_form("/settings", &[("display_name", "Tess"), ("bio", "")]).await.assert_status(303);
}

#[tokio::test]
async fn csrf_token_changes_at_login() {
    let app = TestApp::new().await;
    let anon = app.csrf_token().await;
    app.signup("uma", "uma@example.com", PW).await.assert_status(303);
    let logged_in = app.csrf_token().await;
    assert_ne!(anon, logged_in);
    app.post_form_raw("/settings", &[("csrf_token", &anon), ("display_name", "x")]).await.assert_status(403);
}

#[tokio::test]
async fn security_headers_on_pages_errors_and_static_files() {
    let app = TestApp::new().await;
    let css_url = app.state.statics.url("css/site.css").unwrap();
    for (path, status) in [("/", 200), ("/login", 200), ("/nope", 404), (css_url.as_str(), 200)] {
        let r = app.get(path).await;
        r.assert_status(status);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") || path.starts_with("/static"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(r.header("referrer-policy").is_some(), "{path}");
        assert!(r.header("permissions-policy").is_some_and(|p| p.contains("camera=()")), "{path}");
        assert!(r.header("strict-transport-security").is_none(), "no HSTS in development");
        assert!(r.header("x-request-id").is_some());
    }
    // Pages contain no inline script: every <script> has a src.
    let page = app.get("/").await.body;
    for tag in page.split("<script").skip(1) {
        assert!(tag.trim_start().starts_with("src="), "inline script found: <script{}", &tag[..40.min(tag.len())]);
    }
    assert!(!page.contains(" onclick=") && !page.contains(" onload="), "no inline handlers");
    assert!(page.contains("hx-headers='{\"X-CSRF-Token\""), "htmx gets the token once, on <body>");
}

#[tokio::test]
async fn production_adds_hsts_secure_cookies_and_hides_dev_mail() {
    let app = TestApp::with_config(|c| c.app_env = app::config::AppEnv::Production).await;
    let r = app.get("/").await;
    assert!(r.header("strict-transport-security").unwrap().contains("max-age="));
    let cookies: Vec<&str> = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(!cookies.is_empty());
    for c in &cookies {
        assert!(c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    }
    app.get("/dev/mail").await.assert_status(404);
    let r = app.signup("vera", "vera@example.com", PW).await;
    let session = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|c| c.starts_with("quire_session=")).unwrap().to_string();
    assert!(session.contains("Secure") && session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
}

#[tokio::test]
async fn request_id_is_reused_or_generated_and_travels_into_jobs() {
    let app = TestApp::new().await;
    let r = app.get_with("/", &[("x-request-id", "req-abc-123")]).await;
    assert_eq!(r.header("x-request-id"), Some("req-abc-123"));
    let r = app.get_with("/", &[("x-request-id", "bad id with spaces and a very long tail ........................................")]).await;
    let generated = r.header("x-request-id").unwrap();
    assert!(!generated.contains(' ') && generated.len() == 32);

    let token = app.csrf_token().await;
    let body = serde_urlencoded::to_string([("csrf_token", token.as_str()), ("username", "wanda"), ("email", "wanda@example.com"), ("password", PW)]).unwrap();
    let r = app.post_raw("/signup", "application/x-www-form-urlencoded", body.into_bytes(), &[("x-request-id", "signup-req-42")]).await;
    r.assert_status(303);
    let (job,): (Vec<u8>,) = sqlx::query_as("SELECT job FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    let env: app::jobs::Envelope = serde_json::from_slice(&job).unwrap();
    assert_eq!(env.request_id.as_deref(), Some("signup-req-42"));
}

#[tokio::test]
async fn a_state_change_and_its_job_commit_together_or_not_at_all() {
    let app = TestApp::new().await;
    // Directly: enqueue inside a transaction that rolls back leaves no job.
    let mut tx = app.db.pool.begin().await.unwrap();
    let user = app::accounts::users::insert(&mut tx, &app::accounts::users::NewUser { username: "xena", email: "xena@example.com", password_hash: "x" }).await.unwrap();
    app::jobs::enqueue(&mut tx, &app::jobs::mail::SendVerificationEmail::new(user.id), None).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 0);

    // Through the signup handler: force a failure after the user row and the job are
    // written (creating the session fails), and nothing of it remains.
    sqlx::query(
        "CREATE FUNCTION fail_session() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$;
         ",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("CREATE TRIGGER fail_session BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION fail_session()")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let r = app.signup("yara", "yara@example.com", PW).await;
    r.assert_status(500).assert_contains("Something went wrong");
    assert!(!r.body.contains("forced failure"), "internal errors are not shown");
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 0);

    sqlx::query("DROP TRIGGER fail_session ON sessions").execute(&app.db.pool).await.unwrap();
    app.signup("yara", "yara@example.com", PW).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 1);
}

#[tokio::test]
async fn health_reports_primary_queue_and_workers() {
    let app = TestApp::new().await;
    let r = app.get("/health").await;
    r.assert_status(200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["checks"]["primary"]["status"], "ok");
    // No worker has ever heartbeated in this database: degraded, but still 200.
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["checks"]["workers"]["status"], "degraded");

    sqlx::query("INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ('w1', 'mail', 'PgStorage', '', now())")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&app.get("/health").await.body).unwrap();
    assert_eq!(v["status"], "ok", "{v}");

    // An old pending job degrades the queue check.
    app.signup("zoe", "zoe@example.com", PW).await;
    sqlx::query("UPDATE apalis.jobs SET run_at = now() - interval '10 minutes'").execute(&app.db.pool).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&app.get("/health").await.body).unwrap();
    assert_eq!(v["checks"]["queue"]["status"], "degraded", "{v}");
    assert!(v["checks"]["queue"]["oldest_pending_secs"].as_f64().unwrap() >= 599.0);

    // Primary unreachable: 503 "down".
    app.db.pool.close().await;
    let r = app.get("/health").await;
    r.assert_status(503);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "down");
}
