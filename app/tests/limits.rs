//! Client addresses, rate limits and the password-hashing paths, end to end: who the
//! client is behind (or without) proxies, login lock-out by failures per account with the
//! owner's known addresses let through, and no hashing for requests that cannot succeed.

mod common;

use app::{accounts::passwords, config::TrustedProxies};
use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

/// POSTs a form with this browser's CSRF token and an `X-Forwarded-For` header.
async fn post_from(b: &TestApp, xff: &str, path: &str, fields: &[(&str, &str)]) -> Resp {
    let token = b.csrf_token().await;
    let mut all: Vec<(&str, &str)> = vec![("csrf_token", &token)];
    all.extend_from_slice(fields);
    let body = serde_urlencoded::to_string(&all).unwrap();
    b.post_raw(path, "application/x-www-form-urlencoded", body.into_bytes(), &[("x-forwarded-for", xff)]).await
}

async fn login_from(b: &TestApp, xff: &str, login: &str, password: &str) -> Resp {
    post_from(b, xff, "/login", &[("login", login), ("password", password)]).await
}

async fn signup_from(b: &TestApp, xff: &str, username: &str) -> Resp {
    let email = format!("{username}@example.com");
    post_from(b, xff, "/signup", &[("username", username), ("email", &email), ("password", PW)]).await
}

async fn session_ips(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT ip FROM sessions ORDER BY created_at").fetch_all(&app.db.pool).await.unwrap()
}

/// An app behind one proxy hop (Heroku-like), so each test client can say where it is.
async fn behind_one_proxy() -> TestApp {
    TestApp::with_config(|c| c.trusted_proxies = TrustedProxies::Hops(1)).await
}

// ---- client IP ---------------------------------------------------------------------

