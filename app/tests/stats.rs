//! Reading statistics and trending through the real routes: reads counted in memory and
//! flushed (one statement, and at shutdown), with the exact views and unique readers on
//! the author's page; who is not counted (crawlers, the author, cookie-less visitors as
//! readers); the page's access rules; trending's order, decay and exclusions, and the home
//! page's section.

mod common;

use common::TestApp;

const PW: &str = "correct horse battery";
const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

/// An app whose background flusher never fires during a test: the tests flush themselves.
async fn app() -> TestApp {
    TestApp::with_config(|c| c.stats_flush = std::time::Duration::from_secs(3600)).await
}

async fn user(app: &TestApp, name: &str) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    b
}

async fn draft(b: &TestApp, title: &str, chapters: usize) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", "A summary."), ("tags", "")]).await;
    r.assert_status(303);
    let id = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    for n in 1..=chapters {
        b.post_form(&format!("/s/{id}/chapters"), &[("title", &format!("Part {n}")), ("body", "Some words here.")]).await.assert_status(303);
    }
    id
}

async fn published(b: &TestApp, title: &str, chapters: usize) -> i64 {
    let id = draft(b, title, chapters).await;
    b.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
    id
}

async fn read(b: &TestApp, story: i64, n: i32) {
    b.get_with(&format!("/s/{story}/c/{n}"), &[("user-agent", BROWSER_UA)]).await.assert_status(200);
}

async fn flush(app: &TestApp) {
    app.state.views.flush(&app.db.pool).await.expect("flush");
}

/// (views, distinct readers) of chapter `n` in the tables.
async fn counts(app: &TestApp, story: i64, n: i32) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(views), 0)::bigint FROM chapter_views_daily WHERE story_id = $1 AND chapter_number = $2),
                (SELECT count(DISTINCT reader) FROM chapter_readers_daily WHERE story_id = $1 AND chapter_number = $2)",
    )
    .bind(story)
    .bind(n)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn reads_show_on_the_stats_page_with_exact_views_and_unique_readers() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let story = published(&alice, "Counted", 2).await;

    // bob (logged in): chapter 1 twice, chapter 2 once.
    read(&bob, story, 1).await;
    read(&bob, story, 1).await;
    read(&bob, story, 2).await;
    // An anonymous visitor who keeps our cookie: the first page sets it.
    let anon = app.new_browser();
    anon.get("/").await.assert_status(200);
    assert!(anon.cookie("quire_anon").is_some());
    read(&anon, story, 1).await;
    read(&anon, story, 1).await;
    // Visitors without a cookie (a fresh browser each time): views, no readers.
    for _ in 0..3 {
        read(&app.new_browser(), story, 1).await;
    }
    // A crawler, with a cookie: nothing at all.
    anon.get_with(&format!("/s/{story}/c/2"), &[("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")])
        .await
        .assert_status(200);
    anon.get_with(&format!("/s/{story}/c/2"), &[("user-agent", "curl/8.5.0")]).await.assert_status(200);
    // The author: nothing.
    read(&alice, story, 1).await;
    read(&alice, story, 2).await;

    // Counted in memory only: no row until the flush.
    assert_eq!(app.count("SELECT count(*) FROM chapter_views_daily").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM chapter_readers_daily").await, 0);
    flush(&app).await;
    assert_eq!(counts(&app, story, 1).await, (2 + 2 + 3, 2), "chapter 1: bob 2, anon 2, three cookie-less; readers bob and anon");
    assert_eq!(counts(&app, story, 2).await, (1, 1), "chapter 2: bob once; crawlers and the author not counted");
    // The anonymous reader is stored as a number, not as its cookie.
    let anon_readers = app.count("SELECT count(*) FROM chapter_readers_daily WHERE reader < 0").await;
    assert_eq!(anon_readers, 1);

    let page = alice.get(&format!("/s/{story}/stats")).await;
    page.assert_status(200)
        .assert_contains("<h1>Reading statistics</h1>")
        .assert_contains("<strong>8</strong> views by <strong>2</strong> unique readers")
        .assert_contains("<svg class=\"chart\" id=\"reads-chart\"")
        .assert_contains("8 views by 2 unique readers from")
        // per chapter: views, then unique readers
        .assert_contains("1. Part 1</a></th><td>7</td><td>2</td>")
        .assert_contains("2. Part 2</a></th><td>1</td><td>1</td>");
    // Today's row of the table alternative.
    let today = chrono::Utc::now().date_naive().to_string();
    page.assert_contains(&format!("<time datetime=\"{today}\">{today}</time></th><td>8</td><td>2</td>"));

    // A second flush adds to the same rows; the same reader again is still one reader.
    read(&bob, story, 1).await;
    flush(&app).await;
    assert_eq!(counts(&app, story, 1).await, (8, 2));
    assert_eq!(app.count("SELECT count(*) FROM chapter_views_daily").await, 2, "one row per chapter and day");
}

