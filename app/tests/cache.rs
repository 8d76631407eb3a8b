//! The two-level cache through the real routes, with two web processes: each write path
//! invalidates what it changes, so the next anonymous read on either process shows it —
//! with the real Redis `bin/test` starts (pub/sub, L2) and without Redis (PostgreSQL's
//! control channel); single flight; rate limits shared through Redis; Redis down is not
//! an outage.

mod common;

use std::{sync::Arc, time::Duration};

use app::cache::{Cache, Fill, Got, Json, Options, Tag};
use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn user(app: &TestApp, name: &str) -> TestApp {
    common::user_with_role(app, name, "writer", PW).await
}

/// Two web processes on one database, sharing `redis` when given.
async fn two_processes(redis: Option<String>) -> (TestApp, TestApp) {
    let r = redis.clone();
    let a = TestApp::with_config(move |c| c.redis_url = r).await;
    let b = a.another_process_with(move |c| c.redis_url = redis).await;
    // Both subscriptions up (or, without Redis, both brokers listening: checked by
    // another_process) before anything is cached.
    for p in [&a, &b] {
        if p.state.cache.redis().is_some() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !p.state.cache.subscribed() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(p.state.cache.subscribed(), "cache subscription up");
        }
    }
    (a, b)
}

/// An anonymous GET of `path` on `p` that came from the cache: read until one does (a
/// fill that overlapped an invalidation is served but not kept, so it may take two).
async fn cached(p: &TestApp, path: &str) -> Resp {
    for _ in 0..5 {
        let r = p.get(path).await;
        if r.header("x-cache") == Some("hit") {
            return r;
        }
    }
    panic!("{path} never served from the cache");
}

/// Reads `path` anonymously on `p` until `check` holds, for at most a second (the
/// invalidation crosses processes within milliseconds).
async fn eventually(p: &TestApp, path: &str, what: &str, check: impl Fn(&Resp) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let r = p.get(path).await;
        if check(&r) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {path} still stale after 1 s (x-cache {:?}, status {}): {}", r.header("x-cache"), r.status, r.body.lines().filter(|l| l.contains("like") || l.contains("comment")).collect::<Vec<_>>().join("\n"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every write path, each read back anonymously on both processes.
async fn every_write_path_invalidates(redis: Option<String>) {
    let (a, b) = two_processes(redis).await;
    let author = user(&a, "ann").await;
    let reader = user(&a, "rob").await;
    let id = common::published_story(&author, "The Lighthouse", 1).await;
    let story = format!("/s/{id}");
    let anon = [a.new_browser(), b.new_browser()];

    // Warm both caches, then write through process A; read on both.
    let warm = async |path: &str| {
        for p in &anon {
            cached(p, path).await;
        }
    };

    // Edits: the title on the story page and on the home page.
    warm(&story).await;
    warm("/").await;
    author
        .post_form(&format!("/s/{id}/edit"), &[("title", "The Lighthouse Keeper"), ("summary", "A summary."), ("tags", "sea, storm"), ("status", "published")])
        .await
        .assert_status(303);
    for p in &anon {
        eventually(p, &story, "edit", |r| r.body.contains("The Lighthouse Keeper")).await;
        eventually(p, "/", "edit on home", |r| r.body.contains("The Lighthouse Keeper")).await;
    }

    // Chapters.
    warm(&story).await;
    author.post_form(&format!("/s/{id}/chapters"), &[("title", "The Second Night"), ("body", "More words.")]).await.assert_status(303);
    for p in &anon {
        eventually(p, &story, "chapter", |r| r.body.contains("The Second Night")).await;
    }

    // Likes: the count on the story page and its card on home.
    warm(&story).await;
    warm("/").await;
    reader.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(303);
    for p in &anon {
        eventually(p, &story, "like", |r| r.body.contains("1 like")).await;
        eventually(p, "/", "like on home", |r| r.body.contains("1 like")).await;
    }

    // Comments.
    warm(&story).await;
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "What a storm that was")]).await.assert_status(303);
    for p in &anon {
        eventually(p, &story, "comment", |r| r.body.contains("What a storm that was")).await;
    }

    // Follows: the follower count on the profile.
    warm("/u/ann").await;
    reader.post_form("/u/ann/follow", &[]).await.assert_status(303);
    for p in &anon {
        eventually(p, "/u/ann", "follow", |r| r.body.contains("1 follower")).await;
    }

    // Profile changes: the commenter's new name on the story page (they are on it by
    // their comment, not as its author).
    warm(&story).await;
    reader.post_form("/settings", &[("display_name", "Robin of the Dunes"), ("bio", "")]).await.assert_status(303);
    for p in &anon {
        eventually(p, &story, "profile change", |r| r.body.contains("Robin of the Dunes")).await;
    }

    // Moderation: a hidden story is a 404 for everyone but its author and staff.
    let moderator = common::user_with_role(&a, "mia", "moderator", PW).await;
    warm(&story).await;
    warm("/").await;
    reader.post_form(&format!("/s/{id}/report"), &[("reason", "spam")]).await;
    let report: i64 = sqlx::query_scalar("SELECT id FROM reports ORDER BY id DESC LIMIT 1").fetch_one(&a.db.pool).await.unwrap();
    moderator.post_form(&format!("/mod/reports/{report}/resolve"), &[("action", "hide"), ("note", "")]).await.assert_status(303);
    for p in &anon {
        eventually(p, &story, "hide", |r| r.status == 404).await;
        eventually(p, "/", "hide on home", |r| !r.body.contains("The Lighthouse Keeper")).await;
    }
    moderator.post_form(&format!("/mod/hidden/story/{id}/unhide"), &[]).await.assert_status(303);
    for p in &anon {
        eventually(p, &story, "unhide", |r| r.status == 200).await;
    }

    // Bans (their content hidden): their story leaves home.
    warm("/").await;
    moderator.post_form("/admin/users/ann/ban", &[("reason", "spam"), ("until", ""), ("content", "hide"), ("next", "")]).await.assert_status(303);
    for p in &anon {
        eventually(p, "/", "ban", |r| !r.body.contains("The Lighthouse Keeper")).await;
        eventually(p, &story, "ban", |r| r.status == 404).await;
    }
}