#[tokio::test]
async fn a_spoofed_forwarded_for_is_ignored_without_trusted_proxies() {
    let app = TestApp::new().await;
    // The in-memory test client has no socket address: the client is "unknown", whatever
    // the header claims.
    signup_from(&app, "198.51.100.7", "spoofer").await.assert_status(303);
    login_from(&app.new_browser(), "203.0.113.50", "spoofer", PW).await.assert_status(303);
    assert_eq!(session_ips(&app).await, ["unknown", "unknown"]);
    // A fresh made-up address per request does not escape the per-IP signup limit (10 an hour).
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(signup_from(&app.new_browser(), &format!("198.51.100.{}", 10 + i), &format!("spoof{i}")).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 9, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn behind_a_trusted_hop_the_proxys_entry_is_the_client() {
    let app = behind_one_proxy().await;
    // The client's own claim (left) is ignored; the proxy's entry (right) is the address.
    signup_from(&app, "6.6.6.6, 203.0.113.9", "hopper").await.assert_status(303);
    login_from(&app.new_browser(), "2001:db8:1:2::77", "hopper", PW).await.assert_status(303);
    assert_eq!(session_ips(&app).await, ["203.0.113.9", "2001:db8:1:2::77"]);
}

#[tokio::test]
async fn ipv6_clients_are_limited_by_their_64() {
    let app = behind_one_proxy().await;
    let mut statuses = Vec::new();
    for i in 0..11 {
        // Every signup from another address in the same /64.
        statuses.push(signup_from(&app.new_browser(), &format!("2001:db8:1:2::{:x}", i + 1), &format!("six{i}")).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 10, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429));
    // Another /64 is another client.
    signup_from(&app.new_browser(), "2001:db8:1:3::1", "other64").await.assert_status(303);
}

// ---- login lock-out ----------------------------------------------------------------

#[tokio::test]
async fn failures_elsewhere_do_not_lock_the_owner_out_at_a_known_address() {
    let app = behind_one_proxy().await;
    signup_from(&app, "198.51.100.1", "nina").await.assert_status(303);
    // The owner has logged in from B before.
    let owner = app.new_browser();
    login_from(&owner, "192.0.2.2", "nina", PW).await.assert_status(303);
    // An attacker at A guesses until the account is locked.
    let attacker = app.new_browser();
    for i in 0..10 {
        login_from(&attacker, "203.0.113.66", "nina", &format!("guess number {i}")).await.assert_status(200).assert_contains("do not match");
    }
    let hashed = passwords::hashes_started();
    let r = login_from(&attacker, "203.0.113.66", "nina", "guess number 11").await;
    r.assert_status(429).assert_contains("Slow down");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    // Refused before hashing, even with the right password.
    login_from(&attacker, "203.0.113.66", "nina", PW).await.assert_status(429);
    assert_eq!(passwords::hashes_started(), hashed, "a locked attempt hashed");
    // A new address C: locked too, by username or email.
    login_from(&app.new_browser(), "198.51.100.99", "nina", PW).await.assert_status(429);
    login_from(&app.new_browser(), "198.51.100.99", "nina@example.com", PW).await.assert_status(429);
    // The owner at B logs in.
    let r = login_from(&owner, "192.0.2.2", "nina", PW).await;
    r.assert_status(303);
    owner.get("/").await.assert_contains("nina");
    // And the known address still has a budget of its own for typos, not an unlimited one.
    let b = app.new_browser();
    for _ in 0..10 {
        login_from(&b, "192.0.2.2", "nina", "typo typo typo").await.assert_status(200);
    }
    login_from(&b, "192.0.2.2", "nina", PW).await.assert_status(429);
}

#[tokio::test]
async fn username_and_email_share_one_failure_budget() {
    let app = behind_one_proxy().await;
    signup_from(&app, "198.51.100.1", "olga").await.assert_status(303);
    let b = app.new_browser();
    for i in 0..10 {
        // Alternating, and from different addresses: one account, one budget.
        let login = if i % 2 == 0 { "olga" } else { "OLGA@example.com" };
        login_from(&b, &format!("203.0.113.{}", 100 + i), login, "wrong password!").await.assert_status(200);
    }
    login_from(&b, "203.0.113.200", "olga@example.com", PW).await.assert_status(429);
    login_from(&b, "203.0.113.201", "Olga", PW).await.assert_status(429);
    // An unknown login locks the same way (a lock-out does not tell whether an account
    // exists), per typed value.
    for _ in 0..10 {
        login_from(&b, "203.0.113.202", "ghost", "wrong password!").await.assert_status(200).assert_contains("do not match");
    }
    login_from(&b, "203.0.113.203", "GHOST", "wrong password!").await.assert_status(429);
}

#[tokio::test]
async fn successful_logins_do_not_use_up_the_budget() {
    let app = behind_one_proxy().await;
    signup_from(&app, "198.51.100.1", "pete").await.assert_status(303);
    // More successes than the failure limit (10), each from a new address.
    for i in 0..15 {
        login_from(&app.new_browser(), &format!("192.0.2.{}", 10 + i), "pete", PW).await.assert_status(303);
    }
    // The failure budget is still whole: ten failures are answered, the eleventh is refused.
    let b = app.new_browser();
    for i in 0..10 {
        login_from(&b, &format!("203.0.113.{}", 10 + i), "pete", "wrong password!").await.assert_status(200);
    }
    login_from(&b, "203.0.113.99", "pete", "wrong password!").await.assert_status(429);
}

// ---- password hashing paths --------------------------------------------------------

#[tokio::test]
async fn reset_with_a_bogus_token_never_hashes_and_is_limited_per_ip() {
    let app = TestApp::new().await;
    let b = app.new_browser();
    let token = b.csrf_token().await;
    let hashed = passwords::hashes_started();
    // Well-formed (so the database is asked) and malformed tokens alike.
    let bogus = ["A".repeat(43), "not-a-token".to_string()];
    for i in 0..10 {
        let path = format!("/password/reset/{}", bogus[i % 2]);
        let r = b.post_form_raw(&path, &[("csrf_token", &token), ("password", "a brand new password")]).await;
        r.assert_status(400).assert_contains("no longer valid");
    }
    assert_eq!(passwords::hashes_started(), hashed, "an invalid link was hashed for");
    let path = format!("/password/reset/{}", bogus[0]);
    b.post_form_raw(&path, &[("csrf_token", &token), ("password", "a brand new password")]).await.assert_status(429);
    assert_eq!(passwords::hashes_started(), hashed);
}

#[tokio::test]
async fn a_good_reset_link_hashes_once_and_forgets_known_addresses() {
    let app = behind_one_proxy().await;
    signup_from(&app, "198.51.100.1", "rita").await.assert_status(303);
    login_from(&app.new_browser(), "192.0.2.2", "rita", PW).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM login_ips").await, 1);
    let mut conn = app.db.pool.acquire().await.unwrap();
    let user = app::accounts::users::find_by_username(&mut *conn, "rita").await.unwrap().unwrap();
    let token = app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::ResetPassword).await.unwrap();
    let hashed = passwords::hashes_started();
    post_from(&app.new_browser(), "198.51.100.5", &format!("/password/reset/{token}"), &[("password", "a brand new password")])
        .await
        .assert_status(303);
    assert_eq!(passwords::hashes_started(), hashed + 1);
    assert_eq!(app.count("SELECT count(*) FROM login_ips").await, 0, "known addresses forgotten after a reset");
    login_from(&app.new_browser(), "192.0.2.2", "rita", "a brand new password").await.assert_status(303);
}

#[tokio::test]
async fn invalid_signups_and_logins_never_hash_and_every_hash_is_behind_the_ip_limit() {
    let app = behind_one_proxy().await;
    let b = app.new_browser();
    let hashed = passwords::hashes_started();
    post_from(&b, "203.0.113.1", "/signup", &[("username", "x"), ("email", "nope"), ("password", "short")]).await.assert_status(422);
    login_from(&b, "203.0.113.1", "", "").await.assert_status(200);
    login_from(&b, "203.0.113.1", "someone", &"p".repeat(5000)).await.assert_status(200);
    assert_eq!(passwords::hashes_started(), hashed, "invalid forms hashed");
    // The per-IP login limit (30 per 15 minutes) comes before the hash: attempts for
    // ever-new logins (no per-account budget runs out) stop hashing at the limit.
    for i in 0..30 {
        login_from(&b, "203.0.113.2", &format!("nobody{i}"), "wrong password!").await.assert_status(200);
    }
    let hashed = passwords::hashes_started();
    login_from(&b, "203.0.113.2", "nobody-else", "wrong password!").await.assert_status(429);
    assert_eq!(passwords::hashes_started(), hashed);
}