#[tokio::test]
async fn the_stats_page_is_the_authors_alone() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let story = published(&alice, "Mine", 1).await;
    let secret = draft(&alice, "Secret draft", 1).await;

    let anon = app.new_browser();
    let r = anon.get(&format!("/s/{story}/stats")).await;
    r.assert_status(303);
    assert!(r.location().unwrap().starts_with("/login?next="), "{:?}", r.location());
    bob.get(&format!("/s/{story}/stats")).await.assert_status(403);
    bob.get(&format!("/s/{secret}/stats")).await.assert_status(404);
    bob.get("/s/999999/stats").await.assert_status(404);

    // The author's own draft: the page, with its empty states.
    alice.get(&format!("/s/{secret}/stats")).await.assert_status(200).assert_contains("No reads yet").assert_contains("No likes or comments");
    // The story page links to it for the author only.
    alice.get(&format!("/s/{story}")).await.assert_contains(&format!("href=\"/s/{story}/stats\""));
    assert!(!bob.get(&format!("/s/{story}")).await.body.contains("/stats\""));
}

#[tokio::test]
async fn likes_and_comments_appear_per_day() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let carol = user(&app, "carol").await;
    let story = published(&alice, "Loved", 1).await;
    bob.post_form(&format!("/s/{story}/like"), &[]).await.assert_status(303);
    carol.post_form(&format!("/s/{story}/like"), &[]).await.assert_status(303);
    bob.post_form(&format!("/s/{story}/comments"), &[("body", "Lovely.")]).await.assert_status(303);
    let page = alice.get(&format!("/s/{story}/stats")).await;
    page.assert_status(200)
        .assert_contains("<strong>2</strong> likes and <strong>1</strong> comment.")
        .assert_contains("<svg class=\"chart\" id=\"social-chart\"");
    let today = chrono::Utc::now().date_naive().to_string();
    page.assert_contains(&format!("<time datetime=\"{today}\">{today}</time></th><td>2</td><td>1</td>"));
}

