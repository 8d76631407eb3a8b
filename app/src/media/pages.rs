//! `/m/{public_id}/figure` (the placeholder fragment htmx polls while an image is
//! processed) and `/media/variants/…` (the processed files, outside the session stack).

use minijinja::context;
use poem::{
    Body, Response, Route, get, handler,
    http::{StatusCode, header},
    web::{Data, Path, Query},
};
use serde::Deserialize;

use super::{db, figure_value};
use crate::{
    error::{Error, Result},
    web::{
        AppState,
        ctx::{Ctx, html_response},
    },
};

/// Page routes (behind the session stack): the figure fragment.
pub fn routes(route: Route) -> Route {
    route.at("/m/:public_id/figure", get(figure))
}

/// The variant files, mounted outside the session stack: no cookie, no database.
pub fn files() -> Route {
    Route::new().at("/*key", get(serve))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FigureQuery {
    alt: String,
}

/// The figure fragment: htmx polls it while the image is pending; once ready it answers
/// without the polling attributes, so polling stops by itself.
/// `alt` travels in the polling URL, so the image that replaces the placeholder keeps the
/// text the page gave it (autoescaped; capped like any text we echo).
/// Only for media the visitor may see (`db::visible_to`); anything else, including the
/// old numeric form `/m/7/figure`, is 404 as if it did not exist.
#[handler]
async fn figure(ctx: Ctx, Path(public_id): Path<String>, Query(q): Query<FigureQuery>) -> Result<Response> {
    let public_id = uuid::Uuid::try_parse(&public_id).map_err(|_| Error::NotFound)?;
    let viewer = ctx.user().map(|u| u.id);
    let media = crate::replica_read!(ctx.state.db, db => db::visible_to(db, public_id, viewer))?.ok_or(Error::NotFound)?;
    let is_owner = viewer == Some(media.owner_id);
    let alt: String = q.alt.chars().take(300).collect();
    let html = ctx.state.templates.render(
        "partials/figure.html",
        context! { media => figure_value(&media), is_owner => is_owner, alt => alt },
    )?;
    Ok(html_response(StatusCode::OK, html))
}

/// Serves a processed variant. Keys are content-addressed: cache forever.
///
/// Streamed from the store by the app, whichever the store (files or a bucket), rather
/// than redirected to a presigned bucket URL: the bucket stays private (originals and
/// exports live there too), images keep this origin (the CSP's `img-src 'self'`, no CORS
/// or bucket policy to get right), and the URLs in pages never expire — pages are cached
/// (for anonymous visitors, in Redis too), and a signed URL baked into one would outlive
/// its signature. The cost, web bandwidth, is what a CDN in front of `/media/` removes:
/// the responses are immutable. A missing object is 404; a store that is down or too
/// slow, 503 with Retry-After (never a 404 a CDN would cache, never a hang).
#[handler]
async fn serve(Data(state): Data<&AppState>, Path(key): Path<String>, req: &poem::Request) -> Result<Response> {
    if !key.starts_with("variants/") {
        return Err(Error::NotFound);
    }
    let etag = format!("\"{}\"", key.rsplit('/').next().unwrap_or_default());
    if req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Ok(Response::builder().status(StatusCode::NOT_MODIFIED).header(header::ETAG, etag).finish());
    }
    let content_type = match key.rsplit('.').next() {
        Some("webp") => "image/webp",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => return Err(Error::NotFound),
    };
    let (size, chunks) = state.storage.get_stream(&key).await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .header(header::ETAG, etag)
        .header(header::CONTENT_LENGTH, size)
        .body(Body::from_bytes_stream(futures::TryStreamExt::map_err(chunks, std::io::Error::other))))
}
