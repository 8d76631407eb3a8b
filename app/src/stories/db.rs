//! The `stories`, `chapters`, `tags` and `story_tags` tables: this module owns their SQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

/// Where a story is in its life. Stored as text (the `stories_status_valid` CHECK lists
/// the same values); templates see the lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum StoryStatus {
    /// Only its author sees it.
    Draft,
    Published,
}

impl StoryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StoryStatus::Draft => "draft",
            StoryStatus::Published => "published",
        }
    }

    /// From a form's `status` field.
    pub fn parse(s: &str) -> Option<StoryStatus> {
        match s {
            "draft" => Some(StoryStatus::Draft),
            "published" => Some(StoryStatus::Published),
            _ => None,
        }
    }
}

/// A story as listings and the story page show it (one row: author and cover joined).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoryRow {
    pub id: i64,
    pub author_id: i64,
    pub author_username: String,
    pub author_display_name: String,
    pub title: String,
    pub summary: String,
    pub status: StoryStatus,
    pub published_at: Option<DateTime<Utc>>,
    pub cover_id: Option<i64>,
    pub chapter_count: i32,
    pub word_count: i32,
    pub created_at: DateTime<Utc>,
    pub tags: Vec<String>,
    /// Counters kept by the social area (`social::db`) in the same transaction as the rows.
    pub like_count: i32,
    pub comment_count: i32,
    /// Set when a moderator hid the story: only its author and staff see it then, with
    /// `hidden_reason`.
    #[serde(default)]
    pub hidden_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub hidden_reason: String,
    /// The cover's media row, joined in (templates get its figure via `story_value`).
    #[serde(skip)]
    #[sqlx(json(nullable))]
    pub cover: Option<crate::media::Media>,
}

macro_rules! story_select {
    () => {
        concat!(
            "SELECT s.id, s.author_id, u.username AS author_username, u.display_name AS author_display_name,
                s.title, s.summary, s.status, s.published_at, s.cover_id, s.chapter_count, s.word_count,
                s.created_at, s.like_count, s.comment_count, s.hidden_at, s.hidden_reason,
                coalesce(string_to_array(nullif(s.tags_text, ''), ' '), ARRAY[]::text[]) AS tags,
                ",
            crate::media_json!("s.cover_id"),
            " AS cover
         FROM stories s JOIN users u ON u.id = s.author_id "
        )
    };
}
/// Other areas' listings of stories (`social::db`) select the same columns.
pub(crate) use story_select;

/// The one SQL predicate for "anyone may see this story": published and not hidden by a
/// moderator. `public_story!("s")` for a story aliased `s`; search, feeds, the sitemap,
/// trending and the listings all use it, so a hidden story drops out of all at once.
#[macro_export]
macro_rules! public_story {
    ($s:literal) => {
        concat!("(", $s, ".status = 'published' AND ", $s, ".hidden_at IS NULL)")
    };
}

/// Keyset position in a newest-first listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub published_at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.published_at.timestamp_micros(), self.id)
    }

    /// None for anything malformed: the listing then starts at the top.
    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        Some(Cursor { published_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?, id: id.parse().ok()? })
    }

    pub fn of(story: &StoryRow) -> Option<Cursor> {
        Some(Cursor { published_at: story.published_at?, id: story.id })
    }
}

pub const PAGE_SIZE: i64 = 20;

/// Which published stories a listing shows.
#[derive(Debug, Clone, Copy)]
pub enum Listing<'a> {
    All,
    Author(i64),
    Tag(&'a str),
}

