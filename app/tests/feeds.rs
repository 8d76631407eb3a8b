//! Feeds and discovery through the real routes: the Atom feeds read by a real feed parser
//! (feed-rs), the sitemap by an XML parser, robots.txt, the sharing meta of story and
//! chapter pages, and a description on every public page. Drafts and hidden stories
//! never appear in any of them.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";
const BASE: &str = "http://localhost:8000";

async fn user(app: &TestApp, name: &str) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    b
}

async fn draft(b: &TestApp, title: &str, summary: &str, tags: &str) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", summary), ("tags", tags)]).await;
    r.assert_status(303);
    r.location().unwrap().trim_start_matches("/s/").parse().unwrap()
}

async fn chapter(b: &TestApp, id: i64, title: &str, body: &str) {
    b.post_form(&format!("/s/{id}/chapters"), &[("title", title), ("body", body)]).await.assert_status(303);
}

async fn publish(b: &TestApp, id: i64) {
    b.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
}

async fn hide(app: &TestApp, id: i64) {
    sqlx::query("UPDATE stories SET hidden_at = now() WHERE id = $1").bind(id).execute(&app.db.pool).await.unwrap();
}

/// Distinct timestamps between steps whose order a test checks.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

struct World {
    app: TestApp,
    alpha: i64,
    beta: i64,
    secret: i64,
    hidden: i64,
}

/// ann: "Alpha" (chapters 1, 2, published, then chapter 3), "Beta" (published after Alpha
/// with one chapter), a draft with a chapter, and a published story a moderator hid.
/// Tags: space on Alpha and the hidden story, sea on Beta, draftonly on the draft,
/// hiddenonly on the hidden story. bob has only a draft.
async fn world() -> World {
    let app = TestApp::new().await;
    let ann = user(&app, "ann").await;
    let alpha = draft(&ann, "Alpha", "The first one.", "space").await;
    chapter(&ann, alpha, "Launch", "We *left* at dawn & never looked back.").await;
    chapter(&ann, alpha, "Orbit", "Round and round.").await;
    publish(&ann, alpha).await;
    tick().await;
    let beta = draft(&ann, "Beta", "", "sea").await;
    chapter(&ann, beta, "Shore", "Waves.").await;
    publish(&ann, beta).await;
    tick().await;
    chapter(&ann, alpha, "Landing", "Down at last.").await;
    let secret = draft(&ann, "Secret draft", "", "draftonly").await;
    chapter(&ann, secret, "Unseen", "Nobody reads this.").await;
    let hidden = draft(&ann, "Hidden story", "", "space, hiddenonly").await;
    chapter(&ann, hidden, "Gone", "Moderated away.").await;
    publish(&ann, hidden).await;
    hide(&app, hidden).await;
    let bob = user(&app, "bob").await;
    let bobs = draft(&bob, "Bob's draft", "", "").await;
    chapter(&bob, bobs, "Soon", "Not yet.").await;
    World { app, alpha, beta, secret, hidden }
}

fn parse_feed(r: &Resp) -> feed_rs::model::Feed {
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/atom+xml; charset=utf-8"));
    feed_rs::parser::parse(r.body.as_bytes()).unwrap_or_else(|e| panic!("not a valid feed ({e}):\n{}", r.body))
}

fn titles(feed: &feed_rs::model::Feed) -> Vec<String> {
    feed.entries.iter().map(|e| e.title.as_ref().map(|t| t.content.clone()).unwrap_or_default()).collect()
}

fn link(links: &[feed_rs::model::Link], rel: &str) -> Option<String> {
    links.iter().find(|l| l.rel.as_deref() == Some(rel)).map(|l| l.href.clone())
}

