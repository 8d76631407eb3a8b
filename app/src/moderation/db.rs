//! The `reports` and `bans` tables, and hiding stories, comments and profiles: this
//! module owns their SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Story,
    Comment,
    User,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Story => "story",
            ObjectKind::Comment => "comment",
            ObjectKind::User => "user",
        }
    }
}

/// A reportable object as the report form needs it: who owns it, and may the public see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reportable {
    pub id: i64,
    pub owner_id: i64,
    /// Published (story), not deleted on a published story (comment), any (user).
    pub public: bool,
    pub hidden: bool,
}

/// The story `id` as a report target.
pub async fn story_target(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Reportable>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, author_id AS owner_id, status = 'published' AS public, hidden_at IS NOT NULL AS hidden FROM stories WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Comment `cid` of story `story_id` as a report target.
pub async fn comment_target(db: impl PgExecutor<'_>, story_id: i64, cid: i64) -> Result<Option<Reportable>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.author_id AS owner_id,
                (s.status = 'published' AND s.hidden_at IS NULL AND c.deleted_at IS NULL) AS public,
                c.hidden_at IS NOT NULL AS hidden
         FROM comments c JOIN stories s ON s.id = c.story_id
         WHERE c.id = $1 AND c.story_id = $2",
    )
    .bind(cid)
    .bind(story_id)
    .fetch_optional(db)
    .await
}

/// The user `username` as a report target.
pub async fn user_target(db: impl PgExecutor<'_>, username: &str) -> Result<Option<Reportable>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, id AS owner_id, true AS public, profile_hidden_at IS NOT NULL AS hidden FROM users WHERE lower(username) = lower($1)",
    )
    .bind(username)
    .fetch_optional(db)
    .await
}

/// Files a report; false when this reporter already has an open report on the object
/// (the partial unique index decides, so two quick clicks make one report).
pub async fn insert_report(
    conn: &mut PgConnection,
    reporter_id: i64,
    kind: ObjectKind,
    object_id: i64,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO reports (reporter_id, object_kind, object_id, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (reporter_id, object_kind, object_id) WHERE status = 'open' DO NOTHING",
    )
    .bind(reporter_id)
    .bind(kind)
    .bind(object_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// One object in the moderators' queue: its open reports counted, the newest first.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QueueItem {
    /// The newest open report's id: what the resolve form posts to.
    pub report_id: i64,
    pub object_kind: ObjectKind,
    pub object_id: i64,
    pub reports: i64,
    pub latest_at: DateTime<Utc>,
    /// Up to five reasons, newest first.
    pub reasons: Vec<String>,
    /// What the object is, for the queue: a story's title, a comment's text, a username.
    pub label: Option<String>,
    /// Where it lives (None: deleted since).
    pub url: Option<String>,
    pub owner_username: Option<String>,
    pub hidden: bool,
}

pub const QUEUE_PAGE: i64 = 20;

/// Open reports grouped by object, the most recently reported first; keyset on
/// (latest_at, report_id) below `before`.
pub async fn queue(db: impl PgExecutor<'_>, before: Option<(DateTime<Utc>, i64)>) -> Result<Vec<QueueItem>, sqlx::Error> {
    sqlx::query_as(
        "WITH g AS (
             SELECT object_kind, object_id, count(*) AS reports, max(created_at) AS latest_at, max(id) AS report_id,
                    (array_agg(reason ORDER BY created_at DESC, id DESC))[1:5] AS reasons
             FROM reports WHERE status = 'open'
             GROUP BY object_kind, object_id
         )
         SELECT g.report_id, g.object_kind, g.object_id, g.reports, g.latest_at, g.reasons,
                CASE g.object_kind WHEN 'story' THEN s.title WHEN 'comment' THEN left(c.body_markdown, 300) ELSE pu.username END AS label,
                CASE g.object_kind
                    WHEN 'story' THEN CASE WHEN s.id IS NOT NULL THEN '/s/' || s.id END
                    WHEN 'comment' THEN CASE WHEN c.id IS NOT NULL THEN '/s/' || c.story_id || '#comment-' || c.id END
                    ELSE CASE WHEN pu.id IS NOT NULL THEN '/u/' || pu.username END END AS url,
                coalesce(su.username, cu.username, pu.username) AS owner_username,
                coalesce(s.hidden_at, c.hidden_at, pu.profile_hidden_at) IS NOT NULL AS hidden
         FROM g
         LEFT JOIN stories s ON g.object_kind = 'story' AND s.id = g.object_id
         LEFT JOIN users su ON su.id = s.author_id
         LEFT JOIN comments c ON g.object_kind = 'comment' AND c.id = g.object_id
         LEFT JOIN users cu ON cu.id = c.author_id
         LEFT JOIN users pu ON g.object_kind = 'user' AND pu.id = g.object_id
         WHERE ($1::timestamptz IS NULL OR (g.latest_at, g.report_id) < ($1, $2))
         ORDER BY g.latest_at DESC, g.report_id DESC
         LIMIT $3",
    )
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1).unwrap_or(0))
    .bind(QUEUE_PAGE + 1)
    .fetch_all(db)
    .await
}

