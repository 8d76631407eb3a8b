//! The Server-Sent Events streams.
//!
//! - `GET /s/{id}/live`: a story page's stream: the story's channel (likes, comments) and,
//!   logged in, the visitor's own (the notification count). 404 unless the visitor may
//!   see the story (published, or their own draft).
//! - `GET /live`: every other page's stream, the visitor's channel only; 204 for anonymous
//!   visitors (EventSource then stops: a page for nobody costs nothing).
//!
//! The handler only authorizes, subscribes and reads the replay; the stream itself is
//! the body (`sse::body`), written after the handler returns, so the request deadline
//! does not apply to it and dropping the connection drops the subscription.

use std::time::Duration;

use poem::{
    Body, Request, Response, Route, get, handler,
    http::{StatusCode, header},
    web::Path,
};

use super::{
    Channel,
    broker::{Event, Refused},
    db, sse,
};
use crate::{
    error::{Error, Result},
    ratelimit::Limit,
    stories::db as stories,
    web::ctx::Ctx,
};

/// Events replayed to a resuming stream at most; with more missed it is told to reload.
pub const REPLAY_MAX: i64 = 200;

/// Stream opens per IP: EventSource reconnects on its own every few seconds after an
/// error, so a tab that keeps failing must not cost us a query every time.
const OPENS_PER_IP: Limit = Limit { max: 120, window: Duration::from_secs(60) };

/// What a full process tells browsers to wait (another process may have room).
const FULL_RETRY_AFTER_SECS: u64 = 10;

pub fn routes(route: Route) -> Route {
    route.at("/s/:id/live", get(story_stream)).at("/live", get(user_stream))
}

#[handler]
async fn story_stream(ctx: Ctx, req: &Request, Path(id): Path<i64>) -> Result<Response> {
    ctx.limit_ip("live", OPENS_PER_IP).await?;
    let story = crate::replica_read!(ctx.state.db, db => stories::find(db, id))?.ok_or(Error::NotFound)?;
    // The rule of the story pages: drafts and hidden stories exist only for those who may see them.
    if !crate::stories::may_see(ctx.user(), &story) {
        return Err(Error::NotFound);
    }
    let mut channels = vec![Channel::Story(story.id)];
    channels.extend(ctx.user().map(|u| Channel::User(u.id)));
    open(&ctx, req, &channels).await
}

#[handler]
async fn user_stream(ctx: Ctx, req: &Request) -> Result<Response> {
    let Some(user) = ctx.user() else {
        // 204 is the one answer EventSource takes as "do not reconnect".
        return Ok(Response::builder().status(StatusCode::NO_CONTENT).header(header::CACHE_CONTROL, "no-store").finish());
    };
    ctx.limit_ip("live", OPENS_PER_IP).await?;
    open(&ctx, req, &[Channel::User(user.id)]).await
}

/// Where the browser left off: the `Last-Event-ID` header EventSource sends when it
/// reconnects, or `?after=`: the page renders the broker's position into its stream URL
/// (so what commits between the page's queries and the stream's start is not missed),
/// and app.js puts the last id seen there when htmx opens a new EventSource after the
/// old one gave up (which forgets the header). The furthest of them wins; anything
/// unreadable is no resume point.
fn resume_point(req: &Request) -> Option<i64> {
    let header = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).and_then(parse_id);
    let query = req
        .uri()
        .query()
        .and_then(|q| q.split('&').filter_map(|pair| pair.strip_prefix("after=")).filter_map(parse_id).max());
    header.max(query)
}

fn parse_id(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|id| *id >= 0)
}

/// Subscribes (first, so nothing committed from now on is missed), reads what a resuming
/// browser missed, and answers with the stream.
async fn open(ctx: &Ctx, req: &Request, channels: &[Channel]) -> Result<Response> {
    let broker = &ctx.state.live;
    let sub = broker.subscribe(channels).map_err(|refused| {
        if refused == Refused::Full {
            tracing::warn!("live: LIVE_MAX_STREAMS streams open; refusing one more");
        }
        Error::Busy { retry_after_secs: FULL_RETRY_AFTER_SECS }
    })?;
    let (replay, reload) = match resume_point(req) {
        None => (Vec::new(), false),
        Some(after) => missed(ctx, &sub.keys(), after).await?,
    };
    let body = sse::body(sub, replay, reload, broker.heartbeat());
    Ok(Response::builder()
        .content_type("text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        // nginx and others buffer responses unless told not to.
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(body)))
}

/// The events after `after` on `keys`, from the primary (the NOTIFY that announced them
/// came from there; a replica may be behind), and whether the page must reload instead:
/// more were missed than are replayed, or some were purged already (older than the
/// resume window).
async fn missed(ctx: &Ctx, keys: &[String], after: i64) -> Result<(Vec<Event>, bool)> {
    let pool = ctx.state.db.primary();
    let purged = db::oldest_id(pool).await?.is_some_and(|oldest| after + 1 < oldest);
    if purged {
        return Ok((Vec::new(), true));
    }
    let rows = db::replay(pool, keys, after, REPLAY_MAX + 1).await?;
    if rows.len() as i64 > REPLAY_MAX {
        // The reload shows all of it; replaying some first would only be thrown away.
        return Ok((Vec::new(), true));
    }
    Ok((rows.into_iter().map(Event::from).collect(), false))
}
