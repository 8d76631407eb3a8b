//! Data export through the real routes: `/settings/export` (login, CSRF, one export in
//! flight, the audit row and the job in the request's transaction, the rate limit, the
//! progress page in each state, polled by htmx) and `/exports/{token}` (the owner's
//! download; expired 410; unknown, malformed or someone else's token 404).
//! The ZIP itself is built and checked in worker/tests/exports.rs.

mod common;

use common::TestApp;

const PW: &str = "correct horse battery";

async fn user(app: &TestApp, name: &str) -> (TestApp, i64) {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    let id = sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(name).fetch_one(&app.db.pool).await.unwrap();
    (b, id)
}

/// (id, status) of the user's exports, oldest first.
async fn exports(app: &TestApp, user_id: i64) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, status FROM exports WHERE user_id = $1 ORDER BY id").bind(user_id).fetch_all(&app.db.pool).await.unwrap()
}

async fn export_jobs(app: &TestApp) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as("SELECT job_type, convert_from(job, 'UTF8')::jsonb FROM apalis.jobs ORDER BY id").fetch_all(&app.db.pool).await.unwrap()
}

/// Makes export `id` ready with a file of `body` in storage; returns its download token.
async fn make_ready(app: &TestApp, id: i64, body: &[u8], expires_in_hours: i64) -> String {
    let key = format!("exports/{id}-test.zip");
    app.state.storage.put(&key, body.to_vec().into()).await.unwrap();
    let link_key = uuid::Uuid::new_v4();
    let token = app::exports::download_token(&app.state.config.secret_key, link_key);
    sqlx::query(
        "UPDATE exports SET status = 'ready', storage_key = $2, byte_size = $3, link_key = $4, token_hash = $5,
                ready_at = now(), expires_at = now() + make_interval(hours => $6::int) WHERE id = $1",
    )
    .bind(id)
    .bind(&key)
    .bind(body.len() as i64)
    .bind(link_key)
    .bind(app::tokens::hash_token(&token))
    .bind(expires_in_hours as i32)
    .execute(&app.db.pool)
    .await
    .unwrap();
    token
}

#[tokio::test]
async fn the_pages_want_a_login() {
    let app = TestApp::new().await;
    let r = app.get("/settings/export").await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/login?next=%2Fsettings%2Fexport"));
    let r = app.post_form("/settings/export", &[]).await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login"));
    let token = app::tokens::random_token();
    let r = app.get(&format!("/exports/{token}")).await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login?next=%2Fexports%2F"));
    assert_eq!(app.count("SELECT count(*) FROM exports").await, 0);
}

#[tokio::test]
async fn a_request_without_its_csrf_token_is_refused() {
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    pat.post_form_raw("/settings/export", &[]).await.assert_status(403);
    pat.post_form_raw("/settings/export", &[("csrf_token", "forged")]).await.assert_status(403);
    assert!(exports(&app, pat_id).await.is_empty());
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 0);
}

