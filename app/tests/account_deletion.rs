//! Account deletion (`POST /settings/delete`) through the real routes and database: a
//! wrong password deletes nothing; `delete` removes stories, chapters and comments,
//! `anonymise` keeps what was published under "deleted user"; counters stay exact;
//! sessions end; media deletion is queued; the audit row outlives the user; the username
//! is held back for 30 days. Also the account's security events on /settings/sessions
//! (password and email changes, revoked sessions), which only their owner sees.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

/// A verified writer, logged in in a browser of their own.
async fn writer(app: &TestApp, name: &str) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now(), role = 'writer' WHERE username = $1")
        .bind(name)
        .execute(&app.db.pool)
        .await
        .unwrap();
    b
}

async fn uid(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(name).fetch_one(&app.db.pool).await.unwrap()
}

/// A published story with `chapters` chapters.
async fn published(b: &TestApp, title: &str, chapters: usize) -> i64 {
    let id = draft(b, title).await;
    for n in 1..=chapters {
        b.post_form(&format!("/s/{id}/chapters"), &[("title", &format!("Part {n}")), ("body", "Some words here.")]).await.assert_status(303);
    }
    b.post_form(&format!("/s/{id}/edit"), &[("title", title), ("summary", "A summary."), ("tags", ""), ("status", "published")])
        .await
        .assert_status(303);
    id
}

async fn draft(b: &TestApp, title: &str) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", "A summary."), ("tags", "")]).await;
    r.assert_status(303);
    r.location().unwrap().trim_start_matches("/s/").parse().unwrap()
}

async fn comment(b: &TestApp, story: i64, body: &str) -> i64 {
    b.post_form(&format!("/s/{story}/comments"), &[("body", body)]).await.assert_status(303);
    sqlx::query_scalar("SELECT id FROM comments WHERE body_markdown = $1").bind(body).fetch_one(&b.db.pool).await.unwrap()
}

async fn delete(b: &TestApp, password: &str, content: &str) -> Resp {
    b.post_form("/settings/delete", &[("password", password), ("content", content)]).await
}

/// Every counter column equals what it counts, for every user and story.
async fn assert_counters_exact(app: &TestApp) {
    let off = app
        .count(
            "SELECT count(*) FROM users u WHERE follower_count <> (SELECT count(*) FROM follows f WHERE f.followee_id = u.id)
                OR following_count <> (SELECT count(*) FROM follows f WHERE f.follower_id = u.id)",
        )
        .await;
    assert_eq!(off, 0, "a follow counter is off");
    let off = app.count("SELECT count(*) FROM stories s WHERE like_count <> (SELECT count(*) FROM likes l WHERE l.story_id = s.id)").await;
    assert_eq!(off, 0, "a like counter is off");
    let off = app
        .count("SELECT count(*) FROM stories s WHERE comment_count <> (SELECT count(*) FROM comments c WHERE c.story_id = s.id AND c.deleted_at IS NULL)")
        .await;
    assert_eq!(off, 0, "a comment counter is off");
}

