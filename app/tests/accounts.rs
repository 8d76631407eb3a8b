//! Accounts end to end against the real database: signup, login, logout, verification,
//! password reset, settings, sessions, rate limits, and bad input of every kind.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn user_count(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM users").await
}

async fn job_count(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM apalis.jobs").await
}

#[tokio::test]
async fn signup_creates_user_session_and_verification_job_then_home_knows_user() {
    let app = TestApp::new().await;
    let r = app.signup("Alice_1", "alice@example.com", PW).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/"));
    assert!(app.cookie("quire_session").is_some(), "logged in after signup");
    // Usernames are stored lower-case.
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice_1'").await, 1);
    // The password is an argon2id hash, never the password.
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&app.db.pool).await.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The verification mail is queued on the mail queue, carrying the request id.
    let (queue, job): (String, Vec<u8>) = sqlx::query_as("SELECT job_type, job FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(queue, "mail");
    let env: app::jobs::Envelope = serde_json::from_slice(&job).unwrap();
    assert_eq!(env.name, "send_verification_email");
    assert!(env.request_id.is_some_and(|id| !id.is_empty()));
    // The session row stores only the SHA-256 of the cookie value.
    let token = app.cookie("quire_session").unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT id_hash FROM sessions").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(stored, app::tokens::hash_token(&token));
    assert_ne!(stored, token.as_bytes());

    let home = app.get("/").await;
    home.assert_status(200).assert_contains("alice_1").assert_contains("Log out").assert_contains("Please confirm your email");
    // The flash message shows once.
    home.assert_contains("Welcome to Quire");
    let again = app.get("/").await;
    assert!(!again.body.contains("Welcome to Quire"), "flash shown twice");
}

#[tokio::test]
async fn signup_validation_errors_are_422_and_write_nothing() {
    let app = TestApp::new().await;
    let long = "x".repeat(300);
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("ab", "a@example.com", PW, "3 to 30"),
        ("has space", "a@example.com", PW, "letters, digits"),
        ("robert'); DROP TABLE users;--", "a@example.com", PW, "letters, digits"),
        ("bob", "not-an-email", PW, "valid email"),
        ("bob", &long, PW, "valid email"),
        ("bob", "b@example.com", "short", "at least 10"),
        ("", "", "", "3 to 30"),
    ];
    for (u, e, p, expect) in cases {
        let r = app.signup(u, e, p).await;
        r.assert_status(422).assert_contains(expect);
        // The form keeps what was typed, escaped.
        assert!(!r.body.contains("DROP TABLE users;--\""), "raw value not escaped");
    }
    assert_eq!(user_count(&app).await, 0);
    assert_eq!(job_count(&app).await, 0);
    // The SQL metacharacters did nothing to the schema.
    assert_eq!(app.count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'").await, 1);
}

#[tokio::test]
async fn duplicate_username_ignoring_case_and_duplicate_email_are_422() {
    let app = TestApp::new().await;
    app.signup("carol", "carol@example.com", PW).await.assert_status(303);
    let other = app.new_browser();
    other.signup("CAROL", "carol2@example.com", PW).await.assert_status(422).assert_contains("username is taken");
    other.signup("carol3", "Carol@Example.com", PW).await.assert_status(422).assert_contains("already exists");
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(job_count(&app).await, 1);
}

#[tokio::test]
async fn htmx_validation_error_returns_the_form_fragment() {
    let app = TestApp::new().await;
    let token = app.csrf_token().await;
    let body = serde_urlencoded::to_string([("username", "x"), ("email", "x@example.com"), ("password", PW)]).unwrap();
    let r = app
        .post_raw("/signup", "application/x-www-form-urlencoded", body.into_bytes(), &[("hx-request", "true"), ("x-csrf-token", &token)])
        .await;
    r.assert_status(422).assert_contains("<form").assert_contains("3 to 30");
    assert!(!r.body.contains("<html"), "a fragment, not a page");
}