/// One page of published stories, newest first, after `cursor`. Fetches one extra row to
/// know whether there is a next page.
pub async fn published(db: impl PgExecutor<'_>, listing: Listing<'_>, cursor: Option<Cursor>) -> Result<(Vec<StoryRow>, Option<Cursor>), sqlx::Error> {
    // One statement per shape rather than one with `($n IS NULL OR …)` switches: sqlx
    // prepares statements, and after five runs PostgreSQL may keep a generic plan, which
    // for the switched form estimated 9 rows and joined users by a materialised
    // sequential scan — 12 ms a home page instead of 0.1 ms. $1 is the limit; $2 the
    // author or tag; the cursor, when there is one, comes last.
    macro_rules! listing {
        ($filter:literal, $after:literal) => {
            concat!(
                story_select!(),
                "WHERE ",
                crate::public_story!("s"),
                $filter,
                $after,
                " ORDER BY s.published_at DESC, s.id DESC LIMIT $1"
            )
        };
    }
    let sql = match (listing, cursor.is_some()) {
        (Listing::All, false) => listing!("", ""),
        (Listing::All, true) => listing!("", " AND (s.published_at, s.id) < ($2, $3)"),
        (Listing::Author(_), false) => listing!(" AND s.author_id = $2", ""),
        (Listing::Author(_), true) => listing!(" AND s.author_id = $2", " AND (s.published_at, s.id) < ($3, $4)"),
        (Listing::Tag(_), false) => listing!(
            " AND EXISTS (SELECT 1 FROM story_tags st JOIN tags t ON t.id = st.tag_id WHERE st.story_id = s.id AND t.name = $2)",
            ""
        ),
        (Listing::Tag(_), true) => listing!(
            " AND EXISTS (SELECT 1 FROM story_tags st JOIN tags t ON t.id = st.tag_id WHERE st.story_id = s.id AND t.name = $2)",
            " AND (s.published_at, s.id) < ($3, $4)"
        ),
    };
    let mut query = sqlx::query_as(sql).bind(PAGE_SIZE + 1);
    query = match listing {
        Listing::All => query,
        Listing::Author(id) => query.bind(id),
        Listing::Tag(tag) => query.bind(tag),
    };
    if let Some(c) = cursor {
        query = query.bind(c.published_at).bind(c.id);
    }
    let mut rows: Vec<StoryRow> = query.fetch_all(db).await?;
    let next = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().and_then(Cursor::of)
    } else {
        None
    };
    Ok((rows, next))
}

pub async fn drafts_of(db: impl PgExecutor<'_>, author_id: i64) -> Result<Vec<StoryRow>, sqlx::Error> {
    sqlx::query_as(concat!(story_select!(), "WHERE s.author_id = $1 AND s.status = 'draft' ORDER BY s.created_at DESC LIMIT 100"))
        .bind(author_id)
        .fetch_all(db)
        .await
}

pub async fn find(db: impl PgExecutor<'_>, id: i64) -> Result<Option<StoryRow>, sqlx::Error> {
    sqlx::query_as(concat!(story_select!(), "WHERE s.id = $1")).bind(id).fetch_optional(db).await
}

pub struct NewStory<'a> {
    pub author_id: i64,
    pub title: &'a str,
    pub summary: &'a str,
    pub cover_id: Option<i64>,
}

pub async fn insert(conn: &mut PgConnection, new: &NewStory<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO stories (author_id, title, summary, cover_id) VALUES ($1, $2, $3, $4) RETURNING id")
        .bind(new.author_id)
        .bind(new.title)
        .bind(new.summary)
        .bind(new.cover_id)
        .fetch_one(conn)
        .await
}

pub struct StoryUpdate<'a> {
    pub title: &'a str,
    pub summary: &'a str,
    pub publish: bool,
    pub cover_id: Option<i64>,
}

/// Saves the edit form. Publishing keeps the first publication date; going back to
/// draft clears it.
pub async fn update(conn: &mut PgConnection, id: i64, u: &StoryUpdate<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stories SET title = $2, summary = $3,
            status = CASE WHEN $4 THEN 'published' ELSE 'draft' END,
            published_at = CASE WHEN $4 THEN coalesce(published_at, now()) ELSE NULL END,
            -- publishing a story that has chapters puts it among its followers' new chapters
            last_chapter_at = CASE WHEN $4 AND status = 'draft' AND chapter_count > 0 THEN now() ELSE last_chapter_at END,
            cover_id = coalesce($5, cover_id),
            updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(u.title)
    .bind(u.summary)
    .bind(u.publish)
    .bind(u.cover_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the story's tags (already normalised) in two statements, whatever their number.
/// The first also sets `stories.tags_text`, the copy of the names the search index reads
/// (a generated column cannot see story_tags).
pub async fn set_tags(conn: &mut PgConnection, story_id: i64, tags: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH gone AS (DELETE FROM story_tags WHERE story_id = $1)
         UPDATE stories SET tags_text = array_to_string(ARRAY(SELECT DISTINCT unnest($2::text[]) ORDER BY 1), ' ') WHERE id = $1",
    )
    .bind(story_id)
    .bind(tags)
    .execute(&mut *conn)
    .await?;
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH new AS (
             INSERT INTO tags (name) SELECT unnest($2::text[]) ON CONFLICT (name) DO NOTHING RETURNING id
         )
         INSERT INTO story_tags (story_id, tag_id)
         SELECT $1, id FROM new UNION SELECT $1, id FROM tags WHERE name = ANY($2)",
    )
    .bind(story_id)
    .bind(tags)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ChapterSummary {
    pub number: i32,
    pub title: String,
    pub word_count: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct PageRow {
    #[sqlx(flatten)]
    story: StoryRow,
    #[sqlx(json)]
    chapters: Vec<ChapterSummary>,
}

/// The story page's statement (`$1`: the story id). Public so bench/load's database
/// ceiling (pgbench) runs exactly what the page runs.
pub const PAGE_SQL: &str = concat!(
    "SELECT p.*,
            (SELECT coalesce(jsonb_agg(jsonb_build_object('number', c.number, 'title', c.title,
                      'word_count', c.word_count, 'created_at', c.created_at) ORDER BY c.number), '[]')
             FROM chapters c WHERE c.story_id = p.id) AS chapters
     FROM (",
    story_select!(),
    "WHERE s.id = $1) p"
);

/// Everything the story page shows — story, author, tags, cover, table of contents — in
/// one statement: round trips, not rows, bound this page's throughput (bench/load).
pub async fn page(db: impl PgExecutor<'_>, id: i64) -> Result<Option<(StoryRow, Vec<ChapterSummary>)>, sqlx::Error> {
    let row: Option<PageRow> = sqlx::query_as(PAGE_SQL)
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.story, r.chapters)))
}

