//! Anonymous pages served whole from the cache (`cache`), compressed once.
//!
//! Which requests: a GET (htmx or not) of home, a story, a chapter, a profile, a tag or
//! search results, from a visitor with no session, no flash message and no recent write
//! (`cacheable`). Everyone else gets the page rendered for them, as before.
//!
//! What is stored is the page as any anonymous visitor sees it: the fill runs the real
//! handler with a neutral session (`Filling`: an empty CSRF token — anonymous pages have
//! no form that posts — and no cookie set), reading the primary, so nothing per-visitor
//! is ever stored and nothing older than the write that invalidated the last copy is
//! either. The body is kept three ways (identity, gzip, brotli) and each request gets the
//! one its `Accept-Encoding` asks for, with no compression on the way out. What is per
//! visitor is added on the way out: the `quire_anon` cookie for a first visit, and a
//! chapter view counted for the reader.
//!
//! Handlers name what the page shows (`with_cache_tags`): its stories and people; the route
//! names the rest (`Route::tags`). Writes invalidate those tags (`cache::Cache::invalidate`).

use bytes::Bytes;
use poem::{
    Body, Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderValue, Method, StatusCode, header},
};

use crate::{
    cache::{self, Cacheable, Fill, Got, Kind, Tag},
    web::{
        AppState,
        compression::{AcceptEncoding, Encoding, brotli_compress, gzip_compress},
        cookies,
    },
};

/// Set on a request whose response will be stored: the session layer then renders it as
/// for any anonymous visitor and reads from the primary.
#[derive(Clone, Copy, Debug)]
pub struct Filling;

/// The tags a handler found while building its page, carried on the response.
#[derive(Clone, Debug, Default)]
pub struct PageTags(pub Vec<Tag>);

/// Adds `tags` to a page the cache may store.
pub fn with_cache_tags(mut resp: Response, tags: impl IntoIterator<Item = Tag>) -> Response {
    match resp.extensions_mut().get_mut::<PageTags>() {
        Some(t) => t.0.extend(tags),
        None => {
            resp.extensions_mut().insert(PageTags(tags.into_iter().collect()));
        }
    }
    resp
}

/// Whether the page cache served this response: `hit` (L1 or L2, or another request's
/// fill) or `miss` (rendered for this request, and stored).
pub const CACHE_HEADER: &str = "x-cache";

/// Brotli quality and gzip level for stored pages: compressed once, sent many times.
/// (Quality 5 and level 6: within a few per cent of the smallest, at a fraction of the
/// CPU — a fill after every write to a busy story must stay cheap.)
const STORED_BROTLI: u32 = 5;
const STORED_GZIP: u32 = 6;

/// A page as stored.
pub struct CachedPage {
    pub content_type: String,
    pub identity: Bytes,
    pub gzip: Bytes,
    pub brotli: Bytes,
}

impl Cacheable for CachedPage {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.content_type.len() + self.identity.len() + self.gzip.len() + self.brotli.len());
        for part in [self.content_type.as_bytes(), &self.identity, &self.gzip, &self.brotli] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut parts = Vec::with_capacity(4);
        let mut rest = bytes;
        for _ in 0..4 {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            parts.push(Bytes::copy_from_slice(rest.get(4..4 + len)?));
            rest = &rest[4 + len..];
        }
        let brotli = parts.pop()?;
        let gzip = parts.pop()?;
        let identity = parts.pop()?;
        let content_type = String::from_utf8(parts.pop()?.to_vec()).ok()?;
        Some(CachedPage { content_type, identity, gzip, brotli })
    }

    fn weight(&self) -> usize {
        self.identity.len() + self.gzip.len() + self.brotli.len()
    }
}

impl CachedPage {
    fn respond(&self, encoding: Encoding) -> Response {
        let (body, coding) = match encoding {
            Encoding::Brotli => (self.brotli.clone(), Some("br")),
            Encoding::Gzip => (self.gzip.clone(), Some("gzip")),
            Encoding::Identity => (self.identity.clone(), None),
        };
        let mut b = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, self.content_type.as_str())
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::VARY, "accept-encoding");
        if let Some(c) = coding {
            b = b.header(header::CONTENT_ENCODING, c);
        }
        b.body(Body::from_bytes(body))
    }
}

/// A cacheable request: which kind of page, its key, and the tags its route implies.
#[derive(Debug, PartialEq)]
pub struct Route {
    pub kind: &'static Kind,
    pub key: String,
    pub tags: Vec<Tag>,
    /// A chapter (story id, number): each read is counted.
    pub chapter: Option<(i64, i32)>,
}

/// The cookies that make a visitor's page their own: a session, a flash message waiting,
/// a write a moment ago (read-your-writes).
const PERSONAL_COOKIES: [&str; 4] = [cookies::COOKIE, "quire_flash", cookies::WROTE_COOKIE, cookies::LSN_COOKIE];

