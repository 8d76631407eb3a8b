//! Reads of `live_events`: what the broker fetches on a wake-up, and what a resuming
//! stream replays. All of them run on the primary: an event is announced by NOTIFY the
//! moment it commits there, and a replica may not have it yet.

use sqlx::PgExecutor;

/// One row of `live_events`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub channel: String,
    pub event: String,
    pub data: String,
}

/// The highest id so far (0 for an empty table): where a fresh broker starts.
pub async fn latest_id(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM live_events").fetch_one(db).await
}

/// Rows after `after`, plus those of `gaps` that have committed since (ids below `after`
/// that were still in flight when a later id was read), oldest first, at most `limit`.
pub async fn new_since(
    db: impl PgExecutor<'_>,
    after: i64,
    gaps: &[i64],
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, channel, event, data FROM live_events WHERE id > $1 OR id = ANY($2) ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(gaps)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What a stream resuming after `after` missed on `channels`, oldest first: at most
/// `limit` rows (the caller asks for one more than it replays to tell "more were missed").
pub async fn replay(
    db: impl PgExecutor<'_>,
    channels: &[String],
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, channel, event, data FROM live_events WHERE channel = ANY($1) AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(channels)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The oldest id still kept (None when the table is empty): a resume point before it may
/// have missed purged events.
pub async fn oldest_id(db: impl PgExecutor<'_>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(id) FROM live_events").fetch_one(db).await
}
