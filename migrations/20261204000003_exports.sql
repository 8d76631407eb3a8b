-- Data exports: a user asks for a ZIP of their account (/settings/export); the worker's
-- `build_export` job writes it to storage and mails a download link valid 24 hours
-- (/exports/{token}); the maintenance job deletes the file afterwards and marks the row
-- expired (the row stays, so an old link answers "expired" rather than "unknown").
CREATE TABLE exports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued'
        CONSTRAINT exports_status_valid CHECK (status IN ('queued', 'running', 'ready', 'failed', 'expired')),
    -- items written so far (chapters, uploads, JSON files) out of `total`, for the progress bar
    progress     integer NOT NULL DEFAULT 0 CONSTRAINT exports_progress_nonnegative CHECK (progress >= 0),
    total        integer NOT NULL DEFAULT 0 CONSTRAINT exports_total_nonnegative CHECK (total >= 0),
    -- storage key of the ZIP (exports/…): set when ready, cleared when the file is deleted
    storage_key  text,
    byte_size    bigint,
    -- SHA-256 of the download token. The token itself is stored nowhere: it derives from
    -- link_key and SECRET_KEY (tokens::link_token), so the mail job and the owner's page
    -- can show the link, and a copy of the database alone opens nothing.
    token_hash   bytea CONSTRAINT exports_token_hash_length CHECK (length(token_hash) = 32),
    link_key     uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    ready_at     timestamptz,
    expires_at   timestamptz,
    error        text,
    CONSTRAINT exports_ready_has_file CHECK (status <> 'ready' OR (storage_key IS NOT NULL AND token_hash IS NOT NULL AND link_key IS NOT NULL AND expires_at IS NOT NULL)),
    CONSTRAINT exports_failed_has_error CHECK (status <> 'failed' OR error IS NOT NULL)
);
-- One export in flight per user: a second request while one is queued or running loses
-- the race here and is shown the first.
CREATE UNIQUE INDEX exports_one_in_flight ON exports (user_id) WHERE status IN ('queued', 'running');
CREATE INDEX exports_user_idx ON exports (user_id, id DESC);
CREATE UNIQUE INDEX exports_token_hash_key ON exports (token_hash) WHERE token_hash IS NOT NULL;
CREATE INDEX exports_due_idx ON exports (expires_at) WHERE status = 'ready';
CREATE INDEX exports_storage_key_idx ON exports (storage_key) WHERE storage_key IS NOT NULL;
