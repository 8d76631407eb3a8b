//! The per-process session lookup cache (`sessions::SessionCache`): what it saves and
//! exactly how stale it may be.

mod common;

use std::time::Duration;

use common::TestApp;

const PW: &str = "correct horse battery";

/// Past the "wrote lately" window that a login opens: a browser drops the cookie after its
/// max-age (`CACHE_TTL` + 2 s); the test client keeps cookies forever, so we drop it.
async fn after_the_write_window(b: &TestApp) {
    tokio::time::sleep(app::sessions::CACHE_TTL + Duration::from_millis(2500)).await;
    b.set_cookie(app::web::cookies::WROTE_COOKIE, "");
}

#[tokio::test]
async fn a_session_deleted_elsewhere_lives_at_most_the_ttl_here_and_local_revocation_is_immediate() {
    let app = TestApp::new().await;
    app.signup("uma", "uma@example.com", PW).await.assert_status(303);
    let laptop = app.new_browser();
    laptop.login("uma", PW).await.assert_status(303);
    after_the_write_window(&laptop).await;
    app.set_cookie(app::web::cookies::WROTE_COOKIE, "");

    // Both browsers are now served from the cache after one lookup each.
    app.get("/settings").await.assert_status(200);
    laptop.get("/settings").await.assert_status(200);

    // Another web process (here: plain SQL) deletes the laptop's session: this process
    // may keep it for up to the TTL, never longer.
    sqlx::query("DELETE FROM sessions WHERE public_id = (SELECT max(public_id) FROM sessions)").execute(&app.db.pool).await.unwrap();
    laptop.get("/settings").await.assert_status(200);
    tokio::time::sleep(app::sessions::CACHE_TTL + Duration::from_millis(200)).await;
    let r = laptop.get("/settings").await;
    assert_eq!(r.status.as_u16(), 303, "the deleted session must be gone after the TTL");

    // Through this process, revocation is immediate, cache or not.
    let phone = app.new_browser();
    phone.login("uma", PW).await.assert_status(303);
    after_the_write_window(&phone).await;
    phone.get("/settings").await.assert_status(200);
    let id: i64 = sqlx::query_scalar("SELECT max(public_id) FROM sessions").fetch_one(&app.db.pool).await.unwrap();
    app.post_form(&format!("/settings/sessions/{id}/revoke"), &[]).await.assert_status(303);
    assert_eq!(phone.get("/settings").await.status.as_u16(), 303, "revoked here: logged out at once");

    // A write is read back at once by the writer, whatever the cache holds.
    app.post_form("/settings", &[("display_name", "Uma Thurman"), ("bio", "")]).await.assert_status(303);
    app.get("/").await.assert_contains("Uma Thurman");
    // Logging out is immediate too.
    app.post_form("/logout", &[]).await.assert_status(303);
    assert_eq!(app.get("/settings").await.status.as_u16(), 303);
}

#[tokio::test]
async fn a_write_evicts_the_cached_session_even_for_a_client_without_the_wrote_cookie() {
    let app = TestApp::new().await;
    app.signup("vic", "vic@example.com", PW).await.assert_status(303);
    after_the_write_window(&app).await;
    // Cached now, with the old display name.
    app.get("/settings").await.assert_status(200);
    app.post_form("/settings", &[("display_name", "Victoria Stone"), ("bio", "")]).await.assert_status(303);
    // A client that does not keep the "wrote lately" cookie still sees its change at once
    // on this process: the write itself dropped the cached session.
    app.set_cookie(app::web::cookies::WROTE_COOKIE, "");
    app.get("/").await.assert_contains("Victoria Stone");
}
