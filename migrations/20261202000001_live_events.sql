-- Live updates (Server-Sent Events). An event is a row here, written in the same
-- transaction as the change it announces, plus a NOTIFY on channel `quire_live` carrying
-- its id (delivered by PostgreSQL only if that transaction commits). Each web process
-- LISTENs once and reads new rows in one query per wake-up, so an event's id is the same
-- on every process: a browser resuming with Last-Event-ID on another process gets the
-- events it missed. Rows older than an hour are purged by the maintenance job.
CREATE TABLE live_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- who may receive it: 'story:{id}' (anyone who may see the story) or 'user:{id}'
    channel     text NOT NULL CONSTRAINT live_events_channel_format CHECK (channel ~ '^(story|user):[0-9]+$'),
    -- the SSE event name (`comment`, `likes`, `unread`, …)
    event       text NOT NULL CONSTRAINT live_events_event_format CHECK (event ~ '^[a-z][a-z_-]{0,31}$'),
    -- the SSE data: an HTML fragment rendered once by whoever raised the event
    data        text NOT NULL CONSTRAINT live_events_data_length CHECK (length(data) <= 65536),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_events_channel_idx ON live_events (channel, id);
CREATE INDEX live_events_created_idx ON live_events (created_at);
