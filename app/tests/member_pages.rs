//! The story page for logged-in readers from one stored rendering (`web::stitched`):
//! byte for byte the page each reader would get rendered for them, in every encoding;
//! their likes, saves, follows and progress show at once, on every process; readers it
//! is not for (the author, commenters, staff, a hidden comment of theirs) get their own
//! rendering.

mod common;

use std::{io::Read, time::Duration};

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn user(app: &TestApp, name: &str, role: &str) -> TestApp {
    common::user_with_role(app, name, role, PW).await
}

/// `who`'s session in a fresh browser on `app`: a later visit, with no "wrote a moment
/// ago" cookie and no flash.
fn later_visit(app: &TestApp, who: &TestApp) -> TestApp {
    let b = app.new_browser();
    b.set_cookie("quire_session", &who.cookie("quire_session").expect("logged in"));
    b
}

/// The page without what legitimately differs between two renderings: where its event
/// stream resumes (the last event each process had read).
fn normalized(body: &str) -> String {
    regex::Regex::new(r"after=\d+").unwrap().replace_all(body, "after=N").into_owned()
}

fn decoded(coding: &str, body: &[u8]) -> String {
    let mut out = Vec::new();
    match coding {
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out).expect("valid brotli"),
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("valid gzip"),
        other => panic!("unexpected coding {other}"),
    };
    String::from_utf8(out).expect("utf-8")
}

async fn show(p: &TestApp, id: i64) -> Resp {
    let r = p.get(&format!("/s/{id}")).await;
    r.assert_status(200);
    r
}

#[tokio::test]
async fn each_reader_gets_exactly_their_own_page_from_the_stored_rendering() {
    let app = TestApp::new().await;
    // The same database, nothing cached: every page rendered for its reader.
    let rendered = app.another_process_with(|c| c.cache_enabled = false).await;
    let author = user(&app, "author", "writer").await;
    let id = common::published_story(&author, "Tide", 3).await;
    let commenter = user(&app, "commenter", "reader").await;
    commenter.post_form(&format!("/s/{id}/comments"), &[("body", "First, *and* loud.")]).await.assert_status(303);
    let plain = user(&app, "plain", "reader").await;
    let fan = user(&app, "fan", "reader").await;
    // Before any request of theirs puts their session in a process's session cache.
    sqlx::query("UPDATE users SET display_name = 'The <Fan>' WHERE username = 'fan'").execute(&app.db.pool).await.unwrap();
    fan.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(303);
    fan.post_form(&format!("/s/{id}/save"), &[]).await.assert_status(303);
    fan.post_form("/u/author/follow", &[("next", "/")]).await.assert_status(303);
    fan.get(&format!("/s/{id}/c/2")).await.assert_status(200);
    let unverified = app.new_browser();
    unverified.signup("fresh", "fresh@example.com", PW).await.assert_status(303);
    let moderator = user(&app, "moddy", "moderator").await;

    // (who, served from the stored rendering?)
    let readers = [(&plain, true), (&fan, true), (&unverified, true), (&commenter, false), (&author, false), (&moderator, false)];
    for (i, (who, shared)) in readers.iter().enumerate() {
        let mine = later_visit(&app, who);
        let first = show(&mine, id).await;
        let again = show(&mine, id).await;
        let expected = show(&later_visit(&rendered, who), id).await;
        assert_eq!(expected.header("x-cache"), None);
        for r in [&first, &again] {
            assert_eq!(normalized(&r.body), normalized(&expected.body), "reader {i}: the stored rendering differs from their own");
        }
        if *shared {
            assert_eq!(again.header("x-cache"), Some("hit"), "reader {i}");
            for coding in ["br", "gzip"] {
                let (status, headers, body) = mine.get_bytes(&format!("/s/{id}"), &[("accept-encoding", coding)]).await;
                assert_eq!(status.as_u16(), 200);
                assert_eq!(headers.get("content-encoding").and_then(|v| v.to_str().ok()), Some(coding));
                assert_eq!(normalized(&decoded(coding, &body)), normalized(&expected.body), "reader {i}, {coding}");
                let whole = match coding {
                    "br" => app::web::compression::brotli_compress(expected.body.as_bytes(), 5).unwrap().len(),
                    _ => app::web::compression::gzip_compress(expected.body.as_bytes(), 6).unwrap().len(),
                };
                // Runs compressed apart lose what they share (and brotli its dictionary):
                // larger than the whole page compressed at once, still a fraction of it
                // and well inside the first TCP window (10 segments, 14.6 kB).
                eprintln!("{coding}: stitched {} bytes, whole page {whole}, identity {}", body.len(), expected.body.len());
                assert!(body.len() < expected.body.len() * 2 / 3 && body.len() < 14_600, "{coding}: {} bytes of {}", body.len(), expected.body.len());
            }
        } else {
            assert_eq!(again.header("x-cache"), None, "reader {i} must get their own rendering");
        }
    }
    // What made them differ is on the page at all (the comparison above is not vacuous).
    let fan_page = show(&later_visit(&app, &fan), id).await;
    fan_page.assert_contains("Liked · undo").assert_contains("In your reading list").assert_contains("Following · unfollow");
    fan_page.assert_contains("Continue at chapter 2").assert_contains("The &lt;Fan&gt;");
    let token = common::extract_csrf(&fan_page.body).unwrap();
    assert_eq!(fan_page.body.matches(&token).count(), fan_page.body.matches("csrf_token").count() + 1, "every form and hx-headers carry the reader's token");
    assert!(!fan_page.body.contains("q-hole"));
    show(&later_visit(&app, &unverified), id).await.assert_contains("Please confirm your email address");
    let plain_page = show(&later_visit(&app, &plain), id).await;
    assert!(!plain_page.body.contains("Liked · undo") && !plain_page.body.contains("The &lt;Fan&gt;"));
    assert_ne!(common::extract_csrf(&plain_page.body), Some(token), "each reader their own token");
}

