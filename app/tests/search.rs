//! Search through the real route and database: relevance tiers, chapter text, snippets
//! (highlighted and escaped), typo tolerance for titles and author names, the tag filter,
//! pagination, the empty, no-results and overlong states, drafts and hidden stories, and
//! htmx fragments against the JS-off page.

mod common;

use common::{Resp, TestApp};

const PW: &str = "correct horse battery";

async fn writer(app: &TestApp, name: &str) -> TestApp {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    // Only confirmed addresses may publish.
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = $1").bind(name).execute(&app.db.pool).await.unwrap();
    b
}

/// A story with one chapter per body, published unless `publish` is false.
async fn story(b: &TestApp, title: &str, summary: &str, tags: &str, bodies: &[&str], publish: bool) -> i64 {
    let r = b.post_form("/stories", &[("title", title), ("summary", summary), ("tags", tags)]).await;
    r.assert_status(303);
    let id: i64 = r.location().unwrap().trim_start_matches("/s/").parse().unwrap();
    for (n, body) in bodies.iter().enumerate() {
        b.post_form(&format!("/s/{id}/chapters"), &[("title", &format!("Part {}", n + 1)), ("body", body)]).await.assert_status(303);
    }
    if publish {
        b.post_form(&format!("/s/{id}/edit"), &[("status", "published")]).await.assert_status(303);
    }
    id
}

fn q(s: &str) -> String {
    format!("/search?{}", serde_urlencoded::to_string([("q", s)]).unwrap())
}

/// Story ids in result order (each card links its title to /s/{id}).
fn ids(r: &Resp) -> Vec<i64> {
    let re = regex::Regex::new(r#"<h2><a href="/s/(\d+)">"#).unwrap();
    re.captures_iter(&r.body).map(|c| c[1].parse().unwrap()).collect()
}

/// An attribute's URL as the browser reads it (minijinja escapes `&` and `/`).
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/").replace("&amp;", "&")
}

#[tokio::test]
async fn title_beats_summary_and_tags_beat_chapter_text() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    let body_only = story(&w, "Low Tide", "Harbour days.", "", &["The lantern swung over the marsh all night."], true).await;
    let in_summary = story(&w, "Salt", "A lantern keeper's last winter.", "", &["Plain words."], true).await;
    let in_tag = story(&w, "Drydock", "Ships.", "lantern", &["Plain words."], true).await;
    let in_title = story(&w, "The Lantern", "Nothing else.", "", &["Plain words."], true).await;
    let r = app.get(&q("lantern")).await;
    r.assert_status(200);
    let got = ids(&r);
    assert_eq!(got[0], in_title, "title match first: {got:?}");
    assert!(got[1..3].contains(&in_summary) && got[1..3].contains(&in_tag), "summary and tag next: {got:?}");
    assert_eq!(got[3], body_only, "chapter text last: {got:?}");
    assert_eq!(got.len(), 4, "each story once: {got:?}");
}

#[tokio::test]
async fn a_word_only_in_chapter_two_finds_the_story_with_a_highlighted_safe_snippet() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    let id = story(
        &w,
        "Two Hands",
        "A ledger.",
        "",
        &["Nothing here.", "Before the storm, 5 < 6, <script>alert('x')</script> the zorbleflax & its keeper sang."],
        true,
    )
    .await;
    let r = app.get(&q("zorbleflax")).await;
    r.assert_status(200);
    assert_eq!(ids(&r), vec![id]);
    r.assert_contains("<mark>zorbleflax</mark>");
    r.assert_contains(&format!("<a href=\"/s/{id}/c/2\">Chapter 2</a>"));
    // ts_headline drops what its parser reads as tags; the rest is escaped text.
    r.assert_contains("5 &lt; 6");
    r.assert_contains("zorbleflax</mark> &amp; its keeper");
    r.assert_contains("alert(&#x27;x&#x27;)");
    assert!(!r.body.contains("<script>alert"), "the chapter's markup must not survive:\n{}", r.body);
    // Stemming: the plural finds it too.
    assert_eq!(ids(&app.get(&q("zorbleflaxes")).await), vec![id]);
}

