//! Notification pages: the list (own only, pagination, read state), the unread count in
//! the navigation and /notifications/count, email preferences, one-click unsubscribe
//! (with and without cookies or a CSRF token), and the chapter notifications the story
//! pages enqueue. Rows are inserted directly here; the worker's tests create them
//! through the real job handler.

mod common;

use app::notifications::{
    Kind,
    unsubscribe::{self, Scope},
};
use common::TestApp;

const PW: &str = "correct horse battery";

async fn user(app: &TestApp, name: &str) -> (TestApp, i64) {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(name).fetch_one(&app.db.pool).await.unwrap();
    (b, id)
}

/// `n` follow notifications for `user_id` from `actor_id`, named `{label}-{i}`, oldest first.
async fn insert(app: &TestApp, user_id: i64, actor_id: i64, label: &str, n: i32) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO notifications (user_id, kind, actor_id, data, dedupe_key)
         SELECT $1, 'follow', $2, jsonb_build_object('actor_name', $3 || '-' || i, 'actor_username', 'someone'), $3 || ':' || i
         FROM generate_series(1, $4) i ORDER BY i RETURNING id",
    )
    .bind(user_id)
    .bind(actor_id)
    .bind(label)
    .bind(n)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

fn after_cursor(body: &str) -> Option<String> {
    let at = body.find("/notifications?after=")?;
    Some(body[at + "/notifications?after=".len()..].split('"').next()?.to_string())
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_log_in() {
    let app = TestApp::new().await;
    let r = app.get("/notifications").await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login?next="), "{:?}", r.location());
    let r = app.get("/settings/notifications").await;
    r.assert_status(303);
    // The count fragment has nothing to show to nobody.
    app.get("/notifications/count").await.assert_status(204);
}

#[tokio::test]
async fn the_page_lists_only_the_viewers_notifications_newest_first_with_load_more() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let (_bob, bob_id) = user(&app, "bob").await;
    insert(&app, ann_id, bob_id, "for-ann", 25).await;
    insert(&app, bob_id, ann_id, "for-bob", 1).await;

    let page = ann.get("/notifications").await;
    page.assert_status(200).assert_contains("for-ann-25").assert_contains("for-ann-6");
    assert!(!page.body.contains("for-ann-5<"), "the 21st is on the next page");
    assert!(!page.body.contains("for-bob"), "another user's notification is never listed");
    assert_eq!(page.body.matches("class=\"notification unread\"").count(), 20);
    assert!(page.body.find("for-ann-25").unwrap() < page.body.find("for-ann-24").unwrap(), "newest first");
    let cursor = after_cursor(&page.body).expect("a Load more link");

    // Without JavaScript: a whole page; with htmx: just the next items.
    let next = ann.get(&format!("/notifications?after={cursor}")).await;
    next.assert_status(200).assert_contains("for-ann-5").assert_contains("for-ann-1").assert_contains("<html");
    assert!(!next.body.contains("for-ann-6<"));
    assert!(after_cursor(&next.body).is_none(), "the last page has no Load more");
    let frag = ann.get_with(&format!("/notifications?after={cursor}"), &[("hx-request", "true")]).await;
    frag.assert_status(200).assert_contains("for-ann-5");
    assert!(!frag.body.contains("<html"), "htmx gets the items only");
    // A malformed cursor starts at the top.
    ann.get("/notifications?after=x").await.assert_status(200).assert_contains("for-ann-25");
}

#[tokio::test]
async fn an_empty_list_says_what_will_appear_there() {
    let app = TestApp::new().await;
    let (ann, _) = user(&app, "ann").await;
    let page = ann.get("/notifications").await;
    page.assert_status(200).assert_contains("Nothing here yet");
    assert!(!page.body.contains("Mark all as read"));
}

#[tokio::test]
async fn the_navigation_shows_the_unread_count_capped_at_99_plus() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let (_bob, bob_id) = user(&app, "bob").await;
    let home = ann.get("/").await;
    home.assert_status(200).assert_contains("<a id=\"nav-notifications\" href=\"/notifications\"");
    assert!(!home.body.contains("class=\"badge\""), "no badge at zero");

    insert(&app, ann_id, bob_id, "n", 3).await;
    // The count fragment is counted afresh; pages use the session's (cached up to 5 s).
    let frag = ann.get("/notifications/count").await;
    frag.assert_status(200).assert_contains("<span class=\"badge\">3</span>");
    assert!(frag.body.trim_start().starts_with("<a id=\"nav-notifications\""), "just the link: {}", frag.body);
    tokio::time::sleep(app::sessions::CACHE_TTL).await;
    ann.get("/stories/new").await.assert_status(200).assert_contains("<span class=\"badge\">3</span>");

    insert(&app, ann_id, bob_id, "more", 150).await;
    ann.get("/notifications/count").await.assert_contains("<span class=\"badge\">99+</span>");
}