#[tokio::test]
async fn every_write_path_invalidates_both_processes_through_redis() {
    let Some(redis) = common::redis_url() else {
        eprintln!("skipped: QUIRE_TEST_REDIS_URL is not set (bin/test sets it)");
        return;
    };
    every_write_path_invalidates(Some(redis)).await;
}

#[tokio::test]
async fn every_write_path_invalidates_both_processes_without_redis() {
    every_write_path_invalidates(None).await;
}

/// Media turning ready: the worker's invalidation (through the same API) reaches the
/// web processes' caches.
#[tokio::test]
async fn an_invalidation_from_a_process_without_l1_reaches_the_web_processes() {
    let (a, b) = two_processes(common::redis_url()).await;
    let author = user(&a, "ann").await;
    let id = common::published_story(&author, "Tide", 1).await;
    let story = format!("/s/{id}");
    let anon = b.new_browser();
    cached(&anon, &story).await;
    // What the worker does after marking a cover ready: change, then invalidate.
    sqlx::query("UPDATE stories SET title = 'Tide Pool' WHERE id = $1").bind(id).execute(&a.db.pool).await.unwrap();
    let worker = Cache::new(Options { l1_bytes: None, redis: a.state.cache.redis().cloned(), enabled: true });
    worker.set_fallback(app::live::cache_fallback(a.db.pool.clone(), Arc::new(|| false)));
    worker.invalidate(&[Tag::story(id)]).await;
    eventually(&anon, &story, "worker invalidation", |r| r.body.contains("Tide Pool")).await;
}

