//! The jobs dashboard through the real routes and database: who may see and act (admins
//! only), counts that match the rows, retry and discard of failed jobs (single and in
//! bulk) with their audit rows, refusals (not failed: 422, unknown: 404, no CSRF token:
//! 403), the failed list's pages, and the retention purge.

mod common;

use app::jobs::admin::{self as queue, Selection};
use common::TestApp;

const PW: &str = "correct horse battery";

/// A user with `role`, logged in in a browser of their own (after the role is set, so
/// no cached session still has the old one).
async fn user(app: &TestApp, name: &str, role: &str) -> TestApp {
    common::user_with_role(app, name, role, PW).await;
    let fresh = app.new_browser();
    fresh.login(name, PW).await.assert_status(303);
    fresh
}

/// Inserts a job row as the worker leaves it: `status`, `attempts` of `max`, finished
/// `done_secs_ago` seconds ago (None: not finished), with `error`. Returns its id.
async fn job(app: &TestApp, queue: &str, status: &str, attempts: i32, max: i32, done_secs_ago: Option<f64>, error: Option<&str>) -> String {
    let id = format!("T{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at, last_result)
         VALUES ($1, $2, convert_to('{\"name\":\"noop\",\"args\":{},\"request_id\":null}', 'UTF8'), $3, $4, $5,
                 now() - interval '2 hours', 0,
                 CASE WHEN $6::float8 IS NULL THEN NULL ELSE now() - make_interval(secs => $6::float8) END,
                 CASE WHEN $7::text IS NULL THEN NULL ELSE jsonb_build_object('Err', $7::text) END)",
    )
    .bind(&id)
    .bind(queue)
    .bind(status)
    .bind(attempts)
    .bind(max)
    .bind(done_secs_ago)
    .bind(error)
    .execute(&app.db.pool)
    .await
    .unwrap();
    id
}

async fn failed(app: &TestApp, queue: &str, error: &str) -> String {
    job(app, queue, "Failed", 5, 5, Some(60.0), Some(error)).await
}

async fn status(app: &TestApp, id: &str) -> Option<(String, i32)> {
    sqlx::query_as("SELECT status, attempts FROM apalis.jobs WHERE id = $1").bind(id).fetch_optional(&app.db.pool).await.unwrap()
}

