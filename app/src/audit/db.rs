//! The `audit_log` table: inserts and the filtered, keyset-paginated listing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use super::Entry;

// Stored text is bounded here, not by the schema: an audit row must never fail to be
// written (and so roll back the action) because a client sent a 10 KB user agent.
use crate::text::prefix_chars as clip;

pub async fn insert(conn: &mut PgConnection, e: &Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_name, action, object_kind, object_id, subject_id, before, after, ip, user_agent, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.origin.actor_id)
    .bind(clip(&e.origin.actor_name, 100))
    .bind(e.action)
    .bind(e.object_kind)
    .bind(clip(&e.object_id, 100))
    .bind(e.subject_id)
    .bind(&e.before)
    .bind(&e.after)
    .bind(clip(&e.origin.ip, 64))
    .bind(clip(&e.origin.user_agent, 512))
    .bind(clip(&e.origin.request_id, 100))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub subject_id: Option<i64>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

/// What the admin page filters by; every field optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    /// Matches the actor's name or the subject's username.
    pub user_id: Option<i64>,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    /// Only rows with an id below this (keyset: the next page).
    pub before_id: Option<i64>,
}

/// Newest first, `limit` rows.
pub async fn list(db: impl PgExecutor<'_>, f: &Filter, limit: i64) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor_id, actor_name, action, object_kind, object_id, subject_id, before, after, ip, user_agent, request_id
         FROM audit_log
         WHERE ($1::text IS NULL OR action = $1)
           AND ($2::bigint IS NULL OR actor_id = $2 OR subject_id = $2)
           AND ($3::text IS NULL OR object_kind = $3)
           AND ($4::text IS NULL OR object_id = $4)
           AND ($5::bigint IS NULL OR id < $5)
         ORDER BY id DESC
         LIMIT $6",
    )
    .bind(&f.action)
    .bind(f.user_id)
    .bind(&f.object_kind)
    .bind(&f.object_id)
    .bind(f.before_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A user's own security events (password, email, sessions, export, role, bans).
pub async fn security_events(db: impl PgExecutor<'_>, user_id: i64, limit: i64) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor_id, actor_name, action, object_kind, object_id, subject_id, before, after, ip, user_agent, request_id
         FROM audit_log
         WHERE subject_id = $1 AND action = ANY($2)
         ORDER BY at DESC, id DESC
         LIMIT $3",
    )
    .bind(user_id)
    .bind(super::actions::SECURITY)
    .bind(limit)
    .fetch_all(db)
    .await
}