#[tokio::test]
async fn marking_one_read_is_only_for_the_owner_and_updates_the_count_at_once() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let (bob, bob_id) = user(&app, "bob").await;
    let ids = insert(&app, ann_id, bob_id, "n", 2).await;
    let theirs = insert(&app, bob_id, ann_id, "b", 1).await;
    ann.get("/").await.assert_contains("<span class=\"badge\">2</span>");

    // Another user's notification: 404, and it stays unread.
    ann.post_form("/notifications/read", &[("id", &theirs[0].to_string())]).await.assert_status(404);
    ann.post_form("/notifications/read", &[("id", "999999")]).await.assert_status(404);
    ann.post_form("/notifications/read", &[("id", "abc")]).await.assert_status(404);
    assert_eq!(app.count("SELECT count(*) FROM notifications WHERE read_at IS NOT NULL").await, 0);

    let r = ann.post_form("/notifications/read", &[("id", &ids[0].to_string())]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/notifications"));
    assert_eq!(app.count(&format!("SELECT count(*) FROM notifications WHERE read_at IS NOT NULL AND id = {}", ids[0])).await, 1);
    // No waiting for the session cache: the write evicted it.
    let page = ann.get("/notifications").await;
    page.assert_contains("<span class=\"badge\">1</span>");
    assert_eq!(page.body.matches("class=\"notification unread\"").count(), 1);

    // htmx: the item, read, plus the navigation out of band.
    let token = ann.csrf_token().await;
    let r = ann
        .post_raw(
            "/notifications/read",
            "application/x-www-form-urlencoded",
            format!("id={}", ids[1]).into_bytes(),
            &[("hx-request", "true"), ("x-csrf-token", &token)],
        )
        .await;
    r.assert_status(200).assert_contains(&format!("id=\"notification-{}\"", ids[1])).assert_contains("hx-swap-oob=\"true\"");
    assert!(!r.body.contains("class=\"notification unread\"") && !r.body.contains("class=\"badge\""), "{}", r.body);
    // bob's own is untouched.
    bob.get("/notifications").await.assert_contains("class=\"notification unread\"");
}

#[tokio::test]
async fn mark_all_read_marks_only_the_viewers_own() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let (_bob, bob_id) = user(&app, "bob").await;
    insert(&app, ann_id, bob_id, "n", 30).await;
    insert(&app, bob_id, ann_id, "b", 2).await;
    ann.get("/notifications").await.assert_contains("Mark all as read");
    ann.post_form("/notifications/read", &[]).await.assert_status(303);
    assert_eq!(app.count(&format!("SELECT count(*) FROM notifications WHERE user_id = {ann_id} AND read_at IS NULL")).await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM notifications WHERE user_id = {bob_id} AND read_at IS NULL")).await, 2);
    let page = ann.get("/notifications").await;
    assert!(!page.body.contains("class=\"badge\"") && !page.body.contains("notification unread"));

    // htmx: the list in place.
    insert(&app, ann_id, bob_id, "again", 1).await;
    let token = ann.csrf_token().await;
    let r = ann.post_raw("/notifications/read", "application/x-www-form-urlencoded", Vec::new(), &[("hx-request", "true"), ("x-csrf-token", &token)]).await;
    r.assert_status(200).assert_contains("id=\"notification-list\"").assert_contains("hx-swap-oob=\"true\"");
    assert!(!r.body.contains("<html"));
}

#[tokio::test]
async fn actions_need_the_csrf_token() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let (_bob, bob_id) = user(&app, "bob").await;
    let ids = insert(&app, ann_id, bob_id, "n", 1).await;
    ann.post_form_raw("/notifications/read", &[("id", &ids[0].to_string())]).await.assert_status(403);
    ann.post_form_raw("/notifications/read", &[]).await.assert_status(403);
    ann.post_form_raw("/settings/notifications", &[("follow", "off"), ("like", "off"), ("comment", "off"), ("reply", "off"), ("chapter", "off")])
        .await
        .assert_status(403);
    assert_eq!(app.count("SELECT count(*) FROM notifications WHERE read_at IS NOT NULL").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM notification_prefs").await, 0);
}

