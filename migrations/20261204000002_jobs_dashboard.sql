-- The admin jobs dashboard (`jobs::admin`) and the retention purge, kept fast with a
-- million finished jobs in apalis.jobs: every query of the dashboard and of the purge
-- reads one of these partial indexes, never the whole table. (`db::migrate` runs the
-- queue's own migrations first, so apalis.jobs exists here.)

-- Finished jobs, the bulk of the table, by when they finished: throughput over the last
-- hour, "done in 24 h" per queue, and the purge of those past their retention.
CREATE INDEX apalis_jobs_done_idx ON apalis.jobs (done_at, job_type) WHERE status = 'Done';

-- Everything not finished — a small set: pending, scheduled, queued, running, retrying,
-- failed, killed — for the counts by state and the oldest pending job (index-only).
CREATE INDEX apalis_jobs_open_idx ON apalis.jobs (job_type, status, run_at) INCLUDE (attempts, max_attempts)
    WHERE status <> 'Done';

-- Jobs that gave up (`jobs::admin::FAILED_SQL`, the same text), newest failure first:
-- the failed list's keyset pages (read backwards), failures per bucket, and their purge.
CREATE INDEX apalis_jobs_failed_idx ON apalis.jobs ((coalesce(done_at, run_at)), id) INCLUDE (job_type)
    WHERE (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts));

-- Mail idempotency keys are purged by age (`jobs::admin::SENT_EMAILS_RETENTION`).
CREATE INDEX sent_emails_sent_at_idx ON sent_emails (sent_at);