#[tokio::test]
async fn a_hundred_concurrent_misses_run_the_loader_once() {
    for redis in [None, common::redis_url()] {
        let cache = Cache::new(Options { l1_bytes: Some(1 << 20), redis: redis.map(|u| app::redis_client::Redis::open(&u, Duration::from_millis(200)).unwrap()), enabled: true });
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let key = format!("flight-{}", uuid::Uuid::new_v4().simple());
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, loads, key) = (cache.clone(), loads.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let got = cache
                    .get_or_load(&app::cache::stats::VIEWER, &key, &[Tag::story(1)], async {
                        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Fill::<Json<i64>, ()>::Store { value: Json(42), tags: vec![] }
                    })
                    .await;
                match got {
                    Got::Value(v) => v.0,
                    Got::Pass(()) => -1,
                }
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1, "one load for a hundred concurrent misses");
        // And a bump of its tag makes the next lookup load again.
        cache.invalidate(&[Tag::story(1)]).await;
        let got = cache.get_or_load(&app::cache::stats::VIEWER, &key, &[Tag::story(1)], async { Fill::<Json<i64>, ()>::Store { value: Json(7), tags: vec![] } }).await;
        assert!(matches!(got, Got::Value(v) if v.0 == 7));
    }
}

/// L2: a value stored by one process is found by another with a cold L1, until a tag
/// it was built from changes; with no key scanned.
#[tokio::test]
async fn l2_is_shared_and_validated_by_tag_versions() {
    let Some(url) = common::redis_url() else {
        eprintln!("skipped: QUIRE_TEST_REDIS_URL is not set");
        return;
    };
    let open = || app::redis_client::Redis::open(&url, Duration::from_millis(200)).unwrap();
    let one = Cache::new(Options { l1_bytes: Some(1 << 20), redis: Some(open()), enabled: true });
    let two = Cache::new(Options { l1_bytes: None, redis: Some(open()), enabled: true });
    let key = format!("l2-{}", uuid::Uuid::new_v4().simple());
    let tag = Tag::story(900_000 + (rand::random::<u32>() % 100_000) as i64);
    let load = |v: i64, found: Vec<Tag>| async move { Fill::<Json<i64>, ()>::Store { value: Json(v), tags: found } };
    let kind = &app::cache::stats::VIEWER;
    let got = |g: Got<Json<i64>, ()>| match g {
        Got::Value(v) => v.0,
        Got::Pass(()) => -1,
    };
    assert_eq!(got(one.get_or_load(kind, &key, &[tag.clone()], load(1, vec![Tag::user(5)])).await), 1);
    // Stores run in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let l2_hits = kind.stats.l2_hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(got(two.get_or_load(kind, &key, &[tag.clone()], load(2, vec![])).await), 1, "found in L2");
    assert!(kind.stats.l2_hits.load(std::sync::atomic::Ordering::Relaxed) > l2_hits);
    // A tag the loader found (not known up front) invalidates it too.
    two.invalidate(&[Tag::user(5)]).await;
    assert_eq!(got(two.get_or_load(kind, &key, &[tag.clone()], load(3, vec![])).await), 3, "stale after its found tag changed");
    two.invalidate(&[tag.clone()]).await;
    assert_eq!(got(two.get_or_load(kind, &key, &[tag], load(4, vec![])).await), 4, "stale after its known tag changed");
}

/// The limit holds in total across two web processes sharing Redis, not per process.
#[tokio::test]
async fn rate_limits_are_shared_by_web_processes_through_redis() {
    let Some(url) = common::redis_url() else {
        eprintln!("skipped: QUIRE_TEST_REDIS_URL is not set");
        return;
    };
    let open = || app::redis_client::Redis::open(&url, Duration::from_millis(200)).unwrap();
    let a = app::ratelimit::RateLimiter::new(Some(open()));
    let b = app::ratelimit::RateLimiter::new(Some(open()));
    let limit = app::ratelimit::Limit::per_minutes(10, 15);
    let key = format!("test:{}", uuid::Uuid::new_v4().simple());
    let mut allowed = 0;
    for i in 0..40 {
        let l = if i % 2 == 0 { &a } else { &b };
        if l.hit(&key, limit).await.is_ok() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "ten in all, across both processes");
    // A refusal names a wait of about one emission interval (15 min / 10 = 90 s).
    match a.hit(&key, limit).await {
        Err(app::error::Error::TooManyRequests { retry_after_secs }) => assert!((1..=90).contains(&retry_after_secs), "{retry_after_secs}"),
        other => panic!("expected 429, got {other:?}"),
    }
    assert!(a.check(&key, limit).await.is_err(), "check refuses without counting");
}

