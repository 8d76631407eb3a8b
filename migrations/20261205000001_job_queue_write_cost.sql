-- The job queue's cost per job in PostgreSQL (issue 13, point 9).
--
-- A job's row is written three times: inserted, fetched (status `Queued`, `lock_by`) and
-- acknowledged (`Done`). Neither update can be HOT — both change columns that indexes
-- read — so each one inserts into every index of apalis.jobs whose predicate the new
-- row meets. apalis-postgres's own migrations left duplicate indexes behind, full
-- indexes over columns that are NULL for almost every row, a foreign key checked once
-- per fetched row, and one NOTIFY per inserted row. This migration keeps every query's
-- plan (each reader below still finds an index) and removes that write cost.

-- `unique_job_id` (2022) duplicates the primary key `jobs_pkey` (id) added in 2025.
DROP INDEX IF EXISTS apalis.unique_job_id;

-- `lidx` (2022) and `idx_apalis_jobs_lock_by` (2026) are the same index on lock_by, and
-- both were written by every fetch and every acknowledgement. Every query that looks
-- jobs up by lock_by wants the jobs a worker *holds* — orphan recovery and shutdown
-- hand-back (status `Queued` or `Running`), the worker purge (`jobs::admin::purge`) — so
-- one partial index serves them all, and the acknowledgement (to `Done`, `Failed`,
-- `Killed`) no longer writes to it.
DROP INDEX IF EXISTS apalis.lidx;
DROP INDEX IF EXISTS apalis.idx_apalis_jobs_lock_by;
CREATE INDEX apalis_jobs_held_idx ON apalis.jobs (lock_by) WHERE status = 'Queued' OR status = 'Running';

-- `lock_by → workers(id)`: its check ran once per fetched row (an SPI query and a
-- KEY SHARE lock on the worker's row), although a worker always registers before it
-- fetches. What the key protected — no worker row deleted while it holds jobs — the
-- purge now asks itself (`NOT EXISTS` a held job, through apalis_jobs_held_idx); a
-- finished job's lock_by is history and may name a purged worker.
ALTER TABLE apalis.jobs DROP CONSTRAINT IF EXISTS fk_worker_lock_by;

-- Idempotency keys are rare (the periodic scheduler, the demo seed) but the index held
-- an entry for every row and every row version: keep only the keyed ones. NULL keys
-- never conflicted anyway, so uniqueness is unchanged (a duplicate is still SQLSTATE
-- 23505, which `EnqueueError::is_duplicate` looks for).
DROP INDEX IF EXISTS apalis.idx_jobs_idempotency_key;
CREATE UNIQUE INDEX apalis_jobs_idempotency_key_idx ON apalis.jobs (job_type, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One NOTIFY per INSERT statement and queue instead of one per row, and the same payload
-- for a queue every time, which PostgreSQL folds to one notification per transaction
-- (identical payloads on a channel are delivered once). A worker only uses the
-- notification to wake up and fetch a batch (apalis's `StreamStrategy` drops the id);
-- the payload keeps the shape apalis's `Pubsub` parses, `{job_type, id}`, with the nil
-- ULID as the id. Jobs scheduled for later still notify no one: the poll finds them.
DROP TRIGGER IF EXISTS notify_workers ON apalis.jobs;
CREATE OR REPLACE FUNCTION apalis.notify_new_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('apalis::job::insert', json_build_object('job_type', q.job_type, 'id', '00000000000000000000000000')::text)
       FROM (SELECT DISTINCT job_type FROM inserted WHERE run_at <= now()) AS q;
    RETURN NULL;
END;
$$;
CREATE TRIGGER notify_workers AFTER INSERT ON apalis.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION apalis.notify_new_jobs();
