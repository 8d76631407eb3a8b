//! The social area through the real routes: follows, likes (exact under 200 concurrent
//! requests), comments and their deletion matrix, reading lists, reading progress and the
//! home sections; that the notification job and the live event commit with the action
//! (and not when it is refused); CSRF, htmx fragments and hostile input on each new form.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn user(app: &TestApp, name: &str, verified: bool) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    if verified {
        sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    }
    b
}

async fn draft(b: &TestApp, title: &str) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", "A summary."), ("tags", "")]).await;
    r.assert_status(303);
    r.location().unwrap().trim_start_matches("/s/").parse().unwrap()
}

/// A published story with `chapters` chapters.
async fn published(b: &TestApp, title: &str, chapters: usize) -> i64 {
    let id = draft(b, title).await;
    for n in 1..=chapters {
        b.post_form(&format!("/s/{id}/chapters"), &[("title", &format!("Part {n}")), ("body", "Some words here.")]).await.assert_status(303);
    }
    b.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
    id
}

async fn uid(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(name).fetch_one(&app.db.pool).await.unwrap()
}

/// `notify` jobs for social actions queued, as their activity kinds (chapter announcements,
/// queued by the story pages, are the notifications tests' business).
async fn notify_kinds(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT convert_from(job, 'UTF8')::jsonb -> 'args' -> 'activity' ->> 'kind' FROM apalis.jobs
         WHERE convert_from(job, 'UTF8')::jsonb ->> 'name' = 'notify'
           AND convert_from(job, 'UTF8')::jsonb -> 'args' -> 'activity' ->> 'kind' <> 'chapter' ORDER BY run_at, id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

async fn notify_args(app: &TestApp) -> Vec<serde_json::Value> {
    sqlx::query_scalar::<_, String>(
        "SELECT convert_from(job, 'UTF8') FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb ->> 'name' = 'notify'
           AND convert_from(job, 'UTF8')::jsonb -> 'args' -> 'activity' ->> 'kind' <> 'chapter' ORDER BY run_at, id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap()["args"]["activity"].clone())
    .collect()
}

/// (event, data) of the live events raised, oldest first.
async fn live(app: &TestApp) -> Vec<(String, String)> {
    // Not the control channel (cache invalidations, session evictions).
    sqlx::query_as("SELECT event, data FROM live_events WHERE channel <> 'control' ORDER BY id").fetch_all(&app.db.pool).await.unwrap()
}

async fn htmx_post(b: &TestApp, path: &str, fields: &[(&str, &str)]) -> Resp {
    let token = b.csrf_token().await;
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(fields);
    let body = serde_urlencoded::to_string(&all).unwrap();
    b.post_raw(path, "application/x-www-form-urlencoded", body.into_bytes(), &[("hx-request", "true")]).await
}

fn comment_id_from(r: &Resp) -> i64 {
    let loc = r.location().expect("redirect");
    loc.rsplit("#comment-").next().unwrap().parse().unwrap_or_else(|_| panic!("comment id in {loc}"))
}

async fn counter(app: &TestApp, sql: &str, id: i64) -> i32 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).bind(id).fetch_one(&app.db.pool).await.unwrap()
}

async fn comment(b: &TestApp, story: i64, body: &str, parent: Option<i64>) -> i64 {
    let parent = parent.map(|p| p.to_string()).unwrap_or_default();
    comment_id_from(&b.post_form(&format!("/s/{story}/comments"), &[("body", body), ("parent_id", &parent)]).await)
}

// ---- follows ------------------------------------------------------------------------

