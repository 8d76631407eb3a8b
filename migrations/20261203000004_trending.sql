-- Trending (app/src/trending): a score per public story, recomputed every 10 minutes by
-- one job (across any number of workers) that replaces the table's contents in one
-- transaction. Only public stories (published, not hidden) are ever in it.
CREATE TABLE trending (
    story_id     bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    score        double precision NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trending_pkey PRIMARY KEY (story_id)
);
-- the home page's top N
CREATE INDEX trending_score_idx ON trending (score DESC, story_id DESC);
