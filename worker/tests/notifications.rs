//! Notifications end to end on the worker side: the set-based fan-out of the `notify`
//! handler, its idempotent retry, who is told for each kind, email preferences (instant,
//! daily, off), never to an unverified address, the mails' headers and bodies through a
//! real SMTP server, one-click unsubscribe from the mail's own link, and the daily digest
//! (scheduled once per day, sent once per user).

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod smtp_sink;
mod support;

use std::sync::Arc;

use app::jobs::{
    Envelope,
    notify::{Activity, DailyDigest, Notify},
};
use common::TestApp;
use support::job_context;
use worker::{
    jobs::{JobContext, notify::handle, run_envelope},
    mailer::Mailer,
};

/// The social area's table (its migration lands separately): created here when missing.
async fn ensure_follows(app: &TestApp) {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS follows (
             follower_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
             followee_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
             created_at  timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (follower_id, followee_id))",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn new_user(app: &TestApp, name: &str, verified: bool) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, email_verified_at)
         VALUES ($1, $1 || '@example.com', 'x', CASE WHEN $2 THEN now() END) RETURNING id",
    )
    .bind(name)
    .bind(verified)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

/// `n` followers of `author` (`{prefix}{i}`), every other one verified; their ids.
async fn followers(app: &TestApp, author: i64, prefix: &str, n: i32) -> Vec<i64> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, email_verified_at)
         SELECT $1 || i, $1 || i || '@example.com', 'x', CASE WHEN i % 2 = 0 THEN now() END
         FROM generate_series(1, $2) i RETURNING id",
    )
    .bind(prefix)
    .bind(n)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO follows (follower_id, followee_id) SELECT unnest($1::bigint[]), $2")
        .bind(&ids)
        .bind(author)
        .execute(&app.db.pool)
        .await
        .unwrap();
    ids
}

async fn story(app: &TestApp, author: i64, title: &str, published: bool, chapters: i32) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO stories (author_id, title, status, published_at, chapter_count)
         VALUES ($1, $2, CASE WHEN $3 THEN 'published' ELSE 'draft' END, CASE WHEN $3 THEN now() END, $4) RETURNING id",
    )
    .bind(author)
    .bind(title)
    .bind(published)
    .bind(chapters)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count)
         SELECT $1, i, 'Chapter title ' || i, 'text', '<p>text</p>', 1 FROM generate_series(1, $2) i",
    )
    .bind(id)
    .bind(chapters)
    .execute(&app.db.pool)
    .await
    .unwrap();
    id
}

async fn set_prefs(app: &TestApp, user: i64, chapter: &str, follow: &str) {
    sqlx::query(
        "INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
         VALUES ($1, $3, 'off', 'instant', 'instant', $2)",
    )
    .bind(user)
    .bind(chapter)
    .bind(follow)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

/// (recipient, kind) of every notification, sorted.
async fn rows(app: &TestApp) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT user_id, kind FROM notifications ORDER BY user_id, kind").fetch_all(&app.db.pool).await.unwrap()
}

/// The queued jobs named `name` not run yet by `run_queued`, as envelopes (and marks them).
async fn take_jobs(app: &TestApp, name: &str) -> Vec<Envelope> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT id::text, job FROM apalis.jobs WHERE status = 'Pending' ORDER BY id").fetch_all(&app.db.pool).await.unwrap();
    let mut out = Vec::new();
    for (id, job) in rows {
        let env: Envelope = serde_json::from_slice(&job).unwrap();
        if env.name == name {
            sqlx::query("UPDATE apalis.jobs SET status = 'Done' WHERE id::text = $1").bind(&id).execute(&app.db.pool).await.unwrap();
            out.push(env);
        }
    }
    out
}

/// Runs every queued job named `name`, as the worker would; how many ran.
async fn run_queued(app: &TestApp, ctx: &JobContext, name: &str) -> usize {
    let jobs = take_jobs(app, name).await;
    let n = jobs.len();
    for env in jobs {
        run_envelope(env, ctx).await.unwrap();
    }
    n
}

fn envelope<J: app::jobs::Job>(job: &J) -> Envelope {
    Envelope { name: J::NAME.into(), args: serde_json::to_value(job).unwrap(), request_id: None }
}