pub async fn open_count(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM reports WHERE status = 'open'").fetch_one(db).await
}

/// A report, locked for its resolution.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    pub object_kind: ObjectKind,
    pub object_id: i64,
    pub status: String,
    pub reason: String,
    pub resolved_by_name: Option<String>,
}

/// The report `id`, row-locked until `conn`'s transaction ends: of two moderators
/// resolving at once, the second waits here and then sees it resolved.
pub async fn lock_report(conn: &mut PgConnection, id: i64) -> Result<Option<ReportRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.object_kind, r.object_id, r.status, r.reason, u.username AS resolved_by_name
         FROM reports r LEFT JOIN users u ON u.id = r.resolved_by
         WHERE r.id = $1 FOR UPDATE OF r",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Closes every open report on the object as `status` ('hidden' or 'dismissed');
/// returns how many.
pub async fn close_reports(
    conn: &mut PgConnection,
    kind: ObjectKind,
    object_id: i64,
    status: &str,
    by: i64,
    note: &str,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE reports SET status = $3, resolved_at = now(), resolved_by = $4, resolution_note = $5
         WHERE object_kind = $1 AND object_id = $2 AND status = 'open'",
    )
    .bind(kind)
    .bind(object_id)
    .bind(status)
    .bind(by)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Who owns a hidden (or hideable) object and where it lives.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Hidden {
    pub owner_id: i64,
    /// The story a comment is on (the story itself for a story).
    pub story_id: Option<i64>,
}

/// Hides (`reason` Some) or unhides (None) the object; None when it does not exist or
/// is already in that state. Hiding also drops the notifications that point at it.
pub async fn set_hidden(conn: &mut PgConnection, kind: ObjectKind, id: i64, reason: Option<&str>) -> Result<Option<Hidden>, sqlx::Error> {
    let hide = reason.is_some();
    let reason = reason.unwrap_or("");
    let row: Option<Hidden> = match kind {
        ObjectKind::Story => sqlx::query_as(
            "UPDATE stories SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3
             WHERE id = $1 AND (hidden_at IS NULL) = $2
             RETURNING author_id AS owner_id, id AS story_id",
        ),
        ObjectKind::Comment => sqlx::query_as(
            "UPDATE comments SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3
             WHERE id = $1 AND (hidden_at IS NULL) = $2
             RETURNING author_id AS owner_id, story_id",
        ),
        ObjectKind::User => sqlx::query_as(
            "UPDATE users SET profile_hidden_at = CASE WHEN $2 THEN now() END, profile_hidden_reason = $3
             WHERE id = $1 AND (profile_hidden_at IS NULL) = $2
             RETURNING id AS owner_id, NULL::bigint AS story_id",
        ),
    }
    .bind(id)
    .bind(hide)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    if hide && row.is_some() {
        let sql = match kind {
            ObjectKind::Story => "DELETE FROM notifications n USING stories s WHERE n.story_id = $1 AND s.id = $1 AND n.user_id <> s.author_id",
            ObjectKind::Comment => "DELETE FROM notifications WHERE comment_id = $1",
            ObjectKind::User => "SELECT $1",
        };
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(row)
}

/// Hidden stories and comments, newest first, for the moderators' "hidden" list (undo).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HiddenItem {
    pub object_kind: ObjectKind,
    pub object_id: i64,
    pub label: String,
    pub url: String,
    pub owner_username: String,
    pub hidden_at: DateTime<Utc>,
    pub hidden_reason: String,
}

