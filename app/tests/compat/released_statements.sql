-- released: 20261205000002_tags_text_sorted
-- The SQL string literals of app/src and worker/src when the release was marked
-- (app/tests/migrations_compat.rs). Generated: do not edit; regenerate with
-- QUIRE_MARK_RELEASE=1 bin/test -E 'binary(migrations_compat)'

-- @ app/src/jobs/admin.rs
DELETE FROM apalis.jobs WHERE id = ANY($1)

-- @ app/src/jobs/admin.rs
DELETE FROM apalis.jobs WHERE id IN (
               SELECT id FROM apalis.jobs WHERE status = 'Done' AND done_at < now() - interval '{} days'
                ORDER BY done_at LIMIT $1)

-- @ app/src/jobs/admin.rs
DELETE FROM apalis.jobs WHERE id IN (
               SELECT id FROM apalis.jobs WHERE {FAILED_SQL} AND coalesce(done_at, run_at) < now() - interval '{} days'
                ORDER BY coalesce(done_at, run_at) LIMIT $1)

-- @ app/src/jobs/admin.rs
DELETE FROM apalis.workers WHERE id IN (
               SELECT w.id FROM apalis.workers w
                WHERE w.last_seen < now() - interval '{} days'
                  -- Not while it holds a job (orphan recovery needs its row); finished
                  -- jobs may name a purged worker (apalis_jobs_held_idx, migration 20261205).
                  AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id AND (j.status = 'Queued' OR j.status = 'Running'))
                LIMIT $1)

-- @ app/src/stats/db.rs
DELETE FROM chapter_readers_daily WHERE day < current_date - $1::int

-- @ app/src/stats/db.rs
DELETE FROM chapter_views_daily WHERE day < current_date - $1::int

-- @ app/src/social/db.rs
DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2

-- @ app/src/live/mod.rs
DELETE FROM live_events WHERE created_at < now() - interval '1 hour'

-- @ app/src/accounts/users.rs
DELETE FROM login_ips WHERE user_id = $1

-- @ app/src/accounts/users.rs
DELETE FROM login_ips WHERE user_id = $1 AND last_login_at < now() - make_interval(days => $2::int)

-- @ app/src/media/db.rs
DELETE FROM media m WHERE m.id = $1 AND

-- @ app/src/moderation/db.rs
DELETE FROM notifications WHERE comment_id = $1

-- @ app/src/moderation/db.rs
DELETE FROM notifications n USING stories s WHERE n.story_id = $1 AND s.id = $1 AND n.user_id <> s.author_id

-- @ app/src/social/db.rs
DELETE FROM saves WHERE user_id = $1 AND story_id = $2

-- @ app/src/jobs/admin.rs
DELETE FROM sent_emails WHERE job_key IN (
               SELECT job_key FROM sent_emails WHERE sent_at < now() - interval '{} days' ORDER BY sent_at LIMIT $1)

-- @ app/src/sessions/store.rs
DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(days => $1)

-- @ app/src/sessions/store.rs
DELETE FROM sessions WHERE id_hash = $1 RETURNING user_id

-- @ app/src/sessions/store.rs
DELETE FROM sessions WHERE user_id = $1

-- @ app/src/sessions/store.rs
DELETE FROM sessions WHERE user_id = $1 AND public_id = $2

-- @ app/src/sessions/store.rs
DELETE FROM sessions WHERE user_id = $1 AND public_id = $2
         RETURNING public_id AS id, user_agent, ip, created_at, last_seen_at

-- @ app/src/sessions/store.rs
DELETE FROM sessions WHERE user_id = $1 AND public_id IS DISTINCT FROM $2

-- @ app/src/stories/db.rs
DELETE FROM stories WHERE author_id = $1

-- @ app/src/stories/db.rs
DELETE FROM stories WHERE author_id = $1 AND status = 'draft'

-- @ app/src/trending/db.rs
DELETE FROM trending

-- @ app/src/accounts/users.rs
DELETE FROM user_tokens WHERE expires_at < now() - interval '1 day' OR used_at < now() - interval '1 day'

-- @ app/src/accounts/users.rs
DELETE FROM users WHERE id = $1

-- @ app/src/audit/db.rs
INSERT INTO audit_log (actor_id, actor_name, action, object_kind, object_id, subject_id, before, after, ip, user_agent, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)

-- @ app/src/moderation/db.rs
INSERT INTO bans (user_id, banned_by, reason, until, hid_content) VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at

-- @ app/src/stories/db.rs
INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count) VALUES ($1, $2, $3, $4, $5, $6)

-- @ app/src/exports/db.rs
INSERT INTO exports (user_id) VALUES ($1)
         ON CONFLICT (user_id) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id

-- @ app/src/social/db.rs
INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING

-- @ app/src/live/mod.rs
INSERT INTO live_events (channel, event, data) VALUES ($1, $2, $3) RETURNING id

-- @ app/src/accounts/users.rs
INSERT INTO login_ips (user_id, ip) VALUES ($1, $2)
         ON CONFLICT (user_id, ip) DO UPDATE SET last_login_at = now()

-- @ app/src/media/db.rs
INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, width, height)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id

-- @ app/src/accounts/users.rs
INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
             VALUES ($1, 'off', 'off', 'off', 'off', 'off') ON CONFLICT DO NOTHING

-- @ app/src/notifications/prefs.rs
INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
         SELECT id, $2, $3, $4, $5, $6 FROM users WHERE id = $1
         ON CONFLICT (user_id) DO UPDATE SET email_follow = $2, email_like = $3, email_comment = $4,
             email_reply = $5, email_chapter = $6, updated_at = now()

-- @ app/src/notifications/prefs.rs
INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
         SELECT id, $2, $3, $4, $5, $6 FROM users WHERE id = $1
         ON CONFLICT (user_id) DO UPDATE SET {}, updated_at = now()

-- @ app/src/social/db.rs
INSERT INTO reading_progress (user_id, story_id, chapter_number) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, story_id) DO UPDATE SET chapter_number = excluded.chapter_number, updated_at = now()
         WHERE reading_progress.chapter_number <> excluded.chapter_number
            OR reading_progress.updated_at < now() - interval '10 minutes'