#[tokio::test]
async fn a_chapter_fans_out_to_every_follower_in_one_insert_and_a_retry_adds_nothing() {
    let app = TestApp::new().await;
    ensure_follows(&app).await;
    let author = new_user(&app, "author", true).await;
    let fans = followers(&app, author, "fan", 450).await;
    let _stranger = new_user(&app, "stranger", true).await;
    let s = story(&app, author, "Tides", true, 3).await;
    let chapter = Activity::Chapter { story_id: s, author_id: author, number: 3 };

    let out = handle(&app.db.pool, &chapter).await.unwrap();
    assert_eq!(out.created, 450);
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 450);
    assert_eq!(app.count(&format!("SELECT count(*) FROM notifications WHERE user_id = {author}")).await, 0, "never the author");
    assert_eq!(app.count("SELECT count(DISTINCT user_id) FROM notifications WHERE kind = 'chapter' AND chapter_number = 3").await, 450);
    let data: serde_json::Value = sqlx::query_scalar("SELECT data FROM notifications LIMIT 1").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(data["story_title"], "Tides");
    assert_eq!(data["chapter_title"], "Chapter title 3");
    assert_eq!(data["actor_username"], "author");
    // A live `unread` event per recipient; the instant mails of the 225 verified fans in
    // two batches (200 + 25).
    assert_eq!(out.live_events, 450);
    assert_eq!(app.count("SELECT count(*) FROM live_events WHERE event = 'unread' AND channel LIKE 'user:%'").await, 450);
    let batches = take_jobs(&app, "send_notification_emails").await;
    let mut sizes: Vec<usize> = batches.iter().map(|e| e.args["notification_ids"].as_array().unwrap().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![25, 200]);
    assert_eq!(out.mail_jobs, 2);
    let verified: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications n JOIN users u ON u.id = n.user_id WHERE u.email_verified_at IS NOT NULL AND n.user_id = ANY($1)",
    )
    .bind(&fans)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(verified, 225);

    // The retry (or a second delivery of the job): nothing new anywhere.
    let again = handle(&app.db.pool, &chapter).await.unwrap();
    assert_eq!((again.created, again.mail_jobs, again.live_events), (0, 0, 0));
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 450);
    assert_eq!(app.count("SELECT count(*) FROM live_events").await, 450);
    assert!(take_jobs(&app, "send_notification_emails").await.is_empty());
}

#[tokio::test]
async fn big_fan_outs_skip_the_live_event_and_drafts_notify_nobody() {
    let app = TestApp::new().await;
    ensure_follows(&app).await;
    let author = new_user(&app, "author", true).await;
    followers(&app, author, "fan", 1001).await;
    let s = story(&app, author, "Big", true, 1).await;
    let out = handle(&app.db.pool, &Activity::Chapter { story_id: s, author_id: author, number: 1 }).await.unwrap();
    assert_eq!((out.created, out.live_events), (1001, 0));
    assert_eq!(app.count("SELECT count(*) FROM live_events").await, 0);

    // A draft (back to draft before the job ran), or a chapter that does not exist.
    let d = story(&app, author, "Draft", false, 2).await;
    assert_eq!(handle(&app.db.pool, &Activity::Chapter { story_id: d, author_id: author, number: 1 }).await.unwrap().created, 0);
    assert_eq!(handle(&app.db.pool, &Activity::Chapter { story_id: s, author_id: author, number: 2 }).await.unwrap().created, 0);
}