#[tokio::test]
async fn htmx_success_redirects_with_hx_redirect() {
    let app = TestApp::new().await;
    let token = app.csrf_token().await;
    let body = serde_urlencoded::to_string([("username", "dora"), ("email", "dora@example.com"), ("password", PW)]).unwrap();
    let r = app
        .post_raw("/signup", "application/x-www-form-urlencoded", body.into_bytes(), &[("hx-request", "true"), ("x-csrf-token", &token)])
        .await;
    r.assert_status(200);
    assert_eq!(r.header("hx-redirect"), Some("/"));
}

#[tokio::test]
async fn login_by_username_or_email_logout_and_wrong_password() {
    let app = TestApp::new().await;
    app.signup("erin", "erin@example.com", PW).await.assert_status(303);
    app.post_form("/logout", &[]).await.assert_status(303);
    assert!(app.cookie("quire_session").is_none(), "cookie removed at logout");
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0, "logout deletes the row");
    app.get("/").await.assert_contains("Log in");

    // Wrong password: 200, the form, a message that does not say which part was wrong.
    let r = app.login("erin", "wrong password!").await;
    r.assert_status(200).assert_contains("do not match an account");
    let unknown = app.login("nobody", "wrong password!").await;
    unknown.assert_status(200);
    assert_eq!(
        r.body.contains("do not match an account"),
        unknown.body.contains("do not match an account"),
        "same answer for unknown user and wrong password"
    );
    assert!(app.cookie("quire_session").is_none());

    app.login("ERIN", PW).await.assert_status(303);
    assert!(app.cookie("quire_session").is_some());
    app.post_form("/logout", &[]).await.assert_status(303);
    let r = app.post_form("/login", &[("login", "erin@example.com"), ("password", PW), ("next", "/settings")]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/settings"));
}

#[tokio::test]
async fn login_rotates_the_session_id_and_ignores_offsite_next() {
    let app = TestApp::new().await;
    app.signup("fred", "fred@example.com", PW).await.assert_status(303);
    let first = app.cookie("quire_session").unwrap();
    let r = app.post_form("/login", &[("login", "fred"), ("password", PW), ("next", "//evil.example/x")]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/"), "off-site next is ignored");
    let second = app.cookie("quire_session").unwrap();
    assert_ne!(first, second, "a new id at login");
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 1, "the old session row is gone");
}

/// Each of these is another host in disguise once a browser (or a proxy) has decoded or
/// normalised it. Login must send the visitor home instead, with or without htmx, and the
/// login page must not carry them on in its form.
const OFFSITE_NEXTS: &[&str] = &[
    "//evil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "/%5Cevil.example",
    "/\\evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/.//evil.example",
    "https://evil.example",
    "/%0d%0aLocation:%20https://evil.example",
];

#[tokio::test]
async fn offsite_next_is_refused_in_location_and_hx_redirect() {
    let app = TestApp::new().await;
    app.signup("olga", "olga@example.com", PW).await.assert_status(303);
    // Logins count against the account's limit: half the cases through a plain form,
    // half through htmx, and every one through GET /login while logged in.
    for (i, next) in OFFSITE_NEXTS.iter().enumerate() {
        app.post_form("/logout", &[]).await.assert_status(303);
        if i % 2 == 0 {
            let r = app.post_form("/login", &[("login", "olga"), ("password", PW), ("next", next)]).await;
            r.assert_status(303);
            assert_eq!(r.location(), Some("/"), "next={next:?}");
        } else {
            let token = app.csrf_token().await;
            let body =
                serde_urlencoded::to_string([("csrf_token", token.as_str()), ("login", "olga"), ("password", PW), ("next", next)]).unwrap();
            let r = app
                .post_raw("/login", "application/x-www-form-urlencoded", body.into_bytes(), &[("hx-request", "true"), ("x-csrf-token", &token)])
                .await;
            r.assert_status(200);
            assert_eq!(r.header("hx-redirect"), Some("/"), "HX-Redirect for next={next:?}");
        }
        // Logged in now: GET /login?next=… redirects at once, also only home.
        let query = serde_urlencoded::to_string([("next", next)]).unwrap();
        let r = app.get(&format!("/login?{query}")).await;
        assert_eq!(r.location(), Some("/"), "GET /login?{query}");
    }
}