async fn deletion_audit_rows(app: &TestApp, user_id: i64) -> Vec<serde_json::Value> {
    sqlx::query_scalar("SELECT after FROM audit_log WHERE action = 'account.deleted' AND subject_id = $1 AND object_id = $1::text")
        .bind(user_id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_wrong_password_or_a_forged_choice_is_422_and_deletes_nothing() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let story = published(&alice, "Kept safe", 1).await;
    let a = uid(&app, "alice").await;

    let r = delete(&alice, "not my password", "delete").await;
    r.assert_status(422).assert_contains("not your current password").assert_contains("Delete your account");
    // The settings page again, with the profile form as it was.
    r.assert_contains("Display name").assert_contains(r#"aria-describedby="delete-password-error""#);
    delete(&alice, "", "delete").await.assert_status(422).assert_contains("Enter your current password");
    let forged = delete(&alice, PW, "everything").await;
    forged.assert_status(422).assert_contains("Choose whether to delete");
    let long = "p".repeat(2000);
    delete(&alice, &long, "delete").await.assert_status(422);
    // htmx gets the form alone.
    let token = alice.csrf_token().await;
    let body = serde_urlencoded::to_string([("csrf_token", token.as_str()), ("password", "nope nope nope"), ("content", "anonymise")]).unwrap();
    let frag = alice.post_raw("/settings/delete", "application/x-www-form-urlencoded", body.into_bytes(), &[("hx-request", "true")]).await;
    frag.assert_status(422).assert_contains("not your current password");
    assert!(!frag.body.contains("<html"), "a fragment, not a page");
    assert!(frag.body.contains(r#"value="anonymise" checked"#), "the choice is kept");

    assert_eq!(app.count(&format!("SELECT count(*) FROM users WHERE id = {a}")).await, 1);
    assert_eq!(app.count(&format!("SELECT count(*) FROM stories WHERE id = {story}")).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM retired_usernames").await, 0);
    assert!(deletion_audit_rows(&app, a).await.is_empty());
    alice.get("/settings").await.assert_status(200).assert_contains("Delete your account");
}

#[tokio::test]
async fn attempts_are_rate_limited_per_account() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    for _ in 0..5 {
        delete(&alice, "wrong password!", "delete").await.assert_status(422);
    }
    // Over the limit even the right password is refused.
    delete(&alice, PW, "delete").await.assert_status(429).assert_contains("Too many attempts");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 1);
}

#[tokio::test]
async fn deletion_needs_the_csrf_token_and_a_login() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    alice.post_form_raw("/settings/delete", &[("password", PW), ("content", "delete")]).await.assert_status(403);
    alice.post_form_raw("/settings/delete", &[("csrf_token", "forged"), ("password", PW)]).await.assert_status(403);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 1);
    let anon = app.new_browser();
    let r = anon.post_form("/settings/delete", &[("password", PW)]).await;
    assert!(r.status.is_redirection(), "anonymous: sent to log in, got {}", r.status);
    assert!(r.location().unwrap_or_default().starts_with("/login"), "{:?}", r.location());
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 1);
}

