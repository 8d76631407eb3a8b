//! The `follows`, `likes`, `comments`, `saves` and `reading_progress` tables, and the
//! counter columns they keep (`users.follower_count`, `users.following_count`,
//! `stories.like_count`, `stories.comment_count`): every counter changes in the same
//! statement or transaction as the row it counts, and only when that row really changed,
//! so it stays exact under concurrency (see the 200-request test in tests/social.rs).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::stories::db::{Cursor, StoryRow, StoryStatus, story_select};

pub const PEOPLE_PAGE: i64 = 30;
pub const COMMENTS_PAGE: i64 = 20;
pub const READING_LIST_PAGE: i64 = 20;
pub const CONTINUE_READING: i64 = 6;
pub const FOLLOWED_UPDATES: i64 = 10;

// ---- the story an action is about ---------------------------------------------------

/// What a like, save or comment needs to know about its story, read on the primary.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    pub id: i64,
    pub author_id: i64,
    pub status: StoryStatus,
    pub like_count: i32,
    pub hidden: bool,
}

pub async fn target(db: impl PgExecutor<'_>, story_id: i64) -> Result<Option<Target>, sqlx::Error> {
    sqlx::query_as("SELECT id, author_id, status, like_count, hidden_at IS NOT NULL AS hidden FROM stories WHERE id = $1")
        .bind(story_id)
        .fetch_optional(db)
        .await
}

// ---- follows ------------------------------------------------------------------------

