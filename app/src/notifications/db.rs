//! The `notifications` table: this module owns its SQL. Rows are created by the worker's
//! `notify` job through [`create`]; pages read and mark them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use super::prefs::delivery_sql;
use crate::jobs::notify::Activity;

/// Notifications per page.
pub const PAGE_SIZE: i64 = 20;
/// The navigation counts unread notifications up to this many ("99+" beyond).
pub const UNREAD_CAP: i64 = 100;
/// Longest comment excerpt kept (characters).
pub const EXCERPT_MAX: usize = 280;

/// One notification as the page and the mails show it: `data` holds what was true when
/// it was created (`actor_name`, `actor_username`, `story_title`, `excerpt`,
/// `chapter_title`), so showing it needs no join.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    pub actor_id: Option<i64>,
    pub story_id: Option<i64>,
    pub comment_id: Option<i64>,
    pub chapter_number: Option<i32>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, user_id, kind, actor_id, story_id, comment_id, chapter_number, data, created_at, read_at";

impl Notification {
    fn text(&self, key: &str) -> &str {
        self.data.get(key).and_then(|v| v.as_str()).unwrap_or("")
    }

    /// Where it leads (a path on this site).
    pub fn path(&self) -> String {
        match (self.kind.as_str(), self.story_id) {
            ("follow", _) => format!("/u/{}", self.text("actor_username")),
            ("chapter", Some(s)) => format!("/s/{s}/c/{}", self.chapter_number.unwrap_or(1)),
            ("comment" | "reply", Some(s)) => match self.comment_id {
                Some(c) => format!("/s/{s}#comment-{c}"),
                None => format!("/s/{s}"),
            },
            (_, Some(s)) => format!("/s/{s}"),
            (_, None) => "/notifications".into(),
        }
    }

    /// One line saying what happened (mail subjects and the digest's list).
    pub fn summary(&self) -> String {
        let actor = self.text("actor_name");
        let story = self.text("story_title");
        match self.kind.as_str() {
            "follow" => format!("{actor} is now following you"),
            "like" => format!("{actor} liked “{story}”"),
            "comment" => format!("{actor} commented on “{story}”"),
            "reply" => format!("{actor} replied to your comment on “{story}”"),
            "chapter" => format!("New chapter of “{story}” by {actor}: {}", self.text("chapter_title")),
            other => other.to_string(),
        }
    }
}

/// One page of `user_id`'s notifications, newest first, before the id `before`; and the
/// cursor of the next page. One statement (one extra row says whether there is more).
pub async fn page(db: impl PgExecutor<'_>, user_id: i64, before: Option<i64>) -> Result<(Vec<Notification>, Option<i64>), sqlx::Error> {
    let mut rows: Vec<Notification> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(user_id)
    .bind(before)
    .bind(PAGE_SIZE + 1)
    .fetch_all(db)
    .await?;
    let next = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|n| n.id)
    } else {
        None
    };
    Ok((rows, next))
}