#[tokio::test]
async fn follow_is_idempotent_counted_and_notified_once() {
    let app = TestApp::new().await;
    let alice = user(&app, "alice", true).await;
    let bob = user(&app, "bob", false).await;
    let (a, b) = (uid(&app, "alice").await, uid(&app, "bob").await);

    // The button is on others' profiles, not on your own.
    bob.get("/u/alice").await.assert_status(200).assert_contains("action=\"/u/alice/follow\"").assert_contains("0 followers");
    let own = alice.get("/u/alice").await;
    assert!(!own.body.contains("action=\"/u/alice/follow\""), "no follow button on your own profile");

    let r = bob.post_form("/u/alice/follow", &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/u/alice"));
    bob.post_form("/u/alice/follow", &[]).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM follows").await, 1);
    assert_eq!(counter(&app, "SELECT follower_count FROM users WHERE id = $1", a).await, 1);
    assert_eq!(counter(&app, "SELECT following_count FROM users WHERE id = $1", b).await, 1);
    assert_eq!(notify_kinds(&app).await, vec!["follow"], "one notification for one new follow");
    let args = notify_args(&app).await;
    assert_eq!(args[0]["follower_id"], b);
    assert_eq!(args[0]["followee_id"], a);
    bob.get("/u/alice").await.assert_contains("1 follower<").assert_contains("action=\"/u/alice/unfollow\"");
    bob.get("/u/bob").await.assert_contains("1 following");

    // Self-follow: a clear 422, nothing written (and the schema refuses it too).
    alice.post_form("/u/alice/follow", &[]).await.assert_status(422).assert_contains("cannot follow yourself");
    let direct = sqlx::query("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $1)").bind(a).execute(&app.db.pool).await;
    assert!(direct.unwrap_err().to_string().contains("follows_no_self"));

    // Unfollow, twice: counts back to zero, no notification.
    bob.post_form("/u/alice/unfollow", &[]).await.assert_status(303);
    bob.post_form("/u/alice/unfollow", &[]).await.assert_status(303);
    assert_eq!(counter(&app, "SELECT follower_count FROM users WHERE id = $1", a).await, 0);
    assert_eq!(counter(&app, "SELECT following_count FROM users WHERE id = $1", b).await, 0);
    assert_eq!(notify_kinds(&app).await.len(), 1);

    // A `next` back to the story page is honoured; a foreign one is not.
    let r = bob.post_form("/u/alice/follow", &[("next", "/s/1")]).await;
    assert_eq!(r.location(), Some("/s/1"));
    let r = bob.post_form("/u/alice/unfollow", &[("next", "https://evil.example/")]).await;
    assert_eq!(r.location(), Some("/"));

    // htmx: the button comes back toggled, with the new count out of band.
    let r = htmx_post(&bob, "/u/alice/follow", &[("next", "/u/alice")]).await;
    r.assert_status(200).assert_contains("action=\"/u/alice/unfollow\"").assert_contains("id=\"follower-count\" hx-swap-oob=\"true\"");
    r.assert_contains("1 follower<");
    assert!(!r.body.contains("<html"), "a fragment, not a page");

    // Unknown user, anonymous visitor, missing token.
    bob.post_form("/u/nobody/follow", &[]).await.assert_status(404);
    let anon = app.new_browser();
    let r = anon.post_form("/u/alice/follow", &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/login?next=%2Fu%2Falice"));
    anon.get("/u/alice").await.assert_contains("Log in to follow");
    bob.post_form_raw("/u/alice/unfollow", &[]).await.assert_status(403);
    bob.post_form_raw("/u/alice/follow", &[]).await.assert_status(403);
    assert_eq!(app.count("SELECT count(*) FROM follows").await, 1);
}

#[tokio::test]
async fn follower_and_following_lists_paginate() {
    let app = TestApp::new().await;
    let alice = user(&app, "alice", true).await;
    let a = uid(&app, "alice").await;
    // 32 followers, written directly (signups are rate limited per address), a second apart.
    sqlx::query(
        "WITH u AS (
             INSERT INTO users (username, email, password_hash)
             SELECT 'fan' || g, 'fan' || g || '@example.com', 'x' FROM generate_series(1, 32) g RETURNING id, username)
         INSERT INTO follows (follower_id, followee_id, created_at)
         SELECT id, $1, now() - (substr(username, 4)::int * interval '1 second') FROM u",
    )
    .bind(a)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let page1 = alice.get("/u/alice/followers").await;
    page1.assert_status(200).assert_contains("@fan1<").assert_contains("@fan30<");
    assert!(!page1.body.contains("@fan31<"), "30 a page");
    let next = regex::Regex::new(r#"href="/u/alice/followers\?after=([0-9_]+)""#).unwrap();
    let after = next.captures(&page1.body).expect("load more link")[1].to_string();
    let page2 = alice.get_with(&format!("/u/alice/followers?after={after}"), &[("hx-request", "true")]).await;
    page2.assert_status(200).assert_contains("@fan31<").assert_contains("@fan32<");
    assert!(!page2.body.contains("@fan30<") && !page2.body.contains("<html") && !page2.body.contains("Load more"));
    // Without JavaScript the link is a whole page.
    alice.get(&format!("/u/alice/followers?after={after}")).await.assert_contains("<html").assert_contains("@fan32<");

    alice.get("/u/alice/following").await.assert_status(200).assert_contains("You do not follow anyone yet");
    alice.get("/u/fan1/following").await.assert_status(200).assert_contains("href=\"/u/alice\"");
    alice.get("/u/fan1/followers").await.assert_contains("No followers yet");
    alice.get("/u/nobody/followers").await.assert_status(404);
}

// ---- likes --------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_likes_and_unlikes_keep_the_count_exact() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let id = published(&author, "Popular", 1).await;
    let mut readers = Vec::new();
    for i in 0..9 {
        readers.push(user(&app, &format!("reader{i}"), false).await);
    }
    // Every reader likes or unlikes, 200 requests in all, all in flight at once.
    let requests = (0..200).map(|k| {
        let b = &readers[k % readers.len()];
        let action = if (k / readers.len()) % 3 == 1 { "unlike" } else { "like" };
        async move { b.post_form(&format!("/s/{id}/{action}"), &[]).await.status.as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    let rows = app.count(&format!("SELECT count(*) FROM likes WHERE story_id = {id}")).await;
    let count = counter(&app, "SELECT like_count FROM stories WHERE id = $1", id).await;
    assert_eq!(count as i64, rows, "like_count matches the rows");
    assert!((0..=9).contains(&rows));
    // One live event per change of the count, in the order of the changes (the story row
    // lock orders them): the last one shows the final count.
    let events: Vec<_> = live(&app).await.into_iter().filter(|(e, _)| e == "likes").collect();
    let want = if rows == 1 { "1 like".to_string() } else { format!("{rows} likes") };
    assert_eq!(events.last().unwrap().1.trim(), want);
}

#[tokio::test]
async fn likes_are_for_published_stories_and_notify_once() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let draft_id = draft(&author, "Not yet").await;
    let id = published(&author, "Out now", 1).await;

    // A draft cannot be liked, not even by its author: 404, nothing written.
    author.post_form(&format!("/s/{draft_id}/like"), &[]).await.assert_status(404);
    reader.post_form(&format!("/s/{draft_id}/like"), &[]).await.assert_status(404);
    reader.post_form(&format!("/s/{draft_id}/unlike"), &[]).await.assert_status(404);
    reader.post_form("/s/999999/like", &[]).await.assert_status(404);
    reader.post_form("/s/abc/like", &[]).await.assert_status(400);
    reader.post_form_raw(&format!("/s/{id}/like"), &[]).await.assert_status(403);
    reader.post_form_raw(&format!("/s/{id}/unlike"), &[]).await.assert_status(403);
    assert_eq!(app.count("SELECT count(*) FROM likes").await, 0);
    assert!(notify_kinds(&app).await.is_empty() && live(&app).await.is_empty(), "refused: no job, no event");

    let r = reader.post_form(&format!("/s/{id}/like"), &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some(format!("/s/{id}").as_str()));
    reader.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(303);
    assert_eq!(counter(&app, "SELECT like_count FROM stories WHERE id = $1", id).await, 1);
    assert_eq!(notify_kinds(&app).await, vec!["like"]);
    let events = live(&app).await;
    assert_eq!(events.len(), 1, "the duplicate like raised nothing");
    assert_eq!(events[0].0, "likes");
    assert_eq!(events[0].1.trim(), "1 like");
    let channel: String = sqlx::query_scalar("SELECT channel FROM live_events WHERE channel <> 'control'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(channel, format!("story:{id}"));

    // The page: count in the live target, an "undo" form.
    let page = reader.get(&format!("/s/{id}")).await;
    page.assert_contains("<span id=\"like-count\" sse-swap=\"likes\"").assert_contains(&format!("action=\"/s/{id}/unlike\""));

    // Liking your own story counts but notifies nobody.
    author.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(303);
    assert_eq!(counter(&app, "SELECT like_count FROM stories WHERE id = $1", id).await, 2);
    assert_eq!(notify_kinds(&app).await.len(), 1);

    // htmx: the toggled button and the count out of band.
    let r = htmx_post(&reader, &format!("/s/{id}/unlike"), &[]).await;
    r.assert_status(200).assert_contains(&format!("action=\"/s/{id}/like\"")).assert_contains("hx-swap-oob=\"innerHTML\"");
    r.assert_contains("1 like");
    assert!(!r.body.contains("<html"));
    assert_eq!(notify_kinds(&app).await.len(), 1, "unlike notifies nobody");

    // Anonymous: to the login page, back to the story afterwards.
    let anon = app.new_browser();
    let r = anon.post_form(&format!("/s/{id}/like"), &[]).await;
    assert_eq!(r.location(), Some(format!("/login?next=%2Fs%2F{id}").as_str()));
    anon.get(&format!("/s/{id}")).await.assert_contains("Log in to like").assert_contains("Log in to comment");
    // Counts on the cards.
    anon.get("/").await.assert_contains("1 like").assert_contains("0 comments");
}

// ---- comments -----------------------------------------------------------------------

#[tokio::test]
async fn comments_replies_and_their_validation() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let id = published(&author, "Talked about", 1).await;
    let other = published(&author, "Elsewhere", 1).await;
    let draft_id = draft(&author, "Secret").await;
    let (a, r_id) = (uid(&app, "author").await, uid(&app, "reader").await);

    let r = reader.post_form(&format!("/s/{id}/comments"), &[("body", "  Loved *this* one. <script>alert(1)</script>  ")]).await;
    r.assert_status(303);
    let top = comment_id_from(&r);
    let page = reader.get(&format!("/s/{id}")).await;
    page.assert_contains(&format!("<li id=\"comment-{top}\" class=\"comment\"")).assert_contains("Loved <em>this</em> one.");
    page.assert_contains("&lt;script&gt;alert(1)&lt;/script&gt;").assert_contains("1 comment<");
    assert!(!page.body.contains("<script>alert"), "typed HTML is shown, never run");
    assert_eq!(counter(&app, "SELECT comment_count FROM stories WHERE id = $1", id).await, 1);
    let events = live(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "comment");
    assert!(events[0].1.starts_with(&format!("<li id=\"comment-{top}\"")), "{}", events[0].1);
    assert!(!events[0].1.contains("Delete") && !events[0].1.contains("csrf"), "the live copy is an anonymous viewer's");
    let args = notify_args(&app).await;
    assert_eq!(args[0]["kind"], "comment");
    assert_eq!(args[0]["comment_id"], top);
    assert_eq!(args[0]["story_author_id"], a);
    assert_eq!(args[0]["parent_author_id"], serde_json::Value::Null);
    assert_eq!(args[0]["excerpt"], "Loved *this* one. <script>alert(1)</script>");

    // A reply, and a reply to the reply: both in the top-level thread, oldest first.
    let r = author.post_form(&format!("/s/{id}/comments"), &[("body", "Thank you!"), ("parent_id", &top.to_string())]).await;
    let reply = comment_id_from(&r);
    let r = reader.post_form(&format!("/s/{id}/comments"), &[("body", "You're welcome."), ("parent_id", &reply.to_string())]).await;
    let reply2 = comment_id_from(&r);
    assert!(reply2 > reply);
    let parents: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT parent_id FROM comments ORDER BY id").fetch_all(&app.db.pool).await.unwrap();
    assert_eq!(parents, vec![None, Some(top), Some(top)], "replies are one level deep");
    let page = reader.get(&format!("/s/{id}")).await;
    let (p1, p2) = (page.body.find("Thank you!").unwrap(), page.body.find("welcome.").unwrap());
    assert!(p1 < p2, "replies oldest first");
    let args = notify_args(&app).await;
    assert_eq!(args[1]["parent_author_id"], r_id, "the reply tells the author of the comment answered");
    assert_eq!(args[2]["parent_author_id"], a, "a reply to a reply tells that reply's author");
    assert_eq!(live(&app).await[1].0, "reply");

    // Refusals: 422 with the text kept; nothing written, queued or raised.
    let before = (app.count("SELECT count(*) FROM comments").await, notify_kinds(&app).await.len(), live(&app).await.len());
    let foreign = comment_id_from(&reader.post_form(&format!("/s/{other}/comments"), &[("body", "Elsewhere.")]).await);
    let before = (before.0 + 1, before.1 + 1, before.2 + 1);
    for (parent, msg) in [(foreign.to_string(), "not a comment on this story"), ("999999".into(), "not a comment on this story"), ("abc".into(), "not a comment you can reply to"), ("-5".into(), "not a comment you can reply to")] {
        let r = reader.post_form(&format!("/s/{id}/comments"), &[("body", "Keep me"), ("parent_id", &parent)]).await;
        r.assert_status(422).assert_contains(msg).assert_contains(">Keep me</textarea>");
    }
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "   ")]).await.assert_status(422).assert_contains("Write something");
    let long = format!("start{}", "x".repeat(5000));
    let r = reader.post_form(&format!("/s/{id}/comments"), &[("body", &long)]).await;
    r.assert_status(422).assert_contains("at most 5000 characters").assert_contains(&long);
    reader.post_form(&format!("/s/{draft_id}/comments"), &[("body", "Hi")]).await.assert_status(404);
    author.post_form(&format!("/s/{draft_id}/comments"), &[("body", "Hi")]).await.assert_status(404);
    reader.post_form("/s/999999/comments", &[("body", "Hi")]).await.assert_status(404);
    let huge = "y".repeat(3 * 1024 * 1024);
    reader.post_form(&format!("/s/{id}/comments"), &[("body", &huge)]).await.assert_status(413);
    reader.post_form_raw(&format!("/s/{id}/comments"), &[("body", "no token")]).await.assert_status(403);
    let anon = app.new_browser();
    let r = anon.post_form(&format!("/s/{id}/comments"), &[("body", "Hi")]).await;
    assert_eq!(r.location(), Some(format!("/login?next=%2Fs%2F{id}").as_str()));
    let after = (app.count("SELECT count(*) FROM comments").await, notify_kinds(&app).await.len(), live(&app).await.len());
    assert_eq!(before, after, "refused comments leave no trace");

    // Hostile nesting: 5000 quotes deep renders to more than a live event holds; the
    // comment is still posted, and the event carries a note instead.
    let deep = ">".repeat(4990) + "deep";
    let r = reader.post_form(&format!("/s/{id}/comments"), &[("body", &deep)]).await;
    r.assert_status(303);
    let deep_id = comment_id_from(&r);
    let last = live(&app).await.pop().unwrap();
    assert!(last.1.starts_with(&format!("<li id=\"comment-{deep_id}\"")) && last.1.contains("reload the page"), "{}", &last.1[..200.min(last.1.len())]);
    reader.get(&format!("/s/{id}")).await.assert_status(200).assert_contains("deep");

    // htmx: the new comment plus a fresh form; errors come back over the form.
    let r = htmx_post(&reader, &format!("/s/{id}/comments"), &[("body", "Via **htmx**")]).await;
    r.assert_status(200).assert_contains("<li id=\"comment-").assert_contains("<strong>htmx</strong>");
    r.assert_contains("id=\"comment-form\"").assert_contains("hx-swap-oob=\"true\"").assert_contains("hx-swap-oob=\"delete\"");
    assert!(!r.body.contains("<html"));
    let r = htmx_post(&reader, &format!("/s/{id}/comments"), &[("body", "")]).await;
    r.assert_status(422).assert_contains("Write something");
    assert_eq!(r.header("hx-retarget"), Some("#comment-form"));
    let r = htmx_post(&reader, &format!("/s/{id}/comments"), &[("body", ""), ("parent_id", &top.to_string())]).await;
    assert_eq!(r.header("hx-retarget"), Some(format!("#reply-form-{top}").as_str()));
    assert!(!r.body.contains("<html"));
}