#[tokio::test]
async fn a_readers_changes_show_on_their_next_page_on_every_process() {
    let redis = common::redis_url();
    let r = redis.clone();
    let a = TestApp::with_config(move |c| c.redis_url = r).await;
    let b = a.another_process_with(move |c| c.redis_url = redis).await;
    let author = user(&a, "author", "writer").await;
    let id = common::published_story(&author, "Tide", 2).await;
    let reader = user(&a, "reader", "reader").await;
    let other = user(&a, "other", "reader").await;
    let on_b = later_visit(&b, &reader);
    let other_b = later_visit(&b, &other);
    for p in [&on_b, &other_b] {
        show(p, id).await;
        assert_eq!(show(p, id).await.header("x-cache"), Some("hit"));
    }
    // Each write on process A; each read on process B.
    let steps: [(&str, &[(&str, &str)], &str); 4] = [
        ("/s/{id}/like", &[], "Liked · undo"),
        ("/s/{id}/save", &[], "In your reading list"),
        ("/u/author/follow", &[("next", "/")], "Following · unfollow"),
        ("/s/{id}/c/2", &[], "Continue at chapter 2"),
    ];
    for (path, fields, shows) in steps {
        let path = path.replace("{id}", &id.to_string());
        if path.contains("/c/") {
            reader.get(&path).await.assert_status(200);
        } else {
            reader.post_form(&path, fields).await.assert_status(303);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            if show(&on_b, id).await.body.contains(shows) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{path}: {shows:?} not on process B after 1 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The like count changed for everyone; the other reader's buttons did not.
    let page = show(&other_b, id).await;
    assert!(page.body.contains(">1 like<") || page.body.contains("1 like"), "count updated for others");
    assert!(!page.body.contains("Liked · undo") && !page.body.contains("Following · unfollow"));
    // A moderator hides the reader's comment: from then on their page is their own (it
    // shows them their hidden comment), everyone else's still shared.
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "Mine.")]).await.assert_status(303);
    let cid: i64 = sqlx::query_scalar("SELECT id FROM comments WHERE story_id = $1").bind(id).fetch_one(&a.db.pool).await.unwrap();
    sqlx::query("UPDATE comments SET hidden_at = now(), hidden_reason = 'spam' WHERE id = $1").bind(cid).execute(&a.db.pool).await.unwrap();
    a.state.cache.invalidate(&[app::cache::Tag::story(id)]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mine = show(&on_b, id).await;
    mine.assert_contains("Hidden by the moderators");
    assert_eq!(mine.header("x-cache"), None);
    let theirs = show(&other_b, id).await;
    assert!(!theirs.body.contains("Mine."));
}
