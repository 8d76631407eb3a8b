//! The feeds' and the sitemap's reads. This area owns no table: it reads the stories
//! area's (`stories`, `chapters`, `tags`, `story_tags`) and `users`, always through
//! `crate::public_story!`, one statement per response.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Entries per feed: enough for a reader who checks weekly, small enough to stay cheap.
pub const FEED_ENTRIES: i64 = 50;

/// Whose feed: an author (by username) or a tag.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Author(&'a str),
    Tag(&'a str),
}

/// The author or tag a feed is about, as stored (username, display name; or the tag twice).
#[derive(Debug, Clone)]
pub struct Owner {
    pub name: String,
    pub display_name: String,
    /// The `updated` of an empty feed: the account's creation (the epoch for a tag),
    /// stable so that the empty feed's validators are too.
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub story_id: i64,
    pub story_title: String,
    pub number: i32,
    pub chapter_title: String,
    pub body_html: String,
    /// When readers could first see it: the chapter's creation, or the story's
    /// publication for chapters written while it was a draft.
    pub published: DateTime<Utc>,
    pub author_username: String,
    pub author_display_name: String,
}

/// The owner's columns, and an entry's, all NULL for an empty feed's one row.
#[derive(sqlx::FromRow)]
struct Row {
    owner_name: String,
    owner_display_name: String,
    owner_since: DateTime<Utc>,
    story_id: Option<i64>,
    story_title: Option<String>,
    number: Option<i32>,
    chapter_title: Option<String>,
    body_html: Option<String>,
    published: Option<DateTime<Utc>>,
    author_username: Option<String>,
    author_display_name: Option<String>,
}

impl Row {
    fn entry(self) -> Option<FeedEntry> {
        Some(FeedEntry {
            story_id: self.story_id?,
            story_title: self.story_title?,
            number: self.number?,
            chapter_title: self.chapter_title?,
            body_html: self.body_html?,
            published: self.published?,
            author_username: self.author_username?,
            author_display_name: self.author_display_name?,
        })
    }
}

// Candidate stories first (the newest by their latest chapter or publication, at most
// FEED_ENTRIES: the newest N chapters can come from no more stories than that), then
// their chapters: the sort never sees every chapter of a popular tag. The owner row is
// LEFT JOINed so that one statement tells "unknown" (no row) from "empty" (one row of
// NULL entry columns).
macro_rules! feed_sql {
    ($owner:literal, $stories:literal) => {
        concat!(
            "WITH o AS (", $owner, "),
             st AS (SELECT s.id, s.title, s.published_at, s.author_id FROM stories s, o
                    WHERE ", crate::public_story!("s"), " AND s.chapter_count > 0 AND ", $stories, "
                    ORDER BY greatest(s.last_chapter_at, s.published_at) DESC, s.id DESC LIMIT $2)
             SELECT o.name AS owner_name, o.display_name AS owner_display_name, o.since AS owner_since, e.*
             FROM o LEFT JOIN LATERAL (
                 SELECT st.id AS story_id, st.title AS story_title, c.number, c.title AS chapter_title, c.body_html,
                        greatest(c.created_at, st.published_at) AS published,
                        u.username AS author_username, u.display_name AS author_display_name
                 FROM st JOIN chapters c ON c.story_id = st.id JOIN users u ON u.id = st.author_id
                 ORDER BY greatest(c.created_at, st.published_at) DESC, st.id DESC, c.number DESC LIMIT $2
             ) e ON true
             ORDER BY e.published DESC, e.story_id DESC, e.number DESC"
        )
    };
}

const AUTHOR_FEED: &str = feed_sql!(
    "SELECT id, username AS name, display_name, created_at AS since FROM users WHERE lower(username) = lower($1)",
    "s.author_id = o.id"
);
const TAG_FEED: &str = feed_sql!(
    "SELECT id, name, name AS display_name, to_timestamp(0) AS since FROM tags WHERE name = $1",
    "EXISTS (SELECT 1 FROM story_tags x WHERE x.story_id = s.id AND x.tag_id = o.id)"
);