/// Marks one of `user_id`'s notifications read and returns it; None when it is not
/// theirs (or does not exist). One statement.
pub async fn mark_read(db: impl PgExecutor<'_>, user_id: i64, id: i64) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Marks all of `user_id`'s notifications read; how many were unread.
pub async fn mark_all_read(db: impl PgExecutor<'_>, user_id: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}

/// The unread count as the navigation shows it, counting at most [`UNREAD_CAP`] rows of
/// the partial index: the cost is bounded however many are unread.
pub const UNREAD_SQL: &str =
    "SELECT count(*) FROM (SELECT 1 FROM notifications WHERE user_id = $1 AND read_at IS NULL LIMIT 100) unread";

pub async fn unread_count(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(UNREAD_SQL).bind(user_id).fetch_one(db).await
}

/// A notification [`create`] inserted: its recipient, and whether to mail it at once
/// (the recipient's address is verified and their preference for its kind is instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Created {
    pub id: i64,
    pub user_id: i64,
    pub mail: bool,
}

/// Creates the notifications `activity` causes, in ONE statement whatever the number
/// of recipients: an `INSERT … SELECT` (for a chapter, over the author's followers)
/// `ON CONFLICT (user_id, dedupe_key) DO NOTHING`, so a retried job — or a like, unlike,
/// like again — inserts nothing twice; the same statement reads back who to mail.
/// Never the actor themselves. A chapter of a story that is no longer published
/// notifies nobody.
pub async fn create(conn: &mut PgConnection, activity: &Activity) -> Result<Vec<Created>, sqlx::Error> {
    let sql = create_sql(activity);
    let q = sqlx::query_as::<_, Created>(sqlx::AssertSqlSafe(sql));
    let q = match activity {
        Activity::Follow { follower_id, followee_id } => q.bind(*follower_id).bind(*followee_id),
        Activity::Like { user_id, story_id, .. } => q.bind(*user_id).bind(*story_id),
        Activity::Comment { comment_id, story_id, commenter_id, story_author_id, parent_author_id, excerpt } => q
            .bind(*commenter_id)
            .bind(*story_id)
            .bind(*comment_id)
            .bind(*story_author_id)
            .bind(*parent_author_id)
            .bind(crate::text::prefix_chars(excerpt, EXCERPT_MAX)),
        Activity::Chapter { story_id, number, .. } => q.bind(*story_id).bind(*number),
    };
    q.fetch_all(conn).await
}

/// The statement of [`create`] for `activity`: a WITH clause of its own (or none), the
/// recipients' SELECT of the eight inserted columns (user_id, kind, actor_id, story_id,
/// comment_id, chapter_number, data, dedupe_key), wrapped into the insert that also
/// says who to mail.
fn create_sql(activity: &Activity) -> String {
    let actor = "jsonb_build_object('actor_name', coalesce(nullif(a.display_name, ''), a.username), 'actor_username', a.username)";
    let (with, select) = match activity {
        Activity::Follow { .. } => (
            String::new(),
            format!(
                "SELECT r.id, 'follow', a.id, NULL::bigint, NULL::bigint, NULL::integer, {actor}, 'follow:' || a.id
                 FROM users a JOIN users r ON r.id = $2 WHERE a.id = $1 AND a.id <> r.id"
            ),
        ),
        // The author is read from the story; a story gone meanwhile tells nobody.
        Activity::Like { .. } => (
            String::new(),
            format!(
                "SELECT s.author_id, 'like', a.id, s.id, NULL::bigint, NULL::integer,
                        {actor} || jsonb_build_object('story_title', s.title), 'like:' || s.id || ':' || a.id
                 FROM users a JOIN stories s ON s.id = $2 WHERE a.id = $1 AND s.author_id <> a.id"
            ),
        ),
        // The parent's author is told `reply`, the story's author `comment`; one who is
        // both gets the reply (DISTINCT ON keeps the first by rank). Both rows share the
        // key `comment:{id}`: one notification per comment per person.
        Activity::Comment { .. } => (
            String::new(),
            format!(
                "SELECT DISTINCT ON (r.user_id) r.user_id, r.kind, a.id, s.id, $3::bigint, NULL::integer,
                        {actor} || jsonb_build_object('story_title', s.title, 'excerpt', $6::text),
                        'comment:' || $3
                 FROM (VALUES ($5::bigint, 'reply', 0), ($4::bigint, 'comment', 1)) r (user_id, kind, rank)
                 JOIN users ru ON ru.id = r.user_id
                 JOIN users a ON a.id = $1
                 JOIN stories s ON s.id = $2
                 WHERE r.user_id <> a.id
                 ORDER BY r.user_id, r.rank"
            ),
        ),
        // `data` is built once (the MATERIALIZED CTE), not once per follower.
        Activity::Chapter { .. } => (
            format!(
                "src AS MATERIALIZED (
                     SELECT s.id AS story_id, s.author_id,
                            {actor} || jsonb_build_object('story_title', s.title, 'chapter_title', coalesce(c.title, '')) AS data
                     FROM stories s JOIN users a ON a.id = s.author_id
                     LEFT JOIN chapters c ON c.story_id = s.id AND c.number = $2
                     WHERE s.id = $1 AND s.status = 'published' AND $2 BETWEEN 1 AND s.chapter_count
                 ), "
            ),
            "SELECT f.follower_id, 'chapter', src.author_id, src.story_id, NULL::bigint, $2::integer, src.data,
                    'chapter:' || src.story_id || ':' || $2
             FROM src JOIN follows f ON f.followee_id = src.author_id
             WHERE f.follower_id <> src.author_id"
                .to_string(),
        ),
    };
    format!(
        "WITH {with}ins AS (
             INSERT INTO notifications (user_id, kind, actor_id, story_id, comment_id, chapter_number, data, dedupe_key)
             {select}
             ON CONFLICT (user_id, dedupe_key) DO NOTHING
             RETURNING id, user_id, kind
         )
         SELECT ins.id, ins.user_id, (u.email_verified_at IS NOT NULL AND {delivery} = 'instant') AS mail
         FROM ins JOIN users u ON u.id = ins.user_id LEFT JOIN notification_prefs p ON p.user_id = ins.user_id",
        delivery = delivery_sql("ins.kind", "p"),
    )
}

// ---- email ---------------------------------------------------------------------------

/// A notification to mail, with its recipient.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToMail {
    #[sqlx(flatten)]
    pub notification: Notification,
    pub email: String,
    pub username: String,
    pub display_name: String,
}