#[tokio::test]
async fn sessions_are_shared_by_any_web_process() {
    // Two app instances (as two processes would be) over one database: a session made
    // by one is valid on the other.
    let a = TestApp::new().await;
    a.signup("gina", "gina@example.com", PW).await.assert_status(303);
    let token = a.cookie("quire_session").unwrap();
    let state_b = app::web::AppState::new(
        app::config::Config::for_tests(&a.db.url, a.mail_dir.clone()),
        a.db.db(),
    )
    .unwrap();
    let b = poem::test::TestClient::new(app::web::app(state_b));
    let resp = b.get("/settings").header("cookie", format!("quire_session={token}")).send().await;
    resp.assert_status_is_ok();
    let body = resp.0.into_body().into_string().await.unwrap();
    assert!(body.contains("gina"));
}

#[tokio::test]
async fn bogus_or_expired_session_cookie_is_anonymous() {
    let app = TestApp::new().await;
    app.set_cookie("quire_session", "not-a-real-token");
    app.get("/").await.assert_status(200).assert_contains("Log in");

    app.signup("hana", "hana@example.com", PW).await.assert_status(303);
    // Idle for 15 days: expired.
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '15 days'").execute(&app.db.pool).await.unwrap();
    app.get("/").await.assert_contains("Log in");
    app.login("hana", PW).await.assert_status(303);
    // Past the absolute expiry, even if recently active.
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'").execute(&app.db.pool).await.unwrap();
    app.get("/").await.assert_contains("Log in");
}

#[tokio::test]
async fn last_seen_is_refreshed_at_most_hourly() {
    let app = TestApp::new().await;
    app.signup("ivan", "ivan@example.com", PW).await.assert_status(303);
    let seen = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT last_seen_at FROM sessions").fetch_one(&app.db.pool).await.unwrap()
    };
    let t0 = seen().await;
    app.get("/").await;
    assert_eq!(seen().await, t0, "a request within the hour is not a write");
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '2 hours'").execute(&app.db.pool).await.unwrap();
    let old = seen().await;
    app.get("/").await;
    assert!(seen().await > old, "refreshed after an hour");
}

#[tokio::test]
async fn settings_requires_login_and_saves_profile() {
    let app = TestApp::new().await;
    let r = app.get("/settings").await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/login?next=%2Fsettings"));
    app.signup("jane", "jane@example.com", PW).await;
    app.post_form("/settings", &[("display_name", "Jane <b>Doe</b>"), ("bio", "Hello")]).await.assert_status(303);
    let page = app.get("/settings").await;
    page.assert_contains("Jane &lt;b&gt;Doe&lt;");
    assert!(!page.body.contains("<b>Doe"), "autoescaped");
    let too_long = "y".repeat(61);
    app.post_form("/settings", &[("display_name", &too_long), ("bio", "")]).await.assert_status(422).assert_contains("60 characters");
    let name: String = sqlx::query_scalar("SELECT display_name FROM users").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(name, "Jane <b>Doe</b>");
}

#[tokio::test]
async fn sessions_page_lists_and_revokes_only_own_sessions() {
    let app = TestApp::new().await;
    app.signup("kim", "kim@example.com", PW).await;
    let laptop = app.new_browser();
    laptop.login("kim", PW).await.assert_status(303);
    let page = app.get("/settings/sessions").await;
    page.assert_status(200).assert_contains("(this device)");
    let ids: Vec<i64> = sqlx::query_scalar("SELECT public_id FROM sessions ORDER BY public_id").fetch_all(&app.db.pool).await.unwrap();
    assert_eq!(ids.len(), 2);
    // Another user cannot revoke kim's sessions: 404, nothing deleted.
    let mallory = app.new_browser();
    mallory.signup("mallory", "mallory@example.com", PW).await;
    mallory.post_form(&format!("/settings/sessions/{}/revoke", ids[1]), &[]).await.assert_status(404);
    assert_eq!(app.count("SELECT count(*) FROM sessions WHERE user_id = (SELECT id FROM users WHERE username='kim')").await, 2);
    // Kim ends the laptop's session; the laptop is logged out.
    app.post_form(&format!("/settings/sessions/{}/revoke", ids[1]), &[]).await.assert_status(303);
    laptop.get("/").await.assert_contains("Log in");
    app.get("/").await.assert_contains("Log out");
    app.post_form("/settings/sessions/notanumber/revoke", &[]).await.assert_status(400);
}