#[tokio::test]
async fn many_views_are_written_by_one_statement() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let story = published(&alice, "Busy", 3).await;
    // Statement-level triggers count the INSERT statements each table receives.
    sqlx::raw_sql(
        "CREATE TABLE insert_statements (tbl text, started timestamptz);
         CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO insert_statements VALUES (TG_TABLE_NAME, statement_timestamp()); RETURN NULL; END $$;
         CREATE TRIGGER v AFTER INSERT ON chapter_views_daily FOR EACH STATEMENT EXECUTE FUNCTION count_insert();
         CREATE TRIGGER r AFTER INSERT ON chapter_readers_daily FOR EACH STATEMENT EXECUTE FUNCTION count_insert();",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let readers: Vec<TestApp> = vec![user(&app, "reader1").await, user(&app, "reader2").await, user(&app, "reader3").await];
    for r in &readers {
        for n in 1..=3 {
            for _ in 0..4 {
                read(r, story, n).await;
            }
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM insert_statements").await, 0, "no write per page view");
    flush(&app).await;
    assert_eq!(
        app.count("SELECT count(*) FROM insert_statements").await,
        2,
        "36 views: one statement (the views upsert with the readers' insert as its CTE), firing each table's trigger once"
    );
    // Both tables were written by the same client statement: statement_timestamp() is
    // the start of the statement the client sent, so two round trips would differ.
    assert_eq!(app.count("SELECT count(DISTINCT started) FROM insert_statements").await, 1, "one statement, one round trip");
    assert_eq!(app.count("SELECT sum(views)::bigint FROM chapter_views_daily").await, 36);
    assert_eq!(app.count("SELECT count(*) FROM chapter_readers_daily").await, 9);
    // Nothing pending: a flush does not touch the database.
    flush(&app).await;
    assert_eq!(app.count("SELECT count(*) FROM insert_statements").await, 2);
}

#[tokio::test]
async fn counts_are_flushed_when_the_server_shuts_down() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let story = published(&alice, "Last words", 1).await;
    read(&bob, story, 1).await;
    assert_eq!(app.state.views.pending(), 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The shutdown signal fires at once: serve, stop, flush.
    app::web::serve_on(listener, app.state.clone(), async {}).await.expect("serve");
    assert_eq!(counts(&app, story, 1).await, (1, 1));
    assert_eq!(app.state.views.pending(), 0);
}

#[tokio::test]
async fn old_rows_are_purged() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let story = published(&alice, "Old", 1).await;
    sqlx::query(
        "INSERT INTO chapter_views_daily (story_id, chapter_number, day, views) VALUES ($1, 1, current_date - 200, 5), ($1, 1, current_date - 80, 3);
         ",
    )
    .bind(story)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO chapter_readers_daily (story_id, chapter_number, day, reader) VALUES ($1, 1, current_date - 200, 1), ($1, 1, current_date - 80, 1)")
        .bind(story)
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(app::stats::db::purge_old(&app.db.pool).await.unwrap(), (1, 1));
    assert_eq!(app.count("SELECT sum(views)::bigint FROM chapter_views_daily").await, 3);
    // 80 days ago is inside the page's window.
    alice.get(&format!("/s/{story}/stats")).await.assert_contains("<strong>3</strong> views by <strong>1</strong> unique reader.");
}

// ---- trending ---------------------------------------------------------------------

async fn recompute(app: &TestApp) {
    let mut tx = app.db.pool.begin().await.unwrap();
    app::trending::db::recompute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    // As the worker's job does after it commits.
    app.state.cache.invalidate(&[app::cache::Tag::trending()]).await;
}

async fn ranking(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT s.title FROM trending t JOIN stories s ON s.id = t.story_id ORDER BY t.score DESC, s.id DESC")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

async fn uid(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(name).fetch_one(&app.db.pool).await.unwrap()
}

#[tokio::test]
async fn trending_ranks_by_weighted_recent_activity_and_excludes_drafts_and_hidden() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let carol = user(&app, "carol").await;
    let dave = user(&app, "dave").await;
    let read_only = published(&alice, "Read only", 2).await;
    let liked = published(&alice, "Liked", 1).await;
    let discussed = published(&bob, "Discussed", 1).await;
    let hidden = published(&bob, "Hidden", 1).await;
    let _quiet = published(&bob, "Quiet", 1).await;
    let secret = draft(&carol, "Draft", 1).await;

    // Read only: two readers × two chapters = 4 reader-chapter-days (weight 1 each).
    for r in [&carol, &dave] {
        read(r, read_only, 1).await;
        read(r, read_only, 2).await;
    }
    flush(&app).await;
    // Liked: two likes (3 each) = 6. Discussed: two comments (5 each) = 10.
    carol.post_form(&format!("/s/{liked}/like"), &[]).await.assert_status(303);
    dave.post_form(&format!("/s/{liked}/like"), &[]).await.assert_status(303);
    carol.post_form(&format!("/s/{discussed}/comments"), &[("body", "Yes.")]).await.assert_status(303);
    dave.post_form(&format!("/s/{discussed}/comments"), &[("body", "Indeed.")]).await.assert_status(303);
    // The author's own comment does not count.
    bob.post_form(&format!("/s/{discussed}/comments"), &[("body", "Thanks!")]).await.assert_status(303);
    // Lots of activity on a story a moderator hid, and on a draft (rows seeded directly:
    // nobody else can act on a draft).
    for r in [&carol, &dave, &alice] {
        r.post_form(&format!("/s/{hidden}/like"), &[]).await.assert_status(303);
    }
    sqlx::query("UPDATE stories SET hidden_at = now() WHERE id = $1").bind(hidden).execute(&app.db.pool).await.unwrap();
    sqlx::query("INSERT INTO likes (story_id, user_id) VALUES ($1, $2), ($1, $3)")
        .bind(secret)
        .bind(uid(&app, "alice").await)
        .bind(uid(&app, "bob").await)
        .execute(&app.db.pool)
        .await
        .unwrap();

    recompute(&app).await;
    assert_eq!(ranking(&app).await, vec!["Discussed", "Liked", "Read only"], "10 > 6 > 4; quiet, hidden and draft stories absent");
    let score: f64 = sqlx::query_scalar("SELECT score FROM trending WHERE story_id = $1").bind(liked).fetch_one(&app.db.pool).await.unwrap();
    assert!((5.9..=6.0).contains(&score), "two fresh likes score just under 6: {score}");

    // A follow of alice (4) spreads over her two public stories: 2 each, Read only 4 → 6, Liked 6 → 8.
    dave.post_form("/u/alice/follow", &[]).await.assert_status(303);
    recompute(&app).await;
    assert_eq!(ranking(&app).await, vec!["Discussed", "Liked", "Read only"]);
    let read_score: f64 = sqlx::query_scalar("SELECT score FROM trending WHERE story_id = $1").bind(read_only).fetch_one(&app.db.pool).await.unwrap();
    assert!(read_score > 5.0, "the follow counted: {read_score}");

    // The home page shows the section, in that order, for everybody.
    let home = app.new_browser().get("/").await;
    home.assert_status(200).assert_contains("<h2 id=\"trending-heading\">Trending</h2>");
    let section = &home.body[home.body.find("trending-heading").unwrap()..home.body.find("Latest stories").unwrap()];
    let pos = |t: &str| section.find(&format!(">{t}</a>")).unwrap_or_else(|| panic!("{t} in trending: {section}"));
    assert!(pos("Discussed") < pos("Liked") && pos("Liked") < pos("Read only"));
    assert!(!section.contains(">Hidden<") && !section.contains(">Draft<") && !section.contains(">Quiet<"));
    bob.get("/").await.assert_contains("trending-heading");

    // A story hidden after the recompute leaves the home page at once.
    sqlx::query("UPDATE stories SET hidden_at = now() WHERE id = $1").bind(discussed).execute(&app.db.pool).await.unwrap();
    app.state.cache.invalidate(&[app::cache::Tag::story(discussed), app::cache::Tag::listing()]).await;
    let home = app.new_browser().get("/").await;
    let section = &home.body[home.body.find("trending-heading").unwrap()..home.body.find("Latest stories").unwrap()];
    assert!(!section.contains(">Discussed<"));
}

#[tokio::test]
async fn an_old_like_counts_less_than_a_new_one() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let old = published(&alice, "Old news", 1).await;
    let new = published(&alice, "New news", 1).await;
    bob.post_form(&format!("/s/{old}/like"), &[]).await.assert_status(303);
    bob.post_form(&format!("/s/{new}/like"), &[]).await.assert_status(303);
    // One like two days ago (two half-lives: a quarter of the weight), one now.
    sqlx::query("UPDATE likes SET created_at = now() - interval '48 hours' WHERE story_id = $1").bind(old).execute(&app.db.pool).await.unwrap();
    recompute(&app).await;
    assert_eq!(ranking(&app).await, vec!["New news", "Old news"]);
    let old_score: f64 = sqlx::query_scalar("SELECT score FROM trending WHERE story_id = $1").bind(old).fetch_one(&app.db.pool).await.unwrap();
    assert!((0.74..=0.76).contains(&old_score), "3 × 0.5² = 0.75: {old_score}");
    // Past the 7-day window it counts not at all.
    sqlx::query("UPDATE likes SET created_at = now() - interval '8 days' WHERE story_id = $1").bind(old).execute(&app.db.pool).await.unwrap();
    recompute(&app).await;
    assert_eq!(ranking(&app).await, vec!["New news"]);
}