fn has_personal_cookie(req: &Request) -> bool {
    req.headers().get_all(header::COOKIE).iter().any(|v| {
        let v = v.as_bytes();
        PERSONAL_COOKIES.iter().any(|name| {
            v.split(|b| *b == b';').any(|pair| {
                let pair = pair.trim_ascii_start();
                pair.len() > name.len() && pair.starts_with(name.as_bytes()) && pair[name.len()] == b'='
            })
        })
    })
}

/// The page `req` asks for if its response may come from the cache.
pub fn cacheable(req: &Request) -> Option<Route> {
    if req.method() != Method::GET || has_personal_cookie(req) {
        return None;
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    // Path segments we parse ourselves: plain ones only (anything else is the router's).
    if query.len() > 512 || !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)) {
        return None;
    }
    let htmx = req.headers().get("hx-request").is_some_and(|v| v == "true");
    let key = format!("{path}?{query}{}", if htmx { "|hx" } else { "" });
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = |s: &str| s.parse::<i64>().ok().filter(|n| *n > 0);
    let (kind, tags, chapter) = match segments.as_slice() {
        [""] => (&cache::stats::HOME, vec![Tag::listing(), Tag::trending()], None),
        ["s", sid] => {
            let sid = id(sid)?;
            (&cache::stats::STORY, vec![Tag::story(sid)], None)
        }
        ["s", sid, "c", n] => {
            let sid = id(sid)?;
            let n = n.parse::<i32>().ok().filter(|n| *n > 0)?;
            (&cache::stats::CHAPTER, vec![Tag::story(sid)], Some((sid, n)))
        }
        ["u", name] if !name.is_empty() => (&cache::stats::PROFILE, vec![Tag::listing()], None),
        ["t", tag] if !tag.is_empty() => (&cache::stats::TAG, vec![Tag::listing()], None),
        ["search"] => (&cache::stats::SEARCH, vec![Tag::listing()], None),
        _ => return None,
    };
    Some(Route { kind, key, tags, chapter })
}

/// The route pattern (as poem's router names it) of each kind of cached page, made once.
fn route_pattern(kind: &Kind) -> poem::PathPattern {
    use std::sync::{Arc, LazyLock};
    static PATTERNS: LazyLock<[(&str, Arc<str>); 6]> = LazyLock::new(|| {
        [
            (cache::stats::HOME.name, "/".into()),
            (cache::stats::STORY.name, "/s/:id".into()),
            (cache::stats::CHAPTER.name, "/s/:id/c/:n".into()),
            (cache::stats::PROFILE.name, "/u/:username".into()),
            (cache::stats::TAG.name, "/t/:tag".into()),
            (cache::stats::SEARCH.name, "/search".into()),
        ]
    });
    let pattern = PATTERNS.iter().find(|(name, _)| *name == kind.name).map(|(_, p)| p.clone());
    poem::PathPattern(pattern.unwrap_or_else(|| "cached".into()))
}

pub struct PageCache;

impl<E: Endpoint> Middleware<E> for PageCache {
    type Output = PageCacheEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        PageCacheEndpoint { inner }
    }
}

pub struct PageCacheEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for PageCacheEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let state = match req.data::<AppState>() {
            Some(s) if s.cache.enabled() => s.clone(),
            _ => return self.inner.call(req).await.map(IntoResponse::into_response),
        };
        let Some(route) = cacheable(&req) else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let encoding = AcceptEncoding::from_headers(req.headers()).choose(true, true);
        let anon_seed = cookies::anon_seed_sent(&req, &state.cookie_key);
        let crawler = route.chapter.is_some()
            && crate::stats::is_crawler(req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""));
        let rendered_here = std::sync::atomic::AtomicBool::new(false);
        req.extensions_mut().insert(Filling);
        let inner = &self.inner;
        let loader = async {
            rendered_here.store(true, std::sync::atomic::Ordering::Relaxed);
            match inner.call(req).await.map(IntoResponse::into_response) {
                Ok(resp) => store_or_pass(resp).await,
                Err(e) => Fill::Pass(Err(e)),
            }
        };
        let got = state.cache.get_or_load(route.kind, &route.key, &route.tags, loader).await;
        let fresh = rendered_here.load(std::sync::atomic::Ordering::Relaxed);
        let mut resp = match got {
            Got::Value(page) => page.respond(encoding),
            Got::Pass(r) => return r,
        };
        let _ = resp.headers_mut().insert(CACHE_HEADER, HeaderValue::from_static(if fresh { "miss" } else { "hit" }));
        // A stored page never went through the router: name its route for `/metrics`.
        resp.set_data(route_pattern(route.kind));
        if anon_seed.is_none() {
            {
                // A first visit: the cookie the session layer would have set.
                let seed = crate::tokens::random_token();
                let jar = poem::web::cookie::CookieJar::default();
                jar.signed_with_key(&state.cookie_key).add(cookies::cookie(cookies::ANON_COOKIE, &seed, Some(365), state.config.is_production()));
                if let Some(c) = jar.get(cookies::ANON_COOKIE)
                    && let Ok(v) = HeaderValue::from_str(&c.to_string())
                {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
        }
        // A chapter read is counted whether the page was rendered or not (the fill ran
        // as a neutral visitor and counted nothing).
        if let Some((story_id, n)) = route.chapter
            && !crawler
        {
            // A unique reader only once they keep our cookie, as on rendered pages.
            let reader = match anon_seed.as_deref() {
                Some(seed) => crate::stats::Reader::Anonymous(seed),
                None => crate::stats::Reader::Unknown,
            };
            state.views.record(story_id, n, reader);
        }
        Ok(resp)
    }
}