async fn prefs_of(app: &TestApp, id: i64) -> Option<(String, String, String, String, String)> {
    sqlx::query_as("SELECT email_follow, email_like, email_comment, email_reply, email_chapter FROM notification_prefs WHERE user_id = $1")
        .bind(id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap()
}

fn checked(body: &str, name: &str, value: &str) -> bool {
    body.contains(&format!("name=\"{name}\" value=\"{value}\" checked"))
}

#[tokio::test]
async fn email_preferences_show_the_defaults_save_and_refuse_bad_values_with_422() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let page = ann.get("/settings/notifications").await;
    page.assert_status(200);
    for (name, value) in [("chapter", "instant"), ("reply", "instant"), ("comment", "instant"), ("follow", "daily"), ("like", "off")] {
        assert!(checked(&page.body, name, value), "{name} defaults to {value}");
    }

    let all = [("follow", "off"), ("like", "daily"), ("comment", "daily"), ("reply", "off"), ("chapter", "daily")];
    let r = ann.post_form("/settings/notifications", &all).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/settings/notifications"));
    assert_eq!(prefs_of(&app, ann_id).await, Some(("off".into(), "daily".into(), "daily".into(), "off".into(), "daily".into())));
    let page = ann.get("/settings/notifications").await;
    page.assert_contains("Your email preferences are saved.");
    assert!(checked(&page.body, "like", "daily") && checked(&page.body, "reply", "off"));

    // An unknown value, and a missing field: 422 with the form and the error, nothing saved.
    let bad = [("follow", "instant"), ("like", "weekly"), ("comment", "off"), ("reply", "off")];
    let r = ann.post_form("/settings/notifications", &bad).await;
    r.assert_status(422).assert_contains("Choose instant, daily or off.").assert_contains("<form id=\"notification-settings\"");
    assert!(r.body.contains("id=\"like-error\"") && r.body.contains("id=\"chapter-error\""));
    assert!(!r.body.contains("id=\"follow-error\""));
    assert_eq!(prefs_of(&app, ann_id).await.unwrap().0, "off", "nothing saved");
    // htmx gets the form alone.
    let token = ann.csrf_token().await;
    let body = serde_urlencoded::to_string(bad).unwrap().into_bytes();
    let r = ann.post_raw("/settings/notifications", "application/x-www-form-urlencoded", body, &[("hx-request", "true"), ("x-csrf-token", &token)]).await;
    r.assert_status(422).assert_contains("Choose instant, daily or off.");
    assert!(!r.body.contains("<html"));
}

#[tokio::test]
async fn unsubscribe_confirms_on_get_and_turns_that_kind_off_on_post_even_without_cookies() {
    let app = TestApp::new().await;
    let (ann, ann_id) = user(&app, "ann").await;
    let key = &app.state.config.secret_key;
    let token = unsubscribe::token(key, ann_id, Scope::One(Kind::Chapter));

    // GET only asks (link scanners must not unsubscribe anyone).
    let stranger = app.new_browser();
    let page = stranger.get(&format!("/unsubscribe/{token}")).await;
    page.assert_status(200).assert_contains("An author you follow publishes a chapter").assert_contains(&format!("action=\"/unsubscribe/{token}\""));
    assert_eq!(prefs_of(&app, ann_id).await, None);

    // RFC 8058 one-click: a mail client's POST, no cookies at all, no CSRF token.
    let client = app.new_browser();
    let r = client.post_raw(&format!("/unsubscribe/{token}"), "application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click".to_vec(), &[]).await;
    r.assert_status(200).assert_contains("You are unsubscribed");
    assert_eq!(prefs_of(&app, ann_id).await, Some(("daily".into(), "off".into(), "instant".into(), "instant".into(), "off".into())), "only chapter turned off");

    // The digest's link turns everything off; also from a logged-in browser with a
    // (valid) token, and twice is fine.
    let all = unsubscribe::token(key, ann_id, Scope::All);
    ann.post_form(&format!("/unsubscribe/{all}"), &[]).await.assert_status(200);
    ann.post_form(&format!("/unsubscribe/{all}"), &[]).await.assert_status(200);
    assert_eq!(prefs_of(&app, ann_id).await, Some(("off".into(), "off".into(), "off".into(), "off".into(), "off".into())));
}