pub async fn hidden_items(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<HiddenItem>, sqlx::Error> {
    sqlx::query_as(
        "(SELECT 'story'::text AS object_kind, s.id AS object_id, s.title AS label, '/s/' || s.id AS url,
                 u.username AS owner_username, s.hidden_at, s.hidden_reason
          FROM stories s JOIN users u ON u.id = s.author_id WHERE s.hidden_at IS NOT NULL
          ORDER BY s.hidden_at DESC LIMIT $1)
         UNION ALL
         (SELECT 'comment', c.id, left(c.body_markdown, 200), '/s/' || c.story_id || '#comment-' || c.id,
                 u.username, c.hidden_at, c.hidden_reason
          FROM comments c JOIN users u ON u.id = c.author_id WHERE c.hidden_at IS NOT NULL
          ORDER BY c.hidden_at DESC LIMIT $1)
         UNION ALL
         (SELECT 'user', u.id, u.username, '/u/' || u.username, u.username, u.profile_hidden_at, u.profile_hidden_reason
          FROM users u WHERE u.profile_hidden_at IS NOT NULL
          ORDER BY u.profile_hidden_at DESC LIMIT $1)
         ORDER BY hidden_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

// ---- bans ---------------------------------------------------------------------------

/// A ban in force.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ActiveBan {
    pub id: i64,
    pub reason: String,
    pub until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub hid_content: bool,
}

/// `user_id`'s ban in force now, if any (not lifted, not over).
pub async fn active_ban(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<ActiveBan>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, reason, until, created_at, hid_content FROM bans
         WHERE user_id = $1 AND lifted_at IS NULL AND (until IS NULL OR until > now())",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Bans `user_id` (replacing any earlier ban, which is lifted); with `hide_content` their
/// stories and comments are hidden, stamped with the ban's own time so `lift_ban`
/// unhides exactly those. Returns the ban's id and time.
pub async fn ban(
    conn: &mut PgConnection,
    user_id: i64,
    by: i64,
    reason: &str,
    until: Option<DateTime<Utc>>,
    hide_content: bool,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    sqlx::query("UPDATE bans SET lifted_at = now(), lifted_by = $2 WHERE user_id = $1 AND lifted_at IS NULL")
        .bind(user_id)
        .bind(by)
        .execute(&mut *conn)
        .await?;
    let (id, at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO bans (user_id, banned_by, reason, until, hid_content) VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
    )
    .bind(user_id)
    .bind(by)
    .bind(reason)
    .bind(until)
    .bind(hide_content)
    .fetch_one(&mut *conn)
    .await?;
    if hide_content {
        let why = "The account was suspended.";
        sqlx::query("UPDATE stories SET hidden_at = $2, hidden_reason = $3 WHERE author_id = $1 AND hidden_at IS NULL")
            .bind(user_id)
            .bind(at)
            .bind(why)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE comments SET hidden_at = $2, hidden_reason = $3 WHERE author_id = $1 AND hidden_at IS NULL")
            .bind(user_id)
            .bind(at)
            .bind(why)
            .execute(&mut *conn)
            .await?;
    }
    Ok((id, at))
}

/// Lifts `user_id`'s ban (expired or not); unhides what the ban hid. None: no unlifted ban.
pub async fn lift_ban(conn: &mut PgConnection, user_id: i64, by: i64) -> Result<Option<ActiveBan>, sqlx::Error> {
    let ban: Option<ActiveBan> = sqlx::query_as(
        "UPDATE bans SET lifted_at = now(), lifted_by = $2 WHERE user_id = $1 AND lifted_at IS NULL
         RETURNING id, reason, until, created_at, hid_content",
    )
    .bind(user_id)
    .bind(by)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(b) = &ban
        && b.hid_content
    {
        for sql in [
            "UPDATE stories SET hidden_at = NULL, hidden_reason = '' WHERE author_id = $1 AND hidden_at = $2",
            "UPDATE comments SET hidden_at = NULL, hidden_reason = '' WHERE author_id = $1 AND hidden_at = $2",
        ] {
            sqlx::query(sql).bind(user_id).bind(b.created_at).execute(&mut *conn).await?;
        }
    }
    Ok(ban)
}
