//! The feeds, the sitemap and robots.txt. Served outside the session stack (see
//! `web::app`): machines fetch them without cookies, so no anonymous cookie is set, and
//! a cache may keep them.

use chrono::{DateTime, Utc};
use poem::{
    Request, Response, Route, get, handler,
    http::{StatusCode, header},
    web::{Data, Path},
};
use sha2::Digest;

use super::{
    atom::{self, Entry, Feed, Person},
    db::{self, Source},
    sitemap::{self, MAX_URLS, Url},
};
use crate::{
    error::{Error, Result},
    web::AppState,
};

pub fn routes(route: Route) -> Route {
    route
        .at("/u/:username/feed.atom", get(author_feed))
        .at("/t/:tag/feed.atom", get(tag_feed))
        .at("/sitemap.xml", get(sitemap_index))
        .at("/sitemaps/:file", get(sitemap_part))
        .at("/robots.txt", get(robots))
}

/// Feeds are polled: five minutes of freshness, then a conditional request (ETag) that
/// usually ends in a body-less 304.
const FEED_CACHE: &str = "public, max-age=300";

/// A cacheable response: 304 when the client's validators match (`If-None-Match` first,
/// `If-Modified-Since` only without it, as RFC 9110 §13.2.2 orders them). The ETag is a
/// hash of the body, so it changes exactly when the bytes do.
fn cacheable(req: &Request, content_type: &str, body: String, last_modified: Option<DateTime<Utc>>) -> Response {
    let hash = sha2::Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", hash.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    let last_modified = last_modified.map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
    let header_str = |name| req.headers().get(name).and_then(|v: &poem::http::HeaderValue| v.to_str().ok());
    let not_modified = match header_str(header::IF_NONE_MATCH) {
        Some(list) => list.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == etag || t == "*"),
        None => match (header_str(header::IF_MODIFIED_SINCE), &last_modified) {
            (Some(since), Some(ours)) => {
                let parse = |s: &str| DateTime::parse_from_rfc2822(s).ok();
                matches!((parse(since), parse(ours)), (Some(since), Some(ours)) if ours <= since)
            }
            _ => false,
        },
    };
    let mut resp = Response::builder().header(header::ETAG, &etag).header(header::CACHE_CONTROL, FEED_CACHE);
    if let Some(lm) = &last_modified {
        resp = resp.header(header::LAST_MODIFIED, lm);
    }
    if not_modified {
        return resp.status(StatusCode::NOT_MODIFIED).finish();
    }
    resp.content_type(content_type).body(body)
}

// ---- Atom feeds ----------------------------------------------------------------------

#[handler]
async fn author_feed(state: Data<&AppState>, req: &Request, Path(username): Path<String>) -> Result<Response> {
    feed(&state, req, Source::Author(&username)).await
}

#[handler]
async fn tag_feed(state: Data<&AppState>, req: &Request, Path(tag): Path<String>) -> Result<Response> {
    // Tags are stored lower-case (the tag page answers any case the same way).
    feed(&state, req, Source::Tag(&tag.to_lowercase())).await
}

/// One statement (`db::feed`), 404 for an unknown author or tag, an empty feed for one
/// with nothing public.
async fn feed(state: &AppState, req: &Request, source: Source<'_>) -> Result<Response> {
    let (owner, entries) = crate::replica_read!(state.db, db => db::feed(db, source))?.ok_or(Error::NotFound)?;
    let base = &state.config.base_url;
    let (page, title, author) = match source {
        Source::Author(_) => {
            let name = if owner.display_name.is_empty() { owner.name.clone() } else { owner.display_name.clone() };
            let page = format!("{base}/u/{}", owner.name);
            (page.clone(), format!("{name} on Quire"), Person { name, uri: Some(page) })
        }
        Source::Tag(_) => (
            format!("{base}/t/{}", owner.name),
            format!("Stories tagged {} on Quire", owner.name),
            Person { name: "Quire".into(), uri: Some(format!("{base}/")) },
        ),
    };
    let updated = entries.iter().map(|e| e.published).max().unwrap_or(owner.since);
    let entries = entries
        .into_iter()
        .map(|e| {
            let url = format!("{base}/s/{}/c/{}", e.story_id, e.number);
            let name = if e.author_display_name.is_empty() { e.author_username.clone() } else { e.author_display_name };
            Entry {
                id: url.clone(),
                title: format!("{} — Chapter {}: {}", e.story_title, e.number, e.chapter_title),
                url,
                published: e.published,
                // Chapters are not edited after they are saved.
                updated: e.published,
                author: Person { name, uri: Some(format!("{base}/u/{}", e.author_username)) },
                summary: None,
                content_html: e.body_html,
            }
        })
        .collect();
    let feed = Feed {
        id: page.clone(),
        title,
        subtitle: None,
        updated,
        author,
        self_url: format!("{page}/feed.atom"),
        alternate_url: page,
        entries,
    };
    Ok(cacheable(req, "application/atom+xml; charset=utf-8", atom::write(&feed), Some(updated)))
}