-- @ app/src/moderation/db.rs
INSERT INTO reports (reporter_id, object_kind, object_id, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (reporter_id, object_kind, object_id) WHERE status = 'open' DO NOTHING

-- @ app/src/accounts/users.rs
INSERT INTO retired_usernames (username, retired_at) VALUES (lower($1), now())
         ON CONFLICT (username) DO UPDATE SET retired_at = now()

-- @ app/src/social/db.rs
INSERT INTO saves (user_id, story_id) VALUES ($1, $2) ON CONFLICT DO NOTHING

-- @ worker/src/jobs/mail.rs
INSERT INTO sent_emails (job_key, recipient, subject) VALUES ($1, $2, $3) ON CONFLICT (job_key) DO NOTHING

-- @ app/src/sessions/store.rs
INSERT INTO sessions (id_hash, user_id, expires_at, user_agent, ip)
         VALUES ($1, $2, now() + make_interval(days => $3), $4, $5)

-- @ app/src/stories/db.rs
INSERT INTO stories (author_id, title, summary, cover_id) VALUES ($1, $2, $3, $4) RETURNING id

-- @ app/src/accounts/users.rs
INSERT INTO user_tokens (token_hash, user_id, purpose, email, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))

-- @ app/src/accounts/users.rs
INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3) RETURNING

-- @ app/src/accounts/users.rs
INSERT INTO users (username, email, password_hash, display_name, bio, role)
         VALUES ($1, 'deleted_user@quire.invalid', $2, 'deleted user',
                 'Stories and comments kept by people who have deleted their accounts.', 'reader')
         ON CONFLICT DO NOTHING RETURNING id

-- @ app/src/seed.rs
INSERT INTO users (username, email, password_hash, display_name, bio, role, email_verified_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (lower(username)) DO NOTHING

-- @ app/src/accounts/users.rs
SELECT

-- @ app/src/web/ops/health.rs
SELECT
               (SELECT extract(epoch FROM now() - min(run_at))::float8 FROM apalis.jobs
                 WHERE status = 'Pending' AND run_at <= now()),
               (SELECT extract(epoch FROM now() - max(last_seen))::float8 FROM apalis.workers)

-- @ app/src/moderation/db.rs
SELECT $1

-- @ app/src/admin/db.rs
SELECT (SELECT count(*) FROM users) AS users,
                (SELECT count(*) FROM users WHERE role >= 'moderator') AS staff,
                (SELECT count(*) FROM reports WHERE status = 'open') AS open_reports,
                (SELECT count(*) FROM (SELECT DISTINCT object_kind, object_id FROM reports WHERE status = 'open') o) AS objects_reported,
                (SELECT count(*) FROM bans WHERE lifted_at IS NULL AND (until IS NULL OR until > now())) AS active_bans,
                (SELECT count(*) FROM stories WHERE hidden_at IS NOT NULL) AS hidden_stories,
                (SELECT count(*) FROM comments WHERE hidden_at IS NOT NULL) AS hidden_comments

-- @ app/src/db/routing.rs
SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint

-- @ app/src/feeds/db.rs
SELECT 1 + (SELECT count(DISTINCT s.author_id) FROM stories s WHERE

-- @ app/src/notifications/db.rs
SELECT DISTINCT ON (r.user_id) r.user_id, r.kind, a.id, s.id, $3::bigint, NULL::integer,
                        {actor} || jsonb_build_object('story_title', s.title, 'excerpt', $6::text),
                        'comment:' || $3
                 FROM (VALUES ($5::bigint, 'reply', 0), ($4::bigint, 'comment', 1)) r (user_id, kind, rank)
                 JOIN users ru ON ru.id = r.user_id
                 JOIN users a ON a.id = $1
                 JOIN stories s ON s.id = $2
                 WHERE r.user_id <> a.id
                 ORDER BY r.user_id, r.rank

-- @ app/src/notifications/db.rs
SELECT DISTINCT n.user_id FROM notifications n
         JOIN users u ON u.id = n.user_id AND u.email_verified_at IS NOT NULL
         LEFT JOIN notification_prefs p ON p.user_id = n.user_id
         WHERE {} ORDER BY n.user_id

-- @ app/src/social/db.rs
SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2)

-- @ app/src/social/db.rs
SELECT EXISTS (SELECT 1 FROM likes WHERE story_id = $2 AND user_id = $1) AS liked,
                EXISTS (SELECT 1 FROM saves WHERE user_id = $1 AND story_id = $2) AS saved,
                EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $3) AS following,
                (SELECT chapter_number FROM reading_progress WHERE user_id = $1 AND story_id = $2) AS progress

-- @ app/src/accounts/users.rs
SELECT EXISTS (SELECT 1 FROM login_ips WHERE user_id = $1 AND ip = $2
                        AND last_login_at > now() - make_interval(days => $3::int))

-- @ app/src/media/db.rs
SELECT EXISTS (SELECT 1 FROM media WHERE id = $1)

-- @ app/src/accounts/users.rs
SELECT EXISTS (SELECT 1 FROM retired_usernames WHERE username = lower($1)
                        AND retired_at > now() - make_interval(days => $2::int))

-- @ app/src/seed.rs
SELECT EXISTS (SELECT 1 FROM stories WHERE author_id = $1 AND title = $2)

-- @ app/src/seed.rs
SELECT author_id FROM comments WHERE id = $1

-- @ app/src/seed.rs
SELECT author_id FROM stories WHERE id = $1

-- @ app/src/media/db.rs
SELECT avatar_id FROM users WHERE id = $1 FOR NO KEY UPDATE

-- @ app/src/moderation/db.rs
SELECT c.id, c.author_id AS owner_id,
                (s.status = 'published' AND s.hidden_at IS NULL AND c.deleted_at IS NULL) AS public,
                c.hidden_at IS NOT NULL AS hidden
         FROM comments c JOIN stories s ON s.id = c.story_id
         WHERE c.id = $1 AND c.story_id = $2

-- @ app/src/social/db.rs
SELECT c.id, c.story_id, c.author_id, s.author_id AS story_author_id, s.status AS story_status,
                c.deleted_at IS NOT NULL AS deleted
         FROM comments c JOIN stories s ON s.id = c.story_id WHERE c.id = $1 AND c.story_id = $2

-- @ app/src/social/db.rs
SELECT c.id, c.story_id, c.parent_id, c.author_id, u.username AS author_username, u.display_name AS author_display_name,
                CASE WHEN c.hidden_at IS NULL OR c.author_id = $5 OR $6 THEN c.body_html ELSE '' END AS body_html,
                c.created_at,
                (c.deleted_at IS NOT NULL OR (c.hidden_at IS NOT NULL AND c.author_id IS DISTINCT FROM $5 AND NOT $6)) AS deleted,
                c.hidden_at IS NOT NULL AS hidden, c.hidden_reason,
                coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'id', r.id, 'story_id', r.story_id, 'parent_id', r.parent_id, 'author_id', r.author_id,
                            'author_username', ru.username, 'author_display_name', ru.display_name,
                            'body_html', r.body_html, 'created_at', r.created_at, 'deleted', false,
                            'hidden', r.hidden_at IS NOT NULL, 'hidden_reason', r.hidden_reason)
                          ORDER BY r.created_at, r.id)
                          FROM comments r JOIN users ru ON ru.id = r.author_id
                          WHERE r.parent_id = c.id AND r.deleted_at IS NULL
                            AND (r.hidden_at IS NULL OR r.author_id = $5 OR $6)), '[]') AS replies
         FROM comments c JOIN users u ON u.id = c.author_id
         WHERE c.story_id = $1 AND c.parent_id IS NULL
           AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2, $3))
           AND ((c.deleted_at IS NULL AND (c.hidden_at IS NULL OR c.author_id = $5 OR $6))
                OR EXISTS (SELECT 1 FROM comments r WHERE r.parent_id = c.id AND r.deleted_at IS NULL
                                                      AND (r.hidden_at IS NULL OR r.author_id = $5 OR $6)))
         ORDER BY c.created_at DESC, c.id DESC LIMIT $4