#[tokio::test]
async fn verify_email_token_is_single_use_and_expires() {
    let app = TestApp::new().await;
    app.signup("lena", "lena@example.com", PW).await;
    let mut conn = app.db.pool.acquire().await.unwrap();
    let user = app::accounts::users::find_by_username(&mut *conn, "lena").await.unwrap().unwrap();
    let token = app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::VerifyEmail).await.unwrap();
    app.get(&format!("/verify-email/{token}")).await.assert_status(200).assert_contains("confirmed");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL").await, 1);
    // Reused: 400 with an explanation.
    app.get(&format!("/verify-email/{token}")).await.assert_status(400).assert_contains("no longer valid");
    // Expired.
    let t2 = app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::VerifyEmail).await.unwrap();
    sqlx::query("UPDATE user_tokens SET created_at = now() - interval '3 days', expires_at = now() - interval '1 day'").execute(&app.db.pool).await.unwrap();
    app.get(&format!("/verify-email/{t2}")).await.assert_status(400);
    // Garbage.
    app.get("/verify-email/%27%20OR%201=1--").await.assert_status(400);
}

#[tokio::test]
async fn password_reset_flow_same_answer_single_use_ends_sessions() {
    let app = TestApp::new().await;
    app.signup("mona", "mona@example.com", PW).await;
    let other_device = app.new_browser();
    other_device.login("mona", PW).await.assert_status(303);

    let anon = app.new_browser();
    let known = anon.post_form("/password/forgot", &[("email", "mona@example.com")]).await;
    let unknown = anon.post_form("/password/forgot", &[("email", "ghost@example.com")]).await;
    known.assert_status(200);
    unknown.assert_status(200);
    assert_eq!(
        known.body.replace("mona@example.com", "X").replace(&extract(&known.body), ""),
        unknown.body.replace("ghost@example.com", "X").replace(&extract(&unknown.body), ""),
        "the same page whether or not the account exists"
    );
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8') LIKE '%send_password_reset%'").await, 1);

    let mut conn = app.db.pool.acquire().await.unwrap();
    let user = app::accounts::users::find_by_username(&mut *conn, "mona").await.unwrap().unwrap();
    let token = app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::ResetPassword).await.unwrap();
    anon.get(&format!("/password/reset/{token}")).await.assert_status(200).assert_contains("new password");
    anon.post_form(&format!("/password/reset/{token}"), &[("password", "short")]).await.assert_status(422);
    let r = anon.post_form(&format!("/password/reset/{token}"), &[("password", "a brand new password")]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/login"));
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0, "every session ended");
    app.get("/").await.assert_contains("Log in");
    other_device.get("/").await.assert_contains("Log in");
    // Single use.
    anon.post_form(&format!("/password/reset/{token}"), &[("password", "another new password")]).await.assert_status(400);
    anon.login("mona", PW).await.assert_contains("do not match");
    anon.login("mona", "a brand new password").await.assert_status(303);
    // Expired tokens are refused.
    let t2 = app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::ResetPassword).await.unwrap();
    sqlx::query("UPDATE user_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'").execute(&app.db.pool).await.unwrap();
    anon.get(&format!("/password/reset/{t2}")).await.assert_status(400);
}

fn extract(body: &str) -> String {
    common::extract_csrf(body).unwrap_or_default()
}