#[tokio::test]
async fn misspelt_titles_and_author_names_still_find_the_story() {
    let app = TestApp::new().await;
    let alice = writer(&app, "alice").await;
    let dragon = story(&alice, "The Paper Dragon", "Folded.", "", &["Cranes."], true).await;
    let bob = writer(&app, "bob").await;
    let other = story(&bob, "Harbour Lights", "Boats.", "", &["Nets."], true).await;
    assert_eq!(ids(&app.get(&q("drgon")).await), vec![dragon]);
    assert_eq!(ids(&app.get(&q("alcie")).await), vec![dragon]);
    assert_eq!(ids(&app.get(&q("alice")).await), vec![dragon]);
    assert_eq!(ids(&app.get(&q("harbor lights")).await), vec![other]);
}

#[tokio::test]
async fn the_tag_filter_keeps_only_that_tag() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    let a = story(&w, "Comet one", "Sky.", "space", &["Stars."], true).await;
    let b = story(&w, "Comet two", "Sky.", "romance", &["Stars."], true).await;
    let mut all = ids(&app.get(&q("comet")).await);
    all.sort();
    assert_eq!(all, vec![a, b]);
    let r = app.get("/search?q=comet&tag=space").await;
    r.assert_status(200);
    assert_eq!(ids(&r), vec![a]);
    // A tag alone lists that tag's stories; a malformed one is a 400 page.
    assert_eq!(ids(&app.get("/search?tag=romance").await), vec![b]);
    let bad = app.get("/search?q=comet&tag=%3Cx%3E").await;
    bad.assert_status(400).assert_contains("That is not a tag");
}