-- @ app/src/exports/db.rs
SELECT c.id, c.story_id, s.title AS story_title, c.parent_id, c.body_markdown, c.created_at, c.hidden_at, c.hidden_reason
         FROM comments c JOIN stories s ON s.id = c.story_id
         WHERE c.author_id = $1 AND c.deleted_at IS NULL AND c.id > $2 ORDER BY c.id LIMIT $3

-- @ app/src/exports/db.rs
SELECT c.story_id, c.number, c.title, c.body_markdown, c.body_html, c.word_count, c.created_at
         FROM chapters c JOIN stories s ON s.id = c.story_id
         WHERE s.author_id = $1 AND (c.story_id, c.number) > ($2, $3)
         ORDER BY c.story_id, c.number LIMIT $4

-- @ app/src/stories/db.rs
SELECT chapter_count + 1 FROM stories WHERE id = $1 FOR UPDATE

-- @ app/src/live/db.rs
SELECT coalesce(max(id), 0) FROM live_events

-- @ app/src/notifications/db.rs
SELECT count(*) FROM (SELECT 1 FROM notifications WHERE user_id = $1 AND read_at IS NULL LIMIT 100) unread

-- @ app/src/exports/db.rs
SELECT count(*) FROM chapters c JOIN stories s ON s.id = c.story_id WHERE s.author_id = $1

-- @ app/src/exports/db.rs
SELECT count(*) FROM comments WHERE author_id = $1 AND deleted_at IS NULL

-- @ app/src/moderation/db.rs
SELECT count(*) FROM reports WHERE status = 'open'

-- @ app/src/exports/db.rs
SELECT count(*), coalesce(ceil(extract(epoch FROM min(created_at) + interval '24 hours' - now())), 0)::bigint
         FROM exports WHERE user_id = $1 AND created_at > now() - interval '24 hours'

-- @ app/src/media/db.rs
SELECT cover_id FROM stories WHERE id = $1 FOR NO KEY UPDATE

-- @ app/src/accounts/users.rs
SELECT email FROM users WHERE id = $1 FOR UPDATE

-- @ app/src/notifications/prefs.rs
SELECT email_follow, email_like, email_comment, email_reply, email_chapter FROM notification_prefs WHERE user_id = $1

-- @ app/src/notifications/db.rs
SELECT f.follower_id, 'chapter', src.author_id, src.story_id, NULL::bigint, $2::integer, src.data,
                    'chapter:' || src.story_id || ':' || $2
             FROM src JOIN follows f ON f.followee_id = src.author_id
             WHERE f.follower_id <> src.author_id

-- @ app/src/seed.rs
SELECT id FROM comments WHERE story_id = $1 AND author_id = $2 AND body_markdown = $3

-- @ app/src/seed.rs
SELECT id FROM stories WHERE title = $1 ORDER BY id LIMIT 1

-- @ app/src/social/db.rs
SELECT id FROM users WHERE id = $1
            OR id IN (SELECT followee_id FROM follows WHERE follower_id = $1)
            OR id IN (SELECT follower_id FROM follows WHERE followee_id = $1)
         ORDER BY id FOR NO KEY UPDATE

-- @ app/src/social/db.rs
SELECT id FROM users WHERE id IN ($1, $2) ORDER BY id FOR NO KEY UPDATE

-- @ app/src/seed.rs
SELECT id FROM users WHERE username = $1

-- @ app/src/accounts/users.rs
SELECT id FROM users WHERE username = $1 AND password_hash = $2

-- @ app/src/audit/db.rs
SELECT id, at, actor_id, actor_name, action, object_kind, object_id, subject_id, before, after, ip, user_agent, request_id
         FROM audit_log
         WHERE ($1::text IS NULL OR action = $1)
           AND ($2::bigint IS NULL OR actor_id = $2 OR subject_id = $2)
           AND ($3::text IS NULL OR object_kind = $3)
           AND ($4::text IS NULL OR object_id = $4)
           AND ($5::bigint IS NULL OR id < $5)
         ORDER BY id DESC
         LIMIT $6

-- @ app/src/audit/db.rs
SELECT id, at, actor_id, actor_name, action, object_kind, object_id, subject_id, before, after, ip, user_agent, request_id
         FROM audit_log
         WHERE subject_id = $1 AND action = ANY($2)
         ORDER BY at DESC, id DESC
         LIMIT $3

-- @ app/src/moderation/db.rs
SELECT id, author_id AS owner_id, status = 'published' AS public, hidden_at IS NOT NULL AS hidden FROM stories WHERE id = $1

-- @ app/src/social/db.rs
SELECT id, author_id, status, like_count, hidden_at IS NOT NULL AS hidden FROM stories WHERE id = $1

-- @ app/src/live/db.rs
SELECT id, channel, event, data FROM live_events WHERE channel = ANY($1) AND id > $2 ORDER BY id LIMIT $3

-- @ app/src/live/db.rs
SELECT id, channel, event, data FROM live_events WHERE id > $1 OR id = ANY($2) ORDER BY id LIMIT $3

-- @ app/src/moderation/db.rs
SELECT id, id AS owner_id, true AS public, profile_hidden_at IS NOT NULL AS hidden FROM users WHERE lower(username) = lower($1)

-- @ app/src/jobs/admin.rs
SELECT id, job_type, status, attempts, max_attempts, run_at > now(), coalesce(last_result ->> 'Err', last_result::text), job
           FROM apalis.jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE

-- @ app/src/jobs/admin.rs
SELECT id, job_type, status, attempts, max_attempts, run_at > now(), coalesce(last_result ->> 'Err', last_result::text), job
           FROM apalis.jobs WHERE {FAILED_SQL} AND job_type = $1
          ORDER BY coalesce(done_at, run_at), id LIMIT $2 FOR UPDATE