/// Follows; true when a row was inserted (false: already following). Both users' rows
/// are locked in id order first, so A following B while B follows A cannot deadlock.
pub async fn follow(conn: &mut PgConnection, follower_id: i64, followee_id: i64) -> Result<bool, sqlx::Error> {
    lock_users(conn, follower_id, followee_id).await?;
    let inserted = sqlx::query("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(follower_id)
        .bind(followee_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    if inserted {
        adjust_follow_counts(conn, follower_id, followee_id, 1).await?;
    }
    Ok(inserted)
}

/// Unfollows; true when a row was deleted.
pub async fn unfollow(conn: &mut PgConnection, follower_id: i64, followee_id: i64) -> Result<bool, sqlx::Error> {
    lock_users(conn, follower_id, followee_id).await?;
    let deleted = sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
        .bind(follower_id)
        .bind(followee_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    if deleted {
        adjust_follow_counts(conn, follower_id, followee_id, -1).await?;
    }
    Ok(deleted)
}

async fn lock_users(conn: &mut PgConnection, a: i64, b: i64) -> Result<(), sqlx::Error> {
    // NO KEY UPDATE: what the counter UPDATE takes anyway; it does not block the foreign
    // key checks (KEY SHARE) of other follows of these users.
    sqlx::query("SELECT id FROM users WHERE id IN ($1, $2) ORDER BY id FOR NO KEY UPDATE")
        .bind(a)
        .bind(b)
        .execute(conn)
        .await?;
    Ok(())
}

async fn adjust_follow_counts(conn: &mut PgConnection, follower_id: i64, followee_id: i64, by: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET
            following_count = following_count + CASE WHEN id = $1 THEN $3 ELSE 0 END,
            follower_count = follower_count + CASE WHEN id = $2 THEN $3 ELSE 0 END
         WHERE id IN ($1, $2)",
    )
    .bind(follower_id)
    .bind(followee_id)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn is_following(db: impl PgExecutor<'_>, follower_id: i64, followee_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2)")
        .bind(follower_id)
        .bind(followee_id)
        .fetch_one(db)
        .await
}

/// Someone in a followers/following list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Person {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum People {
    /// Who follows this user.
    Followers,
    /// Whom this user follows.
    Following,
}

/// One page of a user's followers or followees, most recent follow first.
pub async fn people(
    db: impl PgExecutor<'_>,
    user_id: i64,
    which: People,
    cursor: Option<Cursor>,
) -> Result<(Vec<Person>, Option<Cursor>), sqlx::Error> {
    // The two lists are the same query with the columns' roles swapped.
    let sql = match which {
        People::Followers => {
            "SELECT u.id, u.username, u.display_name, u.bio, f.created_at AS since
             FROM follows f JOIN users u ON u.id = f.follower_id
             WHERE f.followee_id = $1 AND ($2::timestamptz IS NULL OR (f.created_at, f.follower_id) < ($2, $3))
             ORDER BY f.created_at DESC, f.follower_id DESC LIMIT $4"
        }
        People::Following => {
            "SELECT u.id, u.username, u.display_name, u.bio, f.created_at AS since
             FROM follows f JOIN users u ON u.id = f.followee_id
             WHERE f.follower_id = $1 AND ($2::timestamptz IS NULL OR (f.created_at, f.followee_id) < ($2, $3))
             ORDER BY f.created_at DESC, f.followee_id DESC LIMIT $4"
        }
    };
    let rows: Vec<Person> = sqlx::query_as(sql)
        .bind(user_id)
        .bind(cursor.map(|c| c.published_at))
        .bind(cursor.map(|c| c.id).unwrap_or(0))
        .bind(PEOPLE_PAGE + 1)
        .fetch_all(db)
        .await?;
    Ok(page(rows, PEOPLE_PAGE, |p| Cursor { published_at: p.since, id: p.id }))
}

/// Keeps `size` rows and the cursor of the last one when there was one more.
fn page<T>(mut rows: Vec<T>, size: i64, cursor: impl Fn(&T) -> Cursor) -> (Vec<T>, Option<Cursor>) {
    if rows.len() as i64 > size {
        rows.truncate(size as usize);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

// ---- likes --------------------------------------------------------------------------

/// Likes; the new count when a row was inserted, None when the like already existed.
/// One statement: the counter moves only with an inserted row.
pub async fn like(conn: &mut PgConnection, story_id: i64, user_id: i64) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH ins AS (INSERT INTO likes (story_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING story_id)
         UPDATE stories SET like_count = like_count + 1 WHERE id IN (SELECT story_id FROM ins) RETURNING like_count",
    )
    .bind(story_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Unlikes; the new count when a row was deleted.
pub async fn unlike(conn: &mut PgConnection, story_id: i64, user_id: i64) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH del AS (DELETE FROM likes WHERE story_id = $1 AND user_id = $2 RETURNING story_id)
         UPDATE stories SET like_count = like_count - 1 WHERE id IN (SELECT story_id FROM del) RETURNING like_count",
    )
    .bind(story_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

// ---- saves --------------------------------------------------------------------------

pub async fn save(conn: &mut PgConnection, user_id: i64, story_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("INSERT INTO saves (user_id, story_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(user_id)
        .bind(story_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn unsave(conn: &mut PgConnection, user_id: i64, story_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM saves WHERE user_id = $1 AND story_id = $2").bind(user_id).bind(story_id).execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

#[derive(sqlx::FromRow)]
struct SavedRow {
    #[sqlx(flatten)]
    story: StoryRow,
    saved_at: DateTime<Utc>,
}

/// One page of the reader's list, most recently saved first (published stories only: a
/// story its author took back to draft drops out until it is published again).
pub async fn reading_list(db: impl PgExecutor<'_>, user_id: i64, cursor: Option<Cursor>) -> Result<(Vec<StoryRow>, Option<Cursor>), sqlx::Error> {
    let rows: Vec<SavedRow> = sqlx::query_as(concat!(
        "SELECT p.*, sv.created_at AS saved_at FROM saves sv CROSS JOIN LATERAL (",
        story_select!(),
        "WHERE s.id = sv.story_id AND ", crate::public_story!("s"), ") p
         WHERE sv.user_id = $1 AND ($2::timestamptz IS NULL OR (sv.created_at, sv.story_id) < ($2, $3))
         ORDER BY sv.created_at DESC, sv.story_id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(cursor.map(|c| c.published_at))
    .bind(cursor.map(|c| c.id).unwrap_or(0))
    .bind(READING_LIST_PAGE + 1)
    .fetch_all(db)
    .await?;
    let (rows, next) = page(rows, READING_LIST_PAGE, |r| Cursor { published_at: r.saved_at, id: r.story.id });
    Ok((rows.into_iter().map(|r| r.story).collect(), next))
}

// ---- reading progress ---------------------------------------------------------------

/// Remembers that the reader opened chapter `number`. One statement; an unchanged
/// chapter is rewritten at most every ten minutes (so rereading a page does not write).
/// True when it wrote (a new chapter, or the ten minutes passed).
pub async fn record_progress(db: impl PgExecutor<'_>, user_id: i64, story_id: i64, number: i32) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO reading_progress (user_id, story_id, chapter_number) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, story_id) DO UPDATE SET chapter_number = excluded.chapter_number, updated_at = now()
         WHERE reading_progress.chapter_number <> excluded.chapter_number
            OR reading_progress.updated_at < now() - interval '10 minutes'",
    )
    .bind(user_id)
    .bind(story_id)
    .bind(number)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, sqlx::FromRow)]
pub struct InProgress {
    #[sqlx(flatten)]
    pub story: StoryRow,
    /// The chapter last opened.
    pub progress_chapter: i32,
}

/// "Continue reading": stories the reader has opened, most recent first.
pub async fn continue_reading(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<InProgress>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT p.*, rp.chapter_number AS progress_chapter FROM reading_progress rp CROSS JOIN LATERAL (",
        story_select!(),
        "WHERE s.id = rp.story_id AND ", crate::public_story!("s"), ") p
         WHERE rp.user_id = $1 ORDER BY rp.updated_at DESC LIMIT $2"
    ))
    .bind(user_id)
    .bind(CONTINUE_READING)
    .fetch_all(db)
    .await
}

/// "New chapters from authors you follow": their published stories, latest chapter first.
///
/// The ids are picked first — at most `$2` per followed author, straight off
/// `stories_author_last_chapter_idx` — and only those rows get the full story select (tags,
/// cover). Filtering every story of every followed author and sorting them all made this
/// the logged-in home's slowest statement (bench/load), growing with each author followed.
pub async fn followed_updates(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<StoryRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        story_select!(),
        "JOIN (SELECT l.id FROM follows f
               CROSS JOIN LATERAL (SELECT st.id, st.last_chapter_at FROM stories st
                                   WHERE st.author_id = f.followee_id AND st.status = 'published' AND st.hidden_at IS NULL AND st.last_chapter_at IS NOT NULL
                                   ORDER BY st.last_chapter_at DESC LIMIT $2) l
               WHERE f.follower_id = $1
               ORDER BY l.last_chapter_at DESC, l.id DESC LIMIT $2) pick ON pick.id = s.id
         ORDER BY s.last_chapter_at DESC, s.id DESC"
    ))
    .bind(user_id)
    .bind(FOLLOWED_UPDATES)
    .fetch_all(db)
    .await
}

// ---- the viewer's state on a story page ---------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, sqlx::FromRow)]
pub struct ViewerState {
    pub liked: bool,
    pub saved: bool,
    pub following: bool,
    /// The chapter the viewer last opened, if any.
    pub progress: Option<i32>,
    /// The viewer has a comment on this story that moderators hid: only they (and staff)
    /// see it, so their page is not the one other readers get.
    pub own_hidden: bool,
}

/// Everything about one viewer the story page shows, in one statement.
pub async fn viewer_state(db: impl PgExecutor<'_>, user_id: i64, story_id: i64, author_id: i64) -> Result<ViewerState, sqlx::Error> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM likes WHERE story_id = $2 AND user_id = $1) AS liked,
                EXISTS (SELECT 1 FROM saves WHERE user_id = $1 AND story_id = $2) AS saved,
                EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $3) AS following,
                (SELECT chapter_number FROM reading_progress WHERE user_id = $1 AND story_id = $2) AS progress,
                EXISTS (SELECT 1 FROM comments WHERE story_id = $2 AND author_id = $1 AND hidden_at IS NOT NULL
                                                 AND deleted_at IS NULL) AS own_hidden",
    )
    .bind(user_id)
    .bind(story_id)
    .bind(author_id)
    .fetch_one(db)
    .await
}

// ---- comments -----------------------------------------------------------------------

/// A comment as pages show it. Top-level comments carry their replies (oldest first);
/// a deleted one is a placeholder (`deleted`, empty `body_html`).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Comment {
    pub id: i64,
    pub story_id: i64,
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub author_username: String,
    pub author_display_name: String,
    pub body_html: String,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
    /// Hidden by a moderator; only its author and staff get it (with the reason).
    #[sqlx(default)]
    #[serde(default)]
    pub hidden: bool,
    #[sqlx(default)]
    #[serde(default)]
    pub hidden_reason: String,
    #[sqlx(json)]
    #[serde(default)]
    pub replies: Vec<Comment>,
}

/// Who reads a comment thread: hidden comments are shown to their own author and to
/// staff (marked as hidden), and to nobody else.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reader {
    pub user_id: Option<i64>,
    pub staff: bool,
}

/// One page of a story's top-level comments, newest first, each with all its visible
/// replies: one statement whatever the number of threads. Deleted comments are left out,
/// except a top-level one that still has replies (shown as "comment deleted").
pub async fn comments(
    db: impl PgExecutor<'_>,
    story_id: i64,
    cursor: Option<Cursor>,
    reader: Reader,
) -> Result<(Vec<Comment>, Option<Cursor>), sqlx::Error> {
    // A comment hidden from this reader is treated as deleted: left out, or (a
    // top-level one with visible replies) a placeholder.
    let rows: Vec<Comment> = sqlx::query_as(
        "SELECT c.id, c.story_id, c.parent_id, c.author_id, u.username AS author_username, u.display_name AS author_display_name,
                CASE WHEN c.hidden_at IS NULL OR c.author_id = $5 OR $6 THEN c.body_html ELSE '' END AS body_html,
                c.created_at,
                (c.deleted_at IS NOT NULL OR (c.hidden_at IS NOT NULL AND c.author_id IS DISTINCT FROM $5 AND NOT $6)) AS deleted,
                c.hidden_at IS NOT NULL AS hidden, c.hidden_reason,
                coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'id', r.id, 'story_id', r.story_id, 'parent_id', r.parent_id, 'author_id', r.author_id,
                            'author_username', ru.username, 'author_display_name', ru.display_name,
                            'body_html', r.body_html, 'created_at', r.created_at, 'deleted', false,
                            'hidden', r.hidden_at IS NOT NULL, 'hidden_reason', r.hidden_reason)
                          ORDER BY r.created_at, r.id)
                          FROM comments r JOIN users ru ON ru.id = r.author_id
                          WHERE r.parent_id = c.id AND r.deleted_at IS NULL
                            AND (r.hidden_at IS NULL OR r.author_id = $5 OR $6)), '[]') AS replies
         FROM comments c JOIN users u ON u.id = c.author_id
         WHERE c.story_id = $1 AND c.parent_id IS NULL
           AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2, $3))
           AND ((c.deleted_at IS NULL AND (c.hidden_at IS NULL OR c.author_id = $5 OR $6))
                OR EXISTS (SELECT 1 FROM comments r WHERE r.parent_id = c.id AND r.deleted_at IS NULL
                                                      AND (r.hidden_at IS NULL OR r.author_id = $5 OR $6)))
         ORDER BY c.created_at DESC, c.id DESC LIMIT $4",
    )
    .bind(story_id)
    .bind(cursor.map(|c| c.published_at))
    .bind(cursor.map(|c| c.id).unwrap_or(0))
    .bind(COMMENTS_PAGE + 1)
    .bind(reader.user_id)
    .bind(reader.staff)
    .fetch_all(db)
    .await?;
    Ok(page(rows, COMMENTS_PAGE, |c| Cursor { published_at: c.created_at, id: c.id }))
}