/// The newest chapters of `source`'s public stories, newest first; None when there is
/// no such author or tag.
pub async fn feed(db: impl PgExecutor<'_>, source: Source<'_>) -> Result<Option<(Owner, Vec<FeedEntry>)>, sqlx::Error> {
    let (sql, key) = match source {
        Source::Author(name) => (AUTHOR_FEED, name),
        Source::Tag(tag) => (TAG_FEED, tag),
    };
    let rows: Vec<Row> = sqlx::query_as(sql).bind(key).bind(FEED_ENTRIES).fetch_all(db).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let owner = Owner { name: first.owner_name.clone(), display_name: first.owner_display_name.clone(), since: first.owner_since };
    Ok(Some((owner, rows.into_iter().filter_map(Row::entry).collect())))
}

/// How many URLs each sitemap section has: `site` (home, profiles, tags) and `stories`
/// (each public story and its chapters).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct SitemapSizes {
    pub site: i64,
    pub stories: i64,
}

pub async fn sitemap_sizes(db: impl PgExecutor<'_>) -> Result<SitemapSizes, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT 1 + (SELECT count(DISTINCT s.author_id) FROM stories s WHERE ", crate::public_story!("s"), ")
                  + (SELECT count(DISTINCT x.tag_id) FROM story_tags x JOIN stories s ON s.id = x.story_id
                     WHERE ", crate::public_story!("s"), ") AS site,
                coalesce((SELECT sum(1 + s.chapter_count) FROM stories s WHERE ", crate::public_story!("s"), "), 0)::bigint AS stories"
    ))
    .fetch_one(db)
    .await
}

/// A row of the `site` section: kind 0 is the home page, 1 a profile (`key` the
/// username), 2 a tag page (`key` the tag).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteUrl {
    pub kind: i32,
    pub key: String,
    pub lastmod: Option<DateTime<Utc>>,
}

/// `limit` rows of the `site` section from `offset`, in a stable order.
pub async fn site_urls(db: impl PgExecutor<'_>, offset: i64, limit: i64) -> Result<Vec<SiteUrl>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT kind, key, lastmod FROM (
             SELECT 0 AS kind, ''::text AS key, max(greatest(s.published_at, s.last_chapter_at)) AS lastmod
             FROM stories s WHERE ", crate::public_story!("s"), "
             UNION ALL
             SELECT 1, u.username, max(greatest(s.published_at, s.last_chapter_at))
             FROM stories s JOIN users u ON u.id = s.author_id WHERE ", crate::public_story!("s"), " GROUP BY u.username
             UNION ALL
             SELECT 2, t.name, max(greatest(s.published_at, s.last_chapter_at))
             FROM stories s JOIN story_tags x ON x.story_id = s.id JOIN tags t ON t.id = x.tag_id
             WHERE ", crate::public_story!("s"), " GROUP BY t.name
         ) u ORDER BY kind, key OFFSET $1 LIMIT $2"
    ))
    .bind(offset)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A row of the `stories` section: chapter 0 stands for the story page itself.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoryUrl {
    pub story_id: i64,
    pub number: i32,
    pub lastmod: DateTime<Utc>,
}

/// `limit` rows of the `stories` section from `offset`: the rows are numbered from the
/// stories' `chapter_count` (no chapter is read to page), chapters joined for the page only.
pub async fn story_urls(db: impl PgExecutor<'_>, offset: i64, limit: i64) -> Result<Vec<StoryUrl>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT r.story_id, r.number,
                CASE WHEN r.number = 0 THEN greatest(s.updated_at, s.published_at)
                     ELSE greatest(c.created_at, s.published_at) END AS lastmod
         FROM (SELECT s.id AS story_id, n.number FROM stories s CROSS JOIN LATERAL generate_series(0, s.chapter_count) AS n(number)
               WHERE ", crate::public_story!("s"), " ORDER BY s.id, n.number OFFSET $1 LIMIT $2) r
         JOIN stories s ON s.id = r.story_id
         LEFT JOIN chapters c ON c.story_id = r.story_id AND c.number = r.number
         ORDER BY r.story_id, r.number"
    ))
    .bind(offset)
    .bind(limit)
    .fetch_all(db)
    .await
}