async fn audit_rows(app: &TestApp, action: &str, id: &str) -> Vec<(Option<String>, serde_json::Value, serde_json::Value)> {
    sqlx::query_as(
        "SELECT a.actor_id::text, a.before, a.after FROM audit_log a WHERE a.action = $1 AND a.object_kind = 'job' AND a.object_id = $2",
    )
    .bind(action)
    .bind(id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

const POSTS: &[&str] = &["/admin/jobs/retry", "/admin/jobs/discard", "/admin/jobs/X1/retry", "/admin/jobs/X1/discard"];

#[tokio::test]
async fn anonymous_visitors_are_sent_to_log_in() {
    let app = TestApp::new().await;
    let r = app.get("/admin/jobs").await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login?next="), "{:?}", r.location());
    for path in POSTS {
        let r = app.post_form(path, &[("queue", "mail")]).await;
        r.assert_status(303);
        assert!(r.location().unwrap().starts_with("/login"), "{path}: {:?}", r.location());
    }
}

#[tokio::test]
async fn readers_writers_and_moderators_get_403_everywhere() {
    let app = TestApp::new().await;
    let id = failed(&app, "mail", "boom").await;
    for (name, role) in [("rita", "reader"), ("walt", "writer"), ("mona", "moderator")] {
        let b = user(&app, name, role).await;
        b.get("/admin/jobs").await.assert_status(403);
        for path in ["/admin/jobs/retry".to_string(), "/admin/jobs/discard".to_string(), format!("/admin/jobs/{id}/retry"), format!("/admin/jobs/{id}/discard")] {
            b.post_form(&path, &[("ids", &id)]).await.assert_status(403);
        }
    }
    assert_eq!(status(&app, &id).await, Some(("Failed".into(), 5)), "nothing changed");
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE object_kind = 'job'").await, 0);
}

#[tokio::test]
async fn the_admin_sees_counts_that_match_the_rows() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    // Only the rows below (not the signup's verification mail).
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap();
    for _ in 0..3 {
        job(&app, "mail", "Pending", 0, 5, None, None).await;
    }
    sqlx::query("UPDATE apalis.jobs SET run_at = now() - interval '90 seconds'").execute(&app.db.pool).await.unwrap();
    let scheduled = job(&app, "mail", "Pending", 1, 5, None, None).await;
    sqlx::query("UPDATE apalis.jobs SET run_at = now() + interval '1 hour' WHERE id = $1").bind(&scheduled).execute(&app.db.pool).await.unwrap();
    job(&app, "mail", "Done", 1, 5, Some(120.0), None).await;
    job(&app, "mail", "Done", 1, 5, Some(7200.0), None).await; // finished 2 h ago: not in the hour
    job(&app, "mail", "Failed", 2, 5, Some(10.0), Some("will retry")).await;
    failed(&app, "mail", "SMTP said no").await;
    job(&app, "mail", "Killed", 1, 5, Some(30.0), Some("bad arguments for send_x")).await;
    job(&app, "media", "Queued", 0, 3, None, None).await;
    job(&app, "media", "Done", 1, 3, Some(60.0), None).await;

    let mut conn = app.db.pool.acquire().await.unwrap();
    let counts = queue::counts(&mut conn, app::jobs::ALL_QUEUES).await.unwrap();
    let mail = counts.iter().find(|c| c.queue == "mail").unwrap();
    assert_eq!((mail.get("Pending"), mail.get("Scheduled"), mail.get("Retrying"), mail.get("Failed"), mail.get("Killed")), (3, 1, 1, 1, 1));
    let oldest = mail.oldest_pending_secs.unwrap();
    assert!((85.0..200.0).contains(&oldest), "oldest pending waited {oldest} s");
    let media = counts.iter().find(|c| c.queue == "media").unwrap();
    assert_eq!((media.get("Queued"), media.oldest_pending_secs), (1, None));
    let default = counts.iter().find(|c| c.queue == "default").unwrap();
    assert_eq!(default.states.values().sum::<i64>(), 0, "a queue with no jobs is listed with zeros");
    let (_, throughput) = queue::throughput(&mut conn, app::jobs::ALL_QUEUES).await.unwrap();
    let mail_t = throughput.iter().find(|t| t.queue == "mail").unwrap();
    assert_eq!((mail_t.done.iter().sum::<i64>(), mail_t.failed.iter().sum::<i64>()), (1, 2), "the hour: 1 finished, 1 failed + 1 killed");
    drop(conn);

    let page = admin.get("/admin/jobs").await;
    page.assert_status(200);
    let row = page.body.split(r#"<tr id="queue-mail">"#).nth(1).unwrap().split("</tr>").next().unwrap();
    for (state, n) in [("Pending", 3), ("Scheduled", 1), ("Retrying", 1), ("Failed", 1), ("Killed", 1), ("Running", 0)] {
        assert!(row.contains(&format!(r#"data-state="{state}">{n}</td>"#)), "{state} = {n} in {row}");
    }
    page.assert_contains(r#"<svg class="chart" id="jobs-chart""#);
    page.assert_contains("SMTP said no");
    page.assert_contains("bad arguments for send_x");
    assert!(!page.body.contains("will retry"), "a job retrying by itself is not in the failed list");
    page.assert_contains("2</strong> failed in the last hour");
}

#[tokio::test]
async fn retrying_a_failed_job_makes_it_runnable_and_is_audited() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let id = failed(&app, "mail", "connection refused").await;
    let r = admin.post_form(&format!("/admin/jobs/{id}/retry"), &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/admin/jobs"));
    assert_eq!(status(&app, &id).await, Some(("Pending".into(), 0)));
    let (done_at, run_at_now, lock_by): (Option<chrono::DateTime<chrono::Utc>>, bool, Option<String>) =
        sqlx::query_as("SELECT done_at, run_at <= now() AND run_at > now() - interval '1 minute', lock_by FROM apalis.jobs WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(done_at.is_none() && run_at_now && lock_by.is_none(), "due now, unlocked");
    let rows = audit_rows(&app, "job.retried", &id).await;
    assert_eq!(rows.len(), 1);
    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'ada'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(rows[0].0.as_deref(), Some(admin_id.to_string().as_str()));
    assert_eq!(rows[0].1["status"], "Failed");
    assert_eq!(rows[0].1["error"], "connection refused");
    assert_eq!(rows[0].2["status"], "Pending");
    // The page afterwards: the flash, and the job is gone from the failed list.
    let page = admin.get("/admin/jobs").await;
    page.assert_contains("is queued again");
    assert!(!page.body.contains(&format!(r#"id="job-{id}""#)), "no longer listed as failed");
    // Retrying it again now: it is pending, not failed.
    admin.post_form(&format!("/admin/jobs/{id}/retry"), &[]).await.assert_status(422).assert_contains("only failed jobs");
    assert_eq!(audit_rows(&app, "job.retried", &id).await.len(), 1);
}

#[tokio::test]
async fn a_killed_job_can_be_retried_too() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let id = job(&app, "default", "Killed", 1, 5, Some(5.0), Some("panicked: oops")).await;
    admin.post_form(&format!("/admin/jobs/{id}/retry"), &[]).await.assert_status(303);
    assert_eq!(status(&app, &id).await, Some(("Pending".into(), 0)));
}

#[tokio::test]
async fn retrying_or_discarding_a_job_that_has_not_failed_is_refused_with_422() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let cases = [
        ("Pending", 0, None),
        ("Queued", 0, None),
        ("Running", 1, None),
        ("Done", 1, Some(5.0)),
        ("Failed", 2, Some(5.0)), // retrying by itself: attempts left
    ];
    for (st, attempts, done) in cases {
        let id = job(&app, "mail", st, attempts, 5, done, None).await;
        for verb in ["retry", "discard"] {
            let r = admin.post_form(&format!("/admin/jobs/{id}/{verb}"), &[]).await;
            r.assert_status(422);
            r.assert_contains("not failed");
        }
        assert_eq!(status(&app, &id).await, Some((st.to_string(), attempts)), "{st} unchanged");
    }
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE object_kind = 'job'").await, 0);
}

#[tokio::test]
async fn discarding_a_failed_job_deletes_it_and_is_audited() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let id = failed(&app, "media", "decode failed").await;
    let r = admin.post_form(&format!("/admin/jobs/{id}/discard"), &[]).await;
    r.assert_status(303);
    assert_eq!(status(&app, &id).await, None);
    let rows = audit_rows(&app, "job.discarded", &id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1["queue"], "media");
    assert_eq!(rows[0].2["status"], "Discarded");
    admin.get("/admin/jobs").await.assert_contains("was discarded");
    // Now it does not exist.
    admin.post_form(&format!("/admin/jobs/{id}/discard"), &[]).await.assert_status(404);
}

#[tokio::test]
async fn unknown_ids_get_404() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    for verb in ["retry", "discard"] {
        admin.post_form(&format!("/admin/jobs/01NOSUCHJOB/{verb}"), &[]).await.assert_status(404);
        admin.post_form(&format!("/admin/jobs/bad%20id'/{verb}"), &[]).await.assert_status(404);
        admin.post_form(&format!("/admin/jobs/{verb}"), &[("ids", "01NOSUCHJOB"), ("ids", "01NOSUCHJOB2")]).await.assert_status(404);
    }
}

#[tokio::test]
async fn bulk_retry_by_ids_acts_on_the_failed_ones_and_says_what_it_skipped() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let a = failed(&app, "mail", "a").await;
    let b = job(&app, "media", "Killed", 1, 3, Some(1.0), Some("b")).await;
    let done = job(&app, "mail", "Done", 1, 5, Some(1.0), None).await;
    let untouched = failed(&app, "mail", "not selected").await;
    let r = admin.post_form("/admin/jobs/retry", &[("ids", &a), ("ids", &b), ("ids", &done)]).await;
    r.assert_status(303);
    assert_eq!(status(&app, &a).await, Some(("Pending".into(), 0)));
    assert_eq!(status(&app, &b).await, Some(("Pending".into(), 0)));
    assert_eq!(status(&app, &done).await, Some(("Done".into(), 1)));
    assert_eq!(status(&app, &untouched).await, Some(("Failed".into(), 5)));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'job.retried'").await, 2);
    admin.get("/admin/jobs").await.assert_contains("2 jobs retried. 1 selected job was no longer failed and was left alone.");
    // Only jobs that are not failed: 422, nothing changes.
    admin.post_form("/admin/jobs/retry", &[("ids", &a), ("ids", &done)]).await.assert_status(422).assert_contains("None of the selected jobs is failed");
    // Nothing selected: 422.
    admin.post_form("/admin/jobs/retry", &[]).await.assert_status(422);
    admin.post_form("/admin/jobs/discard", &[("ids", "bad id!")]).await.assert_status(400);
}

#[tokio::test]
async fn bulk_by_queue_retries_or_discards_every_failed_job_of_that_queue_only() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let mail: Vec<String> = failed_jobs(&app, "mail", 3).await;
    let media = failed(&app, "media", "m").await;
    let retrying = job(&app, "mail", "Failed", 1, 5, Some(1.0), Some("r")).await;
    admin.post_form("/admin/jobs/retry", &[("queue", "mail")]).await.assert_status(303);
    for id in &mail {
        assert_eq!(status(&app, id).await, Some(("Pending".into(), 0)));
    }
    assert_eq!(status(&app, &media).await, Some(("Failed".into(), 5)), "another queue's job untouched");
    assert_eq!(status(&app, &retrying).await, Some(("Failed".into(), 1)), "a retrying job untouched");
    admin.get("/admin/jobs").await.assert_contains("3 failed jobs in “mail” retried.");
    admin.post_form("/admin/jobs/discard", &[("queue", "media")]).await.assert_status(303);
    assert_eq!(status(&app, &media).await, None);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'job.discarded'").await, 1);
    // A queue with nothing failed: a message, not an error.
    admin.post_form("/admin/jobs/discard", &[("queue", "media")]).await.assert_status(303);
    admin.get("/admin/jobs").await.assert_contains("There are no failed jobs in “media”.");
}

async fn failed_jobs(app: &TestApp, q: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(failed(app, q, &format!("e{i}")).await);
    }
    ids
}

#[tokio::test]
async fn posts_without_a_csrf_token_get_403() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    let id = failed(&app, "mail", "x").await;
    for path in ["/admin/jobs/retry".to_string(), "/admin/jobs/discard".to_string(), format!("/admin/jobs/{id}/retry"), format!("/admin/jobs/{id}/discard")] {
        admin.post_form_raw(&path, &[("ids", &id)]).await.assert_status(403);
        admin.post_form_raw(&path, &[("ids", &id), ("csrf_token", "forged")]).await.assert_status(403);
    }
    assert_eq!(status(&app, &id).await, Some(("Failed".into(), 5)));
}

#[tokio::test]
async fn the_failed_list_pages_with_a_keyset_cursor() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    for i in 0..(queue::PAGE_SIZE + 7) {
        job(&app, if i % 2 == 0 { "mail" } else { "media" }, "Failed", 5, 5, Some(100.0 + i as f64), Some(&format!("error number {i}"))).await;
    }
    let (first, next) = queue::failed(&app.db.pool, None, None, queue::PAGE_SIZE).await.unwrap();
    assert_eq!(first.len() as i64, queue::PAGE_SIZE);
    assert_eq!(first[0].error, "error number 0", "newest failure first");
    let next = next.expect("a second page");
    let (second, none) = queue::failed(&app.db.pool, None, Some(&next), queue::PAGE_SIZE).await.unwrap();
    assert_eq!(second.len(), 7);
    assert!(none.is_none());
    assert_eq!(second.last().unwrap().error, format!("error number {}", queue::PAGE_SIZE + 6));
    let ids: std::collections::HashSet<_> = first.iter().chain(&second).map(|j| j.id.clone()).collect();
    assert_eq!(ids.len() as i64, queue::PAGE_SIZE + 7, "no job twice, none missed");
    let (media, _) = queue::failed(&app.db.pool, Some("media"), None, 100).await.unwrap();
    assert!(media.iter().all(|j| j.queue == "media") && media.len() == 28);

    // The page: a link to the next page, which shows the rest.
    let page = admin.get("/admin/jobs").await;
    let href = page.body.split(r#"<a class="button secondary" href=""#).nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let href = href.split('#').next().unwrap().to_string();
    assert!(href.starts_with("/admin/jobs?after="), "{href}");
    let page2 = admin.get(&href).await;
    page2.assert_status(200);
    assert_eq!(page2.body.matches(r#"class="failed-job""#).count(), 7);
    // Junk cursors and queues: the first page, or 404 for a queue name that cannot be.
    admin.get("/admin/jobs?after=garbage").await.assert_status(200);
    admin.get("/admin/jobs?queue=no%20such%27queue").await.assert_status(404);
    admin.get("/admin/jobs?queue=media").await.assert_status(200).assert_contains("Failed jobs in media");
}

#[tokio::test]
async fn workers_are_listed_with_their_queues_and_heartbeat() {
    let app = TestApp::new().await;
    let admin = user(&app, "ada", "admin").await;
    for (id, q, ago) in [("mail@box:1:aa", "mail", 5), ("media@box:1:aa", "media", 3), ("mail@old:2:bb", "mail", 300), ("mail@ancient:3:cc", "mail", 7200)] {
        sqlx::query(
            "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen, started_at)
             VALUES ($1, $2, 'PostgresStorage', '', now() - make_interval(secs => $3), now() - interval '1 hour')",
        )
        .bind(id)
        .bind(q)
        .bind(ago as f64)
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    let workers = queue::workers(&app.db.pool).await.unwrap();
    assert_eq!(workers.len(), 2, "the one silent for 2 h is not listed: {workers:?}");
    assert_eq!(workers[0].process, "box:1:aa");
    assert_eq!(workers[0].queues, ["mail", "media"]);
    assert!(workers[0].alive && !workers[1].alive);
    admin.get("/admin/jobs").await.assert_contains("1 of 2 worker processes");
}

#[tokio::test]
async fn the_purge_deletes_what_is_past_its_retention_only() {
    let app = TestApp::new().await;
    let day = 86400.0;
    let old_done = job(&app, "mail", "Done", 1, 5, Some(8.0 * day), None).await;
    let new_done = job(&app, "mail", "Done", 1, 5, Some(6.0 * day), None).await;
    let old_failed = failed(&app, "mail", "x").await;
    sqlx::query("UPDATE apalis.jobs SET done_at = now() - interval '31 days' WHERE id = $1").bind(&old_failed).execute(&app.db.pool).await.unwrap();
    let new_failed = job(&app, "mail", "Killed", 1, 5, Some(10.0 * day), Some("y")).await;
    let pending = job(&app, "mail", "Pending", 0, 5, None, None).await;
    sqlx::query(
        "INSERT INTO sent_emails (job_key, recipient, subject, sent_at) VALUES
           ('old', 'user:1', 's', now() - interval '31 days'), ('new', 'user:1', 's', now() - interval '29 days')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let purged = queue::purge(&app.db.pool).await.unwrap();
    assert_eq!((purged.done_jobs, purged.failed_jobs, purged.sent_emails), (1, 1, 1));
    assert_eq!(status(&app, &old_done).await, None);
    assert_eq!(status(&app, &old_failed).await, None);
    for id in [&new_done, &new_failed, &pending] {
        assert!(status(&app, id).await.is_some());
    }
    assert_eq!(app.count("SELECT count(*) FROM sent_emails WHERE job_key = 'new'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM sent_emails").await, 1);
}

#[tokio::test]
async fn the_purge_works_in_batches_until_done() {
    let app = TestApp::new().await;
    let n = queue::PURGE_BATCH * 2 + 17;
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at)
         SELECT 'P' || g, 'default', '\\x7b7d'::bytea, 'Done', 1, 5, now() - interval '9 days', 0, now() - interval '8 days'
           FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let purged = queue::purge(&app.db.pool).await.unwrap();
    assert_eq!(purged.done_jobs as i64, n);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, 0);
}

#[tokio::test]
async fn two_admins_retrying_at_once_retry_once() {
    let app = TestApp::new().await;
    let id = failed(&app, "mail", "x").await;
    let mut t1 = app.db.pool.begin().await.unwrap();
    queue::retry(&mut t1, &id).await.unwrap();
    let pool = app.db.pool.clone();
    let id2 = id.clone();
    let second = tokio::spawn(async move {
        let mut t2 = pool.begin().await.unwrap();
        let r = queue::retry_many(&mut t2, &Selection::Ids(vec![id2])).await.unwrap();
        t2.commit().await.unwrap();
        r
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "the second waits for the first's row lock");
    t1.commit().await.unwrap();
    let out = second.await.unwrap();
    assert!(out.changed.is_empty(), "the second sees the job pending and leaves it alone");
    assert_eq!(out.not_failed.len(), 1);
}

#[tokio::test]
async fn the_demo_seed_leaves_one_failed_job_to_retry() {
    let app = TestApp::new().await;
    let media = std::env::temp_dir().join(format!("quire-seed-{}", uuid::Uuid::new_v4().simple()));
    let storage = app::storage::Storage::local(&media).unwrap();
    let db = app.db.db();
    app::seed::run(&db, &storage).await.unwrap();
    app::seed::run(&db, &storage).await.unwrap();
    let (all, _) = queue::failed(&app.db.pool, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "one failed job, also after a second seed: {all:?}");
    assert_eq!((all[0].name.as_str(), all[0].queue.as_str()), ("noop", "default"));
    assert!(all[0].error.contains("seeded failure"));
    let ada = app.new_browser();
    ada.login("ada", app::seed::DEMO_PASSWORD).await.assert_status(303);
    ada.get("/admin/jobs").await.assert_status(200).assert_contains(&format!(r#"id="job-{}""#, all[0].id));
    let _ = std::fs::remove_dir_all(media);
}

/// Workers wake on `apalis::job::insert`; the trigger (migration 20261205000001) sends
/// one notification per INSERT statement and queue, with one payload per queue, which
/// PostgreSQL folds to one per transaction: 300 jobs enqueued in one transaction, as
/// 200 single INSERTs plus one 100-row INSERT, wake a listener once, and the payload
/// still parses as apalis's `Pubsub` expects.
#[tokio::test]
async fn enqueueing_a_batch_sends_one_notification_per_transaction() {
    use app::jobs::maintenance::Noop;
    let app = TestApp::new().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.db.pool).await.unwrap();
    listener.listen("apalis::job::insert").await.unwrap();
    let mut tx = app.db.pool.begin().await.unwrap();
    for _ in 0..200 {
        app::jobs::enqueue(&mut tx, &Noop::default(), None).await.unwrap();
    }
    app::jobs::enqueue_many(&mut tx, &vec![Noop::default(); 100], None).await.unwrap();
    tx.commit().await.unwrap();
    let mut payloads = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(500), listener.recv()).await {
        payloads.push(n.payload().to_string());
    }
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let event: apalis_postgres::InsertEvent = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(event.job_type, app::jobs::QUEUE_DEFAULT);
}