/// What a reply needs to know about the comment it answers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParentRef {
    pub id: i64,
    pub story_id: i64,
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub deleted: bool,
}

pub async fn parent_ref(db: impl PgExecutor<'_>, id: i64) -> Result<Option<ParentRef>, sqlx::Error> {
    sqlx::query_as("SELECT id, story_id, parent_id, author_id, deleted_at IS NOT NULL AS deleted FROM comments WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub struct NewComment<'a> {
    pub story_id: i64,
    pub author_id: i64,
    /// Already the top-level comment (replies are one level deep).
    pub parent_id: Option<i64>,
    pub body_markdown: &'a str,
    pub body_html: &'a str,
}

/// Inserts a comment and counts it on its story, in one statement; returns it as pages
/// show it.
pub async fn insert_comment(conn: &mut PgConnection, c: &NewComment<'_>) -> Result<Comment, sqlx::Error> {
    sqlx::query_as(
        "WITH ins AS (
             INSERT INTO comments (story_id, author_id, parent_id, body_markdown, body_html) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, story_id, parent_id, author_id, body_html, created_at
         ), counted AS (
             UPDATE stories SET comment_count = comment_count + 1 WHERE id = $1
         )
         SELECT ins.id, ins.story_id, ins.parent_id, ins.author_id, u.username AS author_username,
                u.display_name AS author_display_name, ins.body_html, ins.created_at, false AS deleted, '[]'::jsonb AS replies
         FROM ins JOIN users u ON u.id = ins.author_id",
    )
    .bind(c.story_id)
    .bind(c.author_id)
    .bind(c.parent_id)
    .bind(c.body_markdown)
    .bind(c.body_html)
    .fetch_one(conn)
    .await
}

