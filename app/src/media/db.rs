//! The `media` table: this module owns its SQL.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::{
    error::Result,
    jobs::{self, media::{DeleteMedia, ProcessImage}},
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
    /// Internal: sequential, so never put in a URL (see `public_id`).
    pub id: i64,
    /// What URLs name the media by: unguessable, so knowing one image's URL tells nothing
    /// about any other's.
    pub public_id: uuid::Uuid,
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
            "(SELECT to_jsonb(m) FROM (SELECT id, public_id, owner_id, status, error, width, height, variants FROM media WHERE id = ",
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
    // A store that is down is a 503 (`StorageError` → `Error`), not a 500.
    storage.put(&key, upload.bytes.clone()).await?;
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

/// The columns of `Media` (a macro, so statements stay `concat!`ed literals).
macro_rules! columns {
    () => {
        "id, public_id, owner_id, status, error, width, height, variants"
    };
}

pub async fn find(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Media>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM media WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The media named `public_id` if `viewer_id` may see it, in one statement: any user's
/// current avatar, the cover of a published story, and the viewer's own media whatever
/// they are attached to (a draft's cover, a replaced avatar, one still processing).
/// Anything else is None, exactly as if it did not exist.
pub async fn visible_to(db: impl PgExecutor<'_>, public_id: uuid::Uuid, viewer_id: Option<i64>) -> Result<Option<Media>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM media m
         WHERE m.public_id = $1
           AND (m.owner_id = $2
                OR EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = m.id)
                OR EXISTS (SELECT 1 FROM stories s WHERE s.cover_id = m.id AND s.status = 'published'))"
    ))
    .bind(public_id)
    .bind(viewer_id)
    .fetch_optional(db)
    .await
}

// ---- replacing an image ---------------------------------------------------------------

/// Where an image is shown: the one place that refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Cover { story_id: i64 },
    Avatar { user_id: i64 },
}

impl Slot {
    pub fn purpose(self) -> Purpose {
        match self {
            Slot::Cover { .. } => Purpose::Cover,
            Slot::Avatar { .. } => Purpose::Avatar,
        }
    }
}

/// `create` for an image that is about to take `slot`'s place (the caller then points the
/// story or user at the returned id, on the same `conn`), plus the deletion of the image
/// it replaces: a `DeleteMedia` job in the same transaction, so the old files go if and
/// only if the change commits. None (and nothing done) without an upload.
pub async fn replace_optional(
    conn: &mut PgConnection,
    storage: &crate::storage::Storage,
    owner_id: i64,
    slot: Slot,
    upload: Option<&ImageUpload>,
    request_id: Option<&str>,
) -> Result<Option<i64>> {
    let Some(upload) = upload else { return Ok(None) };
    // Locks the story or user row until the transaction ends, so two replacements at
    // once are serialised and each retires what the other put there, never the same
    // image twice while leaking one. NO KEY UPDATE: what the following UPDATE takes
    // anyway, and it does not block rows that merely reference this one (sessions).
    let current: Option<Option<i64>> = match slot {
        Slot::Cover { story_id } => {
            sqlx::query_scalar("SELECT cover_id FROM stories WHERE id = $1 FOR NO KEY UPDATE").bind(story_id).fetch_optional(&mut *conn).await?
        }
        Slot::Avatar { user_id } => {
            sqlx::query_scalar("SELECT avatar_id FROM users WHERE id = $1 FOR NO KEY UPDATE").bind(user_id).fetch_optional(&mut *conn).await?
        }
    };
    let id = create(conn, storage, owner_id, slot.purpose(), upload, request_id).await?;
    if let Some(old) = current.flatten() {
        jobs::enqueue(conn, &DeleteMedia { media_id: old }, request_id).await?;
    }
    Ok(Some(id))
}

// ---- account deletion ------------------------------------------------------------------