#[tokio::test]
async fn pages_follow_each_other_without_duplicates() {
    let app = TestApp::new().await;
    let writers = [writer(&app, "wren").await, writer(&app, "finch").await, writer(&app, "lark").await];
    let mut made = Vec::new();
    for i in 0..45 {
        let w = &writers[i % 3];
        // Three score levels (title, summary, chapter) so pages cross tiers and ties.
        let (title, summary, body) = match i % 3 {
            0 => (format!("Moth {i}"), "x".to_string(), "y"),
            1 => (format!("Story {i}"), "A moth.".to_string(), "y"),
            _ => (format!("Story {i}"), "x".to_string(), "A moth at the window."),
        };
        made.push(story(w, &title, &summary, "", &[body], true).await);
    }
    let mut seen = Vec::new();
    let mut url = q("moth");
    let mut pages = 0;
    loop {
        let r = app.get(&url).await;
        r.assert_status(200);
        let page = ids(&r);
        assert!(!page.is_empty());
        seen.extend(page);
        pages += 1;
        let re = regex::Regex::new(r#"class="button secondary" href="([^"]+)""#).unwrap();
        match re.captures(&r.body) {
            Some(c) => url = unescape(&c[1]),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "duplicates across pages: {seen:?}");
    made.sort();
    assert_eq!(sorted, made);
    // htmx "Load more" gets the next items alone, not a page.
    let first = app.get(&q("moth")).await;
    let next = regex::Regex::new(r#"hx-get="([^"]+)""#).unwrap();
    let more = next.captures_iter(&first.body).map(|c| unescape(&c[1])).find(|u| u.contains("after=")).unwrap();
    let r = app.get_with(&more, &[("hx-request", "true")]).await;
    r.assert_status(200);
    assert!(!r.body.contains("<html") && !r.body.contains("<h1"), "fragment expected:\n{}", r.body);
    assert_eq!(ids(&r).len(), 20);
}

#[tokio::test]
async fn empty_no_results_and_overlong_queries_are_pages() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    story(&w, "Owl", "Night.", "cozy", &["Hoot."], true).await;
    let r = app.get("/search").await;
    r.assert_status(200).assert_contains("<h1>Search stories</h1>").assert_contains("Popular tags").assert_contains("href=\"/t/cozy\"");
    app.get("/search?q=%20%20").await.assert_status(200).assert_contains("Popular tags");
    let none = app.get(&q("xylophonequartz")).await;
    none.assert_status(200).assert_contains("No stories match").assert_contains("Check the spelling");
    assert!(ids(&none).is_empty());
    // Only stop words or punctuation: no error, just no results.
    app.get(&q("the of \"\" -( & | ! :*")).await.assert_status(200);
    let long = app.get(&q(&"dragon ".repeat(40))).await;
    long.assert_status(422).assert_contains("at most 200 characters");
}

#[tokio::test]
async fn drafts_and_hidden_stories_never_appear() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    let public = story(&w, "Quasar public", "Qwerbble.", "", &["qwerbble in text"], true).await;
    story(&w, "Quasar draft", "Qwerbble.", "", &["qwerbble in text"], false).await;
    let hidden = story(&w, "Quasar hidden", "Qwerbble.", "", &["qwerbble in text"], true).await;
    sqlx::query("UPDATE stories SET hidden_at = now() WHERE id = $1").bind(hidden).execute(&app.db.pool).await.unwrap();
    for query in ["quasar", "qwerbble", "quasr", "wren"] {
        assert_eq!(ids(&app.get(&q(query)).await), vec![public], "query {query}");
    }
    // Not even to their author.
    assert_eq!(ids(&w.get(&q("qwerbble")).await), vec![public]);
    // Nor their tags on the empty page.
    let d = story(&w, "Secret", "s", "secret-tag", &["x"], false).await;
    let _ = d;
    let r = app.get("/search").await;
    assert!(!r.body.contains("secret-tag"));
}

#[tokio::test]
async fn htmx_gets_the_results_block_and_the_page_works_without_js() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    let id = story(&w, "Heron", "Wading.", "", &["Reeds."], true).await;
    let full = app.get(&q("heron")).await;
    full.assert_status(200);
    // The plain form: GET /search with field q, so it works with JavaScript off...
    full.assert_contains(r#"<form class="search-form" role="search" method="get" action="/search""#);
    full.assert_contains(r#"name="q" value="heron""#);
    full.assert_contains(r#"hx-trigger="input changed delay:250ms from:#q, submit""#);
    // ...and the header's small form on every page.
    app.get("/").await.assert_contains(r#"<form class="site-search" role="search" method="get" action="/search">"#);
    let frag = app.get_with(&q("heron"), &[("hx-request", "true")]).await;
    frag.assert_status(200);
    assert!(!frag.body.contains("<h1") && !frag.body.contains("<form class=\"search-form\""), "results only:\n{}", frag.body);
    assert_eq!(ids(&frag), vec![id]);
    // Errors are swapped in as well (app.js swaps 422).
    let long = app.get_with(&q(&"x".repeat(201)), &[("hx-request", "true")]).await;
    long.assert_status(422);
    assert!(!long.body.contains("<h1"));
}

#[tokio::test]
async fn tags_set_on_edit_are_searchable() {
    let app = TestApp::new().await;
    let w = writer(&app, "wren").await;
    let id = story(&w, "Kestrel", "Hovering.", "birds", &["Wind."], true).await;
    assert_eq!(ids(&app.get(&q("birds")).await), vec![id]);
    w.post_form(&format!("/s/{id}/edit"), &[("title", "Kestrel"), ("summary", "Hovering."), ("tags", "falconry"), ("status", "published")])
        .await
        .assert_status(303);
    assert!(ids(&app.get(&q("birds")).await).is_empty());
    assert_eq!(ids(&app.get(&q("falconry")).await), vec![id]);
}

#[tokio::test]
async fn search_is_rate_limited_per_ip() {
    let app = TestApp::new().await;
    let peer = "203.0.113.9:5000";
    // Distinct searches: a repeated one is served from the page cache, costing nothing
    // to limit.
    for i in 0..120 {
        app.get_from(peer, &format!("/search?q=a{i}")).await.assert_status(200);
    }
    app.get_from(peer, "/search?q=b").await.assert_status(429);
    app.get_from("203.0.113.10:5000", "/search?q=a").await.assert_status(200);
}