#[tokio::test]
async fn delete_mode_removes_stories_and_comments_and_keeps_every_counter_exact() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let bob = writer(&app, "bob").await;
    let carol = writer(&app, "carol").await;
    let (a, b, c) = (uid(&app, "alice").await, uid(&app, "bob").await, uid(&app, "carol").await);
    let hers = published(&alice, "Her story", 2).await;
    let her_draft = draft(&alice, "Her draft").await;
    let his = published(&bob, "His story", 1).await;
    // Alice likes and comments on Bob's story; Bob replies to her comment; Bob likes and
    // comments on hers; Carol follows Alice, Alice follows Bob and Carol.
    alice.post_form(&format!("/s/{his}/like"), &[]).await.assert_status(303);
    bob.post_form(&format!("/s/{hers}/like"), &[]).await.assert_status(303);
    carol.post_form(&format!("/s/{his}/like"), &[]).await.assert_status(303);
    let her_comment = comment(&alice, his, "Alice was here, in plain words").await;
    let her_second = comment(&alice, his, "Another remark by alice").await;
    bob.post_form(&format!("/s/{his}/comments"), &[("body", "Bob answers Alice"), ("parent_id", &her_comment.to_string())]).await.assert_status(303);
    comment(&bob, hers, "Bob on her story").await;
    carol.post_form("/u/alice/follow", &[]).await.assert_status(303);
    alice.post_form("/u/bob/follow", &[]).await.assert_status(303);
    alice.post_form("/u/carol/follow", &[]).await.assert_status(303);
    alice.post_form(&format!("/s/{his}/save"), &[]).await.assert_status(303);
    assert_counters_exact(&app).await;
    let his_comments_before: i32 = sqlx::query_scalar("SELECT comment_count FROM stories WHERE id = $1").bind(his).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(his_comments_before, 3);

    let r = delete(&alice, PW, "delete").await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/"));
    alice.get("/").await.assert_status(200).assert_contains("Log in").assert_contains("Your account and everything in it have been deleted");

    // Her stories are gone with their chapters; his stays, with exact counts.
    assert_eq!(app.count(&format!("SELECT count(*) FROM users WHERE id = {a}")).await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM stories WHERE id IN ({hers}, {her_draft})")).await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM chapters WHERE story_id = {hers}")).await, 0);
    bob.get(&format!("/s/{hers}")).await.assert_status(404);
    assert_counters_exact(&app).await;
    let (likes, comments): (i32, i32) =
        sqlx::query_as("SELECT like_count, comment_count FROM stories WHERE id = $1").bind(his).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(likes, 1, "Carol's like is left");
    assert_eq!(comments, 1, "Bob's reply is left");
    let (followers, following): (i32, i32) =
        sqlx::query_as("SELECT follower_count, following_count FROM users WHERE id = $1").bind(b).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((followers, following), (0, 0));
    let (followers, following): (i32, i32) =
        sqlx::query_as("SELECT follower_count, following_count FROM users WHERE id = $1").bind(c).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((followers, following), (0, 0));
    // Her words are gone from the database; Bob's reply keeps its thread.
    assert_eq!(app.count("SELECT count(*) FROM comments WHERE body_markdown LIKE '%lice%' AND deleted_at IS NULL AND body_markdown <> 'Bob answers Alice'").await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM comments WHERE id IN ({her_comment}, {her_second}) AND body_markdown = '' AND deleted_at IS NOT NULL")).await, 2);
    let page = bob.get(&format!("/s/{his}")).await;
    page.assert_status(200).assert_contains("Bob answers Alice");
    assert!(!page.body.contains("Alice was here"), "her comment's text is gone");
    assert!(!page.body.contains("/u/alice"), "no link to her profile");
    assert_eq!(app.count(&format!("SELECT count(*) FROM saves WHERE user_id = {a}")).await, 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM likes WHERE user_id = {a}")).await, 0);
    bob.get("/u/alice").await.assert_status(404);

    // The audit row outlives her, with what was done.
    let rows = deletion_audit_rows(&app, a).await;
    assert_eq!(rows.len(), 1);
    let after = &rows[0];
    assert_eq!(after["mode"], "delete");
    assert_eq!(after["stories_deleted"], 2);
    assert_eq!(after["comments_deleted"], 2);
    assert_eq!(after["likes_removed"], 1);
    assert_eq!(after["follows_removed"], 3);
    let (actor, ip): (Option<i64>, String) =
        sqlx::query_as("SELECT actor_id, ip FROM audit_log WHERE action = 'account.deleted'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(actor, Some(a));
    assert!(!ip.is_empty());
    assert_eq!(app.count("SELECT count(*) FROM retired_usernames WHERE username = 'alice'").await, 1);
}

#[tokio::test]
async fn anonymise_mode_keeps_published_work_under_deleted_user() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let bob = writer(&app, "bob").await;
    let hers = published(&alice, "A story worth keeping", 2).await;
    let her_draft = draft(&alice, "An unfinished draft").await;
    let his = published(&bob, "His story", 1).await;
    comment(&alice, his, "A thoughtful remark").await;
    comment(&bob, hers, "Lovely work").await;
    bob.post_form(&format!("/s/{hers}/like"), &[]).await.assert_status(303);
    bob.post_form("/u/alice/follow", &[]).await.assert_status(303);

    let r = delete(&alice, PW, "anonymise").await;
    r.assert_status(303);
    alice.get("/").await.assert_contains("shown as by “deleted user”");

    // Published: kept, with chapters, likes and comments, attributed to "deleted user".
    let page = bob.get(&format!("/s/{hers}")).await;
    page.assert_status(200).assert_contains("A story worth keeping").assert_contains("deleted user").assert_contains("Lovely work");
    assert!(!page.body.contains("alice"), "nothing names her");
    bob.get(&format!("/s/{hers}/c/2")).await.assert_status(200);
    // Drafts nobody could ever read again are deleted.
    assert_eq!(app.count(&format!("SELECT count(*) FROM stories WHERE id = {her_draft}")).await, 0);
    let his_page = bob.get(&format!("/s/{his}")).await;
    his_page.assert_contains("A thoughtful remark").assert_contains("deleted user");
    assert_counters_exact(&app).await;
    let likes: i32 = sqlx::query_scalar("SELECT like_count FROM stories WHERE id = $1").bind(hers).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(likes, 1, "Bob's like on the kept story stays");
    let bob_following: i32 = sqlx::query_scalar("SELECT following_count FROM users WHERE username = 'bob'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(bob_following, 0);

    // The system account: a reader whose profile says what it is, and who cannot log in.
    let (role, display): (String, String) =
        sqlx::query_as("SELECT role::text, display_name FROM users WHERE username = 'deleted_user'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((role.as_str(), display.as_str()), ("reader", "deleted user"));
    let profile = bob.get("/u/deleted_user").await;
    profile.assert_status(200).assert_contains("<h1>deleted user</h1>").assert_contains("A story worth keeping");
    assert!(!profile.body.contains("/u/deleted_user/follow\""), "no follow button");
    let anon = app.new_browser();
    for pw in [PW, "!no-login: system account", "anything else"] {
        anon.login("deleted_user", pw).await.assert_status(200).assert_contains("do not match");
    }
    anon.login("deleted_user@quire.invalid", PW).await.assert_status(200).assert_contains("do not match");
    assert!(anon.cookie("quire_session").is_none());
    // No reset link is ever made for it.
    let jobs = app.count("SELECT count(*) FROM apalis.jobs").await;
    anon.post_form("/password/forgot", &[("email", "deleted_user@quire.invalid")]).await.assert_status(200);
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, jobs);
    // Nor can anyone sign up as it.
    anon.signup("deleted_user", "x@example.com", PW).await.assert_status(422).assert_contains("reserved");

    // A second deletion reuses the system account.
    delete(&bob, PW, "anonymise").await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'deleted_user'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM stories WHERE author_id = (SELECT id FROM users WHERE username = 'deleted_user')").await, 2);
    assert_counters_exact(&app).await;
}

#[tokio::test]
async fn every_session_ends_and_the_old_cookie_is_anonymous() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let phone = app.new_browser();
    phone.login("alice", PW).await.assert_status(303);
    phone.get("/settings").await.assert_status(200);
    let old_cookie = alice.cookie("quire_session").unwrap();

    delete(&alice, PW, "").await.assert_status(303);
    assert!(alice.cookie("quire_session").is_none(), "the cookie is expired");
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0);
    // The other device and a replayed cookie are anonymous.
    phone.get("/").await.assert_status(200).assert_contains("Log in");
    let r = phone.get("/settings").await;
    r.assert_status(303);
    let replay = app.new_browser();
    replay.set_cookie("quire_session", &old_cookie);
    replay.get("/").await.assert_contains("Log in");
    assert!(!replay.get("/").await.body.contains("alice"));
    // Logging in again fails: the account is gone.
    replay.login("alice", PW).await.assert_status(200).assert_contains("do not match");
}

