//! The admin pages' reads across areas (users with their ban state). Changes go through
//! the owning areas (`accounts::users::set_role`, `moderation::db::ban`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::policy::Role;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub email_verified: bool,
    /// The ban in force: its end (None with `banned`: permanent) and reason.
    pub banned: bool,
    pub ban_until: Option<DateTime<Utc>>,
    pub ban_reason: Option<String>,
}

pub const USERS_PAGE: i64 = 50;

/// Users whose username, display name or email contains `q` (all with an empty `q`),
/// newest first, below id `before`; one extra row tells of a next page.
pub async fn users(db: impl PgExecutor<'_>, q: &str, before: Option<i64>) -> Result<Vec<UserRow>, sqlx::Error> {
    let pattern = format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    sqlx::query_as(
        "SELECT u.id, u.username, u.email, u.display_name, u.role, u.created_at,
                u.email_verified_at IS NOT NULL AS email_verified,
                b.id IS NOT NULL AS banned, b.until AS ban_until, b.reason AS ban_reason
         FROM users u
         LEFT JOIN bans b ON b.user_id = u.id AND b.lifted_at IS NULL AND (b.until IS NULL OR b.until > now())
         WHERE ($1 = '%%' OR u.username ILIKE $1 OR u.email ILIKE $1 OR u.display_name ILIKE $1)
           AND ($2::bigint IS NULL OR u.id < $2)
         ORDER BY u.id DESC
         LIMIT $3",
    )
    .bind(pattern)
    .bind(before)
    .bind(USERS_PAGE + 1)
    .fetch_all(db)
    .await
}

/// The figures on /admin: users by role, open reports, active bans.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Summary {
    pub users: i64,
    pub staff: i64,
    pub open_reports: i64,
    pub objects_reported: i64,
    pub active_bans: i64,
    pub hidden_stories: i64,
    pub hidden_comments: i64,
}

pub async fn summary(db: impl PgExecutor<'_>) -> Result<Summary, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users) AS users,
                (SELECT count(*) FROM users WHERE role >= 'moderator') AS staff,
                (SELECT count(*) FROM reports WHERE status = 'open') AS open_reports,
                (SELECT count(*) FROM (SELECT DISTINCT object_kind, object_id FROM reports WHERE status = 'open') o) AS objects_reported,
                (SELECT count(*) FROM bans WHERE lifted_at IS NULL AND (until IS NULL OR until > now())) AS active_bans,
                (SELECT count(*) FROM stories WHERE hidden_at IS NOT NULL) AS hidden_stories,
                (SELECT count(*) FROM comments WHERE hidden_at IS NOT NULL) AS hidden_comments",
    )
    .fetch_one(db)
    .await
}