#[tokio::test]
async fn a_request_writes_the_row_its_audit_entry_and_its_job_and_a_second_one_shows_the_first() {
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    let page = pat.get("/settings/export").await;
    page.assert_status(200).assert_contains("<h1>Export your data</h1>").assert_contains("You have not asked for an export yet.");
    assert!(!page.body.contains("hx-trigger=\"every 1s\""), "nothing to poll yet");
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap(); // the signup's verification mail

    let r = pat.post_form("/settings/export", &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/settings/export"));
    let rows = exports(&app, pat_id).await;
    assert_eq!(rows.len(), 1);
    let (export_id, status) = &rows[0];
    assert_eq!(status, "queued");
    let jobs = export_jobs(&app).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "media");
    assert_eq!(jobs[0].1["name"], "build_export");
    assert_eq!(jobs[0].1["args"]["export_id"], *export_id);
    let (actor, subject, kind, object, after): (Option<i64>, Option<i64>, String, String, serde_json::Value) = sqlx::query_as(
        "SELECT actor_id, subject_id, object_kind, object_id, after FROM audit_log WHERE action = 'account.export_requested'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((actor, subject, kind.as_str()), (Some(pat_id), Some(pat_id), "export"));
    assert_eq!(object, export_id.to_string());
    assert_eq!(after["status"], "queued");

    // The page: waiting, polled by htmx, reloading itself without JavaScript.
    let page = pat.get("/settings/export").await;
    page.assert_status(200)
        .assert_contains("We are preparing your export")
        .assert_contains("<progress id=\"export-progress\"")
        .assert_contains("hx-get=\"/settings/export\" hx-trigger=\"every 1s\"")
        .assert_contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>");
    assert!(!page.body.contains("action=\"/settings/export\""), "no second request while one is in flight");

    // A second request while it is in flight just shows it.
    let r = pat.post_form("/settings/export", &[]).await;
    r.assert_status(303);
    assert_eq!(exports(&app, pat_id).await.len(), 1);
    assert_eq!(export_jobs(&app).await.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'account.export_requested'").await, 1);
    pat.get("/settings/export").await.assert_contains("already being prepared");
}

#[tokio::test]
async fn the_page_follows_the_export_through_its_states() {
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    pat.post_form("/settings/export", &[]).await.assert_status(303);
    let id = exports(&app, pat_id).await[0].0;
    let htmx = [("hx-request", "true")];

    sqlx::query("UPDATE exports SET status = 'running', progress = 30, total = 120 WHERE id = $1").bind(id).execute(&app.db.pool).await.unwrap();
    let page = pat.get("/settings/export").await;
    page.assert_contains("max=\"120\" value=\"30\"").assert_contains("30 of 120 items written (25%)").assert_contains(">25%</progress>");
    let frag = pat.get_with("/settings/export", &htmx).await;
    frag.assert_status(200).assert_contains("id=\"export-state\"").assert_contains("hx-trigger=\"every 1s\"").assert_contains("value=\"30\"");
    assert!(!frag.body.contains("<html"), "htmx gets the fragment alone");

    let token = make_ready(&app, id, b"PK-not-really-a-zip", 24).await;
    let page = pat.get("/settings/export").await;
    page.assert_contains("Your export is ready (19 bytes)").assert_contains(&format!("href=\"/exports/{token}\""));
    assert!(!page.body.contains("hx-trigger=\"every 1s\""), "polling stops once ready");
    assert!(!page.body.contains("http-equiv=\"refresh\""));
    page.assert_contains("Ask for a new export");
    let frag = pat.get_with("/settings/export", &htmx).await;
    frag.assert_contains(&format!("/exports/{token}"));
    assert!(!frag.body.contains("hx-trigger=\"every 1s\""), "the last poll ends the polling");

    // Past its 24 hours (before the maintenance job ran): expired, no link.
    sqlx::query("UPDATE exports SET expires_at = now() - interval '1 minute', ready_at = now() - interval '25 hours' WHERE id = $1")
        .bind(id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let page = pat.get("/settings/export").await;
    page.assert_contains("has expired");
    assert!(!page.body.contains(&token));

    sqlx::query("UPDATE exports SET status = 'failed', error = 'the disk is full' WHERE id = $1").bind(id).execute(&app.db.pool).await.unwrap();
    pat.get("/settings/export").await.assert_contains("We could not build your export: the disk is full").assert_contains("Ask for a new export");

    // Someone else sees nothing of it.
    let (sam, _) = user(&app, "sam").await;
    sam.get("/settings/export").await.assert_contains("You have not asked for an export yet.");
}

#[tokio::test]
async fn the_owner_downloads_the_zip_others_and_made_up_tokens_get_404_and_old_links_410() {
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    pat.post_form("/settings/export", &[]).await.assert_status(303);
    let id = exports(&app, pat_id).await[0].0;
    let body = "PK".to_string() + &"x".repeat(300_000);
    let token = make_ready(&app, id, body.as_bytes(), 24).await;

    let r = pat.get(&format!("/exports/{token}")).await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/zip"));
    let disposition = r.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment; filename=\"quire-export-pat-"), "{disposition}");
    assert_eq!(r.header("content-length"), Some("300002"));
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    assert!(r.header("content-encoding").is_none(), "a ZIP is not compressed again");
    assert!(r.body == body, "the file, byte for byte");

    // Someone else's session: as if the link did not exist.
    let (sam, _) = user(&app, "sam").await;
    sam.get(&format!("/exports/{token}")).await.assert_status(404);
    // Made up, malformed.
    pat.get(&format!("/exports/{}", app::tokens::random_token())).await.assert_status(404);
    pat.get("/exports/not-a-token").await.assert_status(404);
    pat.get(&format!("/exports/{}", &token[..42])).await.assert_status(404);

    // Past its 24 hours: 410, whether or not the maintenance job has run.
    sqlx::query("UPDATE exports SET expires_at = now() - interval '1 second' WHERE id = $1").bind(id).execute(&app.db.pool).await.unwrap();
    pat.get(&format!("/exports/{token}")).await.assert_status(410).assert_contains("This download link has expired");
    sam.get(&format!("/exports/{token}")).await.assert_status(404);
    sqlx::query("UPDATE exports SET status = 'expired', storage_key = NULL WHERE id = $1").bind(id).execute(&app.db.pool).await.unwrap();
    pat.get(&format!("/exports/{token}")).await.assert_status(410);
}

#[tokio::test]
async fn three_exports_a_day_then_429() {
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    for n in 1..=3 {
        pat.post_form("/settings/export", &[]).await.assert_status(303);
        let rows = exports(&app, pat_id).await;
        assert_eq!(rows.len(), n);
        // Done (so the next one is not "already in flight").
        sqlx::query("UPDATE exports SET status = 'failed', error = 'test' WHERE user_id = $1 AND status = 'queued'")
            .bind(pat_id)
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    let r = pat.post_form("/settings/export", &[]).await;
    r.assert_status(429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(exports(&app, pat_id).await.len(), 3);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'account.export_requested'").await, 3);
    // Another account has its own allowance.
    let (sam, sam_id) = user(&app, "sam").await;
    sam.post_form("/settings/export", &[]).await.assert_status(303);
    assert_eq!(exports(&app, sam_id).await.len(), 1);
}

#[tokio::test]
async fn the_database_count_limits_across_processes_too() {
    // A second web process has its own in-memory limiter: the rows decide.
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    sqlx::query("INSERT INTO exports (user_id, status, error) SELECT $1, 'failed', 'x' FROM generate_series(1, 3)")
        .bind(pat_id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    pat.post_form("/settings/export", &[]).await.assert_status(429);
    // Yesterday's do not count.
    sqlx::query("UPDATE exports SET created_at = now() - interval '25 hours'").execute(&app.db.pool).await.unwrap();
    pat.post_form("/settings/export", &[]).await.assert_status(303);
}

#[tokio::test]
async fn concurrent_requests_make_one_export() {
    let app = TestApp::new().await;
    let (pat, pat_id) = user(&app, "pat").await;
    let token = pat.csrf_token().await;
    let form = [("csrf_token", token.as_str())];
    let results = futures::future::join_all((0..8).map(|_| pat.post_form_raw("/settings/export", &form))).await;
    // Each sees the export (303), or, if it got past the in-flight check before any
    // insert, may be counted against the daily limit (429); never an error.
    for r in &results {
        assert!(matches!(r.status.as_u16(), 303 | 429), "{}: {}", r.status, r.body);
    }
    assert!(results.iter().any(|r| r.status == 303));
    assert_eq!(exports(&app, pat_id).await.len(), 1, "one export in flight, whoever won the race");
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'account.export_requested'").await, 1);
}
