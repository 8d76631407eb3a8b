//! The data export end to end: an account of 20 stories with 200 chapters, 20 images
//! (19 covers and an avatar, real PNGs), comments, likes and follows asks for its export
//! on the web; the real worker runtime builds the ZIP and mails the link; the ZIP opens
//! and holds every chapter (Markdown and HTML), every image byte for byte, and a manifest
//! that lists every file with its size and hash; the link downloads it; after 24 hours
//! the maintenance job deletes the file and the link answers 410.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod support;

use std::{collections::BTreeMap, io::Read, time::Duration};

use app::jobs::{
    Envelope, Job,
    export::{BuildExport, SendExportReady},
    maintenance::PurgeExpired,
};
use common::TestApp;
use sha2::{Digest, Sha256};
use support::{job_context, start_worker, wait_for};
use worker::{
    jobs::{Run, run_envelope},
    mailer::Mailer,
    runtime::Options,
};

const PW: &str = "correct horse battery";
const STORIES: i64 = 20;
const CHAPTERS_EACH: i32 = 10;

fn envelope<J: Job>(job: &J) -> Envelope {
    Envelope { name: J::NAME.into(), args: serde_json::to_value(job).unwrap(), request_id: None }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The account: stories with covers, chapters, an avatar, comments, likes, follows.
/// Returns (user id, {original key → PNG bytes}).
async fn big_account(app: &TestApp) -> (i64, BTreeMap<String, Vec<u8>>) {
    let pool = &app.db.pool;
    let pat: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'pat'").fetch_one(pool).await.unwrap();
    sqlx::query("UPDATE users SET email_verified_at = now(), display_name = 'Pat Writer', bio = 'Writes <things> & more.' WHERE id = $1")
        .bind(pat)
        .execute(pool)
        .await
        .unwrap();
    let mut images = BTreeMap::new();
    let mut new_image = async |purpose: &str, n: u8| -> i64 {
        let png = app::seed::gradient_png(64 + u32::from(n), 48, [n, 40, 80], [240, 200 - n, 120]);
        let key = format!("originals/{:02x}/{}.png", n, uuid::Uuid::new_v4().simple());
        app.state.storage.put(&key, png.clone().into()).await.unwrap();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height)
             VALUES ($1, $2, $3, 'image/png', $4, 64, 48) RETURNING id",
        )
        .bind(pat)
        .bind(purpose)
        .bind(&key)
        .bind(png.len() as i32)
        .fetch_one(pool)
        .await
        .unwrap();
        images.insert(key, png);
        id
    };
    let avatar = new_image("avatar", 0).await;
    sqlx::query("UPDATE users SET avatar_id = $2 WHERE id = $1").bind(pat).bind(avatar).execute(pool).await.unwrap();
    for s in 1..=STORIES {
        // The last story has no cover: 19 covers and the avatar make the 20 images.
        let cover = if s < STORIES { Some(new_image("cover", s as u8).await) } else { None };
        let published = s % 4 != 0;
        let story: i64 = sqlx::query_scalar(
            "INSERT INTO stories (author_id, title, summary, status, published_at, cover_id)
             VALUES ($1, $2, 'A summary.', $3, CASE WHEN $4 THEN now() END, $5) RETURNING id",
        )
        .bind(pat)
        .bind(format!("Story number {s}: the “long” night"))
        .bind(if published { "published" } else { "draft" })
        .bind(published)
        .bind(cover)
        .fetch_one(pool)
        .await
        .unwrap();
        for n in 1..=CHAPTERS_EACH {
            let md = format!("# Part {n}\n\nIt was a *dark* night in story {s}, chapter {n}. {}\n", "Words & more words. ".repeat(50));
            let html = app::markdown::render(&md);
            sqlx::query(
                "INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count) VALUES ($1, $2, $3, $4, $5, 100)",
            )
            .bind(story)
            .bind(n)
            .bind(format!("Chapter {n} <of {CHAPTERS_EACH}>"))
            .bind(&md)
            .bind(&html)
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query("UPDATE stories SET chapter_count = $2 WHERE id = $1").bind(story).bind(CHAPTERS_EACH).execute(pool).await.unwrap();
    }
    // Someone else's story, which pat likes and comments on; a follow each way.
    let sam: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'sam'").fetch_one(pool).await.unwrap();
    let theirs: i64 = sqlx::query_scalar("INSERT INTO stories (author_id, title, status, published_at) VALUES ($1, 'Sam''s', 'published', now()) RETURNING id")
        .bind(sam)
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO likes (story_id, user_id) VALUES ($1, $2)").bind(theirs).bind(pat).execute(pool).await.unwrap();
    for i in 0..150 {
        sqlx::query("INSERT INTO comments (story_id, author_id, body_markdown, body_html) VALUES ($1, $2, $3, '<p>x</p>')")
            .bind(theirs)
            .bind(pat)
            .bind(format!("Comment {i}"))
            .execute(pool)
            .await
            .unwrap();
    }
    // A deleted comment has no text left and is not exported.
    sqlx::query("INSERT INTO comments (story_id, author_id, body_markdown, body_html, deleted_at) VALUES ($1, $2, '', '', now())")
        .bind(theirs)
        .bind(pat)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2), ($2, $1)").bind(pat).bind(sam).execute(pool).await.unwrap();
    (pat, images)
}