#[tokio::test]
async fn comments_are_rate_limited_per_account_keeping_the_text() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let id = published(&author, "Chatty", 1).await;
    for i in 0..10 {
        reader.post_form(&format!("/s/{id}/comments"), &[("body", &format!("Comment {i}"))]).await.assert_status(303);
    }
    let r = reader.post_form(&format!("/s/{id}/comments"), &[("body", "One too many")]).await;
    r.assert_status(429).assert_contains("Your text is still here").assert_contains(">One too many</textarea>");
    assert_eq!(app.count("SELECT count(*) FROM comments").await, 10);
    // Invalid comments do not use up the allowance of others; another account is unaffected.
    author.post_form(&format!("/s/{id}/comments"), &[("body", "Still fine")]).await.assert_status(303);
}

#[tokio::test]
async fn who_may_delete_a_comment_and_what_remains() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let bob = user(&app, "bob", false).await;
    let carol = user(&app, "carol", false).await;
    user(&app, "mod", false).await;
    sqlx::query("UPDATE users SET role = 'moderator' WHERE username = 'mod'").execute(&app.db.pool).await.unwrap();
    let moderator = app.new_browser();
    moderator.login("mod", PW).await.assert_status(303);
    let id = published(&author, "Debated", 1).await;
    let other = published(&author, "Quiet", 1).await;
    let thread = comment(&bob, id, "Thread starter", None).await;
    let reply = comment(&carol, id, "A reply that stays", Some(thread)).await;
    let lone = comment(&bob, id, "Lonely remark", None).await;
    let by_carol = comment(&carol, id, "Carol's view", None).await;
    let by_carol2 = comment(&carol, id, "Carol again", None).await;
    assert_eq!(counter(&app, "SELECT comment_count FROM stories WHERE id = $1", id).await, 5);

    // The comment's author sees a delete button; others do not.
    bob.get(&format!("/s/{id}")).await.assert_contains(&format!("/s/{id}/comments/{thread}/delete"));
    assert!(!carol.get(&format!("/s/{id}")).await.body.contains(&format!("/comments/{thread}/delete")));

    let del = |cid: i64| format!("/s/{id}/comments/{cid}/delete");
    carol.post_form(&del(thread), &[]).await.assert_status(403);
    let anon = app.new_browser();
    let r = anon.post_form(&del(thread), &[]).await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login?next="));
    bob.post_form(&format!("/s/{other}/comments/{thread}/delete"), &[]).await.assert_status(404);
    bob.post_form(&format!("/s/{id}/comments/999999/delete"), &[]).await.assert_status(404);
    bob.post_form(&format!("/s/{id}/comments/abc/delete"), &[]).await.assert_status(400);
    bob.post_form_raw(&del(thread), &[]).await.assert_status(403);
    assert!(live(&app).await.iter().all(|(e, _)| e != "comment_deleted"), "refused: no event");

    // Its author, the story's author, a moderator: each may.
    let r = bob.post_form(&del(thread), &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some(format!("/s/{id}#comments").as_str()));
    bob.post_form(&del(lone), &[]).await.assert_status(303);
    author.post_form(&del(by_carol), &[]).await.assert_status(303);
    let r = htmx_post(&moderator, &del(by_carol2), &[]).await;
    r.assert_status(200).assert_contains(&format!("id=\"comment-main-{by_carol2}\"")).assert_contains("Comment deleted.");
    // Twice is harmless and raises nothing new.
    bob.post_form(&del(thread), &[]).await.assert_status(303);
    let deleted: Vec<String> = live(&app).await.into_iter().filter(|(e, _)| e == "comment_deleted").map(|(_, d)| d).collect();
    assert_eq!(deleted, vec![format!("comment-{thread}"), format!("comment-{lone}"), format!("comment-{by_carol}"), format!("comment-{by_carol2}")]);
    assert_eq!(counter(&app, "SELECT comment_count FROM stories WHERE id = $1", id).await, 1, "only the reply is left");

    // The thread stays readable: a placeholder where its start was; the lone one is gone.
    let page = carol.get(&format!("/s/{id}")).await;
    page.assert_contains(&format!("<li id=\"comment-{thread}\" class=\"comment deleted\"")).assert_contains("Comment deleted.");
    page.assert_contains("A reply that stays");
    assert!(!page.body.contains("Thread starter") && !page.body.contains("Lonely remark") && !page.body.contains(&format!("comment-{lone}\"")));
    let text: String = sqlx::query_scalar("SELECT body_markdown FROM comments WHERE id = $1").bind(thread).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(text, "", "the deleted text is erased");
    // A deleted comment takes no more replies.
    carol.post_form(&format!("/s/{id}/comments"), &[("body", "Late"), ("parent_id", &thread.to_string())]).await.assert_status(422);
    let _ = reply;
}