/// Redis configured but not answering: pages are served (from L1 and the database), the
/// limiter counts in process, /health says degraded with the Redis check.
#[tokio::test]
async fn redis_down_is_not_an_outage() {
    // A port where nothing listens: connections are refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let a = TestApp::with_config(|c| c.redis_url = Some(url)).await;
    let author = user(&a, "ann").await;
    let id = common::published_story(&author, "Squall", 1).await;
    let anon = a.new_browser();
    for _ in 0..3 {
        anon.get(&format!("/s/{id}")).await.assert_status(200).assert_contains("Squall");
        anon.get("/").await.assert_status(200);
    }
    // Writes still invalidate (through PostgreSQL) and reads show them.
    author.post_form(&format!("/s/{id}/comments"), &[("body", "Still here")]).await.assert_status(303);
    anon.get(&format!("/s/{id}")).await.assert_status(200).assert_contains("Still here");
    let health = a.get("/health").await;
    health.assert_status(200);
    let v: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["checks"]["redis"]["status"], "down", "{v}");
    let limiter = &a.state.limiter;
    let limit = app::ratelimit::Limit::per_minutes(2, 1);
    assert!(limiter.hit("down:test", limit).await.is_ok());
    assert!(limiter.hit("down:test", limit).await.is_ok());
    assert!(limiter.hit("down:test", limit).await.is_err(), "the in-process limiter takes over");
    let metrics = a.get("/metrics").await.body;
    assert!(metrics.contains("quire_redis_up 0"), "{metrics}");
    assert!(metrics.contains("quire_cache_invalidations_total{direction=\"fallback\"}"), "metrics name the fallbacks");
}

/// A logged-in visitor never gets the anonymous copy, and an anonymous page carries no
/// one's token.
#[tokio::test]
async fn cached_pages_are_anonymous_only_and_carry_no_token() {
    let a = TestApp::new().await;
    let author = user(&a, "ann").await;
    let id = common::published_story(&author, "Gale", 1).await;
    let anon = a.new_browser();
    let page = cached(&anon, &format!("/s/{id}")).await;
    assert!(page.body.contains(r#"{"X-CSRF-Token": ""}"#), "no token in a shared page");
    let mine = author.get(&format!("/s/{id}")).await;
    assert!(mine.header("x-cache").is_none(), "a session's page is rendered for it");
    assert!(mine.body.contains("Edit story"));
    // Each encoding is stored once and served as asked.
    let br = anon.get_with(&format!("/s/{id}"), &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    let gz = anon.get_with(&format!("/s/{id}"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    // A first visit gets the anonymous cookie the session layer would have set.
    let fresh = a.new_browser();
    fresh.get(&format!("/s/{id}")).await;
    fresh.get(&format!("/s/{id}")).await;
    assert!(fresh.cookie("quire_anon").is_some());
}

/// With a replica replaying 2 s behind: a cached page is refilled from the primary after
/// a write, so anonymous readers see it at once, not when the replica catches up; the
/// writer reads their own write back at once too.
#[tokio::test]
async fn cached_pages_are_never_older_than_the_write_that_invalidated_them_with_a_lagging_replica() {
    let Some(a) = TestApp::with_replica_and(Duration::from_secs(10), |c| c.redis_url = common::redis_url()).await else {
        eprintln!("skipped: QUIRE_TEST_REPLICA_URL is not set");
        return;
    };
    let author = user(&a, "ann").await;
    let id = common::published_story(&author, "Undertow", 1).await;
    let story = format!("/s/{id}");
    let anon = a.new_browser();
    // Wait for the replica to have the story, so the cache fills from a caught-up world.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while anon.get(&story).await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "story visible");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cached(&anon, &story).await;
    for n in 0..3 {
        let body = format!("Comment number {n} from the shore");
        let t0 = std::time::Instant::now();
        author.post_form(&format!("/s/{id}/comments"), &[("body", &body)]).await.assert_status(303);
        author.get(&story).await.assert_contains(&body);
        let r = anon.get(&story).await;
        assert!(r.body.contains(&body), "anonymous read {} ms after the write shows it (x-cache {:?})", t0.elapsed().as_millis(), r.header("x-cache"));
        cached(&anon, &story).await.assert_contains(&body);
    }
}