-- @ app/src/feeds/db.rs
SELECT id, name, name AS display_name, to_timestamp(0) AS since FROM tags WHERE name = $1

-- @ app/src/accounts/users.rs
SELECT id, password_hash FROM users WHERE lower({column}) = lower($1)

-- @ app/src/moderation/db.rs
SELECT id, reason, until, created_at, hid_content FROM bans
         WHERE user_id = $1 AND lifted_at IS NULL AND (until IS NULL OR until > now())

-- @ app/src/accounts/users.rs
SELECT id, role FROM users WHERE lower(username) = lower($1) FOR UPDATE

-- @ app/src/exports/db.rs
SELECT id, storage_key FROM exports WHERE status = 'ready' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED

-- @ app/src/social/db.rs
SELECT id, story_id, parent_id, author_id, deleted_at IS NOT NULL AS deleted FROM comments WHERE id = $1

-- @ app/src/exports/db.rs
SELECT id, user_id, status, storage_key, byte_size, ready_at, expires_at,
                (status = 'expired' OR coalesce(expires_at <= now(), false)) AS expired
         FROM exports WHERE token_hash = $1

-- @ app/src/feeds/db.rs
SELECT id, username AS name, display_name, created_at AS since FROM users WHERE lower(username) = lower($1)

-- @ app/src/exports/db.rs
SELECT id, username, email, display_name, bio, role, email_verified_at, created_at, follower_count, following_count, avatar_id
         FROM users WHERE id = $1

-- @ app/src/jobs/admin.rs
SELECT id, worker_type, started_at, extract(epoch FROM now() - last_seen)::float8
           FROM apalis.workers
          WHERE last_seen > now() - make_interval(secs => $1)
          ORDER BY id

-- @ app/src/jobs/admin.rs
SELECT job_type,
                CASE WHEN status = 'Pending' AND run_at > now() THEN 'Scheduled'
                     WHEN status = 'Failed' AND attempts < max_attempts THEN 'Retrying'
                     ELSE status END AS state,
                count(*)::int8,
                extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'Pending' AND run_at <= now()))::float8
           FROM apalis.jobs
          WHERE status <> 'Done'
          GROUP BY 1, 2

-- @ app/src/exports/db.rs
SELECT k FROM unnest($1::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM exports WHERE storage_key = k)