#[tokio::test]
async fn the_username_is_held_for_30_days_then_free_again() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    delete(&alice, PW, "delete").await.assert_status(303);

    let someone = app.new_browser();
    // Case does not help; the email address, though, is free at once.
    someone.signup("Alice", "new-alice@example.com", PW).await.assert_status(422).assert_contains("deleted less than 30 days ago");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 0);
    someone.signup("alice2", "alice@example.com", PW).await.assert_status(303);

    let later = app.new_browser();
    sqlx::query("UPDATE retired_usernames SET retired_at = now() - interval '29 days 23 hours'").execute(&app.db.pool).await.unwrap();
    later.signup("alice", "third@example.com", PW).await.assert_status(422);
    sqlx::query("UPDATE retired_usernames SET retired_at = now() - interval '30 days 1 minute'").execute(&app.db.pool).await.unwrap();
    later.signup("alice", "third@example.com", PW).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 1);
}

#[tokio::test]
async fn media_rows_outlive_the_user_until_their_deletion_jobs_run() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let a = uid(&app, "alice").await;
    let story = published(&alice, "With a cover", 1).await;
    // An avatar and a cover, as the upload path stores them.
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height)
         VALUES ($1, 'avatar', 'originals/a.png', 'image/png', 10, 1, 1), ($1, 'cover', 'originals/c.png', 'image/png', 10, 1, 1)
         RETURNING id",
    )
    .bind(a)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET avatar_id = $2 WHERE id = $1").bind(a).bind(ids[0]).execute(&app.db.pool).await.unwrap();
    sqlx::query("UPDATE stories SET cover_id = $2 WHERE id = $1").bind(story).bind(ids[1]).execute(&app.db.pool).await.unwrap();

    delete(&alice, PW, "anonymise").await.assert_status(303);
    // The rows are still there (their files are the job's business), nothing refers to
    // them, nobody owns them as a person, and one delete_media job per row is queued.
    assert_eq!(app.count(&format!("SELECT count(*) FROM media WHERE id IN ({}, {})", ids[0], ids[1])).await, 2);
    assert_eq!(app.count(&format!("SELECT count(*) FROM stories WHERE id = {story} AND cover_id IS NULL")).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM media WHERE owner_id <> (SELECT id FROM users WHERE username = 'deleted_user')").await, 0);
    let queued: Vec<i64> = sqlx::query_scalar(
        "SELECT (convert_from(job, 'UTF8')::jsonb -> 'args' ->> 'media_id')::bigint FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb ->> 'name' = 'delete_media' ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(queued, ids);
    let after = deletion_audit_rows(&app, a).await;
    assert_eq!(after[0]["media_queued_for_deletion"], 2);
    // And they are no longer anyone's to see.
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT public_id FROM media WHERE id = $1").bind(ids[0]).fetch_one(&app.db.pool).await.unwrap();
    assert!(app::media::db::visible_to(&app.db.pool, uuid, None).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failure_midway_rolls_everything_back() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let bob = writer(&app, "bob").await;
    let his = published(&bob, "His story", 1).await;
    alice.post_form(&format!("/s/{his}/like"), &[]).await.assert_status(303);
    comment(&alice, his, "Still here after the failure").await;
    // The audit insert is made to fail (the last step before the user row goes).
    sqlx::query("ALTER TABLE audit_log ADD CONSTRAINT fail_deletions CHECK (action <> 'account.deleted') NOT VALID")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let r = delete(&alice, PW, "delete").await;
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM likes").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM comments WHERE body_markdown = 'Still here after the failure'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM retired_usernames").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'deleted_user'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'alice')").await, 1);
    assert_counters_exact(&app).await;
    alice.get("/settings").await.assert_status(200);
}

