//! Account deletion and the media worker: the `delete_media` jobs a deletion queues
//! remove every file of the account's images (original and variants) and then their rows,
//! in both modes: `anonymise` keeps the story but not its cover, `delete` loses both.

#[path = "../../app/tests/common/mod.rs"]
mod common;

use std::{sync::Arc, time::Duration};

use app::templates::Templates;
use common::TestApp;
use worker::{
    jobs::JobContext,
    mailer::Mailer,
    runtime::{self, Options},
};

const PW: &str = "correct horse battery";

fn start_media_worker(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let ctx = Arc::new(JobContext {
        db: app.db.db(),
        storage: app.state.storage.clone(),
        config: app.state.config.clone(),
        templates: Templates::new(|_| None).unwrap(),
        mailer: Mailer::files(app.mail_dir.clone()),
    });
    let options = Options { queues: vec!["media".into()], retry_min_delay: Duration::from_millis(50), ..Options::default() };
    tokio::spawn(async move {
        let _ = runtime::monitor(ctx, &options).run().await;
    })
}

async fn wait_for(app: &TestApp, what: &str, sql: &str, want: i64) {
    let start = std::time::Instant::now();
    while app.count(sql).await != want {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn writer_with_cover(app: &TestApp, name: &str) -> (TestApp, i64) {
    let w = app.new_browser();
    w.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now(), role = 'writer' WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    let png = app::seed::gradient_png(600, 400, [20, 40, 80], [240, 200, 120]);
    let (ct, body) = common::multipart(&w.csrf_token().await, &[("title", "Pictured"), ("summary", ""), ("tags", "")], Some(("cover", "cover.png", &png)));
    let r = w.post_raw("/stories", &ct, body, &[]).await;
    r.assert_status(303);
    let story = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    w.post_form(&format!("/s/{story}/chapters"), &[("title", "One"), ("body", "Words.")]).await.assert_status(303);
    w.post_form(&format!("/s/{story}/edit"), &[("status", "published")]).await.assert_status(303);
    (w, story)
}

/// Every storage key of the media rows owned by `owner`.
async fn keys_of(app: &TestApp, owner: &str) -> Vec<String> {
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT m.original_key, m.variants FROM media m JOIN users u ON u.id = m.owner_id WHERE u.username = $1")
            .bind(owner)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    rows.into_iter()
        .flat_map(|(original, variants)| {
            std::iter::once(original).chain(variants.as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap().to_string()).collect::<Vec<_>>())
        })
        .collect()
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
async fn a_deleted_accounts_images_leave_storage_in_both_modes() {
    let app = TestApp::new().await;
    let (alice, kept) = writer_with_cover(&app, "alice").await;
    let (bob, gone) = writer_with_cover(&app, "bob").await;
    let worker = start_media_worker(&app);
    wait_for(&app, "both covers processed", "SELECT count(*) FROM media WHERE status = 'ready'", 2).await;
    let (alice_keys, bob_keys) = (keys_of(&app, "alice").await, keys_of(&app, "bob").await);
    assert!(alice_keys.len() >= 3 && bob_keys.len() >= 3, "the originals and their variants: {alice_keys:?} {bob_keys:?}");
    assert_eq!(stored(&app, &alice_keys).await + stored(&app, &bob_keys).await, alice_keys.len() + bob_keys.len());

    alice.post_form("/settings/delete", &[("password", PW), ("content", "anonymise")]).await.assert_status(303);
    bob.post_form("/settings/delete", &[("password", PW), ("content", "delete")]).await.assert_status(303);
    wait_for(&app, "the media rows to go", "SELECT count(*) FROM media", 0).await;
    wait_for(&app, "the media jobs to finish", "SELECT count(*) FROM apalis.jobs WHERE job_type = 'media' AND status <> 'Done'", 0).await;
    worker.abort();
    assert_eq!(stored(&app, &alice_keys).await, 0, "every file of her cover is gone");
    assert_eq!(stored(&app, &bob_keys).await, 0, "every file of his cover is gone");
    // Her story is still there, without its cover; his is gone.
    let reader = app.new_browser();
    let page = reader.get(&format!("/s/{kept}")).await;
    page.assert_status(200).assert_contains("deleted user");
    assert!(!page.body.contains("<picture"), "no cover any more");
    reader.get(&format!("/s/{gone}")).await.assert_status(404);
}