#[tokio::test]
async fn each_kind_tells_the_right_people_and_never_the_actor() {
    let app = TestApp::new().await;
    ensure_follows(&app).await;
    let author = new_user(&app, "author", true).await;
    let reader = new_user(&app, "reader", true).await;
    let other = new_user(&app, "other", true).await;
    let s = story(&app, author, "Tides", true, 1).await;
    let pool = &app.db.pool;
    let comment = |cid: i64, by: i64, parent: Option<i64>| Activity::Comment {
        comment_id: cid,
        story_id: s,
        commenter_id: by,
        story_author_id: author,
        parent_author_id: parent,
        excerpt: "Lovely *prose*".repeat(40),
    };

    // Follow: the followee; a like (twice: like, unlike, like) notifies once.
    handle(pool, &Activity::Follow { follower_id: reader, followee_id: author }).await.unwrap();
    for _ in 0..2 {
        handle(pool, &Activity::Like { user_id: reader, story_id: s, story_author_id: author }).await.unwrap();
    }
    assert_eq!(rows(&app).await, vec![(author, "follow".into()), (author, "like".into())]);
    sqlx::query("DELETE FROM notifications").execute(pool).await.unwrap();

    // A comment: the story's author. A reply: the parent's author too.
    handle(pool, &comment(1, reader, None)).await.unwrap();
    handle(pool, &comment(2, other, Some(reader))).await.unwrap();
    assert_eq!(rows(&app).await, vec![(author, "comment".into()), (author, "comment".into()), (reader, "reply".into())]);
    let excerpt: String = sqlx::query_scalar("SELECT data->>'excerpt' FROM notifications WHERE comment_id = 1").fetch_one(pool).await.unwrap();
    assert_eq!(excerpt.chars().count(), 280, "excerpt bounded");
    sqlx::query("DELETE FROM notifications").execute(pool).await.unwrap();

    // Replying to the story's author: one notification (the reply), not two.
    handle(pool, &comment(3, reader, Some(author))).await.unwrap();
    assert_eq!(rows(&app).await, vec![(author, "reply".into())]);
    sqlx::query("DELETE FROM notifications").execute(pool).await.unwrap();

    // Nobody is told of their own action.
    handle(pool, &comment(4, author, None)).await.unwrap();
    handle(pool, &comment(5, author, Some(author))).await.unwrap();
    handle(pool, &comment(6, reader, Some(reader))).await.unwrap();
    handle(pool, &Activity::Like { user_id: author, story_id: s, story_author_id: author }).await.unwrap();
    handle(pool, &Activity::Follow { follower_id: author, followee_id: author }).await.unwrap();
    assert_eq!(rows(&app).await, vec![(author, "comment".into())], "only the author hears of reader's reply to themselves");
    // Gone users and stories: nothing, and no error.
    handle(pool, &Activity::Like { user_id: reader, story_id: 999_999, story_author_id: author }).await.unwrap();
    handle(pool, &Activity::Follow { follower_id: reader, followee_id: 999_999 }).await.unwrap();
}

fn smtp_context(app: &TestApp, port: u16) -> Arc<JobContext> {
    let mut config = (*app.state.config).clone();
    config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    let base = job_context(app, Mailer::files(app.mail_dir.clone()));
    Arc::new(JobContext {
        db: base.db.clone(),
        storage: base.storage.clone(),
        templates: base.templates.clone(),
        mailer: Mailer::from_config(&config).unwrap(),
        config: Arc::new(config),
    })
}

fn parsed(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default().parse(raw).unwrap()
}

fn to_of(raw: &[u8]) -> String {
    parsed(raw).to().unwrap().first().unwrap().address().unwrap().to_string()
}

