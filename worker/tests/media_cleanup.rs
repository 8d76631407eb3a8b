//! DeleteMedia: a replaced cover's or avatar's original and variants leave storage, then
//! its row; never a row still in use; safe to run twice; and a ProcessImage that finishes
//! after the deletion does not leave its variants behind.

#[path = "../../app/tests/common/mod.rs"]
mod common;

use std::{sync::Arc, time::Duration};

use app::{
    jobs::media::{DeleteMedia, ProcessImage},
    templates::Templates,
};
use common::TestApp;
use worker::{
    jobs::{JobContext, Run},
    mailer::Mailer,
    runtime::{self, Options},
};

const PW: &str = "correct horse battery";

fn job_context(app: &TestApp) -> Arc<JobContext> {
    Arc::new(JobContext {
        db: app.db.db(),
        storage: app.state.storage.clone(),
        config: app.state.config.clone(),
        templates: Templates::new(|_| None).unwrap(),
        mailer: Mailer::files(app.mail_dir.clone()),
    })
}

fn start_media_worker(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let ctx = job_context(app);
    let options = Options { queues: vec!["media".into()], retry_min_delay: Duration::from_millis(50), ..Options::default() };
    tokio::spawn(async move {
        let _ = runtime::monitor(ctx, &options).run().await;
    })
}

async fn wait_until(app: &TestApp, what: &str, sql: &str) {
    let start = std::time::Instant::now();
    while app.count(sql).await != 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn verified_writer(app: &TestApp, name: &str) -> TestApp {
    let w = app.new_browser();
    w.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    w
}

async fn new_story(w: &TestApp, png: &[u8]) -> i64 {
    let (ct, body) = common::multipart(&w.csrf_token().await, &[("title", "Pictured"), ("summary", ""), ("tags", "")], Some(("cover", "cover.png", png)));
    let r = w.post_raw("/stories", &ct, body, &[]).await;
    r.assert_status(303);
    r.location().unwrap().trim_start_matches("/s/").parse().unwrap()
}

async fn replace_cover(w: &TestApp, story: i64, png: &[u8]) {
    let (ct, body) = common::multipart(&w.csrf_token().await, &[("status", "draft")], Some(("cover", "cover.png", png)));
    w.post_raw(&format!("/s/{story}/edit"), &ct, body, &[]).await.assert_status(303);
}

/// (id, public id, every storage key) of the story's current cover.
async fn cover(app: &TestApp, story: i64) -> (i64, uuid::Uuid, Vec<String>) {
    let (id, public_id, original, variants): (i64, uuid::Uuid, String, serde_json::Value) = sqlx::query_as(
        "SELECT m.id, m.public_id, m.original_key, m.variants FROM stories s JOIN media m ON m.id = s.cover_id WHERE s.id = $1",
    )
    .bind(story)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let mut keys = vec![original];
    keys.extend(variants.as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap().to_string()));
    (id, public_id, keys)
}

