//! Who may see and make media: the figure fragment answers only for what the viewer may
//! see, by an unguessable public id; only confirmed addresses upload; uploads and new
//! chapters are limited per account; replacing a cover or avatar queues the deletion of
//! the old one with the change (the deletion itself: worker/tests/media_cleanup.rs).

mod common;

use common::TestApp;

const PW: &str = "correct horse battery";

async fn writer(app: &TestApp, name: &str, verified: bool) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    if verified {
        sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    }
    b
}

fn picture(seed: u8) -> Vec<u8> {
    app::seed::gradient_png(64, 48, [seed, 20, 30], [200, 100, seed])
}

/// POST /stories with a cover: the new story's id.
async fn story_with_cover(w: &TestApp, title: &str) -> i64 {
    let token = w.csrf_token().await;
    let (ct, body) = common::multipart(&token, &[("title", title), ("summary", ""), ("tags", "")], Some(("cover", "cover.png", &picture(1))));
    let r = w.post_raw("/stories", &ct, body, &[]).await;
    r.assert_status(303);
    r.location().unwrap().trim_start_matches("/s/").parse().unwrap()
}

async fn edit_with(w: &TestApp, story: i64, fields: &[(&str, &str)], cover: Option<&[u8]>) -> common::Resp {
    let token = w.csrf_token().await;
    let (ct, body) = common::multipart(&token, fields, cover.map(|c| ("cover", "cover.png", c)));
    w.post_raw(&format!("/s/{story}/edit"), &ct, body, &[]).await
}

async fn set_avatar(w: &TestApp, display_name: &str, avatar: Option<&[u8]>) -> common::Resp {
    let token = w.csrf_token().await;
    let (ct, body) = common::multipart(&token, &[("display_name", display_name), ("bio", "")], avatar.map(|a| ("avatar", "avatar.png", a)));
    w.post_raw("/settings", &ct, body, &[]).await
}