#[tokio::test]
async fn login_is_rate_limited_per_account_with_retry_after() {
    let app = TestApp::new().await;
    app.signup("nina", "nina@example.com", PW).await;
    let attacker = app.new_browser();
    let mut last: Option<Resp> = None;
    for _ in 0..11 {
        last = Some(attacker.login("nina", "wrong password!").await);
    }
    let r = last.unwrap();
    r.assert_status(429).assert_contains("Slow down");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    // Even the right password is refused while limited.
    attacker.login("nina", PW).await.assert_status(429);
}

#[tokio::test]
async fn signup_and_forgot_are_rate_limited_per_ip() {
    let app = TestApp::new().await;
    for i in 0..10 {
        let b = app.new_browser();
        b.signup(&format!("user{i}"), &format!("u{i}@example.com"), PW).await.assert_status(303);
    }
    app.new_browser().signup("user10", "u10@example.com", PW).await.assert_status(429);
    assert_eq!(user_count(&app).await, 10);
    let b = app.new_browser();
    for _ in 0..3 {
        b.post_form("/password/forgot", &[("email", "u1@example.com")]).await.assert_status(200);
    }
    b.post_form("/password/forgot", &[("email", "u1@example.com")]).await.assert_status(429);
}

#[tokio::test]
async fn invalid_utf8_and_oversized_forms_are_clear_4xx() {
    let app = TestApp::new().await;
    let token = app.csrf_token().await;
    let mut body = format!("csrf_token={token}&username=ab%FF%FEcd&email=a%40b.co&password=").into_bytes();
    body.extend_from_slice(b"0123456789");
    app.post_raw("/signup", "application/x-www-form-urlencoded", body, &[]).await.assert_status(400).assert_contains("UTF-8");
    // Raw invalid bytes (not percent-encoded).
    let mut raw = format!("csrf_token={token}&username=").into_bytes();
    raw.extend_from_slice(&[0xC3, 0x28]);
    raw.extend_from_slice(b"&email=a%40b.co&password=0123456789");
    app.post_raw("/signup", "application/x-www-form-urlencoded", raw, &[]).await.assert_status(400);
    // Oversized body.
    let huge = vec![b'a'; 3 * 1024 * 1024];
    app.post_raw("/signup", "application/x-www-form-urlencoded", huge, &[("x-csrf-token", &token)]).await.assert_status(413);
    // Wrong content type.
    app.post_raw("/signup", "application/json", b"{}".to_vec(), &[("x-csrf-token", &token)]).await.assert_status(400);
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn unknown_pages_and_methods_get_templated_errors() {
    let app = TestApp::new().await;
    let r = app.get("/no/such/page").await;
    r.assert_status(404).assert_contains("Page not found").assert_contains("<html");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn per_ip_limits_skip_loopback_only_in_development() {
    // Development: everyone is 127.0.0.1, so per-IP limits would only get in the way.
    // (The test client has no socket address: a trusted proxy hop says where it is.)
    let dev = TestApp::with_config(|c| c.trusted_proxies = app::config::TrustedProxies::Hops(1)).await;
    for i in 0..12 {
        let b = dev.new_browser();
        let token = b.csrf_token().await;
        let body = serde_urlencoded::to_string([("csrf_token", token.as_str()), ("username", &format!("dev{i}")), ("email", &format!("dev{i}@example.com")), ("password", PW)]).unwrap();
        b.post_raw("/signup", "application/x-www-form-urlencoded", body.into_bytes(), &[("x-forwarded-for", "127.0.0.1")]).await.assert_status(303);
    }
    // Production: the same loopback address is limited like any other.
    let prod = TestApp::with_config(|c| {
        c.app_env = app::config::AppEnv::Production;
        c.trusted_proxies = app::config::TrustedProxies::Hops(1);
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..11 {
        let b = prod.new_browser();
        let token = b.csrf_token().await;
        let body = serde_urlencoded::to_string([("csrf_token", token.as_str()), ("username", &format!("prod{i}")), ("email", &format!("prod{i}@example.com")), ("password", PW)]).unwrap();
        statuses.push(b.post_raw("/signup", "application/x-www-form-urlencoded", body.into_bytes(), &[("x-forwarded-for", "127.0.0.1")]).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 10, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429));
}
