-- The community between readers and writers: follows, likes, comments, reading lists and
-- reading progress. Every count a page shows is a counter column kept in the same
-- transaction as the row it counts, so no page runs count(*).

ALTER TABLE users
    ADD COLUMN follower_count  integer NOT NULL DEFAULT 0 CONSTRAINT users_follower_count_nonnegative CHECK (follower_count >= 0),
    ADD COLUMN following_count integer NOT NULL DEFAULT 0 CONSTRAINT users_following_count_nonnegative CHECK (following_count >= 0);

ALTER TABLE stories
    ADD COLUMN like_count     integer NOT NULL DEFAULT 0 CONSTRAINT stories_like_count_nonnegative CHECK (like_count >= 0),
    -- visible (not deleted) comments
    ADD COLUMN comment_count  integer NOT NULL DEFAULT 0 CONSTRAINT stories_comment_count_nonnegative CHECK (comment_count >= 0),
    -- when a chapter was last added (or the story published): "new chapters from authors you follow"
    ADD COLUMN last_chapter_at timestamptz;
UPDATE stories s SET last_chapter_at = (SELECT max(c.created_at) FROM chapters c WHERE c.story_id = s.id);
CREATE INDEX stories_author_last_chapter_idx ON stories (author_id, last_chapter_at DESC) WHERE status = 'published';

CREATE TABLE follows (
    follower_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT follows_pkey PRIMARY KEY (follower_id, followee_id),
    CONSTRAINT follows_no_self CHECK (follower_id <> followee_id)
);
-- "followers of X", newest first (keyset); "following" uses the primary key's prefix plus this
CREATE INDEX follows_followee_idx ON follows (followee_id, created_at DESC, follower_id DESC);
CREATE INDEX follows_follower_idx ON follows (follower_id, created_at DESC, followee_id DESC);

CREATE TABLE likes (
    story_id    bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT likes_pkey PRIMARY KEY (story_id, user_id)
);
CREATE INDEX likes_user_idx ON likes (user_id);

CREATE TABLE comments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    story_id       bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    author_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- replies are one level deep: a parent is always a top-level comment of the same story
    parent_id      bigint,
    body_markdown  text NOT NULL,
    -- rendered and sanitised (markdown::render_comment) when saved
    body_html      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- soft deletion: the text is erased, the row stays so its replies keep their thread
    deleted_at     timestamptz,
    CONSTRAINT comments_id_story_key UNIQUE (id, story_id),
    -- the composite reference makes "a parent on another story" impossible
    CONSTRAINT comments_parent_fkey FOREIGN KEY (parent_id, story_id) REFERENCES comments (id, story_id) ON DELETE CASCADE,
    CONSTRAINT comments_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id),
    CONSTRAINT comments_body_length CHECK (
        (deleted_at IS NULL AND length(body_markdown) BETWEEN 1 AND 5000)
        OR (deleted_at IS NOT NULL AND body_markdown = '' AND body_html = ''))
);
-- top-level comments of a story, newest first (keyset)
CREATE INDEX comments_story_idx ON comments (story_id, created_at DESC, id DESC) WHERE parent_id IS NULL;
-- replies under each, oldest first
CREATE INDEX comments_parent_idx ON comments (parent_id, created_at, id) WHERE parent_id IS NOT NULL;
CREATE INDEX comments_author_idx ON comments (author_id);

-- The reading list.
CREATE TABLE saves (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    story_id    bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT saves_pkey PRIMARY KEY (user_id, story_id)
);
CREATE INDEX saves_user_idx ON saves (user_id, created_at DESC, story_id DESC);

-- The last chapter each reader opened of each story.
CREATE TABLE reading_progress (
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    story_id        bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    chapter_number  integer NOT NULL CONSTRAINT reading_progress_chapter_positive CHECK (chapter_number >= 1),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reading_progress_pkey PRIMARY KEY (user_id, story_id)
);
CREATE INDEX reading_progress_recent_idx ON reading_progress (user_id, updated_at DESC);
