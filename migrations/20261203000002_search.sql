-- Full-text search (search::db owns the SQL that reads these).
--
-- Index maintenance is done by PostgreSQL in the writing statement itself: generated
-- tsvector columns, so a chapter is searchable the moment it commits and no job, queue or
-- backfill can fall behind. What it costs the writer is measured by bench/src/bin/search.rs
-- (bench/RESULTS.md, "Search"): to_tsvector over the chapter's text plus the GIN insert,
-- which `fastupdate` (the default) turns into an append to the index's pending list.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- levenshtein(): author names misspelt by a transposition ("alcie"), which trigrams miss.
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;

-- Tags live in story_tags/tags, which a generated column cannot see: their names are kept
-- here, space-separated, by stories::db::set_tags in the same transaction.
ALTER TABLE stories ADD COLUMN tags_text text NOT NULL DEFAULT '';
UPDATE stories s SET tags_text = coalesce((SELECT string_agg(t.name, ' ' ORDER BY t.name)
                                           FROM story_tags st JOIN tags t ON t.id = st.tag_id
                                           WHERE st.story_id = s.id), '');

-- Title weight A beats summary and tags (B); chapter text is D, chapter titles C.
ALTER TABLE stories ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', title), 'A')
    || setweight(to_tsvector('english', summary), 'B')
    || setweight(to_tsvector('english', tags_text), 'B')
) STORED;
CREATE INDEX stories_search_idx ON stories USING gin (search_doc);

-- Indexed from the Markdown source, which is also what snippets are cut from (the HTML
-- would put tag names into ts_headline's output).
ALTER TABLE chapters ADD COLUMN search_doc tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', title), 'C') || setweight(to_tsvector('english', body_markdown), 'D')
) STORED;
CREATE INDEX chapters_search_idx ON chapters USING gin (search_doc);

-- Typo tolerance: trigram similarity on titles and author names.
CREATE INDEX stories_title_trgm_idx ON stories USING gin (title gin_trgm_ops);
CREATE INDEX users_username_trgm_idx ON users USING gin (username gin_trgm_ops);
CREATE INDEX users_display_name_trgm_idx ON users USING gin (display_name gin_trgm_ops);
