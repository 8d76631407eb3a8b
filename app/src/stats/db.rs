//! The `chapter_views_daily` and `chapter_readers_daily` tables: this module owns their SQL.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgExecutor;

use super::counter::Batch;

/// Kept beyond the page's 90 days, so a day is never cut while someone looks at it and
/// a late purge costs nothing.
pub const RETENTION_MARGIN_DAYS: i64 = 7;

/// Writes a batch in ONE statement: the readers' insert is a data-modifying CTE of the
/// views' upsert. Rows are sorted by key, so two processes flushing at once lock the rows
/// they share in the same order (no deadlock). Views of a story deleted meanwhile are
/// skipped rather than failing the whole batch on the foreign key.
pub async fn flush(db: impl PgExecutor<'_>, batch: &Batch) -> Result<(), sqlx::Error> {
    let (mut vs, mut vc, mut vd, mut vn) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (&(story, chapter, day), &n) in &batch.views {
        vs.push(story);
        vc.push(chapter);
        vd.push(day);
        vn.push(n);
    }
    let (mut rs, mut rc, mut rd, mut rr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &(story, chapter, day, reader) in &batch.readers {
        rs.push(story);
        rc.push(chapter);
        rd.push(day);
        rr.push(reader);
    }
    sqlx::query(
        "WITH new_readers AS (
             INSERT INTO chapter_readers_daily (story_id, chapter_number, day, reader)
             SELECT r.story_id, r.chapter_number, r.day, r.reader
             FROM unnest($5::bigint[], $6::int[], $7::date[], $8::bigint[]) AS r (story_id, chapter_number, day, reader)
             WHERE EXISTS (SELECT 1 FROM stories s WHERE s.id = r.story_id)
             ORDER BY 1, 3, 2, 4
             ON CONFLICT DO NOTHING
         )
         INSERT INTO chapter_views_daily (story_id, chapter_number, day, views)
         SELECT v.story_id, v.chapter_number, v.day, v.views
         FROM unnest($1::bigint[], $2::int[], $3::date[], $4::bigint[]) AS v (story_id, chapter_number, day, views)
         WHERE EXISTS (SELECT 1 FROM stories s WHERE s.id = v.story_id)
         ORDER BY 1, 3, 2
         ON CONFLICT (story_id, day, chapter_number) DO UPDATE SET views = chapter_views_daily.views + EXCLUDED.views",
    )
    .bind(vs)
    .bind(vc)
    .bind(vd)
    .bind(vn)
    .bind(rs)
    .bind(rc)
    .bind(rd)
    .bind(rr)
    .execute(db)
    .await?;
    Ok(())
}

/// One day of a story's statistics.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Day {
    pub day: NaiveDate,
    pub views: i64,
    /// Distinct readers that day, over all chapters.
    pub readers: i64,
    pub likes: i64,
    pub comments: i64,
    /// Distinct readers over the whole window (the same on every row).
    pub window_readers: i64,
}

/// The `days` days ending with `today`, oldest first, every day present (zeros where
/// nothing happened): one statement.
pub async fn daily(db: impl PgExecutor<'_>, story_id: i64, today: NaiveDate, days: i64) -> Result<Vec<Day>, sqlx::Error> {
    sqlx::query_as(
        "WITH days AS (SELECT generate_series($2::date - ($3::int - 1), $2::date, interval '1 day')::date AS day),
              v AS (SELECT day, sum(views)::bigint AS views FROM chapter_views_daily
                    WHERE story_id = $1 AND day > $2::date - $3::int GROUP BY day),
              r AS (SELECT day, count(DISTINCT reader) AS readers FROM chapter_readers_daily
                    WHERE story_id = $1 AND day > $2::date - $3::int GROUP BY day),
              t AS (SELECT count(DISTINCT reader) AS window_readers FROM chapter_readers_daily
                    WHERE story_id = $1 AND day > $2::date - $3::int),
              l AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS likes FROM likes
                    WHERE story_id = $1 AND created_at >= ($2::date - ($3::int - 1))::timestamp AT TIME ZONE 'UTC' GROUP BY 1),
              c AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS comments FROM comments
                    WHERE story_id = $1 AND deleted_at IS NULL
                      AND created_at >= ($2::date - ($3::int - 1))::timestamp AT TIME ZONE 'UTC' GROUP BY 1)
         SELECT days.day, coalesce(v.views, 0)::bigint AS views, coalesce(r.readers, 0)::bigint AS readers,
                coalesce(l.likes, 0)::bigint AS likes, coalesce(c.comments, 0)::bigint AS comments, t.window_readers
         FROM days CROSS JOIN t
         LEFT JOIN v USING (day) LEFT JOIN r USING (day) LEFT JOIN l USING (day) LEFT JOIN c USING (day)
         ORDER BY days.day",
    )
    .bind(story_id)
    .bind(today)
    .bind(days as i32)
    .fetch_all(db)
    .await
}

/// One chapter's totals over the window.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChapterTotals {
    pub number: i32,
    pub title: String,
    pub views: i64,
    pub readers: i64,
}

/// Every chapter of the story with its views and distinct readers since `since`: one
/// statement (aggregates joined to the chapter list, not a query per chapter).
pub async fn per_chapter(db: impl PgExecutor<'_>, story_id: i64, since: NaiveDate) -> Result<Vec<ChapterTotals>, sqlx::Error> {
    sqlx::query_as(
        "WITH v AS (SELECT chapter_number, sum(views)::bigint AS views FROM chapter_views_daily
                    WHERE story_id = $1 AND day >= $2 GROUP BY 1),
              r AS (SELECT chapter_number, count(DISTINCT reader) AS readers FROM chapter_readers_daily
                    WHERE story_id = $1 AND day >= $2 GROUP BY 1)
         SELECT c.number, c.title, coalesce(v.views, 0)::bigint AS views, coalesce(r.readers, 0)::bigint AS readers
         FROM chapters c
         LEFT JOIN v ON v.chapter_number = c.number
         LEFT JOIN r ON r.chapter_number = c.number
         WHERE c.story_id = $1
         ORDER BY c.number",
    )
    .bind(story_id)
    .bind(since)
    .fetch_all(db)
    .await
}

/// Deletes rows older than the window plus the margin; returns (views rows, reader rows).
/// Run by the periodic purge job.
pub async fn purge_old(db: &sqlx::PgPool) -> Result<(u64, u64), sqlx::Error> {
    let keep = (super::WINDOW_DAYS + RETENTION_MARGIN_DAYS) as i32;
    let views = sqlx::query("DELETE FROM chapter_views_daily WHERE day < current_date - $1::int").bind(keep).execute(db).await?;
    let readers = sqlx::query("DELETE FROM chapter_readers_daily WHERE day < current_date - $1::int").bind(keep).execute(db).await?;
    Ok((views.rows_affected(), readers.rows_affected()))
}
