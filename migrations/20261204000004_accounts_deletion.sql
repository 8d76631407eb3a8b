-- Account deletion and security events.
--
-- 1. The session-eviction announcements (`sessions::announce_changed`, raised by bans,
--    role changes, password changes, revoked sessions and account deletion) are rows on
--    the live `control` channel, which the channel format of `live_events` did not
--    allow: every such action failed its CHECK. The format now admits it.
ALTER TABLE live_events DROP CONSTRAINT IF EXISTS live_events_channel_format;
ALTER TABLE live_events ADD CONSTRAINT live_events_channel_format
    CHECK (channel ~ '^((story|user):[0-9]+|control)$');

-- 2. Usernames of deleted accounts are held for 30 days (`accounts::users::RETIRED_DAYS`;
--    signup checks `retired_at`); the index serves that check's range and any purge.
CREATE INDEX IF NOT EXISTS retired_usernames_retired_at_idx ON retired_usernames (retired_at);

-- 3. Deleting an account deletes its stories, and each deleted story (and the user row)
--    makes PostgreSQL look up the rows that refer to it, once per row, through the
--    foreign keys' ON DELETE actions. Without an index on the referring column each
--    lookup reads the whole table: measured, an account of 500 stories in a database of
--    3,000,000 notifications ran past the 15 s request timeout (and so was not deleted).
--    Partial where the column is often NULL, so the hot inserts pay for the rows only.
CREATE INDEX IF NOT EXISTS notifications_story_idx ON notifications (story_id) WHERE story_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_actor_idx ON notifications (actor_id) WHERE actor_id IS NOT NULL;
-- comments_story_idx covers top-level comments only (WHERE parent_id IS NULL)
CREATE INDEX IF NOT EXISTS comments_story_all_idx ON comments (story_id);
CREATE INDEX IF NOT EXISTS saves_story_idx ON saves (story_id);
CREATE INDEX IF NOT EXISTS reading_progress_story_idx ON reading_progress (story_id);
CREATE INDEX IF NOT EXISTS reports_reporter_idx ON reports (reporter_id);
