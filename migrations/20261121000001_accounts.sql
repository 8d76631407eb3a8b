-- Accounts, sessions and one-time tokens. The schema is the last line of validation:
-- the application checks the same rules first to give friendly messages, and maps
-- the named constraints below back to form errors when a race slips past those checks.

CREATE TABLE users (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username          text NOT NULL
        CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9_]{3,30}$'),
    email             text NOT NULL
        CONSTRAINT users_email_format CHECK (length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
    password_hash     text NOT NULL,
    display_name      text NOT NULL DEFAULT ''
        CONSTRAINT users_display_name_length CHECK (length(display_name) <= 60),
    bio               text NOT NULL DEFAULT ''
        CONSTRAINT users_bio_length CHECK (length(bio) <= 2000),
    role              text NOT NULL DEFAULT 'user'
        CONSTRAINT users_role_valid CHECK (role IN ('user', 'moderator', 'admin')),
    email_verified_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Uniqueness ignores case; usernames are stored lower-case anyway, emails as typed.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- The cookie holds a 256-bit random id; only its SHA-256 is stored, so a leaked table
-- (or backup) cannot be replayed as cookies.
CREATE TABLE sessions (
    id_hash       bytea PRIMARY KEY CONSTRAINT sessions_id_hash_length CHECK (length(id_hash) = 32),
    -- a small public handle for /settings/sessions/{id}/revoke: never the hash itself
    public_id     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    -- absolute expiry; idle expiry is last_seen_at + 14 days, checked in the lookup
    expires_at    timestamptz NOT NULL,
    user_agent    text NOT NULL DEFAULT '' CONSTRAINT sessions_user_agent_length CHECK (length(user_agent) <= 512),
    ip            text NOT NULL DEFAULT '' CONSTRAINT sessions_ip_length CHECK (length(ip) <= 64)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_last_seen_at_idx ON sessions (last_seen_at);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Single-use tokens mailed to users (email verification, password reset), stored hashed.
CREATE TABLE user_tokens (
    token_hash  bytea PRIMARY KEY CONSTRAINT user_tokens_hash_length CHECK (length(token_hash) = 32),
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CONSTRAINT user_tokens_purpose_valid CHECK (purpose IN ('verify_email', 'reset_password')),
    -- the address a verification token was sent to: changing the email voids it
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT user_tokens_expiry_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX user_tokens_user_id_idx ON user_tokens (user_id, purpose);
CREATE INDEX user_tokens_expires_at_idx ON user_tokens (expires_at);

-- Mail jobs are idempotent: a job records its key here in the same transaction that
-- sends, so a job retried after its mail went out finds the key and does nothing.
CREATE TABLE sent_emails (
    job_key    text PRIMARY KEY,
    recipient  text NOT NULL,
    subject    text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);