#[tokio::test]
async fn author_feed_lists_public_chapters_newest_first_with_absolute_links() {
    let w = world().await;
    let r = w.app.get("/u/ann/feed.atom").await;
    let feed = parse_feed(&r);
    assert_eq!(feed.feed_type, feed_rs::model::FeedType::Atom);
    assert_eq!(feed.title.as_ref().unwrap().content, "ann on Quire");
    assert_eq!(link(&feed.links, "self").as_deref(), Some("http://localhost:8000/u/ann/feed.atom"));
    assert_eq!(link(&feed.links, "alternate").as_deref(), Some("http://localhost:8000/u/ann"));
    assert_eq!(feed.authors[0].name.as_deref(), Some("ann"));
    // Newest first: Alpha's chapter 3 (after Beta), Beta's chapter 1 (Beta published after
    // Alpha), then Alpha's chapters 1 and 2, both public since Alpha's publication.
    assert_eq!(
        titles(&feed),
        ["Alpha — Chapter 3: Landing", "Beta — Chapter 1: Shore", "Alpha — Chapter 2: Orbit", "Alpha — Chapter 1: Launch"]
    );
    let (a, b) = (w.alpha, w.beta);
    let links: Vec<String> = feed.entries.iter().map(|e| link(&e.links, "alternate").unwrap_or_default()).collect();
    assert_eq!(links, [format!("{BASE}/s/{a}/c/3"), format!("{BASE}/s/{b}/c/1"), format!("{BASE}/s/{a}/c/2"), format!("{BASE}/s/{a}/c/1")]);
    let ids: Vec<&str> = feed.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, links.iter().map(String::as_str).collect::<Vec<_>>(), "entry ids are the chapters' URLs");
    let first = &feed.entries[3];
    let content = first.content.as_ref().and_then(|c| c.body.as_deref()).unwrap_or_default();
    assert!(content.contains("<em>left</em>") && content.contains("&amp;"), "the chapter's HTML, unescaped once: {content}");
    assert!(first.published.is_some() && first.updated.is_some());
    assert_eq!(first.authors[0].name.as_deref(), Some("ann"));
    assert!(feed.updated.is_some_and(|u| Some(u) == feed.entries[0].published));
    for secret in ["Secret draft", "Unseen", "Hidden story", "Gone", "Nobody reads", "Moderated away"] {
        assert!(!r.body.contains(secret), "{secret} leaked into the feed");
    }
}

#[tokio::test]
async fn tag_feed_lists_only_public_stories_with_that_tag() {
    let w = world().await;
    let feed = parse_feed(&w.app.get("/t/space/feed.atom").await);
    assert_eq!(titles(&feed), ["Alpha — Chapter 3: Landing", "Alpha — Chapter 2: Orbit", "Alpha — Chapter 1: Launch"]);
    assert_eq!(link(&feed.links, "alternate").as_deref(), Some("http://localhost:8000/t/space"));
    // Case does not matter, as on the tag page.
    assert_eq!(parse_feed(&w.app.get("/t/SPACE/feed.atom").await).entries.len(), 3);
    // A tag whose only stories are a draft or hidden: a valid, empty feed.
    for tag in ["draftonly", "hiddenonly"] {
        let feed = parse_feed(&w.app.get(&format!("/t/{tag}/feed.atom")).await);
        assert!(feed.entries.is_empty(), "{tag}: {:?}", titles(&feed));
    }
    w.app.get("/t/nosuchtag/feed.atom").await.assert_status(404);
    w.app.get("/t/not%20a%20tag/feed.atom").await.assert_status(404);
}

#[tokio::test]
async fn unknown_authors_are_404_and_authors_without_public_stories_have_an_empty_feed() {
    let w = world().await;
    w.app.get("/u/nobody/feed.atom").await.assert_status(404);
    let feed = parse_feed(&w.app.get("/u/bob/feed.atom").await);
    assert!(feed.entries.is_empty());
    assert!(feed.updated.is_some(), "an empty feed still says when it was updated");
    // Publishing, then hiding: the feed follows.
    let r = w.app.get("/u/ann/feed.atom").await;
    hide(&w.app, w.alpha).await;
    let feed = parse_feed(&w.app.get("/u/ann/feed.atom").await);
    assert_eq!(titles(&feed), ["Beta — Chapter 1: Shore"]);
    assert_ne!(r.header("etag"), w.app.get("/u/ann/feed.atom").await.header("etag"));
    let _ = w.secret;
}