#[tokio::test]
async fn home_shows_an_empty_trending_section_and_load_more_still_works() {
    let app = app().await;
    let home = app.get("/").await;
    home.assert_status(200).assert_contains("Trending").assert_contains("Nothing is trending yet");
    // "Load more" of Latest: the htmx fragment has no trending section.
    let alice = user(&app, "alice").await;
    for i in 0..21 {
        published(&alice, &format!("Story {i}"), 0).await;
    }
    let first = app.get("/").await;
    let next = first.body.split("after=").nth(1).and_then(|s| s.split('"').next()).expect("a next link").replace("&amp;", "&");
    let more = app.get_with(&format!("/?after={next}"), &[("hx-request", "true")]).await;
    more.assert_status(200).assert_contains("Story 0");
    assert!(!more.body.contains("trending-heading"));
}

/// A measurement, not a check (`bin/test -E 'test(measure_flush)' --run-ignored only`):
/// how long one flush of a busy process's 5 seconds takes, and the page's time over it.
#[tokio::test]
#[ignore]
async fn measure_flush() {
    let app = app().await;
    let alice = user(&app, "alice").await;
    let story = published(&alice, "Big", 1).await;
    // 49 more chapters directly (the form limits chapters per hour).
    sqlx::query(
        "INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count)
         SELECT $1, n, 'Part ' || n, 'x', '<p>x</p>', 1 FROM generate_series(2, 50) AS n",
    )
    .bind(story)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE stories SET chapter_count = 50 WHERE id = $1").bind(story).execute(&app.db.pool).await.unwrap();
    let counter = &app.state.views;
    let today = chrono::Utc::now().date_naive();
    // 50 chapters × 30 days, 20,000 views by 2,000 anonymous readers.
    let cookies: Vec<String> = (0..2000).map(|i| format!("reader-cookie-{i}")).collect();
    let t = std::time::Instant::now();
    for i in 0..20_000usize {
        let day = today - chrono::Duration::days((i % 30) as i64);
        counter.record_on(day, story, (i % 50) as i32 + 1, app::stats::Reader::Anonymous(&cookies[i % 2000]));
    }
    let record = t.elapsed();
    let entries = counter.pending();
    let t = std::time::Instant::now();
    flush(&app).await;
    let flush_time = t.elapsed();
    let t = std::time::Instant::now();
    alice.get(&format!("/s/{story}/stats")).await.assert_status(200).assert_contains("20000</strong> views");
    let page = t.elapsed();
    eprintln!("record 20,000 views: {record:?} ({:?}/view); one flush of {entries} entries: {flush_time:?}; stats page: {page:?}", record / 20_000);
}