/// Who may delete a comment, and where it is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommentRef {
    pub id: i64,
    pub story_id: i64,
    pub author_id: i64,
    pub story_author_id: i64,
    pub story_status: StoryStatus,
    pub deleted: bool,
}

pub async fn comment_ref(db: impl PgExecutor<'_>, story_id: i64, comment_id: i64) -> Result<Option<CommentRef>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.story_id, c.author_id, s.author_id AS story_author_id, s.status AS story_status,
                c.deleted_at IS NOT NULL AS deleted
         FROM comments c JOIN stories s ON s.id = c.story_id WHERE c.id = $1 AND c.story_id = $2",
    )
    .bind(comment_id)
    .bind(story_id)
    .fetch_optional(db)
    .await
}

/// Soft-deletes a comment: its text is erased, the row stays for its replies' sake, and
/// the story's count drops — only when it was not deleted already. True when it changed.
pub async fn delete_comment(conn: &mut PgConnection, comment_id: i64) -> Result<bool, sqlx::Error> {
    let n: Option<i64> = sqlx::query_scalar(
        "WITH del AS (
             UPDATE comments SET deleted_at = now(), body_markdown = '', body_html = ''
             WHERE id = $1 AND deleted_at IS NULL RETURNING story_id
         )
         UPDATE stories SET comment_count = comment_count - 1 WHERE id IN (SELECT story_id FROM del) RETURNING id",
    )
    .bind(comment_id)
    .fetch_optional(conn)
    .await?;
    Ok(n.is_some())
}