#[tokio::test]
async fn comments_paginate_newest_first_with_replies() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let id = published(&author, "Busy thread", 1).await;
    let a = uid(&app, "author").await;
    // 23 top-level comments a minute apart, and two replies under the oldest.
    sqlx::query(
        "INSERT INTO comments (story_id, author_id, body_markdown, body_html, created_at)
         SELECT $1, $2, 'c' || g, '<p>c' || g || '</p>', now() - ((30 - g) * interval '1 minute') FROM generate_series(1, 23) g",
    )
    .bind(id)
    .bind(a)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO comments (story_id, author_id, parent_id, body_markdown, body_html)
         SELECT $1, $2, (SELECT id FROM comments WHERE body_markdown = 'c1'), 'r' || g, '<p>r' || g || '</p>' FROM generate_series(1, 2) g",
    )
    .bind(id)
    .bind(a)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let page = author.get(&format!("/s/{id}")).await;
    page.assert_contains("<p>c23</p>").assert_contains("<p>c4</p>");
    assert!(!page.body.contains("<p>c3</p>"), "20 a page");
    assert!(page.body.find("<p>c23</p>").unwrap() < page.body.find("<p>c22</p>").unwrap(), "newest first");
    let re = regex::Regex::new(&format!(r#"href="/s/{id}\?comments=([0-9_]+)#comments""#)).unwrap();
    let after = re.captures(&page.body).expect("load more")[1].to_string();
    let more = author.get_with(&format!("/s/{id}?comments={after}"), &[("hx-request", "true")]).await;
    more.assert_status(200).assert_contains("<p>c3</p>").assert_contains("<p>c1</p>").assert_contains("<p>r1</p>").assert_contains("<p>r2</p>");
    assert!(!more.body.contains("<p>c4</p>") && !more.body.contains("<html") && !more.body.contains("Load more"));
    assert!(more.body.find("<p>r1</p>").unwrap() < more.body.find("<p>r2</p>").unwrap(), "replies oldest first");
}

// ---- reading list, progress, home ---------------------------------------------------

#[tokio::test]
async fn saving_to_the_reading_list() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let id = published(&author, "Keep for later", 1).await;
    let draft_id = draft(&author, "Unfinished").await;

    reader.get("/reading-list").await.assert_status(200).assert_contains("Nothing saved yet");
    let r = reader.post_form(&format!("/s/{id}/save"), &[]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some(format!("/s/{id}").as_str()));
    reader.post_form(&format!("/s/{id}/save"), &[]).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM saves").await, 1);
    reader.get("/reading-list").await.assert_contains("Keep for later");
    reader.get(&format!("/s/{id}")).await.assert_contains(&format!("action=\"/s/{id}/unsave\""));
    author.get("/reading-list").await.assert_contains("Nothing saved yet");

    let r = htmx_post(&reader, &format!("/s/{id}/unsave"), &[]).await;
    r.assert_status(200).assert_contains("id=\"save-form\"").assert_contains(&format!("action=\"/s/{id}/save\""));
    assert!(!r.body.contains("<html"));
    reader.post_form(&format!("/s/{id}/unsave"), &[]).await.assert_status(303);
    assert!(!reader.get("/reading-list").await.body.contains("Keep for later"));

    reader.post_form(&format!("/s/{draft_id}/save"), &[]).await.assert_status(404);
    author.post_form(&format!("/s/{draft_id}/save"), &[]).await.assert_status(404);
    reader.post_form_raw(&format!("/s/{id}/save"), &[]).await.assert_status(403);
    reader.post_form_raw(&format!("/s/{id}/unsave"), &[]).await.assert_status(403);
    assert_eq!(app.count("SELECT count(*) FROM saves").await, 0);
    let anon = app.new_browser();
    let r = anon.get("/reading-list").await;
    assert_eq!(r.location(), Some("/login?next=%2Freading%2Dlist"));
    assert_eq!(anon.post_form(&format!("/s/{id}/save"), &[]).await.location(), Some(format!("/login?next=%2Fs%2F{id}").as_str()));
}

