//! Search's SQL: one statement per results page over the generated `search_doc` columns
//! (GIN) and the trigram indexes on titles and author names.

use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use crate::stories::db::{StoryRow, story_select};

pub const PAGE_SIZE: i64 = 20;

/// Matching chapters read at most by one search (the `LIMIT 2000` in [`SEARCH_SQL`]).
pub const CHAPTER_HITS_MAX: i64 = 2000;

/// Keyset position in a results list: its score and story id (ties broken by id).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub score: f64,
    pub id: i64,
}

impl Cursor {
    /// `f64`'s `Display` is the shortest text that parses back to the same number, and
    /// PostgreSQL reads it back exactly: the next page starts exactly after this row.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.score, self.id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (score, id) = s.split_once('_')?;
        let score: f64 = score.parse().ok()?;
        score.is_finite().then_some(())?;
        Some(Cursor { score, id: id.parse().ok()? })
    }
}

/// A result: the story as listings show it, its score, the chapter the snippet comes
/// from (None: the summary) and the snippet as `ts_headline` gave it (see `snippet`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Hit {
    #[sqlx(flatten)]
    pub story: StoryRow,
    pub score: f64,
    pub chapter_number: Option<i32>,
    pub headline: String,
}

/// The typo threshold for `<%` (word similarity of the query to a stretch of a title),
/// which the trigram index applies and only a setting changes. The default, 0.6, misses
/// one-letter slips in short words: "drgon" against "The Paper Dragon" scores 0.44.
pub const TRGM_THRESHOLD_SQL: &str = "SET LOCAL pg_trgm.word_similarity_threshold = 0.4";

/// The results statement. `$1` query text, `$2` tag or NULL, `$3`/`$4` cursor (score,
/// id) or NULL, `$5` rows wanted. Public so bench/src/bin/search.rs times exactly it.
///
/// Scores put every story in a tier, then rank inside it (each within-tier part is < 1):
/// - 4 + rank: a title word matches (`ts_filter` keeps the A-weighted lexemes);
/// - 3 + rank: summary or tags match (weight B), or title and summary between them;
/// - 2 + similarity: a title or author name close to a query word (typos: trigrams, and
///   Levenshtein ≤ 2 for names starting with the same two letters);
/// - 1 + n/(n+1): n chapters contain the words. Not `ts_rank` over chapters: a common
///   word matches most of the 50,000 chapters, and ranking each would detoast every one.
///   At most [`CHAPTER_HITS_MAX`] matching chapters are read: a word in more chapters
///   than that says little about any one story, and reading them all was most of a
///   common word's time (bench/RESULTS.md); beyond it the body tier is a sample.
///
/// Every source is filtered once, at `page`, by `public_story!`: drafts, hidden stories
/// and their chapters never reach a result. `ts_headline` runs only for the page's rows,
/// on the summary or on 3,000 characters of the best of the story's matching chapters,
/// starting a little before the first occurrence of the longest query word (its start:
/// stemming may have changed the end); without one, the chapter's beginning.
pub const SEARCH_SQL: &str = concat!(
    "WITH q0 AS (SELECT websearch_to_tsquery('english', $1) AS tsq, lower($1) AS raw),
     words AS (
         SELECT DISTINCT w FROM q0, regexp_split_to_table(q0.raw, '[^[:alnum:]_]+') w WHERE length(w) >= 3
     ),
     -- probe: the longest query word less a possible suffix, to find where in a chapter
     -- the snippet is (ts_headline over a whole 2,000-word chapter was most of a page's time)
     q AS (SELECT q0.*, coalesce((SELECT left(w, greatest(3, length(w) - 2)) FROM words ORDER BY length(w) DESC, w LIMIT 1), '') AS probe
             FROM q0),
     hits AS (
         SELECT s.id, CASE WHEN ts_filter(s.search_doc, '{a}') @@ q.tsq THEN 4 ELSE 3 END
                      + ts_rank(s.search_doc, q.tsq, 32)::float8 AS score
           FROM stories s, q WHERE s.search_doc @@ q.tsq
         UNION ALL
         SELECT m.story_id, 1 + count(*)::float8 / (count(*) + 1)
           FROM (SELECT c.story_id FROM chapters c, q WHERE c.search_doc @@ q.tsq LIMIT 2000) m GROUP BY m.story_id
         UNION ALL
         SELECT s.id, 2 + 0.99 * word_similarity(q.raw, s.title)
           FROM stories s, q WHERE q.raw <% s.title
         UNION ALL
         SELECT s.id, 2 + 0.99 * greatest(similarity(u.username, words.w), similarity(u.display_name, words.w), 0.3)
           FROM words JOIN users u ON u.username % words.w OR u.display_name % words.w
                OR (u.username LIKE left(words.w, 2) || '%' AND levenshtein(u.username, words.w) <= 2)
           JOIN stories s ON s.author_id = u.id
     ),
     best AS (SELECT id, max(score) AS score FROM hits GROUP BY id),
     page AS (
         SELECT b.id, b.score FROM best b JOIN stories s ON s.id = b.id
          WHERE ",
    crate::public_story!("s"),
    "
            AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM story_tags st JOIN tags t ON t.id = st.tag_id
                                             WHERE st.story_id = s.id AND t.name = $2))
            AND ($3::float8 IS NULL OR (b.score, b.id) < ($3, $4))
          ORDER BY b.score DESC, b.id DESC LIMIT $5
     )
     SELECT st.*, p.score, bc.number AS chapter_number,
            ts_headline('english',
                        translate(CASE WHEN bc.number IS NULL THEN st.summary
                                       ELSE substr(bc.body_markdown, greatest(1, strpos(lower(bc.body_markdown), q.probe) - 300), 3000) END,
                                  E'\\uE000\\uE001', ''),
                        q.tsq, 'StartSel=\u{E000}, StopSel=\u{E001}, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=\" … \"') AS headline
       FROM page p CROSS JOIN q
       JOIN LATERAL (",
    story_select!(),
    "WHERE s.id = p.id) st ON true
       LEFT JOIN LATERAL (
           SELECT c.number, c.body_markdown FROM chapters c
            WHERE p.score < 3 AND c.story_id = p.id AND c.search_doc @@ q.tsq
            ORDER BY ts_rank(c.search_doc, q.tsq) DESC, c.number LIMIT 1
       ) bc ON true
      ORDER BY p.score DESC, p.id DESC"
);