-- @ app/src/feeds/db.rs
SELECT kind, key, lastmod FROM (
             SELECT 0 AS kind, ''::text AS key, max(greatest(s.published_at, s.last_chapter_at)) AS lastmod
             FROM stories s WHERE

-- @ app/src/exports/db.rs
SELECT l.story_id, s.title AS story_title, u.username AS author, l.created_at AS liked_at
         FROM likes l JOIN stories s ON s.id = l.story_id JOIN users u ON u.id = s.author_id
         WHERE l.user_id = $1 ORDER BY l.created_at, l.story_id

-- @ app/src/exports/db.rs
SELECT m.id, m.public_id, m.purpose, m.original_key, m.content_type, m.byte_size, m.created_at
         FROM media m
         WHERE m.owner_id = $1
           AND (m.id = (SELECT avatar_id FROM users WHERE id = $1)
                OR EXISTS (SELECT 1 FROM stories s WHERE s.cover_id = m.id AND s.author_id = $1))
         ORDER BY m.id

-- @ app/src/live/db.rs
SELECT min(id) FROM live_events

-- @ app/src/notifications/db.rs
SELECT n.id, n.user_id, n.kind, n.actor_id, n.story_id, n.comment_id, n.chapter_number, n.data, n.created_at, n.read_at,
                u.email, u.username, u.display_name
         FROM notifications n JOIN users u ON u.id = n.user_id LEFT JOIN notification_prefs p ON p.user_id = n.user_id
         WHERE n.id = ANY($1) AND n.emailed_at IS NULL AND n.read_at IS NULL AND u.email_verified_at IS NOT NULL
           AND {} = 'instant'
         ORDER BY n.id

-- @ app/src/stories/db.rs
SELECT number, title, body_html, word_count, created_at FROM chapters WHERE story_id = $1 AND number = $2

-- @ app/src/stories/db.rs
SELECT number, title, word_count, created_at FROM chapters WHERE story_id = $1 ORDER BY number

-- @ app/src/media/db.rs
SELECT original_key, public_id FROM media WHERE id = $1 AND status = 'pending'

-- @ app/src/media/db.rs
SELECT original_key, variants FROM media m WHERE m.id = $1 AND

-- @ app/src/stories/db.rs
SELECT p.*,
            (SELECT coalesce(jsonb_agg(jsonb_build_object('number', c.number, 'title', c.title,
                      'word_count', c.word_count, 'created_at', c.created_at) ORDER BY c.number), '[]')
             FROM chapters c WHERE c.story_id = p.id) AS chapters
     FROM (

-- @ app/src/social/db.rs
SELECT p.*, rp.chapter_number AS progress_chapter FROM reading_progress rp CROSS JOIN LATERAL (

-- @ app/src/social/db.rs
SELECT p.*, sv.created_at AS saved_at FROM saves sv CROSS JOIN LATERAL (

-- @ app/src/accounts/users.rs
SELECT password_hash FROM users WHERE id = $1

-- @ worker/src/scheduler.rs
SELECT pg_advisory_lock($1)

-- @ app/src/trending/db.rs
SELECT pg_advisory_xact_lock(hashtext('quire:trending'))

-- @ app/src/live/broker.rs
SELECT pg_backend_pid()

-- @ app/src/db/routing.rs
SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint

-- @ app/src/live/mod.rs
SELECT pg_notify($1, $2)

-- @ app/src/sessions/store.rs
SELECT public_id AS id, user_agent, ip, created_at, last_seen_at FROM sessions
         WHERE user_id = $1 AND expires_at > now() AND last_seen_at > now() - make_interval(days => $2)
         ORDER BY last_seen_at DESC

-- @ app/src/notifications/db.rs
SELECT r.id, 'follow', a.id, NULL::bigint, NULL::bigint, NULL::integer, {actor}, 'follow:' || a.id
                 FROM users a JOIN users r ON r.id = $2 WHERE a.id = $1 AND a.id <> r.id

-- @ app/src/moderation/db.rs
SELECT r.id, r.object_kind, r.object_id, r.status, r.reason, u.username AS resolved_by_name
         FROM reports r LEFT JOIN users u ON u.id = r.resolved_by
         WHERE r.id = $1 FOR UPDATE OF r

-- @ app/src/feeds/db.rs
SELECT r.story_id, r.number,
                CASE WHEN r.number = 0 THEN greatest(s.updated_at, s.published_at)
                     ELSE greatest(c.created_at, s.published_at) END AS lastmod
         FROM (SELECT s.id AS story_id, n.number FROM stories s CROSS JOIN LATERAL generate_series(0, s.chapter_count) AS n(number)
               WHERE

-- @ app/src/notifications/db.rs
SELECT s.author_id, 'like', a.id, s.id, NULL::bigint, NULL::integer,
                        {actor} || jsonb_build_object('story_title', s.title), 'like:' || s.id || ':' || a.id
                 FROM users a JOIN stories s ON s.id = $2 WHERE a.id = $1 AND s.author_id <> a.id

-- @ app/src/stories/db.rs
SELECT s.id, s.author_id, u.username AS author_username, u.display_name AS author_display_name,
                s.title, s.summary, s.status, s.published_at, s.cover_id, s.chapter_count, s.word_count,
                s.created_at, s.like_count, s.comment_count, s.hidden_at, s.hidden_reason,
                coalesce(string_to_array(nullif(s.tags_text, ''), ' '), ARRAY[]::text[]) AS tags,

-- @ app/src/exports/db.rs
SELECT s.id, s.title, s.summary, s.status,
                coalesce((SELECT array_agg(t.name ORDER BY t.name) FROM story_tags st JOIN tags t ON t.id = st.tag_id
                          WHERE st.story_id = s.id), '{}') AS tags,
                s.published_at, s.created_at, s.updated_at, s.chapter_count, s.word_count, s.like_count, s.comment_count,
                s.hidden_at, s.hidden_reason, s.cover_id
         FROM stories s WHERE s.author_id = $1 ORDER BY s.id

-- @ app/src/sessions/store.rs
SELECT s.public_id, s.last_seen_at, s.read_lsn, u.id, u.username, u.display_name, u.email, u.role,
                u.email_verified_at IS NOT NULL AS email_verified,
                -- notifications::db::UNREAD_CAP: bounded on the partial index, O(1) per lookup
                (SELECT count(*) FROM (SELECT 1 FROM notifications n WHERE n.user_id = u.id AND n.read_at IS NULL
                                       LIMIT 100) unread) AS unread
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now()
           AND s.last_seen_at > now() - make_interval(days => $2)

-- @ app/src/search/db.rs
SELECT t.name, count(*) AS stories FROM tags t JOIN story_tags st ON st.tag_id = t.id
           JOIN stories s ON s.id = st.story_id WHERE

-- @ app/src/accounts/users.rs
SELECT t.user_id FROM user_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now()
           AND lower(t.email) = lower(u.email)

-- @ app/src/media/db.rs
SELECT true, id FROM stories WHERE cover_id = $1 UNION ALL SELECT false, id FROM users WHERE avatar_id = $1

-- @ app/src/social/db.rs
SELECT u.id, u.username, u.display_name, u.bio, f.created_at AS since
             FROM follows f JOIN users u ON u.id = f.followee_id
             WHERE f.follower_id = $1 AND ($2::timestamptz IS NULL OR (f.created_at, f.followee_id) < ($2, $3))
             ORDER BY f.created_at DESC, f.followee_id DESC LIMIT $4

-- @ app/src/social/db.rs
SELECT u.id, u.username, u.display_name, u.bio, f.created_at AS since
             FROM follows f JOIN users u ON u.id = f.follower_id
             WHERE f.followee_id = $1 AND ($2::timestamptz IS NULL OR (f.created_at, f.follower_id) < ($2, $3))
             ORDER BY f.created_at DESC, f.follower_id DESC LIMIT $4

-- @ app/src/admin/db.rs
SELECT u.id, u.username, u.email, u.display_name, u.role, u.created_at,
                u.email_verified_at IS NOT NULL AS email_verified,
                b.id IS NOT NULL AS banned, b.until AS ban_until, b.reason AS ban_reason
         FROM users u
         LEFT JOIN bans b ON b.user_id = u.id AND b.lifted_at IS NULL AND (b.until IS NULL OR b.until > now())
         WHERE ($1 = '%%' OR u.username ILIKE $1 OR u.email ILIKE $1 OR u.display_name ILIKE $1)
           AND ($2::bigint IS NULL OR u.id < $2)
         ORDER BY u.id DESC
         LIMIT $3

-- @ app/src/exports/db.rs
SELECT u.username, f.created_at AS since FROM follows f JOIN users u ON u.id = f.followee_id
         WHERE f.follower_id = $1 ORDER BY f.created_at, u.username

-- @ app/src/exports/db.rs
SELECT u.username, f.created_at AS since FROM follows f JOIN users u ON u.id = f.follower_id
         WHERE f.followee_id = $1 ORDER BY f.created_at, u.username

-- @ app/src/exports/db.rs
SELECT user_id, token_hash, expires_at FROM exports WHERE id = $1 AND status = 'ready' AND expires_at > now()

-- @ app/src/accounts/deletion.rs
SELECT username, role, created_at FROM users WHERE id = $1 FOR UPDATE

-- @ app/src/notifications/db.rs
SELECT {COLUMNS} FROM notifications
         WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3

-- @ app/src/jobs/admin.rs
SELECT {FAILED_COLUMNS} FROM apalis.jobs
          WHERE {FAILED_SQL} AND ($1::text IS NULL OR job_type = $1) {keyset}
          ORDER BY coalesce(done_at, run_at) DESC, id DESC
          LIMIT $4

-- @ worker/src/acks.rs
UPDATE apalis.jobs AS j
    SET status = a.status, attempts = a.attempt, last_result = a.result, done_at = now()
   FROM unnest($1::text[], $2::int4[], $3::text[], $4::jsonb[]) AS a(id, attempt, status, result)
  WHERE j.id = a.id AND j.lock_by = $5

-- @ app/src/seed.rs
UPDATE apalis.jobs SET status = 'Failed', attempts = max_attempts, done_at = now() - interval '20 minutes',
                last_result = jsonb_build_object('Err', 'demo: connection refused by smtp.example.com:587 (seeded failure)')
          WHERE idempotency_key = $1

-- @ app/src/moderation/db.rs
UPDATE bans SET lifted_at = now(), lifted_by = $2 WHERE user_id = $1 AND lifted_at IS NULL

-- @ app/src/moderation/db.rs
UPDATE bans SET lifted_at = now(), lifted_by = $2 WHERE user_id = $1 AND lifted_at IS NULL
         RETURNING id, reason, until, created_at, hid_content

-- @ app/src/social/db.rs
UPDATE comments SET author_id = $2 WHERE author_id = $1

-- @ app/src/social/db.rs
UPDATE comments SET author_id = $2 WHERE author_id = $1 AND deleted_at IS NULL

-- @ app/src/social/db.rs
UPDATE comments SET author_id = $2, deleted_at = coalesce(deleted_at, now()), body_markdown = '', body_html = ''
         WHERE author_id = $1

-- @ app/src/moderation/db.rs
UPDATE comments SET hidden_at = $2, hidden_reason = $3 WHERE author_id = $1 AND hidden_at IS NULL

-- @ app/src/moderation/db.rs
UPDATE comments SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3
             WHERE id = $1 AND (hidden_at IS NULL) = $2
             RETURNING author_id AS owner_id, story_id

-- @ app/src/moderation/db.rs
UPDATE comments SET hidden_at = NULL, hidden_reason = '' WHERE author_id = $1 AND hidden_at = $2

-- @ app/src/exports/db.rs
UPDATE exports SET progress = $2, total = $3 WHERE id = $1 AND status = 'running'

-- @ app/src/exports/db.rs
UPDATE exports SET status = 'expired', storage_key = NULL WHERE id = ANY($1)

-- @ app/src/exports/db.rs
UPDATE exports SET status = 'failed', error = $2 WHERE id = $1 AND status IN ('queued', 'running')

-- @ app/src/exports/db.rs
UPDATE exports SET status = 'ready', storage_key = $2, byte_size = $3, link_key = $4, token_hash = $5, progress = total,
                ready_at = now(), expires_at = now() + make_interval(hours => $6::int)
         WHERE id = $1 AND status = 'running'

-- @ app/src/exports/db.rs
UPDATE exports SET status = 'running', started_at = now(), progress = 0, total = 0, error = NULL
         WHERE id = $1 AND status IN ('queued', 'running') RETURNING user_id

-- @ app/src/media/db.rs
UPDATE media SET owner_id = $2 WHERE owner_id = $1 RETURNING id

-- @ app/src/media/db.rs
UPDATE media SET status = 'failed', error = $2, processed_at = now() WHERE id = $1 AND status = 'pending'

-- @ app/src/media/db.rs
UPDATE media SET status = 'ready', error = NULL, width = $2, height = $3, exif = $4, variants = $5, processed_at = now()
         WHERE id = $1 AND status = 'pending'

-- @ app/src/notifications/db.rs
UPDATE notifications SET emailed_at = now() WHERE id = $1 AND emailed_at IS NULL

-- @ app/src/notifications/db.rs
UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}

-- @ app/src/notifications/db.rs
UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL

-- @ app/src/moderation/db.rs
UPDATE reports SET status = $3, resolved_at = now(), resolved_by = $4, resolution_note = $5
         WHERE object_kind = $1 AND object_id = $2 AND status = 'open'

-- @ app/src/sessions/store.rs
UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1

-- @ app/src/sessions/store.rs
UPDATE sessions SET read_lsn = greatest(read_lsn, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint)
         WHERE id_hash = $1

-- @ app/src/stories/db.rs
UPDATE stories SET author_id = $2, cover_id = NULL, updated_at = now() WHERE author_id = $1

-- @ app/src/stories/db.rs
UPDATE stories SET chapter_count = $2, word_count = word_count + $3, last_chapter_at = now(), updated_at = now() WHERE id = $1

-- @ app/src/moderation/db.rs
UPDATE stories SET hidden_at = $2, hidden_reason = $3 WHERE author_id = $1 AND hidden_at IS NULL

-- @ app/src/moderation/db.rs
UPDATE stories SET hidden_at = CASE WHEN $2 THEN now() END, hidden_reason = $3
             WHERE id = $1 AND (hidden_at IS NULL) = $2
             RETURNING author_id AS owner_id, id AS story_id

-- @ app/src/moderation/db.rs
UPDATE stories SET hidden_at = NULL, hidden_reason = '' WHERE author_id = $1 AND hidden_at = $2

-- @ app/src/stories/db.rs
UPDATE stories SET title = $2, summary = $3,
            status = CASE WHEN $4 THEN 'published' ELSE 'draft' END,
            published_at = CASE WHEN $4 THEN coalesce(published_at, now()) ELSE NULL END,
            -- publishing a story that has chapters puts it among its followers' new chapters
            last_chapter_at = CASE WHEN $4 AND status = 'draft' AND chapter_count > 0 THEN now() ELSE last_chapter_at END,
            cover_id = coalesce($5, cover_id),
            updated_at = now()
         WHERE id = $1

-- @ app/src/accounts/users.rs
UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL

-- @ app/src/accounts/users.rs
UPDATE user_tokens t SET used_at = now()
         FROM users u
         WHERE u.id = t.user_id AND t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL
           AND t.expires_at > now() AND lower(t.email) = lower(u.email)
         RETURNING t.user_id

-- @ app/src/social/db.rs
UPDATE users SET
            following_count = following_count + CASE WHEN id = $1 THEN $3 ELSE 0 END,
            follower_count = follower_count + CASE WHEN id = $2 THEN $3 ELSE 0 END
         WHERE id IN ($1, $2)

-- @ app/src/accounts/users.rs
UPDATE users SET display_name = $2, bio = $3, avatar_id = coalesce($4, avatar_id) WHERE id = $1

-- @ app/src/accounts/users.rs
UPDATE users SET email = $2, email_verified_at = NULL WHERE id = $1

-- @ app/src/accounts/users.rs
UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1

-- @ app/src/accounts/users.rs
UPDATE users SET password_hash = $2 WHERE id = $1

-- @ app/src/moderation/db.rs
UPDATE users SET profile_hidden_at = CASE WHEN $2 THEN now() END, profile_hidden_reason = $3
             WHERE id = $1 AND (profile_hidden_at IS NULL) = $2
             RETURNING id AS owner_id, NULL::bigint AS story_id

-- @ app/src/accounts/users.rs
UPDATE users SET role = $2 WHERE id = $1

-- @ app/src/jobs/admin.rs
WITH b AS (SELECT date_bin('{BUCKET_SECS} seconds', now(), timestamptz '2000-01-01 00:00:00+00') - interval '{} seconds' AS since),
         ev AS (
           SELECT job_type, done_at AS at, true AS ok FROM apalis.jobs, b WHERE status = 'Done' AND done_at >= b.since
           UNION ALL
           SELECT job_type, coalesce(done_at, run_at), false FROM apalis.jobs, b
            WHERE {FAILED_SQL} AND coalesce(done_at, run_at) >= b.since
         )
         SELECT b.since, ev.job_type, floor(extract(epoch FROM ev.at - b.since) / {BUCKET_SECS})::int4,
                count(ev.at) FILTER (WHERE ev.ok)::int8, count(ev.at) FILTER (WHERE NOT ev.ok)::int8
           FROM b LEFT JOIN ev ON true
          GROUP BY 1, 2, 3

-- @ app/src/seed.rs
WITH cd AS (
             SELECT c.story_id, c.number, d::date AS day,
                    -- a few readers a day, more for early chapters, recent days and some stories
                    (1 + (c.story_id * 7 + c.number * 3 + extract(day FROM d)::int) % 5
                       + greatest(0, 30 - ((now() AT TIME ZONE 'UTC')::date - d::date)) / 6
                       + greatest(0, 4 - c.number))::int AS readers
             FROM chapters c JOIN stories s ON s.id = c.story_id AND

-- @ app/src/stats/db.rs
WITH days AS (SELECT generate_series($2::date - ($3::int - 1), $2::date, interval '1 day')::date AS day),
              v AS (SELECT day, sum(views)::bigint AS views FROM chapter_views_daily
                    WHERE story_id = $1 AND day > $2::date - $3::int GROUP BY day),
              r AS (SELECT day, count(DISTINCT reader) AS readers FROM chapter_readers_daily
                    WHERE story_id = $1 AND day > $2::date - $3::int GROUP BY day),
              t AS (SELECT count(DISTINCT reader) AS window_readers FROM chapter_readers_daily
                    WHERE story_id = $1 AND day > $2::date - $3::int),
              l AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS likes FROM likes
                    WHERE story_id = $1 AND created_at >= ($2::date - ($3::int - 1))::timestamp AT TIME ZONE 'UTC' GROUP BY 1),
              c AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS comments FROM comments
                    WHERE story_id = $1 AND deleted_at IS NULL
                      AND created_at >= ($2::date - ($3::int - 1))::timestamp AT TIME ZONE 'UTC' GROUP BY 1)
         SELECT days.day, coalesce(v.views, 0)::bigint AS views, coalesce(r.readers, 0)::bigint AS readers,
                coalesce(l.likes, 0)::bigint AS likes, coalesce(c.comments, 0)::bigint AS comments, t.window_readers
         FROM days CROSS JOIN t
         LEFT JOIN v USING (day) LEFT JOIN r USING (day) LEFT JOIN l USING (day) LEFT JOIN c USING (day)
         ORDER BY days.day

-- @ app/src/social/db.rs
WITH del AS (
             UPDATE comments SET deleted_at = now(), body_markdown = '', body_html = ''
             WHERE id = $1 AND deleted_at IS NULL RETURNING story_id
         )
         UPDATE stories SET comment_count = comment_count - 1 WHERE id IN (SELECT story_id FROM del) RETURNING id

-- @ app/src/social/db.rs
WITH del AS (DELETE FROM follows WHERE follower_id = $1 OR followee_id = $1 RETURNING follower_id, followee_id),
              -- per other user, in one pass: a correlated count over `del` per user was
              -- quadratic (10 s for 12,500 follows)
              per_user AS (
                  SELECT id, sum(following)::int AS following, sum(followers)::int AS followers FROM (
                      SELECT follower_id AS id, 1 AS following, 0 AS followers FROM del WHERE follower_id <> $1
                      UNION ALL
                      SELECT followee_id, 0, 1 FROM del WHERE followee_id <> $1) x
                  GROUP BY id),
              counted AS (
                  UPDATE users u SET following_count = u.following_count - p.following, follower_count = u.follower_count - p.followers
                  FROM per_user p WHERE u.id = p.id)
         SELECT count(*) FROM del

-- @ app/src/social/db.rs
WITH del AS (DELETE FROM likes WHERE story_id = $1 AND user_id = $2 RETURNING story_id)
         UPDATE stories SET like_count = like_count - 1 WHERE id IN (SELECT story_id FROM del) RETURNING like_count

-- @ app/src/social/db.rs
WITH del AS (DELETE FROM likes WHERE user_id = $1 RETURNING story_id),
              counted AS (UPDATE stories SET like_count = like_count - 1 WHERE id IN (SELECT story_id FROM del))
         SELECT count(*) FROM del

-- @ app/src/notifications/db.rs
WITH due AS (
             SELECT n.id FROM notifications n LEFT JOIN notification_prefs p ON p.user_id = n.user_id
             WHERE n.user_id = $1 AND {}
             FOR UPDATE OF n
         )
         UPDATE notifications n SET digested_at = now() FROM due WHERE n.id = due.id
         RETURNING n.id, n.user_id, n.kind, n.actor_id, n.story_id, n.comment_id, n.chapter_number, n.data, n.created_at, n.read_at

-- @ app/src/moderation/db.rs
WITH g AS (
             SELECT object_kind, object_id, count(*) AS reports, max(created_at) AS latest_at, max(id) AS report_id,
                    (array_agg(reason ORDER BY created_at DESC, id DESC))[1:5] AS reasons
             FROM reports WHERE status = 'open'
             GROUP BY object_kind, object_id
         )
         SELECT g.report_id, g.object_kind, g.object_id, g.reports, g.latest_at, g.reasons,
                CASE g.object_kind WHEN 'story' THEN s.title WHEN 'comment' THEN left(c.body_markdown, 300) ELSE pu.username END AS label,
                CASE g.object_kind
                    WHEN 'story' THEN CASE WHEN s.id IS NOT NULL THEN '/s/' || s.id END
                    WHEN 'comment' THEN CASE WHEN c.id IS NOT NULL THEN '/s/' || c.story_id || '#comment-' || c.id END
                    ELSE CASE WHEN pu.id IS NOT NULL THEN '/u/' || pu.username END END AS url,
                coalesce(su.username, cu.username, pu.username) AS owner_username,
                coalesce(s.hidden_at, c.hidden_at, pu.profile_hidden_at) IS NOT NULL AS hidden
         FROM g
         LEFT JOIN stories s ON g.object_kind = 'story' AND s.id = g.object_id
         LEFT JOIN users su ON su.id = s.author_id
         LEFT JOIN comments c ON g.object_kind = 'comment' AND c.id = g.object_id
         LEFT JOIN users cu ON cu.id = c.author_id
         LEFT JOIN users pu ON g.object_kind = 'user' AND pu.id = g.object_id
         WHERE ($1::timestamptz IS NULL OR (g.latest_at, g.report_id) < ($1, $2))
         ORDER BY g.latest_at DESC, g.report_id DESC
         LIMIT $3

-- @ app/src/stories/db.rs
WITH gone AS (DELETE FROM story_tags WHERE story_id = $1)
         UPDATE stories SET tags_text = array_to_string(ARRAY(SELECT DISTINCT unnest($2::text[]) ORDER BY 1), ' ') WHERE id = $1

-- @ app/src/social/db.rs
WITH ins AS (
             INSERT INTO comments (story_id, author_id, parent_id, body_markdown, body_html) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, story_id, parent_id, author_id, body_html, created_at
         ), counted AS (
             UPDATE stories SET comment_count = comment_count + 1 WHERE id = $1
         )
         SELECT ins.id, ins.story_id, ins.parent_id, ins.author_id, u.username AS author_username,
                u.display_name AS author_display_name, ins.body_html, ins.created_at, false AS deleted, '[]'::jsonb AS replies
         FROM ins JOIN users u ON u.id = ins.author_id

-- @ app/src/live/mod.rs
WITH ins AS (
             INSERT INTO live_events (channel, event, data)
             SELECT 'user:' || u, $2, $3 FROM unnest($1::bigint[]) u
             RETURNING id
         )
         SELECT pg_notify($4, (SELECT max(id) FROM ins)::text)

-- @ app/src/social/db.rs
WITH ins AS (INSERT INTO likes (story_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING story_id)
         UPDATE stories SET like_count = like_count + 1 WHERE id IN (SELECT story_id FROM ins) RETURNING like_count

-- @ app/src/social/db.rs
WITH live AS (SELECT story_id, count(*)::int AS n FROM comments WHERE author_id = $1 AND deleted_at IS NULL GROUP BY story_id),
              counted AS (UPDATE stories s SET comment_count = greatest(s.comment_count - live.n, 0) FROM live WHERE s.id = live.story_id)
         SELECT coalesce(sum(n), 0)::bigint FROM live

-- @ app/src/stories/db.rs
WITH new AS (
             INSERT INTO tags (name) SELECT unnest($2::text[]) ON CONFLICT (name) DO NOTHING RETURNING id
         )
         INSERT INTO story_tags (story_id, tag_id)
         SELECT $1, id FROM new UNION SELECT $1, id FROM tags WHERE name = ANY($2)

-- @ app/src/stats/db.rs
WITH new_readers AS (
             INSERT INTO chapter_readers_daily (story_id, chapter_number, day, reader)
             SELECT r.story_id, r.chapter_number, r.day, r.reader
             FROM unnest($5::bigint[], $6::int[], $7::date[], $8::bigint[]) AS r (story_id, chapter_number, day, reader)
             WHERE EXISTS (SELECT 1 FROM stories s WHERE s.id = r.story_id)
             ORDER BY 1, 3, 2, 4
             ON CONFLICT DO NOTHING
         )
         INSERT INTO chapter_views_daily (story_id, chapter_number, day, views)
         SELECT v.story_id, v.chapter_number, v.day, v.views
         FROM unnest($1::bigint[], $2::int[], $3::date[], $4::bigint[]) AS v (story_id, chapter_number, day, views)
         WHERE EXISTS (SELECT 1 FROM stories s WHERE s.id = v.story_id)
         ORDER BY 1, 3, 2
         ON CONFLICT (story_id, day, chapter_number) DO UPDATE SET views = chapter_views_daily.views + EXCLUDED.views

-- @ app/src/feeds/db.rs
WITH o AS (

-- @ app/src/trending/db.rs
WITH pub AS (SELECT s.id, s.author_id FROM stories s WHERE

-- @ app/src/search/db.rs
WITH q0 AS (SELECT websearch_to_tsquery('english', $1) AS tsq, lower($1) AS raw),
     words AS (
         SELECT DISTINCT w FROM q0, regexp_split_to_table(q0.raw, '[^[:alnum:]_]+') w WHERE length(w) >= 3
     ),
     -- probe: the longest query word less a possible suffix, to find where in a chapter
     -- the snippet is (ts_headline over a whole 2,000-word chapter was most of a page's time)
     q AS (SELECT q0.*, coalesce((SELECT left(w, greatest(3, length(w) - 2)) FROM words ORDER BY length(w) DESC, w LIMIT 1), '') AS probe
             FROM q0),
     hits AS (
         SELECT s.id, CASE WHEN ts_filter(s.search_doc, '{a}') @@ q.tsq THEN 4 ELSE 3 END
                      + ts_rank(s.search_doc, q.tsq, 32)::float8 AS score
           FROM stories s, q WHERE s.search_doc @@ q.tsq
         UNION ALL
         SELECT m.story_id, 1 + count(*)::float8 / (count(*) + 1)
           FROM (SELECT c.story_id FROM chapters c, q WHERE c.search_doc @@ q.tsq LIMIT 2000) m GROUP BY m.story_id
         UNION ALL
         SELECT s.id, 2 + 0.99 * word_similarity(q.raw, s.title)
           FROM stories s, q WHERE q.raw <% s.title
         UNION ALL
         SELECT s.id, 2 + 0.99 * greatest(similarity(u.username, words.w), similarity(u.display_name, words.w), 0.3)
           FROM words JOIN users u ON u.username % words.w OR u.display_name % words.w
                OR (u.username LIKE left(words.w, 2) || '%' AND levenshtein(u.username, words.w) <= 2)
           JOIN stories s ON s.author_id = u.id
     ),
     best AS (SELECT id, max(score) AS score FROM hits GROUP BY id),
     page AS (
         SELECT b.id, b.score FROM best b JOIN stories s ON s.id = b.id
          WHERE

-- @ app/src/jobs/admin.rs
WITH u AS (
           UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), done_at = NULL, lock_by = NULL, lock_at = NULL
            WHERE id = ANY($1) RETURNING id, job_type, run_at
         )
         SELECT pg_notify('apalis::job::insert', json_build_object('job_type', job_type, 'id', id, 'run_at', run_at)::text) FROM u

-- @ app/src/stats/db.rs
WITH v AS (SELECT chapter_number, sum(views)::bigint AS views FROM chapter_views_daily
                    WHERE story_id = $1 AND day >= $2 GROUP BY 1),
              r AS (SELECT chapter_number, count(DISTINCT reader) AS readers FROM chapter_readers_daily
                    WHERE story_id = $1 AND day >= $2 GROUP BY 1)
         SELECT c.number, c.title, coalesce(v.views, 0)::bigint AS views, coalesce(r.readers, 0)::bigint AS readers
         FROM chapters c
         LEFT JOIN v ON v.chapter_number = c.number
         LEFT JOIN r ON r.chapter_number = c.number
         WHERE c.story_id = $1
         ORDER BY c.number

-- @ app/src/notifications/db.rs
WITH {with}ins AS (
             INSERT INTO notifications (user_id, kind, actor_id, story_id, comment_id, chapter_number, data, dedupe_key)
             {select}
             ON CONFLICT (user_id, dedupe_key) DO NOTHING
             RETURNING id, user_id, kind
         )
         SELECT ins.id, ins.user_id, (u.email_verified_at IS NOT NULL AND {delivery} = 'instant') AS mail
         FROM ins JOIN users u ON u.id = ins.user_id LEFT JOIN notification_prefs p ON p.user_id = ins.user_id