#[tokio::test]
async fn progress_and_the_home_sections() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let id = published(&author, "Serial", 3).await;
    let other = published(&author, "Standalone", 1).await;

    let home = reader.get("/").await;
    home.assert_contains("Continue reading").assert_contains("Stories you start reading will wait for you here");
    home.assert_contains("Follow authors to see their new chapters here");
    reader.get(&format!("/s/{id}")).await.assert_contains("Start reading");

    reader.get(&format!("/s/{id}/c/1")).await.assert_status(200);
    let n: i32 = sqlx::query_scalar("SELECT chapter_number FROM reading_progress").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(n, 1);
    reader.get(&format!("/s/{id}/c/2")).await.assert_status(200);
    reader.get(&format!("/s/{other}/c/1")).await.assert_status(200);
    let n: i32 = sqlx::query_scalar("SELECT chapter_number FROM reading_progress WHERE story_id = $1").bind(id).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(n, 2, "one row per story, the latest chapter");
    reader.get(&format!("/s/{id}")).await.assert_contains(&format!("href=\"/s/{id}/c/2\">Continue at chapter 2"));
    // Reopening the same chapter soon after does not write again.
    let t0: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT updated_at FROM reading_progress WHERE story_id = $1").bind(id).fetch_one(&app.db.pool).await.unwrap();
    reader.get(&format!("/s/{id}/c/2")).await.assert_status(200);
    let t1: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT updated_at FROM reading_progress WHERE story_id = $1").bind(id).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(t0, t1);

    let home = reader.get("/").await;
    home.assert_contains(&format!("href=\"/s/{id}/c/3\">next: chapter 3")).assert_contains(&format!("href=\"/s/{other}/c/1\">chapter 1"));
    let (p_serial, p_standalone) = (home.body.find(&format!("/s/{id}/c/3")).unwrap(), home.body.find(&format!("/s/{other}/c/1")).unwrap());
    assert!(p_standalone < p_serial, "most recently read first");

    // Following the author fills the second section, ordered by latest chapter.
    reader.post_form("/u/author/follow", &[]).await.assert_status(303);
    author.post_form(&format!("/s/{other}/chapters"), &[("title", "Encore"), ("body", "More.")]).await.assert_status(303);
    let home = reader.get("/").await;
    assert!(!home.body.contains("Follow authors to see their new chapters here"));
    let section = &home.body[home.body.find("New chapters from authors you follow").unwrap()..home.body.find("Latest stories").unwrap()];
    assert!(section.find("Standalone").unwrap() < section.find("Serial").unwrap(), "latest chapter first: {section}");

    // Anonymous home is unchanged; drafts record no progress.
    let anon = app.new_browser();
    assert!(!anon.get("/").await.body.contains("Continue reading"));
    let d = draft(&author, "Draft").await;
    author.post_form(&format!("/s/{d}/chapters"), &[("title", "One"), ("body", "Text.")]).await.assert_status(303);
    author.get(&format!("/s/{d}/c/1")).await.assert_status(200);
    assert_eq!(app.count(&format!("SELECT count(*) FROM reading_progress WHERE story_id = {d}")).await, 0);
}