#[tokio::test]
async fn feeds_answer_conditional_requests_with_304() {
    let w = world().await;
    let r = w.app.get("/u/ann/feed.atom").await;
    r.assert_status(200);
    let etag = r.header("etag").expect("an ETag").to_string();
    let modified = r.header("last-modified").expect("a Last-Modified").to_string();
    assert!(r.header("cache-control").is_some_and(|c| c.contains("max-age")));
    assert!(r.header("set-cookie").is_none(), "feeds set no cookie (they may be cached)");
    let again = w.app.get_with("/u/ann/feed.atom", &[("if-none-match", &etag)]).await;
    again.assert_status(304);
    assert!(again.body.is_empty());
    w.app.get_with("/u/ann/feed.atom", &[("if-none-match", "\"other\"")]).await.assert_status(200);
    w.app.get_with("/u/ann/feed.atom", &[("if-modified-since", &modified)]).await.assert_status(304);
    w.app.get_with("/u/ann/feed.atom", &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")]).await.assert_status(200);
    // A new chapter changes the feed, so the old validator no longer matches.
    let ann = w.app.new_browser();
    ann.login("ann", PW).await.assert_status(303);
    tick().await;
    chapter(&ann, w.beta, "Tide", "In and out.").await;
    let r = w.app.get_with("/u/ann/feed.atom", &[("if-none-match", &etag)]).await;
    r.assert_status(200);
    assert!(r.body.contains("Beta — Chapter 2: Tide"));
}

/// The `<loc>`s of a sitemap document, which must be well-formed XML with `root` as its
/// root element in the sitemaps.org namespace.
fn locs(r: &Resp, root: &str) -> Vec<String> {
    use quick_xml::events::Event;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/xml; charset=utf-8"));
    let mut reader = quick_xml::Reader::from_str(&r.body);
    reader.config_mut().check_end_names = true;
    let (mut out, mut in_loc, mut first) = (Vec::new(), false, true);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = e.name().into_inner().to_string();
                if first {
                    assert_eq!(name, root);
                    let ns = e.try_get_attribute("xmlns").unwrap().expect("xmlns");
                    assert_eq!(&*ns.value, "http://www.sitemaps.org/schemas/sitemap/0.9");
                    first = false;
                }
                in_loc = name == "loc";
            }
            Ok(Event::Text(t)) if in_loc => out.push(t.html_content().into_owned()),
            Ok(Event::End(_)) => in_loc = false,
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML ({e}):\n{}", r.body),
        }
    }
    assert!(!first, "no root element:\n{}", r.body);
    out
}

#[tokio::test]
async fn sitemap_lists_public_pages_only() {
    let w = world().await;
    let index = locs(&w.app.get("/sitemap.xml").await, "sitemapindex");
    assert_eq!(index, [format!("{BASE}/sitemaps/site-1.xml"), format!("{BASE}/sitemaps/stories-1.xml")]);
    let site = locs(&w.app.get("/sitemaps/site-1.xml").await, "urlset");
    assert_eq!(site, [format!("{BASE}/"), format!("{BASE}/u/ann"), format!("{BASE}/t/sea"), format!("{BASE}/t/space")]);
    let r = w.app.get("/sitemaps/stories-1.xml").await;
    assert!(r.body.contains("<lastmod>"), "{}", r.body);
    let stories = locs(&r, "urlset");
    let (a, b) = (w.alpha, w.beta);
    let mut expected = vec![format!("{BASE}/s/{a}"), format!("{BASE}/s/{a}/c/1"), format!("{BASE}/s/{a}/c/2"), format!("{BASE}/s/{a}/c/3")];
    expected.extend([format!("{BASE}/s/{b}"), format!("{BASE}/s/{b}/c/1")]);
    assert_eq!(stories, expected);
    for id in [w.secret, w.hidden] {
        assert!(!stories.iter().any(|u| u.contains(&format!("/s/{id}"))), "story {id} must not be in the sitemap");
    }
    for missing in ["/sitemaps/stories-2.xml", "/sitemaps/site-2.xml", "/sitemaps/other-1.xml", "/sitemaps/site-x.xml", "/sitemaps/site-0.xml"] {
        w.app.get(missing).await.assert_status(404);
    }
}

#[tokio::test]
async fn an_empty_site_has_a_valid_sitemap_with_the_home_page() {
    let app = TestApp::new().await;
    assert_eq!(locs(&app.get("/sitemap.xml").await, "sitemapindex"), [format!("{BASE}/sitemaps/site-1.xml")]);
    assert_eq!(locs(&app.get("/sitemaps/site-1.xml").await, "urlset"), [format!("{BASE}/")]);
    assert!(locs(&app.get("/sitemaps/stories-1.xml").await, "urlset").is_empty());
}