/// (id, public_id) of the story's cover.
async fn cover_of(app: &TestApp, story: i64) -> (i64, uuid::Uuid) {
    sqlx::query_as("SELECT m.id, m.public_id FROM stories s JOIN media m ON m.id = s.cover_id WHERE s.id = $1")
        .bind(story)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn avatar_of(app: &TestApp, username: &str) -> (i64, uuid::Uuid) {
    sqlx::query_as("SELECT m.id, m.public_id FROM users u JOIN media m ON m.id = u.avatar_id WHERE u.username = $1")
        .bind(username)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn figure_status(w: &TestApp, id: impl std::fmt::Display) -> u16 {
    w.get(&format!("/m/{id}/figure")).await.status.as_u16()
}

fn files_under(dir: &std::path::Path) -> usize {
    fn walk(d: &std::path::Path) -> usize {
        std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()).unwrap_or(0)
    }
    walk(dir)
}

async fn jobs_named(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb ->> 'name' = $1")
        .bind(name)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

// ---- 1. the figure fragment ------------------------------------------------------------

#[tokio::test]
async fn a_drafts_cover_figure_is_404_for_strangers_and_shown_to_its_owner() {
    let app = TestApp::new().await;
    let amy = writer(&app, "amy", true).await;
    let bob = writer(&app, "bob", true).await;
    let anon = app.new_browser();
    let story = story_with_cover(&amy, "Secret draft").await;
    let (id, public_id) = cover_of(&app, story).await;

    // The page polls the figure by its public id, never by the row's sequential id.
    let page = amy.get(&format!("/s/{story}")).await;
    page.assert_status(200).assert_contains(&format!("hx-get=\"/m/{public_id}/figure"));
    assert!(!page.body.contains(&format!("/m/{id}/")), "the numeric id is not in the page");

    assert_eq!(figure_status(&amy, public_id).await, 200, "the owner sees their draft's cover");
    assert_eq!(figure_status(&bob, public_id).await, 404, "a stranger does not");
    assert_eq!(figure_status(&anon, public_id).await, 404, "nor does a visitor");
    // The old numeric form names nothing, for anybody, the owner included.
    for w in [&amy, &bob, &anon] {
        assert_eq!(figure_status(w, id).await, 404);
        assert_eq!(figure_status(w, 1).await, 404);
    }
    // Nor does garbage, or an unknown id: 404, not 400 or 500.
    assert_eq!(figure_status(&amy, "not-a-uuid").await, 404);
    assert_eq!(figure_status(&amy, uuid::Uuid::new_v4()).await, 404);

    // Published: anyone gets it. Back to draft: strangers lose it again.
    edit_with(&amy, story, &[("status", "published")], None).await.assert_status(303);
    assert_eq!(figure_status(&bob, public_id).await, 200);
    assert_eq!(figure_status(&anon, public_id).await, 200);
    let frag = anon.get(&format!("/m/{public_id}/figure")).await;
    frag.assert_contains(&format!("/m/{public_id}/figure"));
    edit_with(&amy, story, &[("status", "draft")], None).await.assert_status(303);
    assert_eq!(figure_status(&bob, public_id).await, 404);
    assert_eq!(figure_status(&amy, public_id).await, 200);
}

#[tokio::test]
async fn any_current_avatar_is_visible_and_a_replaced_one_only_to_its_owner() {
    let app = TestApp::new().await;
    let amy = writer(&app, "amy", true).await;
    let anon = app.new_browser();
    set_avatar(&amy, "Amy", Some(&picture(2))).await.assert_status(303);
    let (id, public_id) = avatar_of(&app, "amy").await;
    assert_eq!(figure_status(&anon, public_id).await, 200, "avatars are public");
    assert_eq!(figure_status(&anon, id).await, 404);
    anon.get("/u/amy").await.assert_status(200).assert_contains(&format!("/m/{public_id}/figure"));

    // Replaced (its DeleteMedia job not run yet): the old one is nobody's avatar any more.
    set_avatar(&amy, "Amy", Some(&picture(3))).await.assert_status(303);
    let (_, new_public_id) = avatar_of(&app, "amy").await;
    assert_ne!(new_public_id, public_id);
    assert_eq!(figure_status(&anon, new_public_id).await, 200);
    assert_eq!(figure_status(&anon, public_id).await, 404);
    assert_eq!(figure_status(&amy, public_id).await, 200, "its owner still may");
}

// ---- 2a. only confirmed addresses upload ------------------------------------------------

#[tokio::test]
async fn an_unverified_account_gets_its_form_back_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let cleo = writer(&app, "cleo", false).await;
    let media_root = app.state.config.media_root.clone();
    let token = cleo.csrf_token().await;

    // A new story with a cover: refused as a whole, the reason on the file field.
    let (ct, body) = common::multipart(&token, &[("title", "With cover"), ("summary", "s"), ("tags", "")], Some(("cover", "cover.png", &picture(4))));
    let r = cleo.post_raw("/stories", &ct, body, &[]).await;
    r.assert_status(403).assert_contains("Confirm your email address before uploading").assert_contains("id=\"cover-error\"");
    r.assert_contains("value=\"With cover\"");
    assert_eq!(app.count("SELECT count(*) FROM stories").await, 0);
    // htmx gets the form fragment, with the same status.
    let (ct, body) = common::multipart(&token, &[("title", "With cover"), ("summary", "s"), ("tags", "")], Some(("cover", "cover.png", &picture(4))));
    let r = cleo.post_raw("/stories", &ct, body, &[("hx-request", "true")]).await;
    r.assert_status(403).assert_contains("id=\"cover-error\"");
    assert!(!r.body.contains("<html"), "a fragment");

    // Without a file an unverified writer may still start a draft…
    let (ct, body) = common::multipart(&token, &[("title", "Plain"), ("summary", ""), ("tags", "")], None);
    let r = cleo.post_raw("/stories", &ct, body, &[]).await;
    r.assert_status(303);
    let story: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    // …but not add a cover to it; the title change in the same form is not saved either.
    let r = edit_with(&cleo, story, &[("title", "Renamed"), ("summary", ""), ("tags", ""), ("status", "draft")], Some(&picture(5))).await;
    r.assert_status(403).assert_contains("Confirm your email address before uploading").assert_contains("id=\"cover-error\"");
    assert_eq!(app.count("SELECT count(*) FROM stories WHERE title = 'Renamed'").await, 0);

    // An avatar: the same, the display name not saved.
    let r = set_avatar(&cleo, "Cleo", Some(&picture(6))).await;
    r.assert_status(403).assert_contains("Confirm your email address before uploading").assert_contains("id=\"avatar-error\"");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE display_name = 'Cleo'").await, 0);
    // The profile without an avatar saves.
    set_avatar(&cleo, "Cleo", None).await.assert_status(303);

    assert_eq!(app.count("SELECT count(*) FROM media").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE job_type = 'media'").await, 0);
    assert_eq!(files_under(&media_root), 0, "nothing stored");

    // Once confirmed, the same upload works.
    sqlx::query("UPDATE users SET email_verified_at = now()").execute(&app.db.pool).await.unwrap();
    edit_with(&cleo, story, &[("status", "draft")], Some(&picture(5))).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM media").await, 1);
}

// ---- 2b. per-account limits ---------------------------------------------------------------

#[tokio::test]
async fn uploads_are_limited_per_account() {
    let app = TestApp::new().await;
    let amy = writer(&app, "amy", true).await;
    let story = story_with_cover(&amy, "Many covers").await;
    let max = app::ratelimit::limits::UPLOADS_PER_ACCOUNT.max as i64;
    for i in 1..max {
        edit_with(&amy, story, &[("status", "draft")], Some(&picture(i as u8))).await.assert_status(303);
    }
    assert_eq!(app.count("SELECT count(*) FROM media").await, max);
    // One more: the form back with 429 and why, the title change not saved.
    let r = edit_with(&amy, story, &[("title", "Renamed"), ("status", "draft")], Some(&picture(99))).await;
    r.assert_status(429).assert_contains("You have uploaded 20 images in the last hour").assert_contains("id=\"cover-error\"");
    assert_eq!(app.count("SELECT count(*) FROM stories WHERE title = 'Renamed'").await, 0);
    // Covers and avatars share the allowance.
    set_avatar(&amy, "Amy", Some(&picture(98))).await.assert_status(429).assert_contains("id=\"avatar-error\"");
    let (ct, body) = common::multipart(&amy.csrf_token().await, &[("title", "Another"), ("summary", ""), ("tags", "")], Some(("cover", "cover.png", &picture(97))));
    amy.post_raw("/stories", &ct, body, &[]).await.assert_status(429);
    assert_eq!(app.count("SELECT count(*) FROM media").await, max);
    assert_eq!(app.count("SELECT count(*) FROM stories").await, 1);
    // Forms without a file are not limited; other accounts are not affected.
    edit_with(&amy, story, &[("title", "Renamed"), ("status", "draft")], None).await.assert_status(303);
    let bob = writer(&app, "bob", true).await;
    set_avatar(&bob, "Bob", Some(&picture(96))).await.assert_status(303);
}

#[tokio::test]
async fn chapters_are_limited_per_account_and_the_refused_text_is_kept() {
    let app = TestApp::new().await;
    let amy = writer(&app, "amy", true).await;
    let r = amy.post_form("/stories", &[("title", "Long one"), ("summary", ""), ("tags", "")]).await;
    let story: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    let max = app::ratelimit::limits::CHAPTERS_PER_ACCOUNT.max;
    // Invalid chapters are not counted.
    amy.post_form(&format!("/s/{story}/chapters"), &[("title", ""), ("body", "")]).await.assert_status(422);
    for n in 1..=max {
        let r = amy.post_form(&format!("/s/{story}/chapters"), &[("title", &format!("Chapter {n}")), ("body", "Text.")]).await;
        r.assert_status(303);
    }
    let r = amy.post_form(&format!("/s/{story}/chapters"), &[("title", "One too many"), ("body", "Words I do not want to lose.")]).await;
    r.assert_status(429).assert_contains("You have added 30 chapters in the last hour").assert_contains("Words I do not want to lose.");
    let r = amy
        .post_raw(
            &format!("/s/{story}/chapters"),
            "application/x-www-form-urlencoded",
            serde_urlencoded::to_string([("title", "Again"), ("body", "Still here."), ("csrf_token", &amy.csrf_token().await)]).unwrap().into_bytes(),
            &[("hx-request", "true")],
        )
        .await;
    r.assert_status(429).assert_contains("Still here.");
    assert!(!r.body.contains("<html"), "a fragment");
    assert_eq!(app.count("SELECT count(*) FROM chapters").await, max as i64);
}

// ---- 2c. replacing queues the deletion, with the change -----------------------------------

#[tokio::test]
async fn replacing_a_cover_or_avatar_queues_delete_media_with_the_change() {
    let app = TestApp::new().await;
    let amy = writer(&app, "amy", true).await;
    let story = story_with_cover(&amy, "Covered").await;
    set_avatar(&amy, "Amy", Some(&picture(7))).await.assert_status(303);
    assert_eq!(jobs_named(&app, "delete_media").await, 0, "a first cover or avatar replaces nothing");
    // Edits without a new file keep the cover and delete nothing.
    edit_with(&amy, story, &[("title", "Covered, again"), ("status", "draft")], None).await.assert_status(303);
    set_avatar(&amy, "Amy A.", None).await.assert_status(303);
    assert_eq!(jobs_named(&app, "delete_media").await, 0);

    let (old_cover, _) = cover_of(&app, story).await;
    let (old_avatar, _) = avatar_of(&app, "amy").await;
    edit_with(&amy, story, &[("status", "draft")], Some(&picture(8))).await.assert_status(303);
    set_avatar(&amy, "Amy", Some(&picture(9))).await.assert_status(303);
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT (convert_from(job, 'UTF8')::jsonb -> 'args' ->> 'media_id')::bigint FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb ->> 'name' = 'delete_media' ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let mut expected = vec![old_cover, old_avatar];
    expected.sort();
    assert_eq!(ids, expected);
    assert_ne!(cover_of(&app, story).await.0, old_cover);

    // A refused edit (a bad title) with a new cover queues nothing and stores nothing.
    let long = "x".repeat(300);
    edit_with(&amy, story, &[("title", &long), ("status", "draft")], Some(&picture(10))).await.assert_status(422);
    assert_eq!(jobs_named(&app, "delete_media").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM media").await, 4);
}