// ---- statements per page ------------------------------------------------------------

/// Queries the app handed out while `f` ran (each of these pages' reads is one statement).
async fn statements<F: std::future::Future<Output = Resp>>(app: &TestApp, f: F) -> u64 {
    let before = app.state.db.stats().primary_queries;
    f.await.assert_status(200);
    app.state.db.stats().primary_queries - before
}

#[tokio::test]
async fn pages_run_a_bounded_number_of_statements() {
    // What a page costs when it is rendered: anonymous pages come from the cache
    // otherwise (app/tests/cache.rs).
    let app = TestApp::with_config(|c| c.cache_enabled = false).await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let id = published(&author, "Counted", 2).await;
    reader.post_form("/u/author/follow", &[]).await.assert_status(303);
    reader.get(&format!("/s/{id}/c/1")).await.assert_status(200);
    let anon = app.new_browser();
    let path = format!("/s/{id}");
    // Warm up both browsers' sessions (a first visit may create or refresh one).
    anon.get(&path).await;
    reader.get(&path).await;
    // What any page costs these browsers beyond its own reads (the session's lookup for a
    // logged-in one): a tag page runs one statement of its own.
    let base_anon = statements(&app, anon.get("/t/none")).await - 1;
    let base = statements(&app, reader.get("/t/none")).await - 1;
    let mut seen = Vec::new();
    for threads in [0, 3, 15] {
        if threads > 0 {
            sqlx::query(
                "WITH top AS (INSERT INTO comments (story_id, author_id, body_markdown, body_html)
                              SELECT $1, $2, 't', '<p>t</p>' FROM generate_series(1, $3) RETURNING id)
                 INSERT INTO comments (story_id, author_id, parent_id, body_markdown, body_html)
                 SELECT $1, $2, top.id, 'r', '<p>r</p>' FROM top, generate_series(1, 2)",
            )
            .bind(id)
            .bind(uid(&app, "author").await)
            .bind(threads)
            .execute(&app.db.pool)
            .await
            .unwrap();
        }
        let a = statements(&app, anon.get(&path)).await - base_anon;
        let r = statements(&app, reader.get(&path)).await - base;
        seen.push((threads, a, r));
    }
    // The story page: PAGE_SQL and the comments; a logged-in viewer adds their state.
    assert!(seen.iter().all(|&(_, a, r)| a == 2 && r == 3), "(threads, anonymous, logged in): {seen:?}");
    // Home: trending and the latest stories; a logged-in reader adds the two personal sections.
    assert_eq!(statements(&app, reader.get("/")).await - base, 4);
    assert_eq!(statements(&app, anon.get("/")).await - base_anon, 2);
    // Profile: the user, the avatar-less listing, and for a logged-in visitor "following?".
    assert_eq!(statements(&app, reader.get("/u/author")).await - base, 3);
    assert_eq!(statements(&app, reader.get("/u/author/followers")).await - base, 2);
    assert_eq!(statements(&app, reader.get("/reading-list")).await - base, 1);
    eprintln!("per-request session cost: anonymous {base_anon}, logged in {base}");
}

