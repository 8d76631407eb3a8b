-- Trust and safety: roles as an enum, reports, moderation of stories and comments, bans,
-- the append-only audit log, and usernames held back after an account is deleted.

-- Roles, lowest first: the enum's order is the privilege order (`role >= 'moderator'`).
-- Accounts start as writers, who may publish once their email address is verified
-- (`policy::Action::Write` and the verification check together); staff may demote an
-- account to reader, which cannot publish whatever its verification. The old 'user' role
-- maps to writer.
CREATE TYPE user_role AS ENUM ('reader', 'writer', 'moderator', 'admin');
ALTER TABLE users DROP CONSTRAINT users_role_valid;
ALTER TABLE users ALTER COLUMN role DROP DEFAULT;
ALTER TABLE users ALTER COLUMN role TYPE user_role USING (
    CASE WHEN role = 'user' THEN 'writer' ELSE role END
)::user_role;
ALTER TABLE users ALTER COLUMN role SET DEFAULT 'writer';
CREATE INDEX users_staff_idx ON users (role) WHERE role >= 'moderator';

-- Hiding: the author sees why; a moderator can undo it (hidden_at back to NULL).
ALTER TABLE stories ADD COLUMN hidden_reason text NOT NULL DEFAULT ''
    CONSTRAINT stories_hidden_reason_length CHECK (length(hidden_reason) <= 1000);
-- A hidden profile keeps its page, without the display name and bio the user wrote.
ALTER TABLE users ADD COLUMN profile_hidden_at timestamptz;
ALTER TABLE users ADD COLUMN profile_hidden_reason text NOT NULL DEFAULT ''
    CONSTRAINT users_profile_hidden_reason_length CHECK (length(profile_hidden_reason) <= 1000);
ALTER TABLE comments ADD COLUMN hidden_at timestamptz;
ALTER TABLE comments ADD COLUMN hidden_reason text NOT NULL DEFAULT ''
    CONSTRAINT comments_hidden_reason_length CHECK (length(hidden_reason) <= 1000);

-- Reports: one open report per reporter and object (the partial unique index), closed by
-- a moderator's resolution. Objects are named by kind and id rather than by foreign keys
-- (three kinds): a report on an object deleted since shows as such in the queue and is
-- dismissed like any other. Deleting the reporter deletes their reports.
CREATE TABLE reports (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reporter_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    object_kind     text NOT NULL CONSTRAINT reports_object_kind_valid CHECK (object_kind IN ('story', 'comment', 'user')),
    object_id       bigint NOT NULL,
    reason          text NOT NULL CONSTRAINT reports_reason_length CHECK (length(btrim(reason)) BETWEEN 1 AND 1000),
    status          text NOT NULL DEFAULT 'open' CONSTRAINT reports_status_valid CHECK (status IN ('open', 'hidden', 'dismissed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    resolved_by     bigint REFERENCES users (id) ON DELETE SET NULL,
    resolution_note text NOT NULL DEFAULT '' CONSTRAINT reports_note_length CHECK (length(resolution_note) <= 1000),
    CONSTRAINT reports_resolved_consistently CHECK ((status = 'open') = (resolved_at IS NULL))
);
CREATE UNIQUE INDEX reports_one_open_per_reporter ON reports (reporter_id, object_kind, object_id) WHERE status = 'open';
CREATE INDEX reports_open_idx ON reports (object_kind, object_id, created_at DESC) WHERE status = 'open';
CREATE INDEX reports_open_created_idx ON reports (created_at DESC) WHERE status = 'open';

-- Bans and suspensions: `until` NULL is permanent. A ban is active while it is not lifted
-- and its end is in the future; at most one active-or-future ban per user (a new ban
-- replaces the old by lifting it in the same transaction).
CREATE TABLE bans (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by    bigint REFERENCES users (id) ON DELETE SET NULL,
    reason       text NOT NULL CONSTRAINT bans_reason_length CHECK (length(btrim(reason)) BETWEEN 1 AND 1000),
    until        timestamptz,
    hid_content  boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    lifted_at    timestamptz,
    lifted_by    bigint REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT bans_until_after_start CHECK (until IS NULL OR until > created_at)
);
CREATE UNIQUE INDEX bans_one_unlifted_per_user ON bans (user_id) WHERE lifted_at IS NULL;

-- The audit log: one row per sensitive action, written in the action's transaction.
-- No foreign keys on purpose: a row must outlive the user it names (account deletion
-- keeps the audit rows), and a cascading SET NULL would be an UPDATE the trigger refuses.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_id     bigint,
    actor_name   text NOT NULL DEFAULT '',
    action       text NOT NULL CONSTRAINT audit_log_action_format CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    object_kind  text NOT NULL DEFAULT '',
    object_id    text NOT NULL DEFAULT '',
    -- whose account the action concerns (the user banned, the owner of a hidden story):
    -- what /settings/sessions filters a user's own security events by
    subject_id   bigint,
    before       jsonb,
    after        jsonb,
    ip           text NOT NULL DEFAULT '',
    user_agent   text NOT NULL DEFAULT '',
    request_id   text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, at DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at DESC);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_id, at DESC);

-- Append-only, whoever asks: a trigger fires for the table's owner and for superusers
-- too (unlike a REVOKE), so the application's own connection cannot rewrite history
-- even where it connects as the owner, as in development. The maintenance path for a
-- retention purge is documented in the README: a superuser disables the trigger in a
-- transaction of their own.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Live events gain the `control` channel: process-wide signals (a user's sessions
-- changed), read by every web process's broker and never sent to a page.
ALTER TABLE live_events DROP CONSTRAINT live_events_channel_format;
ALTER TABLE live_events ADD CONSTRAINT live_events_channel_format CHECK (channel ~ '^(story|user):[0-9]+$' OR channel = 'control');

-- A deleted account's username is held for 30 days so nobody can take it over at once
-- (links to the profile, mentions); signup checks it.
CREATE TABLE retired_usernames (
    username    text PRIMARY KEY,
    retired_at  timestamptz NOT NULL DEFAULT now()
);