// ---- account deletion ---------------------------------------------------------------

/// What removing an account's social traces changed, for the audit row.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Removed {
    pub likes: i64,
    pub follows: i64,
    pub comments: i64,
}

/// Removes `user_id`'s likes and follows (both ways), keeping every counter they moved
/// exact: each deleted like takes one off its story's `like_count`, each deleted follow
/// one off the other user's `follower_count` or `following_count`. The users concerned
/// are locked first in id order, as `follow` does, so a concurrent follow cannot
/// deadlock with this. Saves and reading progress need no counter: they go with the
/// user row.
pub async fn remove_likes_and_follows(conn: &mut PgConnection, user_id: i64) -> Result<Removed, sqlx::Error> {
    sqlx::query(
        "SELECT id FROM users WHERE id = $1
            OR id IN (SELECT followee_id FROM follows WHERE follower_id = $1)
            OR id IN (SELECT follower_id FROM follows WHERE followee_id = $1)
         ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    let likes: i64 = sqlx::query_scalar(
        "WITH del AS (DELETE FROM likes WHERE user_id = $1 RETURNING story_id),
              counted AS (UPDATE stories SET like_count = like_count - 1 WHERE id IN (SELECT story_id FROM del))
         SELECT count(*) FROM del",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    let follows: i64 = sqlx::query_scalar(
        "WITH del AS (DELETE FROM follows WHERE follower_id = $1 OR followee_id = $1 RETURNING follower_id, followee_id),
              -- per other user, in one pass: a correlated count over `del` per user was
              -- quadratic (10 s for 12,500 follows)
              per_user AS (
                  SELECT id, sum(following)::int AS following, sum(followers)::int AS followers FROM (
                      SELECT follower_id AS id, 1 AS following, 0 AS followers FROM del WHERE follower_id <> $1
                      UNION ALL
                      SELECT followee_id, 0, 1 FROM del WHERE followee_id <> $1) x
                  GROUP BY id),
              counted AS (
                  UPDATE users u SET following_count = u.following_count - p.following, follower_count = u.follower_count - p.followers
                  FROM per_user p WHERE u.id = p.id)
         SELECT count(*) FROM del",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Removed { likes, follows, comments: 0 })
}

/// Deletes `user_id`'s comments the way `delete_comment` deletes one (text erased, the
/// row kept for the replies of others, the story's count down by one for each that was
/// still visible) and hands the rows to `to` (the `deleted_user` account), so the user
/// row can go without cascading into other people's replies. Returns how many were
/// visible.
pub async fn erase_comments_of(conn: &mut PgConnection, user_id: i64, to: i64) -> Result<i64, sqlx::Error> {
    let erased: i64 = sqlx::query_scalar(
        "WITH live AS (SELECT story_id, count(*)::int AS n FROM comments WHERE author_id = $1 AND deleted_at IS NULL GROUP BY story_id),
              counted AS (UPDATE stories s SET comment_count = greatest(s.comment_count - live.n, 0) FROM live WHERE s.id = live.story_id)
         SELECT coalesce(sum(n), 0)::bigint FROM live",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE comments SET author_id = $2, deleted_at = coalesce(deleted_at, now()), body_markdown = '', body_html = ''
         WHERE author_id = $1",
    )
    .bind(user_id)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(erased)
}

/// Attributes `user_id`'s comments, as they are, to `to` (the `deleted_user` account).
pub async fn reassign_comments(conn: &mut PgConnection, user_id: i64, to: i64) -> Result<i64, sqlx::Error> {
    let r = sqlx::query("UPDATE comments SET author_id = $2 WHERE author_id = $1 AND deleted_at IS NULL")
        .bind(user_id)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    // Already deleted ones (placeholders kept for their replies) change hands too.
    sqlx::query("UPDATE comments SET author_id = $2 WHERE author_id = $1").bind(user_id).bind(to).execute(conn).await?;
    Ok(r.rows_affected() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keeps_size_and_points_after_the_last() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        let cur = |i: &i64| Cursor { published_at: t, id: *i };
        let (rows, next) = page(vec![5, 4, 3], 2, cur);
        assert_eq!(rows, vec![5, 4]);
        assert_eq!(next.map(|c| c.id), Some(4));
        let (rows, next) = page(vec![5, 4], 2, cur);
        assert_eq!(rows.len(), 2);
        assert!(next.is_none());
    }
}