#[tokio::test]
async fn preferences_decide_who_is_mailed_and_each_mail_goes_once_with_one_click_unsubscribe() {
    let app = TestApp::new().await;
    ensure_follows(&app).await;
    let localhost: std::net::IpAddr = [127, 0, 0, 1].into();
    let port = smtp_sink::free_port(localhost);
    let server = smtp_sink::smtp_server(localhost, port);
    let ctx = smtp_context(&app, port);

    let author = new_user(&app, "author", true).await;
    let instant = new_user(&app, "instant", true).await; // defaults: chapter instant
    let daily = new_user(&app, "daily", true).await;
    let off = new_user(&app, "off", true).await;
    let unverified = new_user(&app, "unverified", false).await;
    set_prefs(&app, daily, "daily", "off").await;
    set_prefs(&app, off, "off", "off").await;
    for u in [instant, daily, off, unverified] {
        sqlx::query("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)").bind(u).bind(author).execute(&app.db.pool).await.unwrap();
    }
    let s = story(&app, author, "Tides & <Storms>", true, 2).await;

    // Through the registry, as the worker runs it.
    run_envelope(envelope(&Notify { activity: Activity::Chapter { story_id: s, author_id: author, number: 2 } }), &ctx).await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 4, "everyone sees it in the app");
    let mail_jobs = take_jobs(&app, "send_notification_emails").await;
    assert_eq!(mail_jobs.len(), 1);
    assert_eq!(mail_jobs[0].args["notification_ids"].as_array().unwrap().len(), 1, "only the instant, verified follower");
    // Run twice (a retry after success): one mail.
    run_envelope(mail_jobs[0].clone(), &ctx).await.unwrap();
    run_envelope(mail_jobs[0].clone(), &ctx).await.unwrap();
    let all = smtp_sink::received(&server);
    assert_eq!(all.len(), 1);
    assert_eq!(to_of(&all[0]), "instant@example.com");

    let msg = parsed(&all[0]);
    assert_eq!(msg.subject(), Some("New chapter of “Tides & <Storms>” by author: Chapter title 2"));
    let unfold = |v: &str| v.split_whitespace().collect::<String>();
    let list = unfold(msg.header_raw("List-Unsubscribe").expect("List-Unsubscribe header"));
    assert!(list.starts_with("<http://localhost:8000/unsubscribe/") && list.ends_with('>'), "{list}");
    assert_eq!(unfold(msg.header_raw("List-Unsubscribe-Post").expect("List-Unsubscribe-Post header")), "List-Unsubscribe=One-Click");
    let text = msg.body_text(0).unwrap().into_owned();
    assert!(text.contains(&format!("http://localhost:8000/s/{s}/c/2")), "{text}");
    assert!(text.contains("Tides & <Storms>"), "plain text is not escaped: {text}");
    let html = msg.body_html(0).unwrap().into_owned();
    assert!(html.contains("Tides &amp; &lt;Storms&gt;"), "HTML is escaped: {html}");
    assert!(html.replace("&#x2f;", "/").contains(&format!("/s/{s}/c/2")));
    assert!(msg.message_id().unwrap().starts_with("notification-"));

    // The mail's own one-click link, POSTed as a mail client does (no cookies, no token).
    let url = list.trim_start_matches('<').trim_end_matches('>');
    let path = url.trim_start_matches("http://localhost:8000");
    let client = app.new_browser();
    client.post_raw(path, "application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click".to_vec(), &[]).await.assert_status(200);
    let chapter_pref: String =
        sqlx::query_scalar("SELECT email_chapter FROM notification_prefs WHERE user_id = $1").bind(instant).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(chapter_pref, "off");

    // A pending mail whose recipient turned that kind off meanwhile is not sent.
    let s2 = story(&app, author, "Later", true, 1).await;
    sqlx::query("UPDATE notification_prefs SET email_chapter = 'instant' WHERE user_id = $1").bind(instant).execute(&app.db.pool).await.unwrap();
    handle(&app.db.pool, &Activity::Chapter { story_id: s2, author_id: author, number: 1 }).await.unwrap();
    sqlx::query("UPDATE notification_prefs SET email_chapter = 'off' WHERE user_id = $1").bind(instant).execute(&app.db.pool).await.unwrap();
    assert_eq!(run_queued(&app, &ctx, "send_notification_emails").await, 1);
    assert_eq!(smtp_sink::received(&server).len(), 1, "no mail after opting out");

    // The digest: scheduled twice the same day, one job; run twice, one mail per user,
    // to the daily follower only, listing both chapters.
    worker::scheduler::schedule_digest(&app.db.db(), 20_000).await.unwrap();
    let dup = worker::scheduler::schedule_digest(&app.db.db(), 20_000).await.expect_err("second schedule of the same day");
    assert!(worker::scheduler::is_duplicate(&dup));
    worker::scheduler::schedule_digest(&app.db.db(), 20_001).await.unwrap();
    let mut digests = take_jobs(&app, "daily_digest").await;
    digests.sort_by_key(|e| e.args["day"].as_i64());
    assert_eq!(digests.iter().map(|e| e.args["day"].as_i64().unwrap()).collect::<Vec<_>>(), vec![20_000, 20_001]);
    for _ in 0..2 {
        run_envelope(digests[0].clone(), &ctx).await.unwrap();
        run_queued(&app, &ctx, "send_digests").await;
    }
    let all = smtp_sink::received(&server);
    assert_eq!(all.len(), 2, "one digest");
    let digest = all.iter().find(|m| to_of(m) == "daily@example.com").expect("the daily follower's digest");
    let msg = parsed(digest);
    assert_eq!(msg.subject(), Some("Your day on Quire"));
    let text = msg.body_text(0).unwrap().into_owned();
    assert!(text.contains("Tides & <Storms>") && text.contains("Later"), "{text}");
    assert!(msg.header_raw("List-Unsubscribe").is_some() && msg.header_raw("List-Unsubscribe-Post").is_some());
    assert_eq!(app.count(&format!("SELECT count(*) FROM notifications WHERE user_id = {daily} AND digested_at IS NOT NULL")).await, 2);
    // The next day's digest finds nothing left to send.
    run_envelope(digests[1].clone(), &ctx).await.unwrap();
    run_queued(&app, &ctx, "send_digests").await;
    assert_eq!(smtp_sink::received(&server).len(), 2);
    // Never the unverified follower, never the one with mail off.
    for m in smtp_sink::received(&server) {
        let to = to_of(&m);
        assert!(to != "unverified@example.com" && to != "off@example.com", "{to}");
    }
}