// ---- sitemap ---------------------------------------------------------------------------

const XML: &str = "application/xml; charset=utf-8";

/// The index of every part (one statement: the sections' sizes). Always an index, so the
/// sitemap's shape does not change when the site passes 50,000 URLs.
#[handler]
async fn sitemap_index(state: Data<&AppState>, req: &Request) -> Result<Response> {
    let sizes = crate::replica_read!(state.db, db => db::sitemap_sizes(db))?;
    let base = &state.config.base_url;
    let mut parts: Vec<String> = (1..=sitemap::parts(sizes.site)).map(|n| format!("{base}/sitemaps/site-{n}.xml")).collect();
    if sizes.stories > 0 {
        parts.extend((1..=sitemap::parts(sizes.stories)).map(|n| format!("{base}/sitemaps/stories-{n}.xml")));
    }
    Ok(cacheable(req, XML, sitemap::index(&parts), None))
}

/// `site-N.xml` or `stories-N.xml` (N from 1): one statement. A part past the end is 404.
#[handler]
async fn sitemap_part(state: Data<&AppState>, req: &Request, Path(file): Path<String>) -> Result<Response> {
    let (section, n) = file
        .strip_suffix(".xml")
        .and_then(|f| f.split_once('-'))
        .and_then(|(section, n)| Some((section, n.parse::<i64>().ok().filter(|n| (1..=1_000_000).contains(n))?)))
        .ok_or(Error::NotFound)?;
    let offset = (n - 1) * MAX_URLS;
    let base = &state.config.base_url;
    let urls: Vec<Url> = match section {
        "site" => crate::replica_read!(state.db, db => db::site_urls(db, offset, MAX_URLS))?
            .into_iter()
            .map(|u| {
                let loc = match u.kind {
                    0 => format!("{base}/"),
                    1 => format!("{base}/u/{}", u.key),
                    _ => format!("{base}/t/{}", u.key),
                };
                Url { loc, lastmod: u.lastmod }
            })
            .collect(),
        "stories" => crate::replica_read!(state.db, db => db::story_urls(db, offset, MAX_URLS))?
            .into_iter()
            .map(|u| {
                let loc = match u.number {
                    0 => format!("{base}/s/{}", u.story_id),
                    n => format!("{base}/s/{}/c/{n}", u.story_id),
                };
                Url { loc, lastmod: Some(u.lastmod) }
            })
            .collect(),
        _ => return Err(Error::NotFound),
    };
    if urls.is_empty() && n > 1 {
        return Err(Error::NotFound);
    }
    let newest = urls.iter().filter_map(|u| u.lastmod).max();
    Ok(cacheable(req, XML, sitemap::urlset(&urls), newest))
}

// ---- robots.txt ------------------------------------------------------------------------

/// Public pages are crawlable; personal pages, forms behind a login, moderation, the
/// development tools and the event streams are not (they are no use in a search result,
/// and crawling `/live` would hold connections open). The login and signup pages stay
/// crawlable: they are how a visitor from a search engine joins.
const DISALLOW: &[&str] = &[
    "/settings",
    "/notifications",
    "/reading-list",
    "/admin",
    "/mod/",
    "/dev/",
    "/live",
    "/s/*/live",
    "/s/*/edit",
    "/s/*/stats",
    "/stories/new",
    "/logout",
    "/password/",
    "/verify-email/",
    "/unsubscribe/",
    "/exports/",
];

pub fn robots_txt(base_url: &str) -> String {
    let mut out = String::from("User-agent: *\nAllow: /\n");
    for path in DISALLOW {
        out.push_str(&format!("Disallow: {path}\n"));
    }
    out.push_str(&format!("\nSitemap: {base_url}/sitemap.xml\n"));
    out
}

#[handler]
async fn robots(state: Data<&AppState>) -> Response {
    Response::builder()
        .content_type("text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(robots_txt(&state.config.base_url))
}