// ---- security events ----------------------------------------------------------------

#[tokio::test]
async fn revoking_a_session_is_audited_and_shown_to_its_owner_only() {
    let app = TestApp::new().await;
    let kim = writer(&app, "kim").await;
    let laptop = app.new_browser();
    laptop.login("kim", PW).await.assert_status(303);
    let other = writer(&app, "other").await;
    let k = uid(&app, "kim").await;
    kim.get("/settings/sessions").await.assert_status(200).assert_contains("No security events yet");

    let laptop_session: i64 = sqlx::query_scalar("SELECT max(public_id) FROM sessions WHERE user_id = $1").bind(k).fetch_one(&app.db.pool).await.unwrap();
    // Someone else's attempt is a 404 and writes nothing.
    other.post_form(&format!("/settings/sessions/{laptop_session}/revoke"), &[]).await.assert_status(404);
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 0);
    kim.post_form(&format!("/settings/sessions/{laptop_session}/revoke"), &[]).await.assert_status(303);
    laptop.get("/").await.assert_contains("Log in");
    let (object, subject, actor): (String, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT object_id, subject_id, actor_id FROM audit_log WHERE action = 'account.session_revoked'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((object, subject, actor), (laptop_session.to_string(), Some(k), Some(k)));

    let page = kim.get("/settings/sessions").await;
    page.assert_status(200).assert_contains("Security events").assert_contains("A session was ended");
    assert!(!page.body.contains("No security events yet"));
    let theirs = other.get("/settings/sessions").await;
    theirs.assert_status(200).assert_contains("No security events yet");
    assert!(!theirs.body.contains("A session was ended"));
}

