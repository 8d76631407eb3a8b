-- The writing core: stories, chapters, tags, and uploaded media (covers, avatars).

CREATE TABLE media (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       text NOT NULL CONSTRAINT media_purpose_valid CHECK (purpose IN ('cover', 'avatar')),
    -- storage key of the private original: never served
    original_key  text NOT NULL UNIQUE,
    content_type  text NOT NULL CONSTRAINT media_content_type_valid
        CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    byte_size     integer NOT NULL CONSTRAINT media_byte_size_valid CHECK (byte_size BETWEEN 1 AND 10485760),
    status        text NOT NULL DEFAULT 'pending' CONSTRAINT media_status_valid CHECK (status IN ('pending', 'ready', 'failed')),
    error         text,
    -- from the header at upload; the upright size once processed
    width         integer NOT NULL CONSTRAINT media_width_positive CHECK (width > 0),
    height        integer NOT NULL CONSTRAINT media_height_positive CHECK (height > 0),
    -- camera make/model, lens, time taken, dimensions. Never a GPS position.
    exif          jsonb NOT NULL DEFAULT '{}',
    -- [{"width":..,"height":..,"format":"webp"|"jpeg","key":"variants/…"}]
    variants      jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    CONSTRAINT media_failed_has_error CHECK (status <> 'failed' OR error IS NOT NULL),
    CONSTRAINT media_no_gps CHECK (NOT (exif ? 'gps'))
);
CREATE INDEX media_owner_idx ON media (owner_id);

ALTER TABLE users ADD COLUMN avatar_id bigint REFERENCES media (id) ON DELETE SET NULL;

CREATE TABLE stories (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title          text NOT NULL CONSTRAINT stories_title_length CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    summary        text NOT NULL DEFAULT '' CONSTRAINT stories_summary_length CHECK (length(summary) <= 2000),
    status         text NOT NULL DEFAULT 'draft' CONSTRAINT stories_status_valid CHECK (status IN ('draft', 'published')),
    published_at   timestamptz,
    cover_id       bigint REFERENCES media (id) ON DELETE SET NULL,
    -- kept by the chapter insert (same transaction), so listings need no aggregate
    chapter_count  integer NOT NULL DEFAULT 0 CONSTRAINT stories_chapter_count_nonnegative CHECK (chapter_count >= 0),
    word_count     integer NOT NULL DEFAULT 0 CONSTRAINT stories_word_count_nonnegative CHECK (word_count >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stories_published_has_date CHECK ((status = 'published') = (published_at IS NOT NULL))
);
-- home page and its keyset pagination
CREATE INDEX stories_published_idx ON stories (published_at DESC, id DESC) WHERE status = 'published';
-- profile pages
CREATE INDEX stories_author_idx ON stories (author_id, published_at DESC, id DESC);

CREATE TABLE chapters (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    story_id       bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    number         integer NOT NULL CONSTRAINT chapters_number_positive CHECK (number >= 1),
    title          text NOT NULL CONSTRAINT chapters_title_length CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    body_markdown  text NOT NULL CONSTRAINT chapters_body_length CHECK (length(body_markdown) BETWEEN 1 AND 500000),
    -- rendered and sanitised when saved
    body_html      text NOT NULL,
    word_count     integer NOT NULL CONSTRAINT chapters_word_count_nonnegative CHECK (word_count >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chapters_story_number_key UNIQUE (story_id, number)
);

CREATE TABLE tags (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL CONSTRAINT tags_name_key UNIQUE
        CONSTRAINT tags_name_format CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,29}$')
);

CREATE TABLE story_tags (
    story_id  bigint NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    tag_id    bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (story_id, tag_id)
);
CREATE INDEX story_tags_tag_idx ON story_tags (tag_id, story_id);
