//! Upload → job → variants, end to end: the web route stores the original and queues
//! ProcessImage in its transaction; the worker runtime makes the variants; the page and
//! the `/media/…` responses serve them.

#[path = "../../app/tests/common/mod.rs"]
mod common;

use std::{sync::Arc, time::Duration};

use app::templates::Templates;
use common::TestApp;
use worker::{jobs::JobContext, mailer::Mailer, runtime::{self, Options}};


async fn start_media_worker(app: &TestApp) -> tokio::task::JoinHandle<()> {
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

async fn wait_status(app: &TestApp, status: &str) {
    let start = std::time::Instant::now();
    while app.count(&format!("SELECT count(*) FROM media WHERE status = '{status}'")).await != 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "media never became {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn upload_story(app: &TestApp, png: &[u8]) -> (TestApp, i64) {
    let (w, r) = common::post_story_with_cover(app, png).await;
    r.assert_status(303);
    let id = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    (w, id)
}

#[tokio::test]
async fn an_uploaded_cover_becomes_served_variants() {
    let app = TestApp::new().await;
    let png = app::seed::gradient_png(2000, 1000, [20, 40, 80], [240, 200, 120]);
    let (w, story) = upload_story(&app, &png).await;
    let worker = start_media_worker(&app).await;
    wait_status(&app, "ready").await;

    let (public_id, variants): (uuid::Uuid, serde_json::Value) =
        sqlx::query_as("SELECT public_id, variants FROM media").fetch_one(&app.db.pool).await.unwrap();
    let variants = variants.as_array().unwrap().clone();
    let mut sizes: Vec<(u64, u64, String)> = variants
        .iter()
        .map(|v| (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap(), v["format"].as_str().unwrap().to_string()))
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        vec![
            (320, 160, "jpeg".into()), (320, 160, "webp".into()),
            (800, 400, "jpeg".into()), (800, 400, "webp".into()),
            (1600, 800, "jpeg".into()), (1600, 800, "webp".into()),
        ]
    );
    for v in &variants {
        let key = v["key"].as_str().unwrap();
        let r = w.get(&format!("/media/{key}")).await;
        r.assert_status(200);
        let ct = if v["format"] == "webp" { "image/webp" } else { "image/jpeg" };
        assert_eq!(r.header("content-type"), Some(ct));
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
        let etag = r.header("etag").unwrap().to_string();
        let again = w.get_with(&format!("/media/{key}"), &[("if-none-match", &etag)]).await;
        again.assert_status(304);
        let bytes = app.state.storage.get(key).await.unwrap();
        assert!(!bytes.windows(4).any(|w| w == b"Exif"), "no EXIF in {key}");
    }
    // The figure fragment now answers with the picture and stops polling.
    let frag = w.get(&format!("/m/{public_id}/figure")).await;
    frag.assert_status(200).assert_contains("<picture").assert_contains("srcset=");
    assert!(!frag.body.contains("hx-get"), "polling stops once ready");
    let page = w.get(&format!("/s/{story}")).await;
    page.assert_contains("image/webp").assert_contains("width=\"1600\" height=\"800\"");
    worker.abort();
}

#[tokio::test]
async fn a_corrupt_image_fails_once_with_a_message_for_its_owner() {
    let app = TestApp::new().await;
    // A valid PNG header (so the upload is accepted) with garbage image data.
    let mut png = app::seed::gradient_png(400, 300, [0, 0, 0], [255, 255, 255]);
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut png[idat + 4..idat + 40] {
        *b = 0x5A;
    }
    let (w, story) = upload_story(&app, &png).await;
    let worker = start_media_worker(&app).await;
    wait_status(&app, "failed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (error, attempts): (String, i32) = sqlx::query_as("SELECT m.error, j.attempts FROM media m, apalis.jobs j WHERE j.job_type = 'media'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!error.is_empty());
    assert!(attempts <= 1, "a corrupt file is not retried ({attempts} attempts)");
    w.get(&format!("/s/{story}")).await.assert_contains("This image could not be used");
    // Others see no error message.
    let other = app.new_browser();
    sqlx::query("UPDATE users SET email_verified_at = now()").execute(&app.db.pool).await.unwrap();
    w.post_form(&format!("/s/{story}/edit"), &[("status", "published")]).await.assert_status(303);
    assert!(!other.get(&format!("/s/{story}")).await.body.contains("could not be used"));
    worker.abort();
}