#[tokio::test]
async fn seed_builds_a_living_site_and_is_idempotent() {
    let app = TestApp::new().await;
    let media = std::env::temp_dir().join(format!("quire-seed-{}", uuid::Uuid::new_v4().simple()));
    let storage = app::storage::Storage::local(&media).unwrap();
    let db = app.db.db();
    app::seed::run(&db, &storage).await.unwrap();
    let first = (
        app.count("SELECT count(*) FROM follows").await,
        app.count("SELECT count(*) FROM likes").await,
        app.count("SELECT count(*) FROM comments").await,
        app.count("SELECT count(*) FROM comments WHERE parent_id IS NOT NULL").await,
        notify_kinds(&app).await.len() as i64,
    );
    app::seed::run(&db, &storage).await.unwrap();
    let second = (
        app.count("SELECT count(*) FROM follows").await,
        app.count("SELECT count(*) FROM likes").await,
        app.count("SELECT count(*) FROM comments").await,
        app.count("SELECT count(*) FROM comments WHERE parent_id IS NOT NULL").await,
        notify_kinds(&app).await.len() as i64,
    );
    assert_eq!(first, second, "a second seed adds nothing");
    assert!(first.0 > 5 && first.1 > 5 && first.2 > 3 && first.3 >= 2, "{first:?}");
    // Each demo action queued its notification once, as a page would (none on the rerun).
    assert!(first.4 >= first.0 + first.2, "{first:?}");
    // Every counter agrees with its rows.
    let off = app
        .count(
            "SELECT count(*) FROM stories s WHERE like_count <> (SELECT count(*) FROM likes l WHERE l.story_id = s.id)
                OR comment_count <> (SELECT count(*) FROM comments c WHERE c.story_id = s.id AND c.deleted_at IS NULL)",
        )
        .await;
    let off_users = app
        .count(
            "SELECT count(*) FROM users u WHERE follower_count <> (SELECT count(*) FROM follows f WHERE f.followee_id = u.id)
                OR following_count <> (SELECT count(*) FROM follows f WHERE f.follower_id = u.id)",
        )
        .await;
    assert_eq!((off, off_users), (0, 0));
    let _ = std::fs::remove_dir_all(&media);
}