#[tokio::test]
async fn robots_txt_allows_public_pages_and_names_the_sitemap() {
    let app = TestApp::new().await;
    let r = app.get("/robots.txt").await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines[0], "User-agent: *");
    for must in ["Allow: /", "Disallow: /settings", "Disallow: /notifications", "Disallow: /reading-list", "Disallow: /admin", "Disallow: /mod/", "Disallow: /dev/", "Disallow: /live", "Sitemap: http://localhost:8000/sitemap.xml"] {
        assert!(lines.contains(&must), "{must:?} missing:\n{}", r.body);
    }
    let disallowed: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("Disallow: ")).collect();
    // Nothing public is shut out (a rule is a prefix: `/s` would block every story).
    for public in ["/", "/s/1", "/s/1/c/1", "/u/ann", "/t/space", "/login", "/signup", "/search", "/u/ann/feed.atom"] {
        let blocked = disallowed.iter().any(|d| !d.contains('*') && public.starts_with(d));
        assert!(!blocked, "{public} is disallowed:\n{}", r.body);
    }
}

/// The attribute `attr` of the one tag matching `tag_start` (e.g. `<meta property="og:title"`).
fn attr_of(html: &str, tag_start: &str, attr: &str) -> Option<String> {
    let start = html.find(tag_start)?;
    let tag = &html[start..start + html[start..].find('>')?];
    assert_eq!(html.matches(tag_start).count(), 1, "{tag_start} more than once");
    let marker = format!("{attr}=\"");
    let v = tag.find(&marker)? + marker.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

fn meta(html: &str, key: &str, name: &str) -> Option<String> {
    attr_of(html, &format!("<meta {key}=\"{name}\""), "content")
}

#[tokio::test]
async fn story_and_chapter_pages_have_escaped_sharing_meta_and_a_canonical_url() {
    let app = TestApp::new().await;
    let ann = user(&app, "ann").await;
    let title = r#"Say "hi" <now>"#;
    let id = draft(&ann, title, "Cats & dogs, \"quoted\".", "").await;
    chapter(&ann, id, "<Intro>", "Hello.").await;
    publish(&ann, id).await;
    let escaped = "Say &quot;hi&quot; &lt;now&gt;";

    let page = app.get(&format!("/s/{id}")).await;
    page.assert_status(200);
    let html = &page.body;
    assert_eq!(meta(html, "property", "og:title").as_deref(), Some(escaped));
    assert_eq!(meta(html, "name", "twitter:title").as_deref(), Some(escaped));
    assert_eq!(meta(html, "property", "og:description").as_deref(), Some("Cats &amp; dogs, &quot;quoted&quot;."));
    assert_eq!(meta(html, "name", "description").as_deref(), Some("Cats &amp; dogs, &quot;quoted&quot;."));
    assert_eq!(meta(html, "property", "og:type").as_deref(), Some("article"));
    assert_eq!(meta(html, "property", "og:site_name").as_deref(), Some("Quire"));
    assert_eq!(meta(html, "property", "og:url"), Some(format!("{BASE}/s/{id}")));
    assert_eq!(attr_of(html, "<link rel=\"canonical\"", "href"), Some(format!("{BASE}/s/{id}")));
    // No cover: a small card and no image.
    assert_eq!(meta(html, "name", "twitter:card").as_deref(), Some("summary"));
    assert!(meta(html, "property", "og:image").is_none());
    assert!(!html.contains(r#""hi" <now>"#), "the raw title must not reach the page unescaped");

    let page = app.get(&format!("/s/{id}/c/1?utm_source=x")).await;
    page.assert_status(200);
    let html = &page.body;
    assert_eq!(meta(html, "property", "og:title").as_deref(), Some("Say &quot;hi&quot; &lt;now&gt; — Chapter 1: &lt;Intro&gt;"));
    assert_eq!(meta(html, "property", "og:url"), Some(format!("{BASE}/s/{id}/c/1")));
    assert_eq!(attr_of(html, "<link rel=\"canonical\"", "href"), Some(format!("{BASE}/s/{id}/c/1")), "no tracking noise");
    let description = meta(html, "name", "description").unwrap();
    assert!(description.starts_with("Chapter 1 of Say &quot;hi&quot; &lt;now&gt; by ann"), "{description}");

    // A processed cover: the large card with the 1600 px JPEG variant.
    let variants = serde_json::json!([
        {"width": 320, "height": 213, "format": "jpeg", "key": "variants/p/h-320.jpg"},
        {"width": 1600, "height": 1067, "format": "webp", "key": "variants/p/h-1600.webp"},
        {"width": 1600, "height": 1067, "format": "jpeg", "key": "variants/p/h-1600.jpg"},
        {"width": 800, "height": 533, "format": "jpeg", "key": "variants/p/h-800.jpg"}
    ]);
    sqlx::query(
        "WITH m AS (INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height, status, variants)
                    SELECT author_id, 'cover', 'originals/x.jpg', 'image/jpeg', 100, 3000, 2000, 'ready', $2 FROM stories WHERE id = $1
                    RETURNING id)
         UPDATE stories SET cover_id = (SELECT id FROM m) WHERE id = $1",
    )
    .bind(id)
    .bind(&variants)
    .execute(&app.db.pool)
    .await
    .unwrap();
    // As the media job does once a cover is ready.
    app.state.cache.invalidate(&[app::cache::Tag::story(id)]).await;
    for path in [format!("/s/{id}"), format!("/s/{id}/c/1")] {
        let html = app.get(&path).await.body;
        assert_eq!(meta(&html, "name", "twitter:card").as_deref(), Some("summary_large_image"), "{path}");
        assert_eq!(meta(&html, "property", "og:image"), Some(format!("{BASE}/media/variants/p/h-1600.jpg")), "{path}");
        assert_eq!(meta(&html, "property", "og:image:width").as_deref(), Some("1600"));
        assert_eq!(meta(&html, "name", "twitter:image"), Some(format!("{BASE}/media/variants/p/h-1600.jpg")));
    }
}

#[tokio::test]
async fn profile_and_tag_pages_link_their_feeds() {
    let w = world().await;
    for (path, feed) in [("/u/ann", "/u/ann/feed.atom"), ("/t/space", "/t/space/feed.atom"), ("/t/Space", "/t/space/feed.atom")] {
        let r = w.app.get(path).await;
        r.assert_status(200);
        assert_eq!(attr_of(&r.body, "<link rel=\"alternate\" type=\"application/atom+xml\"", "href").as_deref(), Some(feed), "{path}");
        assert!(r.body.contains(&format!("<a href=\"{feed}\"")), "{path}: a visible feed link");
    }
    // Pagination is noise for the canonical URL.
    let r = w.app.get("/?after=123_4").await;
    assert_eq!(attr_of(&r.body, "<link rel=\"canonical\"", "href").as_deref(), Some("http://localhost:8000/"));
    let r = w.app.get("/t/Space").await;
    assert_eq!(attr_of(&r.body, "<link rel=\"canonical\"", "href").as_deref(), Some("http://localhost:8000/t/space"));
}

/// Every GET page an anonymous visitor can open (the router's own table, parameters
/// filled with real values) has exactly one non-empty meta description.
#[tokio::test]
async fn every_public_page_has_a_meta_description() {
    let w = world().await;
    let visitor = w.app.new_browser();
    let mut checked = Vec::new();
    for (pattern, get, _) in common::route_table() {
        // Event streams never finish: they are not pages.
        if !get || pattern.contains('*') || pattern.ends_with("/live") {
            continue;
        }
        let path = pattern
            .replace(":username", "ann")
            .replace(":tag", "space")
            .replace(":id", &w.alpha.to_string())
            .replace(":n", "1");
        if path.contains(':') {
            continue; // tokens, ids of other things: no public page to reach by guessing
        }
        let r = visitor.get(&path).await;
        if r.status != 200 || !r.header("content-type").is_some_and(|c| c.starts_with("text/html")) {
            continue;
        }
        let description = meta(&r.body, "name", "description").unwrap_or_else(|| panic!("{path}: no meta description"));
        assert!(!description.trim().is_empty(), "{path}: an empty description");
        assert!(r.body.contains("<meta name=\"viewport\""));
        checked.push(path);
    }
    for must in ["/", "/login", "/signup", "/password/forgot", "/u/ann", "/t/space", "/s/{a}", "/s/{a}/c/1"] {
        let must = must.replace("{a}", &w.alpha.to_string());
        assert!(checked.contains(&must), "{must} was not checked: {checked:?}");
    }
    // Pages no route pattern fills in by itself: followers, a 404 page still describes the site.
    for path in ["/u/ann/followers", "/u/ann/following", "/s/999999"] {
        let r = visitor.get(path).await;
        assert!(meta(&r.body, "name", "description").is_some(), "{path} ({}): no meta description", r.status);
    }
}