pub async fn chapters_of(db: impl PgExecutor<'_>, story_id: i64) -> Result<Vec<ChapterSummary>, sqlx::Error> {
    sqlx::query_as("SELECT number, title, word_count, created_at FROM chapters WHERE story_id = $1 ORDER BY number")
        .bind(story_id)
        .fetch_all(db)
        .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Chapter {
    pub number: i32,
    pub title: String,
    pub body_html: String,
    pub word_count: i32,
    pub created_at: DateTime<Utc>,
}

pub async fn chapter(db: impl PgExecutor<'_>, story_id: i64, number: i32) -> Result<Option<Chapter>, sqlx::Error> {
    sqlx::query_as("SELECT number, title, body_html, word_count, created_at FROM chapters WHERE story_id = $1 AND number = $2")
        .bind(story_id)
        .bind(number)
        .fetch_optional(db)
        .await
}

pub struct NewChapter<'a> {
    pub title: &'a str,
    pub body_markdown: &'a str,
    pub body_html: &'a str,
    pub word_count: i32,
}

/// Appends a chapter. The story row is locked first, so two concurrent "add chapter"
/// requests are numbered 1, 2 — never a gap, never a duplicate. Returns its number.
pub async fn add_chapter(conn: &mut PgConnection, story_id: i64, c: &NewChapter<'_>) -> Result<i32, sqlx::Error> {
    let number: i32 = sqlx::query_scalar("SELECT chapter_count + 1 FROM stories WHERE id = $1 FOR UPDATE")
        .bind(story_id)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(story_id)
        .bind(number)
        .bind(c.title)
        .bind(c.body_markdown)
        .bind(c.body_html)
        .bind(c.word_count)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE stories SET chapter_count = $2, word_count = word_count + $3, last_chapter_at = now(), updated_at = now() WHERE id = $1")
        .bind(story_id)
        .bind(number)
        .bind(c.word_count)
        .execute(conn)
        .await?;
    Ok(number)
}

// ---- account deletion ---------------------------------------------------------------

/// Deletes every story of `author_id`, drafts included; chapters, tags, likes, comments,
/// saves, reading progress, statistics and trending rows go with them (cascades).
/// Returns how many stories went.
pub async fn delete_all_of(conn: &mut PgConnection, author_id: i64) -> Result<i64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM stories WHERE author_id = $1").bind(author_id).execute(conn).await?;
    Ok(r.rows_affected() as i64)
}

/// Anonymises `author_id`'s stories: drafts (which nobody but their author could ever
/// see) are deleted, the published ones are attributed to `to` (the `deleted_user`
/// account) without their cover, which goes with the rest of the author's media.
/// Returns (deleted drafts, stories kept).
pub async fn anonymise_all_of(conn: &mut PgConnection, author_id: i64, to: i64) -> Result<(i64, i64), sqlx::Error> {
    let drafts = sqlx::query("DELETE FROM stories WHERE author_id = $1 AND status = 'draft'")
        .bind(author_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let kept = sqlx::query("UPDATE stories SET author_id = $2, cover_id = NULL, updated_at = now() WHERE author_id = $1")
        .bind(author_id)
        .bind(to)
        .execute(conn)
        .await?
        .rows_affected();
    Ok((drafts as i64, kept as i64))
}
