//! The `exports` table, and the reads that gather what goes into an export's ZIP (the
//! worker's `build_export` job calls them; this area owns what it exports).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

/// How long a ready export can be downloaded (and its file kept).
pub const VALID_FOR_HOURS: i64 = 24;

/// Where an export is. Stored as text (the `exports_status_valid` CHECK lists the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker.
    Queued,
    /// Being written; `progress` of `total` items done.
    Running,
    /// The file exists and the mailed link works until `expires_at`.
    Ready,
    /// Gave up after its last attempt; `error` says why.
    Failed,
    /// Past `expires_at`: the file is deleted (or about to be).
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Ready => "ready",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }

    pub fn in_flight(self) -> bool {
        matches!(self, Status::Queued | Status::Running)
    }
}

/// An export as its owner's page shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Export {
    pub id: i64,
    pub user_id: i64,
    pub status: Status,
    pub progress: i32,
    pub total: i32,
    pub byte_size: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What the download token derives from (`SendExportReady::token_seed`); set when ready.
    #[serde(skip)]
    pub link_key: Option<uuid::Uuid>,
}

impl Export {
    /// Ready, but past its 24 hours (the maintenance job may not have run yet): the page
    /// and the download treat it as expired.
    pub fn effective_status(&self, now: DateTime<Utc>) -> Status {
        match (self.status, self.expires_at) {
            (Status::Ready, Some(at)) if at <= now => Status::Expired,
            (s, _) => s,
        }
    }

    /// Done, in percent (0 while the total is not known).
    pub fn percent(&self) -> i32 {
        if self.total <= 0 { 0 } else { (i64::from(self.progress.min(self.total)) * 100 / i64::from(self.total)) as i32 }
    }
}

macro_rules! export_columns {
    () => {
        "id, user_id, status, progress, total, byte_size, created_at, ready_at, expires_at, error, link_key"
    };
}

