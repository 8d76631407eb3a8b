//! Stories and chapters: writing, reading, pagination, the authorisation matrix, chapter
//! numbering under concurrency, and hostile uploads through the real routes.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn writer(app: &TestApp, name: &str, verified: bool) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    if verified {
        sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    }
    b
}

async fn create_story(b: &TestApp, title: &str, tags: &str) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", "A summary."), ("tags", tags)]).await;
    r.assert_status(303);
    r.location().unwrap().trim_start_matches("/s/").parse().unwrap()
}

async fn add_chapter(b: &TestApp, id: i64, title: &str, body: &str) -> Resp {
    b.post_form(&format!("/s/{id}/chapters"), &[("title", title), ("body", body)]).await
}

async fn publish(b: &TestApp, id: i64) -> Resp {
    b.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await
}

fn files_under(dir: &std::path::Path) -> usize {
    fn walk(d: &std::path::Path) -> usize {
        std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()).unwrap_or(0)
    }
    walk(dir)
}

#[tokio::test]
async fn write_publish_and_read_a_story() {
    let app = TestApp::new().await;
    let w = writer(&app, "amy", true).await;
    let id = create_story(&w, "The Long Road", "Road Trip, adventure, road trip").await;
    w.get(&format!("/s/{id}")).await.assert_status(200).assert_contains("This is a draft").assert_contains("No chapters yet");
    let r = add_chapter(&w, id, "Departure", "It was *late* when we left.\n\nThe road was empty.").await;
    r.assert_status(303);
    assert_eq!(r.location(), Some(format!("/s/{id}/c/1").as_str()));
    add_chapter(&w, id, "Arrival", "We **arrived**.").await.assert_status(303);
    publish(&w, id).await.assert_status(303);

    let reader = app.new_browser();
    let page = reader.get(&format!("/s/{id}")).await;
    page.assert_status(200).assert_contains("The Long Road").assert_contains("Departure").assert_contains("Arrival");
    page.assert_contains("href=\"/t/road-trip\"").assert_contains("href=\"/t/adventure\"");
    assert_eq!(page.body.matches("href=\"/t/road-trip\"").count(), 1, "tags deduplicated");
    let c1 = reader.get(&format!("/s/{id}/c/1")).await;
    c1.assert_status(200).assert_contains("<em>late</em>").assert_contains(&format!("href=\"/s/{id}/c/2\""));
    assert!(!c1.body.contains("rel=\"prev\""), "no previous link on chapter 1");
    let c2 = reader.get(&format!("/s/{id}/c/2")).await;
    c2.assert_status(200).assert_contains("<strong>arrived</strong>").assert_contains(&format!("href=\"/s/{id}/c/1\""));
    reader.get(&format!("/s/{id}/c/3")).await.assert_status(404);
    reader.get(&format!("/s/{id}/c/0")).await.assert_status(404);
    reader.get(&format!("/s/{id}/c/x")).await.assert_status(400);

    // Listed on the home page, the author's profile and the tag page.
    reader.get("/").await.assert_contains("The Long Road");
    reader.get("/u/amy").await.assert_status(200).assert_contains("The Long Road");
    reader.get("/t/road-trip").await.assert_status(200).assert_contains("The Long Road");
    reader.get("/t/other").await.assert_status(200).assert_contains("No published story has this tag");
    reader.get("/u/nobody").await.assert_status(404);
    let words: i32 = sqlx::query_scalar("SELECT word_count FROM stories WHERE id = $1").bind(id).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(words, 12);
}

