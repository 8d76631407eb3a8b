//! Uploaded images (covers, avatars) on the web side: the `media` table's SQL, serving
//! the processed variants under `/media/…`, and the figure fragment that stands in for an
//! image until its variants exist.
//!
//! Originals are stored privately under `originals/` and never served; only keys under
//! `variants/` are. Variant keys carry a content hash, so their responses are immutable.

use minijinja::{Value, context};
use poem::{
    Response, Route, get, handler,
    http::{StatusCode, header},
    web::{Data, Path, Query},
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    error::{Error, Result},
    jobs::{self, media::ProcessImage},
    uploads::ImageUpload,
    web::{
        AppState,
        ctx::{Ctx, html_response},
    },
};

/// Page routes (behind the session stack): the figure fragment.
pub fn routes(route: Route) -> Route {
    route.at("/m/:id/figure", get(figure))
}

/// The variant files, mounted outside the session stack: no cookie, no database.
pub fn files() -> Route {
    Route::new().at("/*key", get(serve))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Cover,
    Avatar,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Cover => "cover",
            Purpose::Avatar => "avatar",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantRef {
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Media {
    pub id: i64,
    pub owner_id: i64,
    pub status: String,
    pub error: Option<String>,
    pub width: i32,
    pub height: i32,
    #[sqlx(json)]
    pub variants: Vec<VariantRef>,
}

/// `media_json!("s.cover_id")`: a scalar subquery giving the `Media` row with that id as
/// JSON (or NULL), for other areas' queries to embed — a page then needs no second round
/// trip for its pictures. Decode the column with `#[sqlx(json(nullable))] Option<Media>`.
#[macro_export]
macro_rules! media_json {
    ($id:literal) => {
        concat!(
            "(SELECT to_jsonb(m) FROM (SELECT id, owner_id, status, error, width, height, variants FROM media WHERE id = ",
            $id,
            ") m)"
        )
    };
}

/// Stores the original privately and inserts its `pending` row plus the `ProcessImage`
/// job, on `conn` — the caller's transaction, so row, job and the story or profile change
/// that refers to them commit together. Returns the media id.
pub async fn create(
    conn: &mut PgConnection,
    storage: &crate::storage::Storage,
    owner_id: i64,
    purpose: Purpose,
    upload: &ImageUpload,
    request_id: Option<&str>,
) -> Result<i64> {
    let key = format!("originals/{}.{}", uuid::Uuid::new_v4().simple(), upload.kind.extension());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(owner_id)
    .bind(purpose.as_str())
    .bind(&key)
    .bind(upload.kind.mime())
    .bind(upload.bytes.len() as i32)
    .bind(upload.width as i32)
    .bind(upload.height as i32)
    .fetch_one(&mut *conn)
    .await?;
    jobs::enqueue(conn, &ProcessImage { media_id: id }, request_id).await?;
    // Written last: if storing fails the transaction rolls back; if the transaction
    // fails after, the orphan file is harmless and never referenced.
    storage.put(&key, upload.bytes.clone()).await.map_err(|e| Error::Internal(anyhow::anyhow!("storing upload: {e}")))?;
    Ok(id)
}

/// `create` for a form's optional image: the new media id, or None without an upload.
pub async fn create_optional(
    conn: &mut PgConnection,
    storage: &crate::storage::Storage,
    owner_id: i64,
    purpose: Purpose,
    upload: Option<&ImageUpload>,
    request_id: Option<&str>,
) -> Result<Option<i64>> {
    match upload {
        Some(upload) => Ok(Some(create(conn, storage, owner_id, purpose, upload, request_id).await?)),
        None => Ok(None),
    }
}

pub async fn find(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Media>, sqlx::Error> {
    sqlx::query_as("SELECT id, owner_id, status, error, width, height, variants FROM media WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// What templates need to draw an image: its size (so nothing jumps while loading), the
/// variant URLs by format, or that it is still being processed.
pub fn figure_value(media: &Media) -> Value {
    let srcset = |format: &str| {
        media
            .variants
            .iter()
            .filter(|v| v.format == format)
            .map(|v| format!("/media/{} {}w", v.key, v.width))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fallback = media
        .variants
        .iter()
        .filter(|v| v.format == "jpeg")
        .min_by_key(|v| (v.width as i64 - 800).abs())
        .map(|v| format!("/media/{}", v.key));
    let (width, height) = media
        .variants
        .iter()
        .max_by_key(|v| v.width)
        .map(|v| (v.width as i32, v.height as i32))
        .unwrap_or((media.width, media.height));
    context! {
        id => media.id,
        status => &media.status,
        error => &media.error,
        width => width,
        height => height,
        webp_srcset => srcset("webp"),
        jpeg_srcset => srcset("jpeg"),
        src => fallback,
    }
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
#[handler]
async fn figure(ctx: Ctx, Path(id): Path<i64>, Query(q): Query<FigureQuery>) -> Result<Response> {
    let media = crate::replica_read!(ctx.state.db, db => find(db, id))?.ok_or(Error::NotFound)?;
    let is_owner = ctx.user().is_some_and(|u| u.id == media.owner_id);
    let alt: String = q.alt.chars().take(300).collect();
    let html = ctx.state.templates.render(
        "partials/figure.html",
        context! { media => figure_value(&media), is_owner => is_owner, alt => alt },
    )?;
    Ok(html_response(StatusCode::OK, html))
}

/// Serves a processed variant. Keys are content-addressed: cache forever.
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
    let bytes = state.storage.get(&key).await.map_err(|_| Error::NotFound)?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .header(header::ETAG, etag)
        .body(bytes))
}

// ---- for the worker's ProcessImage job ----------------------------------------------

/// The original's storage key of a media row still waiting to be processed; None when
/// the row is gone or already processed (a retried job then does nothing).
pub async fn pending_original(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT original_key FROM media WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn mark_failed(db: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE media SET status = 'failed', error = $2, processed_at = now() WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn mark_ready(
    db: impl PgExecutor<'_>,
    id: i64,
    width: u32,
    height: u32,
    exif: &serde_json::Value,
    variants: &[VariantRef],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE media SET status = 'ready', error = NULL, width = $2, height = $3, exif = $4, variants = $5, processed_at = now()
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(width as i32)
    .bind(height as i32)
    .bind(sqlx::types::Json(exif))
    .bind(sqlx::types::Json(variants))
    .execute(db)
    .await?;
    Ok(())
}