#[tokio::test]
async fn password_change_is_checked_audited_and_logs_out_the_other_sessions() {
    let app = TestApp::new().await;
    let kim = writer(&app, "kim").await;
    let laptop = app.new_browser();
    laptop.login("kim", PW).await.assert_status(303);
    let new_pw = "an entirely new passphrase";

    kim.post_form("/settings/password", &[("current_password", "wrong wrong wrong"), ("password", new_pw)])
        .await
        .assert_status(422)
        .assert_contains("not your current password");
    kim.post_form("/settings/password", &[("current_password", PW), ("password", "short")]).await.assert_status(422).assert_contains("at least 10");
    kim.post_form("/settings/password", &[("current_password", PW), ("password", PW)]).await.assert_status(422).assert_contains("different");
    kim.post_form_raw("/settings/password", &[("current_password", PW), ("password", new_pw)]).await.assert_status(403);
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 0);

    let r = kim.post_form("/settings/password", &[("current_password", PW), ("password", new_pw)]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/settings"));
    kim.get("/settings").await.assert_status(200).assert_contains("other session was logged out");
    laptop.get("/").await.assert_contains("Log in");
    let anon = app.new_browser();
    anon.login("kim", PW).await.assert_contains("do not match");
    anon.login("kim", new_pw).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'account.password_changed'").await, 1);
    kim.get("/settings/sessions").await.assert_contains("Password changed");
}

#[tokio::test]
async fn password_reset_is_audited_as_the_owner() {
    let app = TestApp::new().await;
    let mona = writer(&app, "mona").await;
    let m = uid(&app, "mona").await;
    let mut conn = app.db.pool.acquire().await.unwrap();
    let user = app::accounts::users::find_by_id(&mut *conn, m).await.unwrap().unwrap();
    let token = app::accounts::users::create_token(&mut conn, &user, app::accounts::users::TokenPurpose::ResetPassword).await.unwrap();
    let anon = app.new_browser();
    anon.post_form(&format!("/password/reset/{token}"), &[("password", "a brand new password")]).await.assert_status(303);
    let (actor, actor_name, subject): (Option<i64>, String, Option<i64>) =
        sqlx::query_as("SELECT actor_id, actor_name, subject_id FROM audit_log WHERE action = 'account.password_changed'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((actor, actor_name.as_str(), subject), (Some(m), "mona", Some(m)));
    mona.login("mona", "a brand new password").await.assert_status(303);
    mona.get("/settings/sessions").await.assert_contains("Password reset with an emailed link");
}

#[tokio::test]
async fn email_change_is_checked_audited_and_needs_confirming() {
    let app = TestApp::new().await;
    let kim = writer(&app, "kim").await;
    writer(&app, "taken").await;
    let k = uid(&app, "kim").await;

    kim.post_form("/settings/email", &[("email", "kim2@example.com"), ("password", "wrong wrong")]).await.assert_status(422).assert_contains("not your current password");
    kim.post_form("/settings/email", &[("email", "not an email"), ("password", PW)]).await.assert_status(422).assert_contains("valid email");
    kim.post_form("/settings/email", &[("email", "TAKEN@example.com"), ("password", PW)]).await.assert_status(422).assert_contains("Another account");
    kim.post_form("/settings/email", &[("email", "kim@example.com"), ("password", PW)]).await.assert_status(422).assert_contains("already your email");
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 0);
    let jobs = app.count("SELECT count(*) FROM apalis.jobs").await;

    kim.post_form("/settings/email", &[("email", "kim.new@example.com"), ("password", PW)]).await.assert_status(303);
    let (email, verified): (String, bool) =
        sqlx::query_as("SELECT email, email_verified_at IS NOT NULL FROM users WHERE id = $1").bind(k).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((email.as_str(), verified), ("kim.new@example.com", false));
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs").await, jobs + 1, "a confirmation mail to the new address");
    let (before, after): (serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT before, after FROM audit_log WHERE action = 'account.email_changed' AND subject_id = $1").bind(k).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(before["email"], "kim@example.com");
    assert_eq!(after["email"], "kim.new@example.com");
    kim.get("/settings/sessions").await.assert_contains("Email address changed");
}

#[tokio::test]
async fn staff_actions_show_without_the_staff_members_address() {
    let app = TestApp::new().await;
    let kim = writer(&app, "kim").await;
    let k = uid(&app, "kim").await;
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_name, action, object_kind, object_id, subject_id, ip, user_agent)
         VALUES (99999, 'a_moderator', 'user.banned', 'user', $1::text, $1, '203.0.113.77', 'ModeratorBrowser/1.0')",
    )
    .bind(k)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let page = kim.get("/settings/sessions").await;
    page.assert_status(200).assert_contains("Your account was suspended").assert_contains("Quire staff");
    assert!(!page.body.contains("203.0.113.77"), "the moderator's IP is not shown");
    assert!(!page.body.contains("ModeratorBrowser"), "nor their browser");
}

