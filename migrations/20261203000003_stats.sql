-- Reading statistics (app/src/stats). Views are counted in each web process's memory and
-- flushed in one statement every STATS_FLUSH_SECS, so these tables see one write per
-- (chapter, day) per flush, never one per page view.
--
-- Size: one row per (chapter, day) with at least a view; one row per (chapter, day,
-- reader) for unique readers. Rows older than 90 days (plus a margin) are deleted by the
-- periodic purge job (stats::db::purge_old).

CREATE TABLE chapter_views_daily (
    story_id        bigint  NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    chapter_number  integer NOT NULL,
    day             date    NOT NULL,
    views           bigint  NOT NULL CONSTRAINT chapter_views_daily_views_positive CHECK (views > 0),
    -- the stats page reads one story's last 90 days: the key's prefix serves it
    CONSTRAINT chapter_views_daily_pkey PRIMARY KEY (story_id, day, chapter_number)
);
-- the purge deletes by day across all stories
CREATE INDEX chapter_views_daily_day_idx ON chapter_views_daily (day);

-- Distinct readers: `reader` is the user id (> 0) for a logged-in reader, or a negative
-- number made from a keyed hash (HMAC with SECRET_KEY) of the anonymous cookie: the
-- cookie itself is never stored, and 8 bytes a row keep the table small.
CREATE TABLE chapter_readers_daily (
    story_id        bigint  NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    chapter_number  integer NOT NULL,
    day             date    NOT NULL,
    reader          bigint  NOT NULL,
    CONSTRAINT chapter_readers_daily_pkey PRIMARY KEY (story_id, day, chapter_number, reader)
);
CREATE INDEX chapter_readers_daily_day_idx ON chapter_readers_daily (day);