#[tokio::test]
async fn an_unverified_address_gets_no_digest_either_and_a_read_notification_is_not_digested() {
    let app = TestApp::new().await;
    ensure_follows(&app).await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let author = new_user(&app, "author", true).await;
    let unverified = new_user(&app, "unverified", false).await;
    let reader = new_user(&app, "reader", true).await;
    let control = new_user(&app, "control", true).await;
    for u in [unverified, reader, control] {
        set_prefs(&app, u, "daily", "daily").await;
        handle(&app.db.pool, &Activity::Follow { follower_id: author, followee_id: u }).await.unwrap();
    }
    sqlx::query("UPDATE notifications SET read_at = now() WHERE user_id = $1").bind(reader).execute(&app.db.pool).await.unwrap();
    run_envelope(envelope(&DailyDigest { day: 1 }), &ctx).await.unwrap();
    assert_eq!(run_queued(&app, &ctx, "send_digests").await, 1, "one batch");
    let mails: Vec<_> = std::fs::read_dir(&app.mail_dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect())
        .unwrap_or_default();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(to_of(&std::fs::read(&mails[0]).unwrap()), "control@example.com", "only the verified user with something unread");
}

#[tokio::test]
async fn a_refused_address_fails_its_mail_permanently_without_naming_it_and_the_batch_goes_on() {
    let app = TestApp::new().await;
    ensure_follows(&app).await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let author = new_user(&app, "author", true).await;
    let good = new_user(&app, "good", true).await;
    // Accepted at signup, refused by the mail library: never deliverable.
    let bad: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, email_verified_at) VALUES ('bad', 'bad.@example.com', 'x', now()) RETURNING id",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    for u in [bad, good] {
        sqlx::query("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)").bind(u).bind(author).execute(&app.db.pool).await.unwrap();
    }
    let s = story(&app, author, "Tides", true, 1).await;
    handle(&app.db.pool, &Activity::Chapter { story_id: s, author_id: author, number: 1 }).await.unwrap();
    let jobs = take_jobs(&app, "send_notification_emails").await;
    assert_eq!(jobs.len(), 1);
    let err = run_envelope(jobs[0].clone(), &ctx).await.expect_err("the refused address fails the job");
    let msg = format!("{err:#}");
    assert!(matches!(err, worker::jobs::JobError::Permanent(_)), "{msg}");
    assert!(msg.contains(&bad.to_string()) && !msg.contains("bad.@example.com"), "names the user, not the address: {msg}");
    let eml = |app: &TestApp| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&app.mail_dir)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect())
            .unwrap_or_default()
    };
    assert_eq!(eml(&app).len(), 1, "the good address got its mail");
    // Run again: nothing is retried or sent twice (both are claimed).
    run_envelope(jobs[0].clone(), &ctx).await.unwrap();
    assert_eq!(eml(&app).len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM notifications WHERE emailed_at IS NOT NULL").await, 2);
}
