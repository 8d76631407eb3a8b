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