/// A response the cache may keep (200, HTML, no cookie of its own), compressed three
/// ways; anything else goes back to the visitor as it is.
async fn store_or_pass(mut resp: Response) -> Fill<CachedPage, poem::Result<Response>> {
    let content_type = resp.content_type().unwrap_or("").to_string();
    if resp.status() != StatusCode::OK || !content_type.starts_with("text/html") || resp.headers().contains_key(header::SET_COOKIE) {
        return Fill::Pass(Ok(resp));
    }
    let tags = resp.extensions_mut().remove::<PageTags>().unwrap_or_default().0;
    let identity = match resp.take_body().into_bytes().await {
        Ok(b) => b,
        Err(e) => return Fill::Pass(Err(e.into())),
    };
    let compressed = {
        let identity = identity.clone();
        tokio::task::spawn_blocking(move || {
            let br = brotli_compress(&identity, STORED_BROTLI)?;
            let gz = gzip_compress(&identity, STORED_GZIP)?;
            Ok::<_, std::io::Error>((br, gz))
        })
        .await
    };
    match compressed {
        Ok(Ok((br, gz))) => Fill::Store { value: CachedPage { content_type, identity, gzip: Bytes::from(gz), brotli: Bytes::from(br) }, tags },
        _ => {
            resp.set_body(Body::from_bytes(identity));
            Fill::Pass(Ok(resp))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, cookie: Option<&str>) -> Request {
        let mut b = Request::builder().uri(uri.parse().unwrap());
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.finish()
    }

    #[test]
    fn anonymous_reading_pages_are_cacheable_with_their_route_tags() {
        let r = cacheable(&get("/s/12/c/3", Some("quire_anon=abc"))).unwrap();
        assert_eq!(r.kind.name, "chapter");
        assert_eq!(r.tags, vec![Tag::story(12)]);
        assert_eq!(r.chapter, Some((12, 3)));
        assert_eq!(cacheable(&get("/", None)).unwrap().tags, vec![Tag::listing(), Tag::trending()]);
        assert_eq!(cacheable(&get("/search?q=dragons", None)).unwrap().key, "/search?q=dragons");
        assert_eq!(cacheable(&get("/t/fantasy", None)).unwrap().kind.name, "tag");
        assert_eq!(cacheable(&get("/u/alice", None)).unwrap().kind.name, "profile");
    }

    #[test]
    fn personal_visitors_and_other_pages_are_not() {
        assert!(cacheable(&get("/s/1", Some("quire_session=x"))).is_none());
        assert!(cacheable(&get("/s/1", Some("a=b; quire_flash=x"))).is_none());
        assert!(cacheable(&get("/s/1", Some("quire_w=1"))).is_none());
        assert!(cacheable(&get("/s/1", Some("quire_session_old=1"))).is_some(), "only the exact names count");
        assert!(cacheable(&get("/settings", None)).is_none());
        assert!(cacheable(&get("/s/0", None)).is_none());
        assert!(cacheable(&get("/s/abc", None)).is_none());
        assert!(cacheable(&get("/s/1/edit", None)).is_none());
        assert!(cacheable(&get("/u/%00", None)).is_none());
    }

    #[test]
    fn a_stored_page_decodes_to_itself() {
        let page = CachedPage { content_type: "text/html".into(), identity: Bytes::from_static(b"<p>hi"), gzip: Bytes::from_static(b"gz"), brotli: Bytes::new() };
        let back = CachedPage::decode(&page.encode()).unwrap();
        assert_eq!(back.identity, page.identity);
        assert_eq!(back.gzip, page.gzip);
        assert_eq!(back.brotli, page.brotli);
        assert_eq!(back.content_type, "text/html");
        assert!(CachedPage::decode(b"\x05\x00").is_none());
    }
}