#[tokio::test]
async fn validation_errors_are_422_with_the_form() {
    let app = TestApp::new().await;
    let w = writer(&app, "ben", true).await;
    w.post_form("/stories", &[("title", "  "), ("summary", ""), ("tags", "")]).await.assert_status(422).assert_contains("Give your story a title");
    let long = "t".repeat(201);
    w.post_form("/stories", &[("title", &long), ("summary", ""), ("tags", "")]).await.assert_status(422);
    w.post_form("/stories", &[("title", "Ok"), ("summary", ""), ("tags", "<script>")]).await.assert_status(422).assert_contains("not a valid tag");
    let many: String = (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>().join(",");
    w.post_form("/stories", &[("title", "Ok"), ("summary", ""), ("tags", &many)]).await.assert_status(422).assert_contains("at most 10");
    assert_eq!(app.count("SELECT count(*) FROM stories").await, 0);
    let id = create_story(&w, "Fine", "").await;
    add_chapter(&w, id, "", "body").await.assert_status(422).assert_contains("Give the chapter a title");
    add_chapter(&w, id, "Title", "   ").await.assert_status(422).assert_contains("Write something");
    w.post_form(&format!("/s/{id}/edit"), &[("status", "secret")]).await.assert_status(422);
    assert_eq!(app.count("SELECT count(*) FROM chapters").await, 0);
}

#[tokio::test]
async fn only_verified_users_publish() {
    let app = TestApp::new().await;
    let w = writer(&app, "cleo", false).await;
    let id = create_story(&w, "Unverified", "").await;
    w.get(&format!("/s/{id}")).await.assert_contains("Confirm your email address to publish");
    publish(&w, id).await.assert_status(422).assert_contains("Confirm your email address before publishing");
    assert_eq!(app.count("SELECT count(*) FROM stories WHERE status = 'published'").await, 0);
    sqlx::query("UPDATE users SET email_verified_at = now()").execute(&app.db.pool).await.unwrap();
    publish(&w, id).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM stories WHERE status = 'published'").await, 1);
}

#[tokio::test]
async fn authorisation_matrix_owner_other_anonymous() {
    let app = TestApp::new().await;
    let owner = writer(&app, "dana", true).await;
    let other = writer(&app, "eve", true).await;
    let anon = app.new_browser();
    let draft = create_story(&owner, "Draft", "").await;
    add_chapter(&owner, draft, "One", "text").await.assert_status(303);
    let public = create_story(&owner, "Public", "").await;
    add_chapter(&owner, public, "One", "text").await.assert_status(303);
    publish(&owner, public).await.assert_status(303);

    // Reading.
    for (who, b, draft_status) in [("owner", &owner, 200), ("other", &other, 404), ("anon", &anon, 404)] {
        assert_eq!(b.get(&format!("/s/{draft}")).await.status.as_u16(), draft_status, "{who} GET draft");
        assert_eq!(b.get(&format!("/s/{draft}/c/1")).await.status.as_u16(), draft_status, "{who} GET draft chapter");
        assert_eq!(b.get(&format!("/s/{public}")).await.status.as_u16(), 200, "{who} GET public");
        assert_eq!(b.get(&format!("/s/{public}/c/1")).await.status.as_u16(), 200, "{who} GET public chapter");
    }
    // Writing: owner 200/303; other 403 (published) or 404 (draft); anonymous to login.
    owner.get(&format!("/s/{public}/edit")).await.assert_status(200);
    other.get(&format!("/s/{public}/edit")).await.assert_status(403);
    other.get(&format!("/s/{draft}/edit")).await.assert_status(404);
    let r = anon.get(&format!("/s/{public}/edit")).await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login?next="));
    anon.get("/stories/new").await.assert_status(303);

    other.post_form(&format!("/s/{public}/edit"), &[("title", "Hijacked")]).await.assert_status(403);
    other.post_form(&format!("/s/{draft}/edit"), &[("title", "Hijacked")]).await.assert_status(404);
    anon.post_form(&format!("/s/{public}/edit"), &[("title", "Hijacked")]).await.assert_status(303);
    other.post_form(&format!("/s/{public}/chapters"), &[("title", "Mine"), ("body", "x")]).await.assert_status(403);
    other.post_form(&format!("/s/{draft}/chapters"), &[("title", "Mine"), ("body", "x")]).await.assert_status(404);
    anon.post_form(&format!("/s/{public}/chapters"), &[("title", "Mine"), ("body", "x")]).await.assert_status(303);
    anon.post_form("/stories", &[("title", "Anon")]).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM stories WHERE title = 'Hijacked' OR title = 'Anon'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM chapters").await, 2);
    // Unknown and malformed ids.
    owner.get("/s/999999").await.assert_status(404);
    owner.get("/s/abc").await.assert_status(400);
    // Drafts are not listed for others, but the author sees them on the profile.
    anon.get("/u/dana").await.assert_contains("Public");
    assert!(!anon.get("/u/dana").await.body.contains(">Draft<"));
    owner.get("/u/dana").await.assert_contains("Your drafts");
    assert!(!anon.get("/").await.body.contains(">Draft<"));
}

#[tokio::test]
async fn concurrent_add_chapter_numbers_one_and_two() {
    let app = TestApp::new().await;
    let w = writer(&app, "finn", true).await;
    for round in 0..5 {
        let id = create_story(&w, &format!("Race {round}"), "").await;
        let (a, b) = tokio::join!(add_chapter(&w, id, "A", "first"), add_chapter(&w, id, "B", "second"));
        a.assert_status(303);
        b.assert_status(303);
        let numbers: Vec<i32> =
            sqlx::query_scalar("SELECT number FROM chapters WHERE story_id = $1 ORDER BY number").bind(id).fetch_all(&app.db.pool).await.unwrap();
        assert_eq!(numbers, vec![1, 2]);
        let count: i32 = sqlx::query_scalar("SELECT chapter_count FROM stories WHERE id = $1").bind(id).fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(count, 2);
    }
}

#[tokio::test]
async fn home_is_keyset_paginated_with_htmx_load_more() {
    let app = TestApp::new().await;
    let w = writer(&app, "gus", true).await;
    // 45 published stories, inserted directly for speed, with distinct publication times.
    let uid: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'gus'").fetch_one(&app.db.pool).await.unwrap();
    sqlx::query(
        "INSERT INTO stories (author_id, title, status, published_at)
         SELECT $1, 'Story ' || lpad(i::text, 2, '0'), 'published', now() - make_interval(mins => i) FROM generate_series(1, 45) i",
    )
    .bind(uid)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let first = w.get("/").await;
    first.assert_status(200).assert_contains("Story 01").assert_contains("Story 20");
    assert!(!first.body.contains("Story 21"));
    let next = first.body.split("?after=").nth(1).expect("a load-more link").split('"').next().unwrap().to_string();
    // Without JavaScript: an ordinary page.
    let page2 = w.get(&format!("/?after={next}")).await;
    page2.assert_status(200).assert_contains("<html").assert_contains("Story 21").assert_contains("Story 40");
    assert!(!page2.body.contains("Story 20<"));
    // With htmx: only the items and the next link.
    let frag = w.get_with(&format!("/?after={next}"), &[("hx-request", "true")]).await;
    frag.assert_status(200).assert_contains("Story 21");
    assert!(!frag.body.contains("<html"), "a fragment");
    let next2 = frag.body.split("?after=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let last = w.get_with(&format!("/?after={next2}"), &[("hx-request", "true")]).await;
    last.assert_contains("Story 45");
    assert!(!last.body.contains("Load more"), "no link after the last page");
    // A garbage cursor starts at the top instead of failing.
    w.get("/?after=garbage").await.assert_status(200).assert_contains("Story 01");
}

#[tokio::test]
async fn chapter_markdown_is_sanitised_on_save() {
    let app = TestApp::new().await;
    let w = writer(&app, "hal", true).await;
    let id = create_story(&w, "XSS", "").await;
    let payload = "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))\n\n<svg onload=alert(1)>\n\n\"><b onmouseover=alert(1)>hi</b>";
    add_chapter(&w, id, "<script>alert('t')</script>", payload).await.assert_status(303);
    let page = w.get(&format!("/s/{id}/c/1")).await;
    page.assert_status(200);
    let lower = page.body.to_lowercase();
    assert!(!lower.contains("<script>alert"), "{}", page.body);
    assert!(!lower.contains("onerror") && !lower.contains("onload=") && !lower.contains("onmouseover"));
    assert!(!lower.contains("javascript:"));
    assert!(page.body.contains("&lt;script&gt;alert"), "the title is escaped text");
}

#[tokio::test]
async fn hostile_uploads_are_4xx_with_nothing_stored_and_no_job() {
    let app = TestApp::new().await;
    let w = writer(&app, "ida", true).await;
    let token = w.csrf_token().await;
    let media_root = app.state.config.media_root.clone();
    let mut truncated_jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    truncated_jpeg.extend_from_slice(b"JFIF");
    let mut huge_png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    huge_png.extend_from_slice(&20000u32.to_be_bytes());
    huge_png.extend_from_slice(&20000u32.to_be_bytes());
    huge_png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let eleven_mib = {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
        v.resize(11 * 1024 * 1024, 0x42);
        v
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("notes.jpg", b"this is just text, not a picture".to_vec(), 400, "Only JPEG, PNG and WebP"),
        ("cut.jpg", truncated_jpeg, 400, "damaged or incomplete"),
        ("huge.png", huge_png, 400, "40 megapixels"),
        ("big.jpg", eleven_mib, 413, "too large"),
    ];
    for (name, bytes, status, reason) in cases {
        let (ct, body) = common::multipart(&token, &[("title", "With cover"), ("summary", ""), ("tags", "")], Some(("cover", name, &bytes)));
        let r = w.post_raw("/stories", &ct, body, &[]).await;
        // The form again, with the reason next to the file input.
        r.assert_status(status).assert_contains(reason).assert_contains("id=\"cover-error\"");
    }
    // A multipart body without a boundary.
    let r = w.post_raw("/stories", "multipart/form-data", b"--x\r\n\r\n".to_vec(), &[("x-csrf-token", &token)]).await;
    r.assert_status(400);
    assert_eq!(app.count("SELECT count(*) FROM stories").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM media").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 0);
    assert_eq!(files_under(&media_root), 0, "nothing stored");
}

#[tokio::test]
async fn a_cover_upload_commits_story_media_row_and_job_together() {
    let app = TestApp::new().await;
    let w = writer(&app, "jon", true).await;
    let token = w.csrf_token().await;
    let png = app::seed::gradient_png(640, 480, [10, 20, 30], [200, 100, 50]);
    let (ct, body) = common::multipart(&token, &[("title", "Covered"), ("summary", "s"), ("tags", "art")], Some(("cover", "cover.png", &png)));
    let r = w.post_raw("/stories", &ct, body, &[]).await;
    r.assert_status(303);
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    assert_eq!(app.count("SELECT count(*) FROM media WHERE status = 'pending' AND width = 640 AND height = 480").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 1);
    assert_eq!(files_under(&app.state.config.media_root), 1, "the original is stored");
    // Until processed, the page shows a placeholder of the right size that polls.
    let page = w.get(&format!("/s/{id}")).await;
    page.assert_contains("hx-get=\"/m/").assert_contains("width=\"640\" height=\"480\"");
    // Originals are never served.
    let key: String = sqlx::query_scalar("SELECT original_key FROM media").fetch_one(&app.db.pool).await.unwrap();
    w.get(&format!("/media/{key}")).await.assert_status(404);
    w.get("/media/variants/../originals/x.png").await.assert_status(404);
}

#[tokio::test]
async fn an_avatar_upload_on_settings_commits_profile_media_and_job() {
    let app = TestApp::new().await;
    // Verified: only confirmed addresses upload (app/tests/media_access.rs).
    let w = writer(&app, "kay", true).await;
    let token = w.csrf_token().await;
    let png = app::seed::gradient_png(300, 300, [1, 2, 3], [200, 150, 100]);
    let (ct, body) = common::multipart(&token, &[("display_name", "Kay"), ("bio", "Hi")], Some(("avatar", "me.png", &png)));
    w.post_raw("/settings", &ct, body, &[]).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM users u JOIN media m ON m.id = u.avatar_id WHERE m.purpose = 'avatar' AND u.display_name = 'Kay'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 1);
    w.get("/u/kay").await.assert_status(200).assert_contains("hx-get=\"/m/");
    // A refused avatar: 400, the reason on the form, the profile unchanged.
    let (ct, body) = common::multipart(&token, &[("display_name", "Changed"), ("bio", "")], Some(("avatar", "x.png", b"GIF89a....")));
    w.post_raw("/settings", &ct, body, &[]).await.assert_status(400).assert_contains("Only JPEG, PNG and WebP");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE display_name = 'Changed'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM media").await, 1);
}
