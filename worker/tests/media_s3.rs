//! Media in an S3-compatible bucket (`MEDIA_URL=s3://bucket/prefix`), against the real S3
//! server `bin/test` starts (s3s-fs: its HTTP, SigV4 checks and XML, over a directory the
//! tests never look into). One web process stores the upload, a worker with its own
//! storage handle makes the variants, and a second web process serves them: three
//! separate clients of the bucket and three empty, unshared `MEDIA_ROOT`s, as on three
//! machines. Then the failures a page must answer well: a missing object (404) and a
//! store that is down (503 with Retry-After, quickly, and nothing half-stored).
//!
//! `QUIRE_TEST_S3_URL` (`http://KEY:SECRET@HOST:PORT/BUCKET`, set by `bin/test`) points at
//! the server; without it (a lone `cargo test` run) the bucket tests say so and pass.

#[path = "../../app/tests/common/mod.rs"]
mod common;

use std::{collections::HashMap, ffi::OsString, path::PathBuf, sync::Arc, time::Duration};

use app::{
    config::{Config, S3Config},
    storage::{Storage, StorageError},
    templates::Templates,
};
use common::TestApp;
use worker::{jobs::JobContext, mailer::Mailer, runtime::{self, Options}};


/// The S3 configuration for `endpoint` as an operator writes it, read by the real
/// `Config::read` (so the variables' names and checks are what is tested too).
fn s3_config(endpoint: &str, key: &str, secret: &str, bucket_and_prefix: &str) -> S3Config {
    let vars: HashMap<&str, String> = HashMap::from([
        ("APP_ENV", "development".to_string()),
        ("DATABASE_URL", "postgres://quire@127.0.0.1:5432/quire".to_string()),
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef-test".to_string()),
        ("MEDIA_URL", format!("s3://{bucket_and_prefix}")),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", key.to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("MEDIA_TIMEOUT_SECS", "5".to_string()),
    ]);
    let config = Config::read(|name| vars.get(name).map(OsString::from)).expect("the S3 configuration is accepted");
    config.media_s3.expect("MEDIA_URL selects S3")
}

/// The test server's bucket, under a prefix of its own (tests run in parallel), or None
/// (and a line saying why) when `QUIRE_TEST_S3_URL` is unset.
fn test_bucket() -> Option<S3Config> {
    let Ok(raw) = std::env::var("QUIRE_TEST_S3_URL") else {
        eprintln!("QUIRE_TEST_S3_URL is unset: skipping (bin/test starts s3s-fs and sets it)");
        return None;
    };
    let url = url::Url::parse(&raw).expect("QUIRE_TEST_S3_URL is http://KEY:SECRET@HOST:PORT/BUCKET");
    let endpoint = format!("http://{}:{}", url.host_str().expect("host"), url.port().expect("port"));
    let bucket = url.path().trim_matches('/');
    let prefix = format!("{bucket}/t-{}", uuid::Uuid::new_v4().simple());
    Some(s3_config(&endpoint, url.username(), url.password().expect("secret"), &prefix))
}

/// A fresh empty directory: a process's own `MEDIA_ROOT`, which must stay empty.
fn empty_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quire-s3-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_under(dir: &std::path::Path) -> usize {
    fn walk(d: &std::path::Path) -> usize {
        std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()).unwrap_or(0)
    }
    walk(dir)
}

/// A worker process on the same database: its own configuration and its own storage
/// handle built from it, as `worker` builds it at start.
fn start_media_worker(app: &TestApp, s3: &S3Config, media_root: PathBuf) -> tokio::task::JoinHandle<()> {
    let mut config = Config::for_tests(&app.db.url, app.mail_dir.clone());
    config.media_s3 = Some(s3.clone());
    config.media_root = media_root;
    let ctx = Arc::new(JobContext {
        db: app.db.db(),
        storage: Storage::from_config(&config).expect("worker storage"),
        config: Arc::new(config),
        templates: Templates::new(|_| None).unwrap(),
        mailer: Mailer::files(app.mail_dir.clone()),
    });
    let options = Options { queues: vec!["media".into()], retry_min_delay: Duration::from_millis(50), ..Options::default() };
    tokio::spawn(async move {
        let _ = runtime::monitor(ctx, &options).run().await;
    })
}