/// One page of results after `cursor`, and the cursor of the next page if there is one.
/// Runs in a transaction of its own only for `SET LOCAL` of the trigram threshold (see
/// [`TRGM_THRESHOLD_SQL`]): `BEGIN`, `SET LOCAL`, [`SEARCH_SQL`], `COMMIT`, of which only
/// the third does any work.
pub async fn search(
    db: &PgPool,
    query: &str,
    tag: Option<&str>,
    cursor: Option<Cursor>,
) -> Result<(Vec<Hit>, Option<Cursor>), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(TRGM_THRESHOLD_SQL).execute(&mut *tx).await?;
    let mut rows: Vec<Hit> = sqlx::query_as(SEARCH_SQL)
        .bind(query)
        .bind(tag)
        .bind(cursor.map(|c| c.score))
        .bind(cursor.map(|c| c.id).unwrap_or(0))
        .bind(PAGE_SIZE + 1)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let next = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|h| Cursor { score: h.score, id: h.story.id })
    } else {
        None
    };
    Ok((rows, next))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TagCount {
    pub name: String,
    pub stories: i64,
}

/// The empty-query page's popular tags: those on the most public stories.
pub async fn popular_tags(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<TagCount>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT t.name, count(*) AS stories FROM tags t JOIN story_tags st ON st.tag_id = t.id
           JOIN stories s ON s.id = st.story_id WHERE ",
        crate::public_story!("s"),
        " GROUP BY t.name ORDER BY count(*) DESC, t.name LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_exactly() {
        let c = Cursor { score: 4.0 + 0.1f32 as f64 / 1.1, id: 42 };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("x_1"), None);
        assert_eq!(Cursor::decode("NaN_1"), None);
        assert_eq!(Cursor::decode("1.5"), None);
    }
}