/// The user's most recent export, if any.
pub async fn latest(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<Export>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", export_columns!(), " FROM exports WHERE user_id = $1 ORDER BY id DESC LIMIT 1"))
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// The user's queued or running export, if any.
pub async fn in_flight(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<Export>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", export_columns!(), " FROM exports WHERE user_id = $1 AND status IN ('queued', 'running')"))
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// Exports the user asked for in the last 24 hours (whatever became of them), and the
/// seconds until the oldest of them is 24 hours old.
pub async fn requested_today(db: impl PgExecutor<'_>, user_id: i64) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), coalesce(ceil(extract(epoch FROM min(created_at) + interval '24 hours' - now())), 0)::bigint
         FROM exports WHERE user_id = $1 AND created_at > now() - interval '24 hours'",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
}

/// A new queued export; `None` when one is already in flight (the partial unique index
/// `exports_one_in_flight` decides a race between two requests).
pub async fn create(conn: &mut PgConnection, user_id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO exports (user_id) VALUES ($1)
         ON CONFLICT (user_id) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// What a download link leads to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Download {
    pub id: i64,
    pub user_id: i64,
    pub status: Status,
    pub storage_key: Option<String>,
    pub byte_size: Option<i64>,
    pub ready_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Past `expires_at`, by the database's clock.
    pub expired: bool,
}

pub async fn by_token_hash(db: impl PgExecutor<'_>, hash: &[u8]) -> Result<Option<Download>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, user_id, status, storage_key, byte_size, ready_at, expires_at,
                (status = 'expired' OR coalesce(expires_at <= now(), false)) AS expired
         FROM exports WHERE token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
}

// ---- the worker's side ----------------------------------------------------------------

/// Starts (or, after a crashed or timed-out attempt, restarts) export `id`: running, no
/// progress. Returns its owner, or `None` when there is nothing to do (deleted, or
/// already ready, failed or expired).
pub async fn start(db: impl PgExecutor<'_>, id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE exports SET status = 'running', started_at = now(), progress = 0, total = 0, error = NULL
         WHERE id = $1 AND status IN ('queued', 'running') RETURNING user_id",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn set_progress(db: impl PgExecutor<'_>, id: i64, progress: i32, total: i32) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE exports SET progress = $2, total = $3 WHERE id = $1 AND status = 'running'")
        .bind(id)
        .bind(progress)
        .bind(total)
        .execute(db)
        .await?;
    Ok(())
}

/// Ready: the file is at `key`, the link's token (from `link_key`) hashes to `token_hash`, valid for
/// [`VALID_FOR_HOURS`] from now. False when the row is no longer running (nothing to
/// point at the file: the caller deletes it).
pub async fn mark_ready(
    conn: &mut PgConnection,
    id: i64,
    key: &str,
    byte_size: i64,
    link_key: uuid::Uuid,
    token_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE exports SET status = 'ready', storage_key = $2, byte_size = $3, link_key = $4, token_hash = $5, progress = total,
                ready_at = now(), expires_at = now() + make_interval(hours => $6::int)
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(key)
    .bind(byte_size)
    .bind(link_key)
    .bind(token_hash)
    .bind(VALID_FOR_HOURS as i32)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn mark_failed(db: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE exports SET status = 'failed', error = $2 WHERE id = $1 AND status IN ('queued', 'running')")
        .bind(id)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}

/// A ready, unexpired export's owner and token hash, for its mail.
pub async fn for_mail(db: impl PgExecutor<'_>, id: i64) -> Result<Option<(i64, Vec<u8>, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as("SELECT user_id, token_hash, expires_at FROM exports WHERE id = $1 AND status = 'ready' AND expires_at > now()")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Up to `limit` ready exports past their expiry, locked (others skip them) until the
/// caller's transaction ends: (id, storage key).
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<(i64, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, storage_key FROM exports WHERE status = 'ready' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Expired, file gone. The token hash stays, so the old link answers "expired".
pub async fn mark_expired(conn: &mut PgConnection, ids: &[i64]) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("UPDATE exports SET status = 'expired', storage_key = NULL WHERE id = ANY($1)").bind(ids).execute(conn).await?;
    Ok(r.rows_affected())
}

/// Which of `keys` no export row refers to (files left by a deleted account, or by a run
/// that stored its file but could not record it).
pub async fn unreferenced(db: impl PgExecutor<'_>, keys: &[String]) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT k FROM unnest($1::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM exports WHERE storage_key = k)")
        .bind(keys)
        .fetch_all(db)
        .await
}

// ---- what goes into the ZIP -------------------------------------------------------------

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Profile {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub bio: String,
    pub role: crate::policy::Role,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub follower_count: i32,
    pub following_count: i32,
    /// The avatar's media id (its file is under `uploads/` in the ZIP).
    #[serde(skip)]
    pub avatar_id: Option<i64>,
}

pub async fn profile(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, email, display_name, bio, role, email_verified_at, created_at, follower_count, following_count, avatar_id
         FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Story {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub status: String,
    pub tags: Vec<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub chapter_count: i32,
    pub word_count: i32,
    pub like_count: i32,
    pub comment_count: i32,
    pub hidden_at: Option<DateTime<Utc>>,
    pub hidden_reason: String,
    #[serde(skip)]
    pub cover_id: Option<i64>,
}

/// Every story the user wrote, drafts and hidden ones included, oldest first.
pub async fn stories(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<Story>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.title, s.summary, s.status,
                coalesce((SELECT array_agg(t.name ORDER BY t.name) FROM story_tags st JOIN tags t ON t.id = st.tag_id
                          WHERE st.story_id = s.id), '{}') AS tags,
                s.published_at, s.created_at, s.updated_at, s.chapter_count, s.word_count, s.like_count, s.comment_count,
                s.hidden_at, s.hidden_reason, s.cover_id
         FROM stories s WHERE s.author_id = $1 ORDER BY s.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Chapter {
    pub story_id: i64,
    pub number: i32,
    pub title: String,
    pub body_markdown: String,
    pub body_html: String,
    pub word_count: i32,
    pub created_at: DateTime<Utc>,
}

/// The user's chapters in (story, number) order, `limit` at a time after `after`
/// (keyset: pass the last one's `(story_id, number)`, `(0, 0)` to start).
pub async fn chapters_after(db: impl PgExecutor<'_>, user_id: i64, after: (i64, i32), limit: i64) -> Result<Vec<Chapter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.story_id, c.number, c.title, c.body_markdown, c.body_html, c.word_count, c.created_at
         FROM chapters c JOIN stories s ON s.id = c.story_id
         WHERE s.author_id = $1 AND (c.story_id, c.number) > ($2, $3)
         ORDER BY c.story_id, c.number LIMIT $4",
    )
    .bind(user_id)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn chapter_count(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM chapters c JOIN stories s ON s.id = c.story_id WHERE s.author_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Comment {
    pub id: i64,
    pub story_id: i64,
    pub story_title: String,
    pub parent_id: Option<i64>,
    pub body_markdown: String,
    pub created_at: DateTime<Utc>,
    pub hidden_at: Option<DateTime<Utc>>,
    pub hidden_reason: String,
}

/// The user's comments (not the deleted ones: their text is gone), oldest first,
/// `limit` at a time after comment id `after` (0 to start).
pub async fn comments_after(db: impl PgExecutor<'_>, user_id: i64, after: i64, limit: i64) -> Result<Vec<Comment>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.story_id, s.title AS story_title, c.parent_id, c.body_markdown, c.created_at, c.hidden_at, c.hidden_reason
         FROM comments c JOIN stories s ON s.id = c.story_id
         WHERE c.author_id = $1 AND c.deleted_at IS NULL AND c.id > $2 ORDER BY c.id LIMIT $3",
    )
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn comment_count(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM comments WHERE author_id = $1 AND deleted_at IS NULL").bind(user_id).fetch_one(db).await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Like {
    pub story_id: i64,
    pub story_title: String,
    pub author: String,
    pub liked_at: DateTime<Utc>,
}

pub async fn likes(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<Like>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.story_id, s.title AS story_title, u.username AS author, l.created_at AS liked_at
         FROM likes l JOIN stories s ON s.id = l.story_id JOIN users u ON u.id = s.author_id
         WHERE l.user_id = $1 ORDER BY l.created_at, l.story_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Follow {
    pub username: String,
    pub since: DateTime<Utc>,
}

/// Who the user follows, and who follows them.
pub async fn follows(db: &sqlx::PgPool, user_id: i64) -> Result<(Vec<Follow>, Vec<Follow>), sqlx::Error> {
    let following = sqlx::query_as(
        "SELECT u.username, f.created_at AS since FROM follows f JOIN users u ON u.id = f.followee_id
         WHERE f.follower_id = $1 ORDER BY f.created_at, u.username",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let followers = sqlx::query_as(
        "SELECT u.username, f.created_at AS since FROM follows f JOIN users u ON u.id = f.follower_id
         WHERE f.followee_id = $1 ORDER BY f.created_at, u.username",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok((following, followers))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Upload {
    pub id: i64,
    pub public_id: uuid::Uuid,
    pub purpose: String,
    pub original_key: String,
    pub content_type: String,
    pub byte_size: i32,
    pub created_at: DateTime<Utc>,
}

/// The originals of the user's current avatar and story covers (not images they replaced).
pub async fn uploads(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<Upload>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.id, m.public_id, m.purpose, m.original_key, m.content_type, m.byte_size, m.created_at
         FROM media m
         WHERE m.owner_id = $1
           AND (m.id = (SELECT avatar_id FROM users WHERE id = $1)
                OR EXISTS (SELECT 1 FROM stories s WHERE s.cover_id = m.id AND s.author_id = $1))
         ORDER BY m.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}