/// The action, its counter, its live event and its job commit together: when the event
/// or the job cannot be written, the action leaves nothing behind either.
#[tokio::test]
async fn an_action_and_its_event_and_job_commit_together() {
    let app = TestApp::new().await;
    let author = user(&app, "author", true).await;
    let reader = user(&app, "reader", false).await;
    let id = published(&author, "Fragile", 1).await;
    // Fail every live event, then every job insert, the way a full disk or a bug would.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse_events BEFORE INSERT ON live_events FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    reader.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(500);
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "Lost")]).await.assert_status(500);
    assert_eq!(app.count("SELECT count(*) FROM likes").await + app.count("SELECT count(*) FROM comments").await, 0);
    assert_eq!(counter(&app, "SELECT like_count + comment_count FROM stories WHERE id = $1", id).await, 0);
    assert!(notify_kinds(&app).await.is_empty(), "no job without its action");

    sqlx::raw_sql(
        "DROP TRIGGER refuse_events ON live_events;
         CREATE TRIGGER refuse_jobs BEFORE INSERT ON apalis.jobs FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    reader.post_form("/u/author/follow", &[]).await.assert_status(500);
    reader.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(500);
    assert_eq!(app.count("SELECT count(*) FROM follows").await + app.count("SELECT count(*) FROM likes").await, 0);
    assert_eq!(counter(&app, "SELECT follower_count FROM users WHERE username = 'author' AND $1 > 0", 1).await, 0);
    assert!(live(&app).await.is_empty(), "no event without its action");
}

/// Everyone following everyone at once (A→B while B→A included): no deadlock, no error,
/// and both counters of every user agree with the rows.
#[tokio::test]
async fn concurrent_mutual_follows_neither_deadlock_nor_miscount() {
    let app = TestApp::new().await;
    let mut people = Vec::new();
    for i in 0..8 {
        people.push((format!("user{i}"), user(&app, &format!("user{i}"), false).await));
    }
    let requests = people.iter().flat_map(|(_, b)| {
        people.iter().map(move |(other, _)| async move {
            let path = format!("/u/{other}/follow");
            [b.post_form(&path, &[]).await.status.as_u16(), b.post_form(&path, &[]).await.status.as_u16()]
        })
    });
    let statuses: Vec<[u16; 2]> = futures::future::join_all(requests).await;
    // Following yourself is the one refusal (422); everything else went through.
    assert_eq!(statuses.iter().flatten().filter(|s| **s == 422).count(), 16);
    assert!(statuses.iter().flatten().all(|s| *s == 303 || *s == 422), "{statuses:?}");
    assert_eq!(app.count("SELECT count(*) FROM follows").await, 56);
    let off = app
        .count(
            "SELECT count(*) FROM users u WHERE follower_count <> (SELECT count(*) FROM follows f WHERE f.followee_id = u.id)
                OR following_count <> (SELECT count(*) FROM follows f WHERE f.follower_id = u.id) OR follower_count <> 7",
        )
        .await;
    assert_eq!(off, 0);
    assert_eq!(notify_kinds(&app).await.len(), 56, "one notification per new follow, none for the repeats");
}