#[tokio::test]
async fn forged_or_foreign_unsubscribe_tokens_are_404_and_change_nothing() {
    let app = TestApp::new().await;
    let (_ann, ann_id) = user(&app, "ann").await;
    let (_bob, bob_id) = user(&app, "bob").await;
    let key = &app.state.config.secret_key;
    let real = unsubscribe::token(key, ann_id, Scope::One(Kind::Like));
    let sig = real.rsplit('.').next().unwrap().to_string();
    let forged = [
        format!("{bob_id}.like.{sig}"),
        format!("{ann_id}.all.{sig}"),
        unsubscribe::token(b"another key", ann_id, Scope::All),
        "garbage".into(),
        format!("{ann_id}.like.{}", "A".repeat(43)),
    ];
    let client = app.new_browser();
    for t in &forged {
        client.get(&format!("/unsubscribe/{t}")).await.assert_status(404);
        client.post_raw(&format!("/unsubscribe/{t}"), "application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click".to_vec(), &[]).await.assert_status(404);
    }
    assert_eq!(app.count("SELECT count(*) FROM notification_prefs").await, 0);
    // Signed, but the account is gone: 404, not a 500.
    sqlx::query("DELETE FROM users WHERE id = $1").bind(bob_id).execute(&app.db.pool).await.unwrap();
    let gone = unsubscribe::token(key, bob_id, Scope::All);
    client.post_raw(&format!("/unsubscribe/{gone}"), "application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click".to_vec(), &[]).await.assert_status(404);
    // The exemption is that path only: any other POST without a token is still refused.
    client.post_raw("/unsubscribe/a/b", "application/x-www-form-urlencoded", Vec::new(), &[]).await.assert_status(403);
    client.post_raw("/notifications/read", "application/x-www-form-urlencoded", Vec::new(), &[]).await.assert_status(403);
}

async fn notify_jobs(app: &TestApp) -> Vec<serde_json::Value> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT job FROM apalis.jobs ORDER BY run_at, id").fetch_all(&app.db.pool).await.unwrap();
    rows.into_iter()
        .map(|(j,)| serde_json::from_slice::<serde_json::Value>(&j).unwrap())
        .filter(|e| e["name"] == "notify")
        .map(|e| e["args"]["activity"].clone())
        .collect()
}

#[tokio::test]
async fn chapters_enqueue_a_chapter_notification_only_once_published() {
    let app = TestApp::new().await;
    let (w, w_id) = user(&app, "wren").await;
    let r = w.post_form("/stories", &[("title", "Tides"), ("summary", "Sea."), ("tags", "")]).await;
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    // A draft's chapters tell nobody.
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "One"), ("body", "First.")]).await.assert_status(303);
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "Two"), ("body", "Second.")]).await.assert_status(303);
    assert!(notify_jobs(&app).await.is_empty());
    // Publishing announces the latest chapter, once.
    w.post_form(&format!("/s/{id}/edit"), &[("title", "Tides"), ("summary", "Sea."), ("tags", ""), ("status", "published")]).await.assert_status(303);
    let expected = |n: i32| serde_json::json!({"kind": "chapter", "story_id": id, "author_id": w_id, "number": n});
    assert_eq!(notify_jobs(&app).await, vec![expected(2)]);
    // Saving a published story again is no new publication.
    w.post_form(&format!("/s/{id}/edit"), &[("title", "Tides!"), ("summary", "Sea."), ("tags", ""), ("status", "published")]).await.assert_status(303);
    assert_eq!(notify_jobs(&app).await.len(), 1);
    // A chapter of a published story: announced.
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "Three"), ("body", "Third.")]).await.assert_status(303);
    assert_eq!(notify_jobs(&app).await, vec![expected(2), expected(3)]);
    // A refused chapter (empty body) enqueues nothing.
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "Four"), ("body", "")]).await.assert_status(422);
    assert_eq!(notify_jobs(&app).await.len(), 2);
}

#[tokio::test]
async fn publishing_a_story_without_chapters_tells_nobody() {
    let app = TestApp::new().await;
    let (w, _) = user(&app, "wren").await;
    let r = w.post_form("/stories", &[("title", "Empty"), ("summary", ""), ("tags", "")]).await;
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    w.post_form(&format!("/s/{id}/edit"), &[("title", "Empty"), ("summary", ""), ("tags", ""), ("status", "published")]).await.assert_status(303);
    assert!(notify_jobs(&app).await.is_empty());
}
