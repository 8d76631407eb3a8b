//! Trust and safety through the real routes: the role matrix over every staff route,
//! reports and their queue, hiding (everywhere at once) and undoing it, bans that end
//! sessions on every web process, the audit log (append-only against direct SQL), the
//! admin user pages, and `web role`.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn user(app: &TestApp, name: &str, role: &str) -> TestApp {
    common::user_with_role(app, name, role, PW).await
}

async fn published(b: &TestApp, title: &str) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", "A summary."), ("tags", "harbour")]).await;
    r.assert_status(303);
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    b.post_form(&format!("/s/{id}/chapters"), &[("title", "Part 1"), ("body", "Some words about a lighthouse.")]).await.assert_status(303);
    b.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
    id
}

async fn comment(b: &TestApp, story: i64, body: &str) -> i64 {
    b.post_form(&format!("/s/{story}/comments"), &[("body", body)]).await.assert_status(303);
    sqlx::query_scalar("SELECT max(id) FROM comments WHERE story_id = $1").bind(story).fetch_one(&b.db.pool).await.unwrap()
}

/// A comment written straight into the table (past the comment rate limit).
async fn sql_comment(app: &TestApp, story: i64, author: &str, body: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO comments (story_id, author_id, body_markdown, body_html)
         SELECT $1, id, $3, '<p>' || $3 || '</p>' FROM users WHERE username = $2 RETURNING id",
    )
    .bind(story)
    .bind(author)
    .bind(body)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn open_report_id(app: &TestApp, kind: &str, id: i64) -> i64 {
    sqlx::query_scalar("SELECT max(id) FROM reports WHERE object_kind = $1 AND object_id = $2 AND status = 'open'")
        .bind(kind)
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

fn flash_shown(r: &Resp) -> bool {
    r.body.contains("a moderator will look")
}

// ---- roles ----------------------------------------------------------------------------

/// Every `/admin` and `/mod` route, read from the route table: anonymous visitors are
/// sent to log in, each role below the route's answers 403, the role itself gets past
/// the policy (anything but 403 and the login redirect).
#[tokio::test]
async fn every_staff_route_refuses_the_roles_below_it() {
    let app = TestApp::new().await;
    let target = user(&app, "target", "writer").await;
    drop(target);
    let routes: Vec<(String, bool, bool)> =
        common::route_table().into_iter().filter(|(p, _, _)| p.starts_with("/admin") || p.starts_with("/mod/")).collect();
    let names: Vec<&str> = routes.iter().map(|(p, _, _)| p.as_str()).collect();
    for must in ["/admin", "/admin/users", "/admin/audit", "/admin/jobs", "/mod/reports", "/mod/reports/:id/resolve", "/admin/users/:username/ban"] {
        assert!(names.contains(&must), "{must} missing from the route table: {names:?}");
    }
    let mut browsers = Vec::new();
    for role in ["reader", "writer", "moderator", "admin"] {
        browsers.push((role, user(&app, &format!("{role}_u"), role).await));
    }
    let anon = app.new_browser();
    let rank = |r: &str| ["reader", "writer", "moderator", "admin"].iter().position(|x| *x == r).unwrap();
    for (pattern, get, post) in &routes {
        // Moderators ban and unban; everything else under /admin is for admins.
        let needed = if pattern.starts_with("/mod/") || pattern.ends_with("/ban") || pattern.ends_with("/unban") { "moderator" } else { "admin" };
        let path = pattern.replace(":username", "target").replace(":kind", "story").replace(":id", "1");
        for (method, wanted) in [("GET", *get), ("POST", *post)] {
            if !wanted {
                continue;
            }
            let r = send(&anon, method, &path).await;
            assert_eq!(r.status, 303, "anonymous {method} {path}");
            assert!(r.location().unwrap_or("").starts_with("/login"), "anonymous {method} {path}: {:?}", r.location());
            for (role, b) in &browsers {
                let r = send(b, method, &path).await;
                if rank(role) < rank(needed) {
                    assert_eq!(r.status, 403, "{role} {method} {path}: {}", &r.body[..r.body.len().min(300)]);
                } else {
                    assert!(r.status != 403 && !r.location().unwrap_or("").starts_with("/login"), "{role} {method} {path}: {}", r.status);
                }
            }
        }
    }
}

async fn send(b: &TestApp, method: &str, path: &str) -> Resp {
    if method == "GET" { b.get(path).await } else { b.post_form(path, &[("reason", "x"), ("action", "dismiss"), ("role", "writer")]).await }
}

#[tokio::test]
async fn new_accounts_are_writers_and_a_demoted_reader_cannot_publish() {
    let app = TestApp::new().await;
    let b = app.new_browser();
    b.signup("newbie", "newbie@example.com", PW).await.assert_status(303);
    let role: String = sqlx::query_scalar("SELECT role::text FROM users WHERE username = 'newbie'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(role, "writer");
    let w = user(&app, "demoted", "writer").await;
    let r = w.post_form("/stories", &[("title", "Before"), ("summary", ""), ("tags", "")]).await;
    let id = r.location().unwrap().trim_start_matches("/s/").to_string();
    w.post_form(&format!("/s/{id}/chapters"), &[("title", "One"), ("body", "Words.")]).await.assert_status(303);
    app::accounts::users::set_role(&app.db.pool, &app::audit::Origin::command_line("test"), "demoted", app::policy::Role::Reader).await.unwrap();
    // Verified, but a reader now: publishing is refused with a reason, at once.
    let r = w.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await;
    r.assert_status(422).assert_contains("cannot publish");
    let mut conn = app.db.pool.acquire().await.unwrap();
    let uid: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'demoted'").fetch_one(&app.db.pool).await.unwrap();
    app::accounts::users::mark_verified(&mut conn, uid).await.unwrap();
    let role: String = sqlx::query_scalar("SELECT role::text FROM users WHERE id = $1").bind(uid).fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(role, "reader", "verifying again does not undo a demotion");
}

#[tokio::test]
async fn web_role_sets_a_role_with_an_audit_row_and_refuses_unknowns_with_exit_2() {
    let app = TestApp::new().await;
    user(&app, "promoted", "writer").await;
    let web = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_web"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_ENV", "development")
            .env("DATABASE_URL", &app.db.url)
            .env("SECRET_KEY", "0123456789abcdef0123456789abcdef")
            .output()
            .unwrap()
    };
    let out = web(&["role", "promoted", "overlord"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let out = web(&["role", "nobody_here", "admin"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nobody_here"), "{err}");
    let out = web(&["role", "promoted", "admin"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let role: String = sqlx::query_scalar("SELECT role::text FROM users WHERE username = 'promoted'").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(role, "admin");
    let (actor, before, after): (String, serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT actor_name, before, after FROM audit_log WHERE action = 'user.role_changed'").fetch_one(&app.db.pool).await.unwrap();
    assert!(actor.contains("command line"), "{actor}");
    assert_eq!((before["role"].as_str(), after["role"].as_str()), (Some("writer"), Some("admin")));
}

// ---- reports --------------------------------------------------------------------------

#[tokio::test]
async fn reports_are_one_per_reporter_and_object_and_refuse_what_cannot_be_reported() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let reader = user(&app, "reader", "reader").await;
    let id = published(&author, "Salt Roads").await;
    let r = reader.post_form(&format!("/s/{id}/report"), &[("reason", "spam"), ("next", &format!("/s/{id}"))]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some(format!("/s/{id}").as_str()));
    assert!(flash_shown(&reader.get(&format!("/s/{id}")).await));
    // Twice: thanked again, still one open report.
    reader.post_form(&format!("/s/{id}/report"), &[("reason", "really spam")]).await.assert_status(303);
    assert_eq!(app.count("SELECT count(*) FROM reports").await, 1);
    // Empty or overlong reason, own story, a draft, a missing story, no CSRF.
    reader.post_form(&format!("/s/{id}/report"), &[("reason", "  ")]).await.assert_status(422);
    reader.post_form(&format!("/s/{id}/report"), &[("reason", &"x".repeat(1001))]).await.assert_status(422);
    author.post_form(&format!("/s/{id}/report"), &[("reason", "mine")]).await.assert_status(422);
    let r = author.post_form("/stories", &[("title", "Secret"), ("summary", ""), ("tags", "")]).await;
    let draft = r.location().unwrap().trim_start_matches("/s/").to_string();
    reader.post_form(&format!("/s/{draft}/report"), &[("reason", "draft")]).await.assert_status(404);
    reader.post_form("/s/999999/report", &[("reason", "x")]).await.assert_status(404);
    reader.post_form_raw(&format!("/s/{id}/report"), &[("reason", "x")]).await.assert_status(403);
    // Comments and profiles.
    let cid = comment(&author, id, "A comment worth reporting").await;
    reader.post_form(&format!("/s/{id}/comments/{cid}/report"), &[("reason", "rude")]).await.assert_status(303);
    reader.post_form(&format!("/s/{id}/comments/999/report"), &[("reason", "rude")]).await.assert_status(404);
    reader.post_form("/u/author/report", &[("reason", "impersonation")]).await.assert_status(303);
    reader.post_form("/u/nobody/report", &[("reason", "x")]).await.assert_status(404);
    assert_eq!(app.count("SELECT count(*) FROM reports WHERE status = 'open'").await, 3);
    // htmx: the thanks replace the form.
    let other = user(&app, "other", "writer").await;
    let r = other.post_raw(
        &format!("/s/{id}/report"),
        "application/x-www-form-urlencoded",
        format!("csrf_token={}&reason=spam", other.csrf_token().await).into_bytes(),
        &[("HX-Request", "true")],
    ).await;
    r.assert_status(200).assert_contains("a moderator will look");
}

#[tokio::test]
async fn reports_are_rate_limited() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let reader = user(&app, "reader", "reader").await;
    let id = published(&author, "Many Comments").await;
    let mut statuses = Vec::new();
    for i in 0..22 {
        let cid = sql_comment(&app, id, "author", &format!("comment {i}")).await;
        statuses.push(reader.post_form(&format!("/s/{id}/comments/{cid}/report"), &[("reason", "x")]).await.status.as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 303), "{statuses:?}");
    assert_eq!(statuses[21], 429, "{statuses:?}");
}

#[tokio::test]
async fn the_queue_groups_by_object_newest_first_and_pages() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let m = user(&app, "mod", "moderator").await;
    let a = published(&author, "First Reported").await;
    let b = published(&author, "Second Reported").await;
    for name in ["rep1", "rep2", "rep3"] {
        user(&app, name, "reader").await.post_form(&format!("/s/{a}/report"), &[("reason", &format!("reason from {name}"))]).await.assert_status(303);
    }
    user(&app, "rep4", "reader").await.post_form(&format!("/s/{b}/report"), &[("reason", "only one")]).await.assert_status(303);
    let page = m.get("/mod/reports").await;
    page.assert_status(200).assert_contains("3 reports").assert_contains("1 report,").assert_contains("reason from rep2");
    let (first, second) = (page.body.find("Second Reported").unwrap(), page.body.find("First Reported").unwrap());
    assert!(first < second, "the most recently reported object first");
    assert!(page.body.contains(r#"id="open-count">4<"#), "{}", page.body);
    // Pagination: 19 more objects (21 in all, under the report limit) make a second page.
    let r5 = user(&app, "rep5", "reader").await;
    for i in 0..19 {
        let cid = sql_comment(&app, a, "author", &format!("c{i}")).await;
        r5.post_form(&format!("/s/{a}/comments/{cid}/report"), &[("reason", "x")]).await.assert_status(303);
    }
    let page = m.get("/mod/reports").await;
    let next = page.body.split("/mod/reports?after=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let page2 = m.get(&format!("/mod/reports?after={next}")).await;
    page2.assert_status(200).assert_contains("First Reported");
    m.get("/mod/reports?after=junk").await.assert_status(200);
}

// ---- hiding ---------------------------------------------------------------------------

#[tokio::test]
async fn hiding_a_story_removes_it_everywhere_shows_the_author_why_and_can_be_undone() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let reader = user(&app, "reader", "reader").await;
    let m = user(&app, "mod", "moderator").await;
    let anon = app.new_browser();
    let id = published(&author, "Lanterns Of Spite").await;
    reader.post_form(&format!("/s/{id}/save"), &[]).await;
    reader.post_form(&format!("/s/{id}/report"), &[("reason", "hateful")]).await.assert_status(303);
    let rid = open_report_id(&app, "story", id).await;
    // A forged action changes nothing.
    m.post_form(&format!("/mod/reports/{rid}/resolve"), &[("action", "delete")]).await.assert_status(422);
    let r = m.post_form(&format!("/mod/reports/{rid}/resolve"), &[("action", "hide"), ("note", "Targets a group of people.")]).await;
    r.assert_status(303);
    assert_eq!(r.location(), Some("/mod/reports"));
    // Gone for everyone else, at once.
    for path in [format!("/s/{id}"), format!("/s/{id}/c/1"), format!("/s/{id}/live")] {
        anon.get(&path).await.assert_status(404);
        reader.get(&path).await.assert_status(404);
    }
    for path in ["/", "/t/harbour", "/u/author", "/search?q=lanterns", "/u/author/feed.atom", "/t/harbour/feed.atom", "/reading-list"] {
        let body = reader.get(path).await.body;
        assert!(!body.contains("Lanterns Of Spite"), "{path} still lists it");
    }
    reader.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(404);
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "hi")]).await.assert_status(404);
    // The author sees it, and why; so do moderators.
    author.get(&format!("/s/{id}")).await.assert_status(200).assert_contains("Hidden by the moderators").assert_contains("Targets a group of people.");
    m.get(&format!("/s/{id}")).await.assert_status(200);
    // Reports closed, audit row written.
    assert_eq!(app.count("SELECT count(*) FROM reports WHERE status = 'hidden'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'story.hidden'").await, 1);
    // Resolving again: 409, nothing changes.
    m.post_form(&format!("/mod/reports/{rid}/resolve"), &[("action", "dismiss")]).await.assert_status(409);
    // Undo.
    m.get("/mod/hidden").await.assert_status(200).assert_contains("Lanterns Of Spite");
    m.post_form(&format!("/mod/hidden/story/{id}/unhide"), &[]).await.assert_status(303);
    anon.get(&format!("/s/{id}")).await.assert_status(200);
    assert!(reader.get("/search?q=lanterns").await.body.contains("Lanterns Of Spite"));
    m.post_form(&format!("/mod/hidden/story/{id}/unhide"), &[]).await.assert_status(409);
    m.post_form("/mod/hidden/planet/1/unhide", &[]).await.assert_status(404);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'story.unhidden'").await, 1);
}

#[tokio::test]
async fn a_hidden_comment_leaves_the_page_and_its_live_stream_and_its_author_sees_why() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let troll = user(&app, "troll", "writer").await;
    let reader = user(&app, "reader", "reader").await;
    let m = user(&app, "mod", "moderator").await;
    let id = published(&author, "Quiet Harbour").await;
    let cid = comment(&troll, id, "Something nasty here").await;
    reader.get(&format!("/s/{id}")).await.assert_contains("Something nasty here");
    reader.post_form(&format!("/s/{id}/comments/{cid}/report"), &[("reason", "abuse")]).await.assert_status(303);
    let rid = open_report_id(&app, "comment", cid).await;
    m.post_form(&format!("/mod/reports/{rid}/resolve"), &[("action", "hide")]).await.assert_status(303);
    assert!(!reader.get(&format!("/s/{id}")).await.body.contains("Something nasty here"));
    assert!(!app.new_browser().get(&format!("/s/{id}")).await.body.contains("Something nasty here"));
    troll.get(&format!("/s/{id}")).await.assert_contains("Something nasty here").assert_contains("Hidden by the moderators");
    // Open pages were told to drop it, in the same commit.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM live_events WHERE channel = $1 AND event = 'comment_deleted' AND data = $2")
        .bind(format!("story:{id}"))
        .bind(format!("comment-{cid}"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    // Notifications pointing at it are gone.
    assert_eq!(app.count(&format!("SELECT count(*) FROM notifications WHERE comment_id = {cid}")).await, 0);
}

#[tokio::test]
async fn two_moderators_resolving_at_once_resolve_once() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let reader = user(&app, "reader", "reader").await;
    let m1 = user(&app, "mod1", "moderator").await;
    let m2 = user(&app, "mod2", "moderator").await;
    let id = published(&author, "Contested").await;
    reader.post_form(&format!("/s/{id}/report"), &[("reason", "x")]).await.assert_status(303);
    let rid = open_report_id(&app, "story", id).await;
    let path = format!("/mod/reports/{rid}/resolve");
    let (a, b) = tokio::join!(m1.post_form(&path, &[("action", "hide")]), m2.post_form(&path, &[("action", "dismiss")]));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [303, 409]);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action IN ('story.hidden', 'report.dismissed')").await, 1);
}

#[tokio::test]
async fn a_hidden_profile_keeps_its_stories_but_not_its_words() {
    let app = TestApp::new().await;
    let author = user(&app, "author", "writer").await;
    let reader = user(&app, "reader", "reader").await;
    let m = user(&app, "mod", "moderator").await;
    sqlx::query("UPDATE users SET bio = 'Buy pills at example dot com' WHERE username = 'author'").execute(&app.db.pool).await.unwrap();
    reader.post_form("/u/author/report", &[("reason", "spam bio")]).await.assert_status(303);
    let uid: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'author'").fetch_one(&app.db.pool).await.unwrap();
    let rid = open_report_id(&app, "user", uid).await;
    m.post_form(&format!("/mod/reports/{rid}/resolve"), &[("action", "hide")]).await.assert_status(303);
    let page = reader.get("/u/author").await;
    page.assert_status(200).assert_contains("The moderators hid this profile");
    assert!(!page.body.contains("Buy pills"));
    author.get("/u/author").await.assert_contains("Buy pills");
}

// ---- bans -----------------------------------------------------------------------------

#[tokio::test]
async fn a_ban_ends_sessions_on_every_process_at_once_and_login_says_why() {
    let app = TestApp::new().await;
    let victim = user(&app, "victim", "writer").await;
    let m = user(&app, "mod", "moderator").await;
    // The victim's session, used through a second web process whose cache holds it.
    let other = app.another_process().await;
    other.set_cookie("quire_session", &victim.cookie("quire_session").expect("session cookie"));
    assert!(other.get("/settings").await.status == 200, "logged in on the other process");
    let until = (chrono::Utc::now() + chrono::Duration::days(7)).date_naive().format("%Y-%m-%d").to_string();
    m.post_form("/admin/users/victim/ban", &[("reason", "Repeated harassment"), ("until", &until), ("content", "keep")]).await.assert_status(303);
    // Well inside the other process's 5 s session cache: it must have been told.
    let started = std::time::Instant::now();
    loop {
        let r = other.get("/settings").await;
        if r.status == 303 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "the other process still serves the banned session");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    victim.get("/settings").await.assert_status(303);
    // Logging in: a clear page, reason and end date, no session.
    let fresh = app.new_browser();
    let r = fresh.login("victim", PW).await;
    r.assert_status(403).assert_contains("Repeated harassment").assert_contains(&until[..8]);
    assert!(fresh.get("/settings").await.status == 303);
    // A wrong password learns nothing about the ban.
    let r = app.new_browser().login("victim", "wrong password here").await;
    assert!(!r.body.contains("Repeated harassment"));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.banned'").await, 1);
    // Lifted: they can log in again.
    m.post_form("/admin/users/victim/unban", &[]).await.assert_status(303);
    app.new_browser().login("victim", PW).await.assert_status(303);
    m.post_form("/admin/users/victim/unban", &[]).await.assert_status(409);
}

#[tokio::test]
async fn a_ban_can_hide_the_content_for_its_length_and_staff_limits_hold() {
    let app = TestApp::new().await;
    let victim = user(&app, "victim", "writer").await;
    let m = user(&app, "mod", "moderator").await;
    let admin = user(&app, "boss", "admin").await;
    let id = published(&victim, "Banned Words").await;
    let anon = app.new_browser();
    m.post_form("/admin/users/victim/ban", &[("reason", "spam"), ("content", "hide")]).await.assert_status(303);
    anon.get(&format!("/s/{id}")).await.assert_status(404);
    m.post_form("/admin/users/victim/unban", &[]).await.assert_status(303);
    anon.get(&format!("/s/{id}")).await.assert_status(200);
    // Bad input, and the limits of a moderator.
    m.post_form("/admin/users/victim/ban", &[("reason", "")]).await.assert_status(422);
    m.post_form("/admin/users/victim/ban", &[("reason", "x"), ("until", "2001-01-01")]).await.assert_status(422);
    m.post_form("/admin/users/victim/ban", &[("reason", "x"), ("until", "soon")]).await.assert_status(422);
    m.post_form("/admin/users/nobody/ban", &[("reason", "x")]).await.assert_status(404);
    m.post_form("/admin/users/boss/ban", &[("reason", "coup")]).await.assert_status(403);
    m.post_form("/admin/users/mod/ban", &[("reason", "me")]).await.assert_status(403);
    admin.post_form("/admin/users/boss/ban", &[("reason", "me")]).await.assert_status(422);
    admin.post_form("/admin/users/mod/ban", &[("reason", "rogue moderator")]).await.assert_status(303);
}

// ---- audit log ------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_log_cannot_be_changed_even_by_a_superuser_connection() {
    let app = TestApp::new().await;
    user(&app, "someone", "writer").await;
    app::accounts::users::set_role(&app.db.pool, &app::audit::Origin::command_line("test"), "someone", app::policy::Role::Moderator).await.unwrap();
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&app.db.pool).await.unwrap();
    assert!(superuser, "the test connects as a superuser, the strongest case");
    for sql in ["UPDATE audit_log SET action = 'user.nothing'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let err = sqlx::query(sql).execute(&app.db.pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 1);
}

#[tokio::test]
async fn admins_search_users_change_roles_and_read_the_audit_log() {
    let app = TestApp::new().await;
    let admin = user(&app, "boss", "admin").await;
    let m = user(&app, "mod", "moderator").await;
    let writer = user(&app, "penny", "writer").await;
    let page = admin.get("/admin/users?q=penn").await;
    page.assert_status(200).assert_contains("penny@example.com");
    assert!(!page.body.contains("mod@example.com"));
    admin.get("/admin/users?q=%25").await.assert_status(200);
    admin.post_form("/admin/users/penny/role", &[("role", "moderator")]).await.assert_status(303);
    // At once: penny's next request is a moderator's.
    writer.get("/mod/reports").await.assert_status(200);
    admin.post_form("/admin/users/penny/role", &[("role", "emperor")]).await.assert_status(422);
    admin.post_form("/admin/users/nobody/role", &[("role", "writer")]).await.assert_status(404);
    admin.post_form("/admin/users/boss/role", &[("role", "reader")]).await.assert_status(422);
    m.post_form("/admin/users/penny/role", &[("role", "admin")]).await.assert_status(403);
    let audit = admin.get("/admin/audit?action=user.role_changed").await;
    audit.assert_status(200).assert_contains("user.role_changed").assert_contains("boss");
    let none = admin.get("/admin/audit?user=nobody").await;
    none.assert_status(200).assert_contains("No entries match");
    admin.get("/admin/audit?user=penny").await.assert_contains("user.role_changed");
    admin.get("/admin/audit?before=abc").await.assert_status(400);
    admin.get("/admin").await.assert_status(200).assert_contains("Open reports");
}