/// Hands every media row of `owner_id` to `to` (the `deleted_user` account, which never
/// logs in, so nobody sees them as their own any more) and queues a `DeleteMedia` job for
/// each, on `conn`: the rows must outlive the user row (its cascade would delete them
/// with their files still stored) until the job has removed their files. Call it once
/// nothing of the owner refers to them any more (their stories deleted or stripped of
/// their cover; the avatar goes with the user row), or the job will skip a row still
/// referenced. Returns the media ids.
pub async fn retire_all_of(conn: &mut PgConnection, owner_id: i64, to: i64, request_id: Option<&str>) -> Result<Vec<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar("UPDATE media SET owner_id = $2 WHERE owner_id = $1 RETURNING id")
        .bind(owner_id)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
    let jobs: Vec<DeleteMedia> = ids.iter().map(|&media_id| DeleteMedia { media_id }).collect();
    jobs::enqueue_many(conn, &jobs, request_id).await?;
    Ok(ids)
}

// ---- for the worker's DeleteMedia job -------------------------------------------------

/// "Nothing refers to media `m`": no story has it as cover, no user as avatar.
macro_rules! unreferenced {
    () => {
        "NOT EXISTS (SELECT 1 FROM stories s WHERE s.cover_id = m.id)
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_id = m.id)"
    };
}

/// The storage keys of an unreferenced media row (original first, then the variants),
/// with the row locked until `conn`'s transaction ends: a concurrent ProcessImage waits
/// to record its variants (and then finds the row gone), and nothing can start
/// referring to it meanwhile (the foreign key check needs a lock this one excludes).
/// None when the row is gone (a retry) or still referenced.
pub async fn lock_unreferenced(conn: &mut PgConnection, id: i64) -> Result<Option<Vec<String>>, sqlx::Error> {
    let row: Option<(String, sqlx::types::Json<Vec<VariantRef>>)> = sqlx::query_as(concat!(
        "SELECT original_key, variants FROM media m WHERE m.id = $1 AND ",
        unreferenced!(),
        " FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(original, variants)| std::iter::once(original).chain(variants.0.into_iter().map(|v| v.key)).collect()))
}

/// Deletes the row, unless something refers to it (checked again, in the statement).
/// True when a row was deleted.
pub async fn delete_unreferenced(conn: &mut PgConnection, id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(concat!("DELETE FROM media m WHERE m.id = $1 AND ", unreferenced!()))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn exists(db: impl PgExecutor<'_>, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM media WHERE id = $1)").bind(id).fetch_one(db).await
}

// ---- for the worker's ProcessImage job ----------------------------------------------

/// The original's storage key of a media row still waiting to be processed, and the
/// public id its variant keys are made from; None when the row is gone or already
/// processed (a retried job then does nothing).
pub async fn pending_original(db: impl PgExecutor<'_>, id: i64) -> Result<Option<(String, uuid::Uuid)>, sqlx::Error> {
    sqlx::query_as("SELECT original_key, public_id FROM media WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The cache tags of the pages that show media `id`: the stories it is the cover of, the
/// users it is the avatar of (both indexed), for after it turns ready or failed.
pub async fn cache_tags(db: impl PgExecutor<'_>, id: i64) -> Result<Vec<crate::cache::Tag>, sqlx::Error> {
    let rows: Vec<(bool, i64)> = sqlx::query_as(
        "SELECT true, id FROM stories WHERE cover_id = $1 UNION ALL SELECT false, id FROM users WHERE avatar_id = $1",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(story, id)| if story { crate::cache::Tag::story(id) } else { crate::cache::Tag::user(id) }).collect())
}

pub async fn mark_failed(db: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE media SET status = 'failed', error = $2, processed_at = now() WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}

/// Records the variants of a pending row; false when it is no longer pending (processed
/// by a concurrent run, or deleted meanwhile: see `exists`).
pub async fn mark_ready(
    db: impl PgExecutor<'_>,
    id: i64,
    width: u32,
    height: u32,
    exif: &serde_json::Value,
    variants: &[VariantRef],
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
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
    Ok(r.rows_affected() == 1)
}