#[tokio::test]
async fn two_concurrent_deletions_delete_once_and_neither_is_a_500() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let phone = app.new_browser();
    phone.login("alice", PW).await.assert_status(303);
    let bob = writer(&app, "bob").await;
    let his = published(&bob, "His story", 1).await;
    alice.post_form(&format!("/s/{his}/like"), &[]).await.assert_status(303);
    alice.post_form("/u/bob/follow", &[]).await.assert_status(303);
    let a = uid(&app, "alice").await;

    let (r1, r2) = tokio::join!(delete(&alice, PW, "delete"), delete(&phone, PW, "anonymise"));
    for r in [&r1, &r2] {
        assert!(r.status.as_u16() < 500, "got {}: {}", r.status, r.body);
    }
    assert!(r1.location() == Some("/") || r2.location() == Some("/"), "one of them deleted the account");
    assert_eq!(deletion_audit_rows(&app, a).await.len(), 1, "deleted once");
    assert_eq!(app.count("SELECT count(*) FROM users WHERE username = 'alice'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM retired_usernames").await, 1);
    assert_counters_exact(&app).await;
}

/// Measured, not asserted tightly: deleting a prolific account in a database that is not
/// empty. Run with `bin/test --test account_deletion -- --ignored large` (nextest:
/// `--run-ignored all large`); `QUIRE_DELETION_SCALE` multiplies the sizes.
#[tokio::test]
#[ignore]
async fn large_account_deletion_is_measured() {
    let scale: i64 = std::env::var("QUIRE_DELETION_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    writer(&app, "bob").await;
    let (a, b) = (uid(&app, "alice").await, uid(&app, "bob").await);
    let pool = &app.db.pool;
    let t0 = std::time::Instant::now();
    // Other people: 2,000 × scale, each following her; 200 stories × scale of Bob's.
    sqlx::query(
        "INSERT INTO users (username, email, password_hash) SELECT 'rd' || g, 'rd' || g || '@example.com', 'x' FROM generate_series(1, $1) g",
    )
    .bind(2000 * scale)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stories (author_id, title, status, published_at) SELECT $1, 'Story ' || g, 'published', now() FROM generate_series(1, $2) g",
    )
    .bind(b)
    .bind(200 * scale)
    .execute(pool)
    .await
    .unwrap();
    // Hers: 100 × scale stories with 5 chapters each.
    sqlx::query(
        "INSERT INTO stories (author_id, title, status, published_at) SELECT $1, 'Hers ' || g, 'published', now() FROM generate_series(1, $2) g",
    )
    .bind(a)
    .bind(100 * scale)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count)
         SELECT s.id, n, 'Part ' || n, 'Some words.', '<p>Some words.</p>', 2 FROM stories s, generate_series(1, 5) n WHERE s.author_id = $1",
    )
    .bind(a)
    .execute(pool)
    .await
    .unwrap();
    // Follows both ways, her likes and comments on Bob's stories, readers' likes and
    // comments on hers, counters set to match.
    sqlx::query("INSERT INTO follows (follower_id, followee_id) SELECT id, $1 FROM users WHERE username LIKE 'rd%'").bind(a).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO follows (follower_id, followee_id) SELECT $1, id FROM users WHERE username LIKE 'rd%' AND id % 4 = 0").bind(a).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO likes (story_id, user_id) SELECT id, $1 FROM stories WHERE author_id = $2").bind(a).bind(b).execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO likes (story_id, user_id) SELECT s.id, u.id FROM stories s, users u
         WHERE s.author_id = $1 AND u.username LIKE 'rd%' AND (u.id + s.id) % 20 = 0",
    )
    .bind(a)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO comments (story_id, author_id, body_markdown, body_html)
         SELECT s.id, $1, 'Hers ' || g, '<p>Hers</p>' FROM stories s, generate_series(1, 10) g WHERE s.author_id = $2",
    )
    .bind(a)
    .bind(b)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO comments (story_id, author_id, body_markdown, body_html)
         SELECT s.id, u.id, 'Reader', '<p>Reader</p>' FROM stories s, users u
         WHERE s.author_id = $1 AND u.username LIKE 'rd%' AND (u.id + s.id) % 50 = 0",
    )
    .bind(a)
    .execute(pool)
    .await
    .unwrap();
    // Notifications: readers' chapter notifications about her stories and, the bulk,
    // about Bob's (which the deletion must not have to read through).
    sqlx::query(
        "INSERT INTO notifications (user_id, kind, actor_id, story_id, chapter_number, dedupe_key)
         SELECT u.id, 'chapter', s.author_id, s.id, 1, 'chapter:' || s.id || ':1' FROM stories s, users u
         WHERE u.username LIKE 'rd%' AND (u.id + s.id) % 5 = 0",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE stories s SET like_count = (SELECT count(*) FROM likes l WHERE l.story_id = s.id),
                              comment_count = (SELECT count(*) FROM comments c WHERE c.story_id = s.id), chapter_count = 5",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE users u SET follower_count = (SELECT count(*) FROM follows f WHERE f.followee_id = u.id),
                            following_count = (SELECT count(*) FROM follows f WHERE f.follower_id = u.id)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    let sizes = format!(
        "users {}, stories {} (hers {}), chapters {}, comments {} (hers {}), likes {}, follows {}, notifications {}",
        app.count("SELECT count(*) FROM users").await,
        app.count("SELECT count(*) FROM stories").await,
        app.count(&format!("SELECT count(*) FROM stories WHERE author_id = {a}")).await,
        app.count("SELECT count(*) FROM chapters").await,
        app.count("SELECT count(*) FROM comments").await,
        app.count(&format!("SELECT count(*) FROM comments WHERE author_id = {a}")).await,
        app.count("SELECT count(*) FROM likes").await,
        app.count("SELECT count(*) FROM follows").await,
        app.count("SELECT count(*) FROM notifications").await,
    );
    eprintln!("set up in {:?}: {sizes}", t0.elapsed());
    assert_counters_exact(&app).await;

    let t = std::time::Instant::now();
    delete(&alice, PW, "delete").await.assert_status(303);
    let took = t.elapsed();
    eprintln!("MEASURED delete mode: POST /settings/delete took {took:?} ({sizes})");
    assert_counters_exact(&app).await;
    assert_eq!(app.count(&format!("SELECT count(*) FROM stories WHERE author_id = {a}")).await, 0);
    assert!(took < std::time::Duration::from_secs(30 * scale as u64), "took {took:?}");
}
