-- Notifications: in-app rows, created by the `notify` job in set-based SQL (one
-- INSERT … SELECT per activity, however many recipients), and the email preferences that
-- decide which of them are also mailed, at once or in the daily digest.
--
-- No foreign key to `follows` or `comments` (the social area's tables): a notification
-- outlives the comment it quotes (the excerpt is kept in `data`), and this migration must
-- not depend on the order the areas' migrations land in.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL
        CONSTRAINT notifications_kind_valid CHECK (kind IN ('follow', 'like', 'comment', 'reply', 'chapter')),
    actor_id        bigint REFERENCES users (id) ON DELETE CASCADE,
    story_id        bigint REFERENCES stories (id) ON DELETE CASCADE,
    comment_id      bigint,
    chapter_number  integer CONSTRAINT notifications_chapter_positive CHECK (chapter_number >= 1),
    -- what the page and the mail show (actor's name, story title, excerpt, chapter title),
    -- copied in when created so listing a page is one statement with no joins
    data            jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT notifications_data_object CHECK (jsonb_typeof(data) = 'object' AND length(data::text) <= 4096),
    -- what makes a retried job (or a like/unlike/like toggle) insert nothing twice:
    -- `follow:{follower}`, `like:{story}:{user}`, `comment:{cid}`, `chapter:{story}:{n}`
    dedupe_key      text NOT NULL CONSTRAINT notifications_dedupe_key_length CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz,
    -- claimed by the instant mail job (set in the transaction that sends it)
    emailed_at      timestamptz,
    -- claimed by the daily digest (set in the transaction that sends it)
    digested_at     timestamptz,
    CONSTRAINT notifications_dedupe_key UNIQUE (user_id, dedupe_key),
    CONSTRAINT notifications_not_self CHECK (actor_id IS NULL OR actor_id <> user_id),
    CONSTRAINT notifications_chapter_has_number CHECK ((kind = 'chapter') = (chapter_number IS NOT NULL))
);
-- the page, newest first, keyset on id
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC);
-- the navigation's bounded unread count (and "mark all read")
CREATE INDEX notifications_unread_idx ON notifications (user_id, id) WHERE read_at IS NULL;
-- the daily digest's search for what is still to be sent (the last 7 days of it)
CREATE INDEX notifications_undigested_idx ON notifications (created_at)
    WHERE digested_at IS NULL AND emailed_at IS NULL AND read_at IS NULL;

-- Email delivery per kind. No row: the defaults (in app::notifications::prefs, the one
-- place they are written down; every write here sets all five columns).
CREATE TABLE notification_prefs (
    user_id        bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email_follow   text NOT NULL CONSTRAINT notification_prefs_follow_valid CHECK (email_follow IN ('instant', 'daily', 'off')),
    email_like     text NOT NULL CONSTRAINT notification_prefs_like_valid CHECK (email_like IN ('instant', 'daily', 'off')),
    email_comment  text NOT NULL CONSTRAINT notification_prefs_comment_valid CHECK (email_comment IN ('instant', 'daily', 'off')),
    email_reply    text NOT NULL CONSTRAINT notification_prefs_reply_valid CHECK (email_reply IN ('instant', 'daily', 'off')),
    email_chapter  text NOT NULL CONSTRAINT notification_prefs_chapter_valid CHECK (email_chapter IN ('instant', 'daily', 'off')),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
