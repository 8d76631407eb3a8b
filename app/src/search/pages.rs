//! `GET /search`: the search page, its results and, for htmx, the results block alone
//! (as-you-type) or the next results ("Load more").

use minijinja::{Value, context};
use poem::{Response, Route, get, handler, http::StatusCode, web::Query};
use serde::Deserialize;

use super::{
    db::{self, Cursor, Hit},
    snippet,
    validate::{self, SearchQuery},
};
use crate::{
    error::Result,
    ratelimit::Limit,
    stories::{self, values::story_value},
    web::ctx::Ctx,
};

/// Searches per client address: far more than a person types (as-you-type sends one
/// per pause), a stop for scripts; each search is a few index scans and ranking.
pub const SEARCH_PER_IP: Limit = Limit::per_minutes(120, 1);

const POPULAR_TAGS: i64 = 30;

pub fn routes(route: Route) -> Route {
    route.at("/search", get(search))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    q: String,
    tag: String,
    after: String,
}

/// The search page. Statements: one that works (`db::SEARCH_SQL`: ranking, the page's
/// stories and their snippets), in a transaction for its `SET LOCAL` (`db::search`); with an empty query one as well (the popular tags, or with `tag=`
/// that tag's newest stories). An overlong query or a malformed tag costs none.
///
/// htmx: typing (no `after`) gets the `results` block, "Load more" (`after`) the
/// `items` block; without JavaScript the same URL renders the whole page.
#[handler]
async fn search(ctx: Ctx, Query(p): Query<Params>) -> Result<Response> {
    ctx.limit_ip("search", SEARCH_PER_IP).await?;
    let raw_q = p.q.clone();
    let query = match SearchQuery::parse(&p.q) {
        Ok(q) => q,
        Err(e) => return page(&ctx, StatusCode::UNPROCESSABLE_ENTITY, context! { q => raw_q, error => e.message() }),
    };
    let tag = match validate::tag(&p.tag) {
        Ok(t) => t,
        Err(msg) => return page(&ctx, StatusCode::BAD_REQUEST, context! { q => query.as_str(), error => msg }),
    };
    if query.is_empty() {
        return empty_query(&ctx, tag.as_deref()).await;
    }
    let cursor = Cursor::decode(&p.after);
    let (hits, next) = crate::replica_read!(ctx.state.db, db => db::search(db, query.as_str(), tag.as_deref(), cursor))?;
    let next_url = next.map(|c| url(query.as_str(), tag.as_deref(), Some(&c.encode())));
    let vars = context! {
        q => query.as_str(),
        tag => tag,
        searched => true,
        hits => hits.iter().map(hit_value).collect::<Vec<_>>(),
        next_url => next_url,
        more => cursor.is_some(),
    };
    if ctx.htmx && cursor.is_some() {
        return ctx.render_form(StatusCode::OK, "search/index.html", "items", vars);
    }
    page(&ctx, StatusCode::OK, vars)
}

/// The form and the popular tags; with `tag=` alone, that tag's newest stories.
async fn empty_query(ctx: &Ctx, tag: Option<&str>) -> Result<Response> {
    let vars = match tag {
        Some(tag) => {
            let listing = stories::db::Listing::Tag(tag);
            let (rows, _) = crate::replica_read!(ctx.state.db, db => stories::db::published(db, listing, None))?;
            let hits: Vec<Value> = rows.iter().map(|s| context! { story => story_value(s), snippet => "" }).collect();
            context! { q => "", tag => tag, searched => true, hits => hits, tag_only => true }
        }
        None => {
            let tags = crate::replica_read!(ctx.state.db, db => db::popular_tags(db, POPULAR_TAGS))?;
            context! { q => "", popular => Value::from(minijinja::value::Serde(tags)) }
        }
    };
    page(ctx, StatusCode::OK, vars)
}

/// The whole page, or for htmx the results block (as-you-type swaps it in place).
fn page(ctx: &Ctx, status: StatusCode, vars: Value) -> Result<Response> {
    ctx.render_form(status, "search/index.html", "results", vars)
}

fn hit_value(h: &Hit) -> Value {
    context! {
        story => story_value(&h.story),
        chapter_number => h.chapter_number,
        snippet => Value::from_safe_string(snippet::to_html(&h.headline)),
    }
}

/// `/search?q=…&tag=…&after=…`, encoded.
fn url(q: &str, tag: Option<&str>, after: Option<&str>) -> String {
    let mut pairs = vec![("q", q)];
    if let Some(t) = tag {
        pairs.push(("tag", t));
    }
    if let Some(a) = after {
        pairs.push(("after", a));
    }
    format!("/search?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
}