#[tokio::test]
async fn media_written_by_one_process_is_processed_and_served_by_others_through_s3() {
    let Some(s3) = test_bucket() else { return };
    let roots = [empty_dir("web1"), empty_dir("worker"), empty_dir("web2")];
    let web1 = TestApp::with_config(|c| {
        c.media_s3 = Some(s3.clone());
        c.media_root = roots[0].clone();
    })
    .await;
    let png = app::seed::gradient_png(1200, 600, [20, 40, 80], [240, 200, 120]);
    let (_writer, r) = common::post_story_with_cover(&web1, &png).await;
    r.assert_status(303);

    // The original is in the bucket, byte for byte, and nowhere on this machine's disk.
    let (original_key, public_id): (String, uuid::Uuid) =
        sqlx::query_as("SELECT original_key, public_id FROM media").fetch_one(&web1.db.pool).await.unwrap();
    let bucket = Storage::from_config(&{
        let mut c = Config::for_tests(&web1.db.url, empty_dir("reader"));
        c.media_s3 = Some(s3.clone());
        c
    })
    .unwrap();
    assert_eq!(bucket.get(&original_key).await.unwrap().as_ref(), &png[..], "the original as uploaded");

    let worker = start_media_worker(&web1, &s3, roots[1].clone());
    let start = std::time::Instant::now();
    while web1.count("SELECT count(*) FROM media WHERE status = 'ready'").await != 1 {
        let failed: Option<String> = sqlx::query_scalar("SELECT error FROM media WHERE status = 'failed'").fetch_optional(&web1.db.pool).await.unwrap();
        assert!(failed.is_none(), "processing failed: {failed:?}");
        assert!(start.elapsed() < Duration::from_secs(60), "the media job never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();

    // A second web process, sharing only the database and the bucket.
    let web2 = web1.another_process_with(|c| {
        c.media_s3 = Some(s3.clone());
        c.media_root = roots[2].clone();
    })
    .await;
    let variants: serde_json::Value = sqlx::query_scalar("SELECT variants FROM media").fetch_one(&web1.db.pool).await.unwrap();
    let variants = variants.as_array().unwrap();
    // 1200 px wide: the 320 and 800 px widths (no upscaled 1600), each in WebP and JPEG.
    assert_eq!(variants.len(), 4, "two widths in two formats: {variants:?}");
    for v in variants {
        let key = v["key"].as_str().unwrap();
        assert!(key.starts_with(&format!("variants/{}/", public_id.simple())) || key.starts_with(&format!("variants/{public_id}/")), "{key}");
        let (status, headers, body) = web2.get_bytes(&format!("/media/{key}"), &[]).await;
        assert_eq!(status.as_u16(), 200, "{key}");
        let format = v["format"].as_str().unwrap();
        assert_eq!(headers.get("content-type").unwrap(), if format == "webp" { "image/webp" } else { "image/jpeg" });
        assert_eq!(headers.get("cache-control").unwrap(), "public, max-age=31536000, immutable");
        assert_eq!(headers.get("content-length").unwrap().to_str().unwrap(), body.len().to_string());
        // Real image bytes: the variant decodes, at the size its row says.
        let decoded = image::load_from_memory(&body).unwrap_or_else(|e| panic!("{key} does not decode: {e}"));
        assert_eq!((decoded.width() as u64, decoded.height() as u64), (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap()), "{key}");
    }
    // Originals stay private in the bucket too: never served.
    web2.get(&format!("/media/{original_key}")).await.assert_status(404);
    // A variant that is not (or no longer) in the bucket: the 404 page, not a 500 or a hang.
    let missing = format!("variants/{public_id}/0123456789abcdef-320.webp");
    let r = web2.get(&format!("/media/{missing}")).await;
    r.assert_status(404);
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "the error page");
    assert!(r.header("cache-control").is_none_or(|c| !c.contains("immutable")), "a 404 is not cached forever");

    // Nothing went to any process's local disk.
    for root in &roots {
        assert_eq!(files_under(root), 0, "{} stays empty", root.display());
        let _ = std::fs::remove_dir_all(root);
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused_by_the_server_and_answered_with_503() {
    let Some(good) = test_bucket() else { return };
    let bad = S3Config { secret_access_key: Some("not-the-secret".into()), ..good.clone() };
    let storage = Storage::s3(&bad).unwrap();
    // The server checks signatures for real: the wrong secret is refused, not ignored.
    let err = storage.put("originals/00/1.png", bytes::Bytes::from_static(b"x")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let app = TestApp::with_config(|c| c.media_s3 = Some(bad.clone())).await;
    let r = app.get("/media/variants/00000000000000000000000000000000/0123456789abcdef-320.webp").await;
    r.assert_status(503);
    // With the right one the same call succeeds.
    Storage::s3(&good).unwrap().put("originals/00/1.png", bytes::Bytes::from_static(b"x")).await.unwrap();
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_quickly_and_stores_nothing() {
    // A port where nothing listens: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = s3_config(&format!("http://127.0.0.1:{port}"), "key", "secret", "quire-test/down");
    let storage = Storage::s3(&down).unwrap();
    let t0 = std::time::Instant::now();
    match storage.get("variants/ab/cd-320.webp").await {
        Err(e) if e.is_unavailable() => {}
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    eprintln!("store down: Storage::get failed in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "a refused connection fails fast ({:?})", t0.elapsed());
    assert!(!matches!(storage.exists("originals/ab/cd.png").await, Ok(_) | Err(StorageError::NotFound(_))), "down is not `missing`");

    let app = TestApp::with_config(|c| c.media_s3 = Some(down.clone())).await;
    let t0 = std::time::Instant::now();
    let r = app.get("/media/variants/00000000000000000000000000000000/0123456789abcdef-320.webp").await;
    r.assert_status(503);
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "the error page");
    assert_eq!(r.header("retry-after"), Some("5"));
    r.assert_contains("Images and files are unavailable for a moment");
    eprintln!("store down: /media/… answered 503 in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5), "answered within the deadline ({:?})", t0.elapsed());

    // An upload while the store is down: a 503, and neither a media row nor a job is left
    // behind (the original is stored inside the row's transaction).
    let png = app::seed::gradient_png(400, 300, [0, 0, 0], [255, 255, 255]);
    let (_writer, r) = common::post_story_with_cover(&app, &png).await;
    r.assert_status(503);
    assert_eq!(app.count("SELECT count(*) FROM media").await, 0, "no media row");
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 0, "no job");
}

#[tokio::test]
async fn a_store_that_accepts_but_never_answers_is_cut_off_at_the_deadline() {
    // Takes connections and reads nothing back: a hung server, or a black-holed network.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let hung = S3Config {
        timeout: Duration::from_secs(1),
        ..s3_config(&format!("http://127.0.0.1:{port}"), "key", "secret", "quire-test/hung")
    };
    let storage = Storage::s3(&hung).unwrap();
    let t0 = std::time::Instant::now();
    let err = storage.put("originals/ab/cd.png", bytes::Bytes::from_static(b"png")).await.unwrap_err();
    eprintln!("store hung: Storage::put gave up after {:?}: {err}", t0.elapsed());
    assert!(err.is_unavailable(), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(900), "it waited for the deadline ({:?})", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(3), "and not much longer ({:?})", t0.elapsed());

    let app = TestApp::with_config(|c| c.media_s3 = Some(hung.clone())).await;
    let t0 = std::time::Instant::now();
    app.get("/media/variants/00000000000000000000000000000000/0123456789abcdef-320.webp").await.assert_status(503);
    eprintln!("store hung: /media/… answered 503 after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    held.abort();
}
