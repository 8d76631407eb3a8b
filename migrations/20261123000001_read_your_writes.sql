-- Read-your-writes with streaming replicas: after a request of this session writes, the
-- web process stores the primary's WAL position here. Later reads of the session go to a
-- replica only once it has replayed that far (see app/src/db/routing.rs). 0 = never wrote.
-- A constant default makes this an instant, non-rewriting ALTER.
ALTER TABLE sessions
    ADD COLUMN read_lsn bigint NOT NULL DEFAULT 0
        CONSTRAINT sessions_read_lsn_nonnegative CHECK (read_lsn >= 0);