async fn stored(app: &TestApp, keys: &[String]) -> usize {
    let mut n = 0;
    for k in keys {
        if app.state.storage.exists(k).await.unwrap() {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn a_replaced_cover_loses_its_files_and_row_and_the_new_one_shows() {
    let app = TestApp::new().await;
    let w = verified_writer(&app, "pat").await;
    let first = app::seed::gradient_png(900, 600, [20, 40, 80], [240, 200, 120]);
    let story = new_story(&w, &first).await;
    let worker = start_media_worker(&app);
    wait_until(&app, "the first cover", "SELECT count(*) FROM media WHERE status = 'ready'").await;
    let (old_id, old_public, old_keys) = cover(&app, story).await;
    assert_eq!(old_keys.len(), 1 + 4, "the original, and WebP + JPEG at 320 and 800 px");
    for key in &old_keys[1..] {
        assert!(key.starts_with(&format!("variants/{}/", old_public.simple())), "variant keys name the public id: {key}");
    }
    assert_eq!(stored(&app, &old_keys).await, old_keys.len());

    let second = app::seed::gradient_png(700, 500, [200, 10, 10], [10, 10, 200]);
    replace_cover(&w, story, &second).await;
    let start = std::time::Instant::now();
    while app.count(&format!("SELECT count(*) FROM media WHERE id = {old_id}")).await != 0
        || app.count("SELECT count(*) FROM media WHERE status = 'ready'").await != 1
        || app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media' AND status <> 'Done'").await != 0
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the old cover was not deleted, or the new one not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();
    assert_eq!(stored(&app, &old_keys).await, 0, "the original and every variant of the old cover are gone");
    assert_eq!(app.count("SELECT count(*) FROM media").await, 1);

    // The new cover shows; the old one's figure and files are gone for its owner too.
    let (new_id, new_public, new_keys) = cover(&app, story).await;
    assert_eq!(stored(&app, &new_keys).await, new_keys.len());
    let page = w.get(&format!("/s/{story}")).await;
    // (Templates escape the `/` of a key: look for its file name.)
    page.assert_status(200).assert_contains("<picture").assert_contains(new_keys[1].rsplit('/').next().unwrap());
    assert!(!page.body.contains(&old_public.simple().to_string()));
    w.get(&format!("/m/{new_public}/figure")).await.assert_status(200).assert_contains("<picture");
    w.get(&format!("/m/{old_public}/figure")).await.assert_status(404);
    w.get(&format!("/media/{}", old_keys[1])).await.assert_status(404);

    // Run again (a retry): nothing left to do, no error. On the cover in use: refused.
    let ctx = job_context(&app);
    DeleteMedia { media_id: old_id }.run(&ctx).await.unwrap();
    DeleteMedia { media_id: new_id }.run(&ctx).await.unwrap();
    assert_eq!(app.count(&format!("SELECT count(*) FROM media WHERE id = {new_id}")).await, 1);
    assert_eq!(stored(&app, &new_keys).await, new_keys.len(), "a cover in use keeps its files");
    // Both ProcessImage jobs and the DeleteMedia job succeeded (the loop above waited).
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media' AND status = 'Done'").await, 3);
}

#[tokio::test]
async fn a_replaced_avatar_is_deleted_but_never_one_in_use() {
    let app = TestApp::new().await;
    let w = verified_writer(&app, "ray").await;
    let set_avatar = |seed: u8| {
        let w = &w;
        async move {
            let png = app::seed::gradient_png(200, 200, [seed, 0, 0], [0, 0, seed]);
            let (ct, body) = common::multipart(&w.csrf_token().await, &[("display_name", "Ray"), ("bio", "")], Some(("avatar", "avatar.png", &png)));
            w.post_raw("/settings", &ct, body, &[]).await.assert_status(303);
        }
    };
    set_avatar(10).await;
    let avatar = || async {
        sqlx::query_as::<_, (i64, String)>("SELECT m.id, m.original_key FROM users u JOIN media m ON m.id = u.avatar_id")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    let (old_id, old_original) = avatar().await;
    set_avatar(20).await;
    let (new_id, new_original) = avatar().await;
    // Its ProcessImage still queued, its DeleteMedia too: run the deletion first.
    let ctx = job_context(&app);
    DeleteMedia { media_id: new_id }.run(&ctx).await.unwrap();
    assert!(app.state.storage.exists(&new_original).await.unwrap(), "the avatar in use is untouched");
    DeleteMedia { media_id: old_id }.run(&ctx).await.unwrap();
    assert!(!app.state.storage.exists(&old_original).await.unwrap());
    assert_eq!(app.count(&format!("SELECT count(*) FROM media WHERE id = {old_id}")).await, 0);
    // The old one's processing job then finds nothing to do.
    ProcessImage { media_id: old_id }.run(&ctx).await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM media").await, 1);
    w.get("/u/ray").await.assert_status(200);
}

/// DeleteMedia locks the row while it deletes; a ProcessImage of that same image that was
/// already decoding stores its variants, then waits for the lock and finds the row gone:
/// it must delete what it just stored, or those files would stay forever.
#[tokio::test]
async fn variants_made_while_the_image_was_being_deleted_are_removed() {
    let app = TestApp::new().await;
    let w = verified_writer(&app, "sue").await;
    let story = new_story(&w, &app::seed::gradient_png(900, 600, [1, 2, 3], [250, 250, 250])).await;
    let (old_id, old_public, old_keys) = cover(&app, story).await;
    replace_cover(&w, story, &app::seed::gradient_png(400, 300, [9, 9, 9], [90, 90, 90])).await;

    // What DeleteMedia does, held open.
    let mut tx = app.db.pool.begin().await.unwrap();
    let keys = app::media::db::lock_unreferenced(&mut tx, old_id).await.unwrap().expect("unreferenced now");
    assert_eq!(keys, old_keys, "not processed yet: only the original");

    let ctx = job_context(&app);
    let processing = tokio::spawn({
        let ctx = ctx.clone();
        async move { ProcessImage { media_id: old_id }.run(&ctx).await }
    });
    // Until ProcessImage waits on the row lock (its variants stored by then).
    let start = std::time::Instant::now();
    while app.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").await != 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "ProcessImage never waited for the lock");
        assert!(!processing.is_finished(), "ProcessImage finished without waiting: {:?}", processing.await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let variants_dir = app.state.config.media_root.join("variants").join(old_public.simple().to_string());
    assert!(count_files(&variants_dir) > 0, "the variants were stored before the lock wait");
    for k in &keys {
        app.state.storage.delete(k).await.unwrap();
    }
    assert!(app::media::db::delete_unreferenced(&mut tx, old_id).await.unwrap());
    tx.commit().await.unwrap();

    processing.await.unwrap().unwrap();
    assert_eq!(count_files(&variants_dir), 0, "no orphaned variants");
    assert_eq!(app.count(&format!("SELECT count(*) FROM media WHERE id = {old_id}")).await, 0);
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter(|e| e.path().is_file()).count()).unwrap_or(0)
}
