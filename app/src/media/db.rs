//! The `media` table: this module owns its SQL.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    error::{Error, Result},
    jobs::{self, media::ProcessImage},
    media::upload::ImageUpload,
};

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

/// Where an upload is in processing. Stored as text (the `media_status_valid` CHECK lists
/// the same values); templates see the lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MediaStatus {
    /// Stored, waiting for the worker's `ProcessImage`.
    Pending,
    /// Its variants exist.
    Ready,
    /// Could not be processed; `error` says why, for its owner.
    Failed,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Pending => "pending",
            MediaStatus::Ready => "ready",
            MediaStatus::Failed => "failed",
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
    pub status: MediaStatus,
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
