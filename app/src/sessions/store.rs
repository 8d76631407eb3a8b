//! The `sessions` table: this module owns its SQL. Handlers go through
//! `SessionStore` (in `sessions`), which keeps the lookup cache in step.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use super::CurrentUser;
use crate::{db::Lsn, tokens};

pub const IDLE_DAYS: i64 = 14;
pub const ABSOLUTE_DAYS: i64 = 90;

/// Creates a session row for `user_id` and returns the raw token for the cookie.
pub async fn create(conn: impl PgExecutor<'_>, user_id: i64, user_agent: &str, ip: &str) -> Result<String, sqlx::Error> {
    let token = tokens::random_token();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, expires_at, user_agent, ip)
         VALUES ($1, $2, now() + make_interval(days => $3), $4, $5)",
    )
    .bind(tokens::hash_token(&token))
    .bind(user_id)
    .bind(ABSOLUTE_DAYS as i32)
    .bind(truncate(user_agent, 512))
    .bind(truncate(ip, 64))
    .execute(conn)
    .await?;
    Ok(token)
}

#[derive(sqlx::FromRow)]
struct Row {
    public_id: i64,
    last_seen_at: DateTime<Utc>,
    read_lsn: i64,
    #[sqlx(flatten)]
    user: CurrentUser,
}

/// A live session as the middleware needs it.
#[derive(Debug, Clone)]
pub struct Found {
    pub public_id: i64,
    pub user: CurrentUser,
    /// WAL position of this session's last write (0: none yet).
    pub read_lsn: Lsn,
}

/// The live session for `token`, if any; touches `last_seen_at` when it is over an
/// hour old (one small write per session per hour, not one per request).
///
/// Always on the primary: a session created a moment ago (login on another web process)
/// must be found, and a replica may not have it yet.
pub async fn lookup(db: &sqlx::PgPool, token: &str) -> Result<Option<Found>, sqlx::Error> {
    if !tokens::is_well_formed(token) {
        return Ok(None);
    }
    let hash = tokens::hash_token(token);
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.public_id, s.last_seen_at, s.read_lsn, u.id, u.username, u.display_name, u.email, u.role,
                u.email_verified_at IS NOT NULL AS email_verified,
                -- notifications::db::UNREAD_CAP: bounded on the partial index, O(1) per lookup
                (SELECT count(*) FROM (SELECT 1 FROM notifications n WHERE n.user_id = u.id AND n.read_at IS NULL
                                       LIMIT 100) unread) AS unread
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now()
           AND s.last_seen_at > now() - make_interval(days => $2)",
    )
    .bind(&hash)
    .bind(IDLE_DAYS as i32)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if Utc::now() - row.last_seen_at > chrono::Duration::hours(1) {
        sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1")
            .bind(&hash)
            .execute(db)
            .await?;
    }
    Ok(Some(Found { public_id: row.public_id, user: row.user, read_lsn: row.read_lsn.max(0) as Lsn }))
}

/// Records, after a request of this session wrote, the primary's WAL position (which is
/// past that request's commits) as the session's read-your-writes floor. One statement:
/// the position is read by the UPDATE itself. False when no such session exists.
pub async fn remember_write_in_session(db: &sqlx::PgPool, token: &str) -> Result<bool, sqlx::Error> {
    if !tokens::is_well_formed(token) {
        return Ok(false);
    }
    let r = sqlx::query(
        "UPDATE sessions SET read_lsn = greatest(read_lsn, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint)
         WHERE id_hash = $1",
    )
    .bind(tokens::hash_token(token))
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes the session of `token`; its user, if there was one.
pub async fn delete(db: impl PgExecutor<'_>, token: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("DELETE FROM sessions WHERE id_hash = $1 RETURNING user_id")
        .bind(tokens::hash_token(token))
        .fetch_optional(db)
        .await
}

pub async fn delete_all_for_user(conn: &mut PgConnection, user_id: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}

/// Deletes every session of `user_id` but the one with public id `keep` (the device
/// that asked, after a password change).
pub async fn delete_others_for_user(conn: &mut PgConnection, user_id: i64, keep: Option<i64>) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND public_id IS DISTINCT FROM $2")
        .bind(user_id)
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SessionInfo {
    pub id: i64,
    pub user_agent: String,
    pub ip: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn list_for_user(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<SessionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT public_id AS id, user_agent, ip, created_at, last_seen_at FROM sessions
         WHERE user_id = $1 AND expires_at > now() AND last_seen_at > now() - make_interval(days => $2)
         ORDER BY last_seen_at DESC",
    )
    .bind(user_id)
    .bind(IDLE_DAYS as i32)
    .fetch_all(db)
    .await
}

/// Ends one of the user's sessions; false when no such session belongs to the user.
pub async fn revoke(db: impl PgExecutor<'_>, user_id: i64, public_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND public_id = $2")
        .bind(user_id)
        .bind(public_id)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// `revoke`, returning the session that ended.
pub async fn revoke_returning(conn: &mut PgConnection, user_id: i64, public_id: i64) -> Result<Option<SessionInfo>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM sessions WHERE user_id = $1 AND public_id = $2
         RETURNING public_id AS id, user_agent, ip, created_at, last_seen_at",
    )
    .bind(user_id)
    .bind(public_id)
    .fetch_optional(conn)
    .await
}

pub async fn purge_expired(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(days => $1)",
    )
    .bind(IDLE_DAYS as i32)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_short_text_and_cuts_on_a_character_boundary() {
        assert_eq!(truncate("Firefox", 10), "Firefox");
        assert_eq!(truncate("Firefox", 7), "Firefox", "exactly the limit is kept whole");
        assert_eq!(truncate("Firefox", 4), "Fire");
        assert_eq!(truncate("", 4), "");
        // "é" is two bytes: a cut inside it steps back to the boundary before it.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }
}