/// The ZIP's entries: name → bytes.
fn entries(path: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        assert!(out.insert(f.name().unwrap().to_string(), bytes).is_none(), "one entry per name");
    }
    out
}

fn json(files: &BTreeMap<String, Vec<u8>>, name: &str) -> serde_json::Value {
    serde_json::from_slice(files.get(name).unwrap_or_else(|| panic!("{name} in the ZIP"))).unwrap()
}

#[tokio::test]
async fn an_account_of_200_chapters_and_20_images_exports_whole_and_expires() {
    let app = TestApp::new().await;
    let w = app.new_browser();
    w.signup("pat", "pat@example.com", PW).await.assert_status(303);
    app.new_browser().signup("sam", "sam@example.com", PW).await.assert_status(303);
    let (pat, images) = big_account(&app).await;
    assert_eq!(images.len(), 20);
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap(); // the signups' mails

    w.post_form("/settings/export", &[]).await.assert_status(303);
    let export_id: i64 = sqlx::query_scalar("SELECT id FROM exports WHERE user_id = $1").bind(pat).fetch_one(&app.db.pool).await.unwrap();

    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let options = Options { queues: vec!["media".into(), "mail".into()], retry_min_delay: Duration::from_millis(50), ..Options::default() };
    let started = std::time::Instant::now();
    let worker = start_worker(ctx.clone(), options);
    wait_for("the export to be ready and mailed", Duration::from_secs(60), || async {
        app.count("SELECT count(*) FROM exports WHERE status = 'ready'").await == 1
            && app.count("SELECT count(*) FROM sent_emails WHERE job_key LIKE 'export-%'").await == 1
    })
    .await;
    let took = started.elapsed();
    worker.abort();

    let (status, progress, total, key, byte_size, hours): (String, i32, i32, String, i64, f64) = sqlx::query_as(
        "SELECT status, progress, total, storage_key, byte_size, extract(epoch FROM expires_at - ready_at)::float8 / 3600 FROM exports WHERE id = $1",
    )
    .bind(export_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "ready");
    // 5 JSON files, 20 story.json, 200 chapters, 20 uploads.
    assert_eq!((progress, total), (245, 245));
    assert!((hours - 24.0).abs() < 0.001, "valid 24 hours ({hours})");
    assert!(key.starts_with("exports/"), "{key}");
    let path = app.state.storage.local_path(&key).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as i64, byte_size);
    let staging = app.state.config.media_root.join(app::storage::STAGING_DIR);
    assert_eq!(std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0), 0, "nothing left in staging");

    // The ZIP opens and holds everything.
    let files = entries(&path);
    let manifest = json(&files, "manifest.json");
    assert_eq!(manifest["format"], "quire-export");
    assert_eq!(manifest["account"]["username"], "pat");
    assert_eq!(
        manifest["counts"],
        serde_json::json!({ "stories": 20, "chapters": 200, "comments": 150, "likes": 1, "following": 1, "followers": 1, "uploads": 20 })
    );
    assert_eq!(manifest["missing_uploads"], serde_json::json!([]));
    // The manifest lists every other file, with its true size and hash.
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() - 1);
    for f in listed {
        let name = f["path"].as_str().unwrap();
        let bytes = files.get(name).unwrap_or_else(|| panic!("{name} listed but not in the ZIP"));
        assert_eq!(f["bytes"].as_u64().unwrap(), bytes.len() as u64, "{name}");
        assert_eq!(f["sha256"].as_str().unwrap(), hex(&Sha256::digest(bytes)), "{name}");
    }

    let profile = json(&files, "profile.json");
    assert_eq!(profile["email"], "pat@example.com");
    assert_eq!(profile["bio"], "Writes <things> & more.");
    assert_eq!(profile["avatar"], "avatar.png");
    assert!(profile.get("password_hash").is_none());

    // Every chapter, as Markdown (exactly the source) and as HTML (the rendered body).
    let chapters: Vec<(i64, String, i32, String, String, String)> = sqlx::query_as(
        "SELECT s.id, s.title, c.number, c.title, c.body_markdown, c.body_html FROM chapters c JOIN stories s ON s.id = c.story_id
         WHERE s.author_id = $1 ORDER BY s.id, c.number",
    )
    .bind(pat)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(chapters.len(), 200);
    for (story_id, story_title, number, title, md, html) in &chapters {
        let dir = format!("stories/{}", worker::jobs::export::slug(*story_id, story_title));
        assert_eq!(files.get(&format!("{dir}/chapter-{number:03}.md")), Some(&md.as_bytes().to_vec()), "{dir} {number}");
        let page = String::from_utf8(files[&format!("{dir}/chapter-{number:03}.html")].clone()).unwrap();
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains(html.as_str()), "{dir} {number}: the rendered chapter");
        assert!(page.contains(&app::xml::escape(title)), "the title, escaped");
        let story = json(&files, &format!("{dir}/story.json"));
        assert_eq!(story["title"], story_title.as_str());
        assert_eq!(story["chapters"].as_array().unwrap().len(), CHAPTERS_EACH as usize);
    }
    assert!(dir_names(&files).iter().all(|d| d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')), "safe folder names");
    assert_eq!(dir_names(&files).len(), 20);
    // Every image, byte for byte: the avatar and 19 covers.
    let mut pngs: Vec<&Vec<u8>> = files.iter().filter(|(n, _)| n.ends_with(".png")).map(|(_, b)| b).collect();
    assert_eq!(pngs.len(), 20);
    let mut originals: Vec<&Vec<u8>> = images.values().collect();
    pngs.sort();
    originals.sort();
    assert_eq!(pngs, originals);
    let covers = files.keys().filter(|n| n.ends_with("/cover.png")).count();
    assert_eq!(covers, 19);

    let comments = json(&files, "comments.json");
    let comments = comments.as_array().unwrap();
    assert_eq!(comments.len(), 150);
    assert_eq!(comments[0]["body_markdown"], "Comment 0");
    assert_eq!(comments[149]["story_title"], "Sam's");
    assert_eq!(json(&files, "likes.json")[0]["author"], "sam");
    let follows = json(&files, "follows.json");
    assert_eq!(follows["following"][0]["username"], "sam");
    assert_eq!(follows["followers"][0]["username"], "sam");

    // The mail carries the link; the link downloads the file, in pat's session only.
    let mails: Vec<_> = std::fs::read_dir(&app.mail_dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let raw = std::fs::read(&mails[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(msg.subject(), Some("Your Quire export is ready"));
    let text = msg.body_text(0).unwrap().to_string();
    let at = text.find("http://localhost:8000/exports/").expect("the link");
    let link = &text[at + "http://localhost:8000".len()..][..("/exports/".len() + 43)];
    let r = w.get(link).await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/zip"));
    assert_eq!(r.header("content-length"), Some(byte_size.to_string().as_str()));
    app.new_browser().get(link).await.assert_status(303); // anonymous: log in first

    // Running the job again (a duplicate delivery) changes nothing and mails nothing.
    run_envelope(envelope(&BuildExport { export_id }), &ctx).await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8') LIKE '%send_export_ready%'").await, 1);
    assert!(path.exists());

    // 24 hours later the maintenance job deletes the file; the link says it expired.
    sqlx::query("UPDATE exports SET expires_at = now() - interval '1 second'").execute(&app.db.pool).await.unwrap();
    run_envelope(envelope(&PurgeExpired {}), &ctx).await.unwrap();
    assert!(!path.exists(), "the file is deleted");
    assert_eq!(app.count("SELECT count(*) FROM exports WHERE status = 'expired' AND storage_key IS NULL").await, 1);
    w.get(link).await.assert_status(410);
    w.get("/settings/export").await.assert_contains("has expired");
    // A mail job still queued for it would send nothing now.
    let key: uuid::Uuid = uuid::Uuid::new_v4();
    run_envelope(envelope(&SendExportReady { key, export_id }), &ctx).await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM sent_emails WHERE job_key LIKE 'export-%'").await, 1);
    eprintln!("export of 200 chapters and 20 images: {byte_size} bytes, ready and mailed in {took:?}");
}

/// The story folders of the ZIP.
fn dir_names(files: &BTreeMap<String, Vec<u8>>) -> std::collections::BTreeSet<String> {
    files.keys().filter_map(|n| n.strip_prefix("stories/")).filter_map(|n| n.split('/').next()).map(str::to_string).collect()
}

#[tokio::test]
async fn an_export_that_gives_up_is_failed_and_a_missing_original_is_listed_not_fatal() {
    let app = TestApp::new().await;
    let w = app.new_browser();
    w.signup("pat", "pat@example.com", PW).await.assert_status(303);
    let pat: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'pat'").fetch_one(&app.db.pool).await.unwrap();
    // An avatar whose original is not in storage.
    let media: i64 = sqlx::query_scalar(
        "INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height)
         VALUES ($1, 'avatar', 'originals/ab/gone.jpg', 'image/jpeg', 10, 1, 1) RETURNING id",
    )
    .bind(pat)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET avatar_id = $2 WHERE id = $1").bind(pat).bind(media).execute(&app.db.pool).await.unwrap();
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));

    w.post_form("/settings/export", &[]).await.assert_status(303);
    let first: i64 = sqlx::query_scalar("SELECT id FROM exports").fetch_one(&app.db.pool).await.unwrap();
    run_envelope(envelope(&BuildExport { export_id: first }), &ctx).await.unwrap();
    let key: String = sqlx::query_scalar("SELECT storage_key FROM exports WHERE id = $1 AND status = 'ready'").bind(first).fetch_one(&app.db.pool).await.unwrap();
    let files = entries(&app.state.storage.local_path(&key).unwrap());
    let manifest = json(&files, "manifest.json");
    assert_eq!(manifest["counts"]["uploads"], 0);
    assert_eq!(manifest["missing_uploads"][0]["purpose"], "avatar");
    assert_eq!(json(&files, "profile.json")["avatar"], serde_json::Value::Null, "no file to point at");
    assert!(!files.keys().any(|n| n.starts_with("avatar")));
    assert_eq!(manifest["counts"]["stories"], 0);
    assert_eq!(json(&files, "comments.json"), serde_json::json!([]));

    // The last attempt failed: the row is failed, and the page says so and offers another.
    w.post_form("/settings/export", &[]).await.assert_status(303);
    let second: i64 = sqlx::query_scalar("SELECT max(id) FROM exports").fetch_one(&app.db.pool).await.unwrap();
    assert_ne!(first, second);
    BuildExport { export_id: second }.exhausted(&ctx).await.unwrap();
    let (status, error): (String, String) = sqlx::query_as("SELECT status, error FROM exports WHERE id = $1").bind(second).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(status, "failed");
    assert_eq!(error, worker::jobs::export::GAVE_UP_MESSAGE);
    w.get("/settings/export").await.assert_contains("We could not build your export").assert_contains("Ask for a new export");
    // A late run of the failed export does nothing.
    run_envelope(envelope(&BuildExport { export_id: second }), &ctx).await.unwrap();
    assert_eq!(app.count(&format!("SELECT count(*) FROM exports WHERE id = {second} AND status = 'failed'")).await, 1);

    // Housekeeping removes export files no row refers to (a deleted account's), once an
    // hour old, and stale staged files; never a ready export's file.
    let age = |path: &std::path::Path, hours: u64| {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(hours * 3600)).unwrap();
    };
    for stray in ["exports/999-old.zip", "exports/998-new.zip"] {
        app.state.storage.put(stray, b"stray".to_vec().into()).await.unwrap();
    }
    age(&app.state.storage.local_path("exports/999-old.zip").unwrap(), 2);
    age(&app.state.storage.local_path(&key).unwrap(), 2);
    let staged = app.state.storage.stage("exports/1-x.zip").unwrap();
    std::fs::write(staged.path(), b"partial").unwrap();
    age(staged.path(), 25);
    run_envelope(envelope(&PurgeExpired {}), &ctx).await.unwrap();
    assert!(!app.state.storage.exists("exports/999-old.zip").await.unwrap(), "an old stray file goes");
    assert!(app.state.storage.exists("exports/998-new.zip").await.unwrap(), "a new one may be about to be recorded");
    assert!(app.state.storage.exists(&key).await.unwrap(), "a ready export's file stays");
    assert!(!staged.path().exists(), "a day-old staged file goes");
}

/// The process's peak resident memory so far (VmHWM), in MiB; 0 where /proc is missing.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024)
}