/// Of `ids`, those still to be mailed at once: not mailed yet, not read in the app
/// meanwhile, to a verified address, of a kind the recipient (still) wants instantly.
/// One statement for the whole batch.
pub async fn instant_mail(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<ToMail>, sqlx::Error> {
    let sql = format!(
        "SELECT n.id, n.user_id, n.kind, n.actor_id, n.story_id, n.comment_id, n.chapter_number, n.data, n.created_at, n.read_at,
                u.email, u.username, u.display_name
         FROM notifications n JOIN users u ON u.id = n.user_id LEFT JOIN notification_prefs p ON p.user_id = n.user_id
         WHERE n.id = ANY($1) AND n.emailed_at IS NULL AND n.read_at IS NULL AND u.email_verified_at IS NOT NULL
           AND {} = 'instant'
         ORDER BY n.id",
        delivery_sql("n.kind", "p")
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(db).await
}

/// Claims notification `id` for its instant mail, as part of `conn`'s transaction (the
/// one that then sends): false when another run has it already. The row lock makes a
/// concurrent duplicate wait for this transaction, then find it claimed.
pub async fn claim_instant(conn: &mut PgConnection, id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE notifications SET emailed_at = now() WHERE id = $1 AND emailed_at IS NULL")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// How far back the digest looks: a notification not digested within a week (the
/// worker was down, say) is left to the app.
pub const DIGEST_WINDOW_DAYS: i32 = 7;

/// What makes a notification due in the digest (`n`: notifications, `p`: the LEFT
/// JOINed preferences): recent, unread, neither mailed nor digested, of a daily kind.
fn digest_due_sql() -> String {
    format!(
        "n.digested_at IS NULL AND n.emailed_at IS NULL AND n.read_at IS NULL
         AND n.created_at > now() - make_interval(days => {DIGEST_WINDOW_DAYS})
         AND {} = 'daily'",
        delivery_sql("n.kind", "p")
    )
}

/// The users with something due in the digest and a verified address. One statement.
pub async fn digest_recipients(db: impl PgExecutor<'_>) -> Result<Vec<i64>, sqlx::Error> {
    let sql = format!(
        "SELECT DISTINCT n.user_id FROM notifications n
         JOIN users u ON u.id = n.user_id AND u.email_verified_at IS NOT NULL
         LEFT JOIN notification_prefs p ON p.user_id = n.user_id
         WHERE {} ORDER BY n.user_id",
        digest_due_sql()
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(db).await
}

/// Marks everything due in `user_id`'s digest as digested, as part of `conn`'s
/// transaction (the one that sends the digest), and returns it, newest first.
pub async fn claim_digest(conn: &mut PgConnection, user_id: i64) -> Result<Vec<Notification>, sqlx::Error> {
    let sql = format!(
        "WITH due AS (
             SELECT n.id FROM notifications n LEFT JOIN notification_prefs p ON p.user_id = n.user_id
             WHERE n.user_id = $1 AND {}
             FOR UPDATE OF n
         )
         UPDATE notifications n SET digested_at = now() FROM due WHERE n.id = due.id
         RETURNING n.id, n.user_id, n.kind, n.actor_id, n.story_id, n.comment_id, n.chapter_number, n.data, n.created_at, n.read_at",
        digest_due_sql()
    );
    let mut rows: Vec<Notification> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(conn).await?;
    rows.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(kind: &str, story: Option<i64>, comment: Option<i64>, chapter: Option<i32>) -> Notification {
        Notification {
            id: 1,
            user_id: 2,
            kind: kind.into(),
            actor_id: Some(3),
            story_id: story,
            comment_id: comment,
            chapter_number: chapter,
            data: serde_json::json!({"actor_name": "Ann", "actor_username": "ann", "story_title": "Road", "chapter_title": "Dawn"}),
            created_at: Utc::now(),
            read_at: None,
        }
    }

    #[test]
    fn each_kind_links_to_its_object() {
        assert_eq!(n("follow", None, None, None).path(), "/u/ann");
        assert_eq!(n("like", Some(7), None, None).path(), "/s/7");
        assert_eq!(n("comment", Some(7), Some(9), None).path(), "/s/7#comment-9");
        assert_eq!(n("reply", Some(7), Some(9), None).path(), "/s/7#comment-9");
        assert_eq!(n("chapter", Some(7), None, Some(3)).path(), "/s/7/c/3");
        assert_eq!(n("chapter", Some(7), None, Some(3)).summary(), "New chapter of “Road” by Ann: Dawn");
        assert_eq!(n("reply", Some(7), Some(9), None).summary(), "Ann replied to your comment on “Road”");
    }

    #[test]
    fn the_unread_count_stops_at_the_cap() {
        // The session lookup (sessions::store) counts the same way, with the same literal.
        assert!(UNREAD_SQL.contains(&format!("LIMIT {UNREAD_CAP}")), "{UNREAD_SQL}");
    }

    #[test]
    fn excerpts_are_cut_on_characters() {
        assert_eq!(crate::text::prefix_chars("héllo", 2), "hé");
        assert_eq!(crate::text::prefix_chars("hi", 5), "hi");
        assert_eq!(crate::text::prefix_chars(&"é".repeat(300), EXCERPT_MAX).chars().count(), EXCERPT_MAX);
    }
}
