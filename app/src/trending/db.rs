//! The `trending` table: this module owns its SQL. It reads the social area's and the
//! stats area's tables (likes, comments, follows, chapter_readers_daily) set-based, in
//! one statement.

use sqlx::{PgConnection, PgExecutor};

use crate::stories::db::{StoryRow, story_select};

/// Weights and decay, as `trending`'s module doc explains them.
pub const WEIGHT_READ: f64 = 1.0;
pub const WEIGHT_FOLLOW: f64 = 4.0;
pub const WEIGHT_LIKE: f64 = 3.0;
pub const WEIGHT_COMMENT: f64 = 5.0;
pub const HALF_LIFE_HOURS: f64 = 24.0;
pub const WINDOW_DAYS: i32 = 7;

/// The score of every public story with recent activity, computed in one statement.
const SCORES_SQL: &str = concat!(
    "WITH pub AS (SELECT s.id, s.author_id FROM stories s WHERE ",
    crate::public_story!("s"),
    "),
     per_author AS (SELECT author_id, count(*) AS n FROM pub GROUP BY author_id),
     events AS (
         -- a reader's chapter-day is known to the day: counted at its middle
         SELECT r.story_id, $1::float8 AS w, ((r.day + interval '12 hours') AT TIME ZONE 'UTC') AS at
         FROM chapter_readers_daily r WHERE r.day >= (now() AT TIME ZONE 'UTC')::date - $5::int
         UNION ALL
         SELECT l.story_id, $3::float8, l.created_at FROM likes l WHERE l.created_at > now() - make_interval(days => $5::int)
         UNION ALL
         SELECT c.story_id, $4::float8, c.created_at FROM comments c JOIN pub p ON p.id = c.story_id
         WHERE c.created_at > now() - make_interval(days => $5::int) AND c.deleted_at IS NULL AND c.author_id <> p.author_id
         UNION ALL
         SELECT p.id, $2::float8 / pa.n, f.created_at FROM follows f
         JOIN pub p ON p.author_id = f.followee_id JOIN per_author pa ON pa.author_id = p.author_id
         WHERE f.created_at > now() - make_interval(days => $5::int)
     )
     INSERT INTO trending (story_id, score, computed_at)
     SELECT e.story_id, sum(e.w * power(0.5, greatest(extract(epoch FROM now() - e.at), 0) / ($6::float8 * 3600))), now()
     FROM events e JOIN pub p ON p.id = e.story_id
     WHERE e.at > now() - make_interval(days => $5::int)
     GROUP BY e.story_id"
);

/// Replaces the table's contents with fresh scores, in the caller's transaction
/// (`conn` = `&mut *tx`): readers see the old ranking until the new one commits. A
/// transaction-level advisory lock makes a second recompute (should two ever run at
/// once) wait instead of colliding on the primary key. Returns the stories scored.
pub async fn recompute(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('quire:trending'))").execute(&mut *conn).await?;
    sqlx::query("DELETE FROM trending").execute(&mut *conn).await?;
    let done = sqlx::query(SCORES_SQL)
        .bind(WEIGHT_READ)
        .bind(WEIGHT_FOLLOW)
        .bind(WEIGHT_LIKE)
        .bind(WEIGHT_COMMENT)
        .bind(WINDOW_DAYS)
        .bind(HALF_LIFE_HOURS)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// The `limit` highest-scoring stories that are public now (one hidden since the last
/// recompute drops out at once), best first: one statement.
pub async fn top(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<StoryRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        story_select!(),
        "JOIN trending t ON t.story_id = s.id WHERE ",
        crate::public_story!("s"),
        " ORDER BY t.score DESC, s.id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db)
    .await
}