/// Measurement, not run by default (`bin/test --test exports -- --ignored` or with
/// `--run-ignored all`): an account of 2,000 chapters of 100 KB each (200 MB of
/// Markdown, about 400 MB with the HTML) is exported while the process's peak memory is
/// watched. Streaming keeps the growth to a few batches of rows, not the archive.
#[tokio::test]
#[ignore]
async fn a_large_export_streams_with_flat_memory() {
    let app = TestApp::new().await;
    app.new_browser().signup("pat", "pat@example.com", PW).await.assert_status(303);
    let pool = &app.db.pool;
    let pat: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'pat'").fetch_one(pool).await.unwrap();
    // Varied text (so it does not compress to nothing): words drawn from the row number.
    sqlx::query(
        "WITH s AS (INSERT INTO stories (author_id, title) SELECT $1, 'Story ' || g FROM generate_series(1, 20) g RETURNING id)
         INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count)
         SELECT s.id, n, 'Chapter ' || n, b.md, '<p>' || b.md || '</p>', 15000
         FROM s, generate_series(1, 100) n,
              LATERAL (SELECT string_agg(md5((s.id * 1000 + n * 7 + i)::text), ' ') AS md FROM generate_series(1, 3000) i) b",
    )
    .bind(pat)
    .execute(pool)
    .await
    .unwrap();
    let md_bytes: i64 = sqlx::query_scalar("SELECT sum(length(body_markdown))::bigint FROM chapters").fetch_one(pool).await.unwrap();
    let export_id: i64 = sqlx::query_scalar("INSERT INTO exports (user_id) VALUES ($1) RETURNING id").bind(pat).fetch_one(pool).await.unwrap();
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let before = peak_rss_mib();
    let started = std::time::Instant::now();
    run_envelope(envelope(&BuildExport { export_id }), &ctx).await.unwrap();
    let took = started.elapsed();
    let after = peak_rss_mib();
    let (key, size): (String, i64) =
        sqlx::query_as("SELECT storage_key, byte_size FROM exports WHERE id = $1 AND status = 'ready'").bind(export_id).fetch_one(pool).await.unwrap();
    let files = zip::ZipArchive::new(std::fs::File::open(app.state.storage.local_path(&key).unwrap()).unwrap()).unwrap().len();
    eprintln!(
        "large export: 2000 chapters, {} MB of Markdown -> {} MB ZIP, {files} files, {took:?}; peak RSS {before} MiB before, {after} MiB after",
        md_bytes / 1_000_000,
        size / 1_000_000
    );
    assert_eq!(files, 5 + 20 + 4000, "five JSON files, a story.json per story, every chapter twice");
    assert!(after.saturating_sub(before) < 100, "memory grew by {} MiB", after.saturating_sub(before));
}
