//! `web seed`: demo data for development, idempotent (run it as often as you like).
//! Authors, published stories with chapters and tags, and covers drawn here (PNG
//! gradients, nothing downloaded) and queued for the worker like any upload; then the
//! community around them: follows, likes, comments with a reply or two, reading lists
//! and progress, written through `social::db` so every counter is right, each queueing
//! the `notify` job the same action on a page would.

use crate::{
    accounts::passwords,
    policy::Role,
    db::Db,
    markdown,
    media::{self, Purpose},
    social::db as social,
    jobs::notify::{Activity, Notify},
    stories::db as stories,
    media::upload::{ImageKind, ImageUpload},
};

/// Demo accounts; all share the password below and have confirmed emails. `mara`
/// moderates and `ada` administers, so the moderation and admin pages can be tried.
pub const DEMO_USERS: &[(&str, &str, &str, Role)] = &[
    ("alice", "Alice Marlowe", "Writes slow-burning mysteries set in harbour towns.", Role::Writer),
    ("bruno", "Bruno Okafor", "Science fiction, mostly about ships and the people who fix them.", Role::Writer),
    ("chen", "Chen Wei", "Short fantasy. One chapter a week, rain or shine.", Role::Writer),
    ("dana", "Dana Reyes", "Reader. Anything with a lighthouse, a ship or a dragon in it.", Role::Writer),
    ("eli", "Eli Novak", "Reads on the train, comments at the station.", Role::Writer),
    ("mara", "Mara Quinn", "Moderator. Keeps the comments kind.", Role::Moderator),
    ("ada", "Ada Ferreira", "Administrator.", Role::Admin),
];

/// (follower, followee)
const FOLLOWS: &[(&str, &str)] = &[
    ("bruno", "alice"), ("chen", "alice"), ("alice", "chen"), ("alice", "bruno"),
    ("dana", "alice"), ("dana", "bruno"), ("dana", "chen"), ("eli", "chen"), ("eli", "alice"),
];

/// (story title, who likes it)
const LIKES: &[(&str, &[&str])] = &[
    ("The Lighthouse Keeper's Ledger", &["bruno", "chen", "dana", "eli"]),
    ("Salt on the Windowsill", &["dana"]),
    ("Drydock", &["alice", "dana"]),
    ("The Paper Dragon of Lin'an", &["alice", "dana", "eli"]),
];

struct DemoComment {
    story: &'static str,
    author: &'static str,
    body: &'static str,
    replies: &'static [(&'static str, &'static str)],
}

const COMMENTS: &[DemoComment] = &[
    DemoComment {
        story: "The Lighthouse Keeper's Ledger",
        author: "dana",
        body: "The *second hand* in the ledger gave me chills. Is it who I think it is?",
        replies: &[("alice", "No spoilers — but watch the dates in chapter 3."), ("eli", "I have a theory and it involves the tide tables.")],
    },
    DemoComment {
        story: "The Lighthouse Keeper's Ledger",
        author: "bruno",
        body: "Lovely atmosphere. The harbour feels like a character of its own.",
        replies: &[],
    },
    DemoComment {
        story: "Drydock",
        author: "dana",
        body: "An extra bunk and nobody noticed? **Pressure** was a great title for that chapter.",
        replies: &[("bruno", "Thank you! The next one is about the manifest again.")],
    },
    DemoComment {
        story: "The Paper Dragon of Lin'an",
        author: "eli",
        body: "Read this on the train and missed my stop. Worth it.",
        replies: &[],
    },
];

/// (reader, story title, chapter last opened)
const PROGRESS: &[(&str, &str, i32)] = &[
    ("dana", "The Lighthouse Keeper's Ledger", 2),
    ("dana", "Drydock", 4),
    ("eli", "The Paper Dragon of Lin'an", 1),
];

/// (reader, story title)
const SAVES: &[(&str, &str)] = &[("dana", "Salt on the Windowsill"), ("eli", "Drydock"), ("alice", "The Paper Dragon of Lin'an")];
pub const DEMO_PASSWORD: &str = "quire-demo-password";

struct DemoStory {
    author: &'static str,
    title: &'static str,
    summary: &'static str,
    tags: &'static [&'static str],
    colors: ([u8; 3], [u8; 3]),
    chapters: &'static [&'static str],
}

const STORIES: &[DemoStory] = &[
    DemoStory {
        author: "alice",
        title: "The Lighthouse Keeper's Ledger",
        summary: "When the keeper of Carrow Point vanishes, his ledger is the only witness — and it has been written in two hands.",
        tags: &["mystery", "slow-burn"],
        colors: ([32, 58, 96], [214, 160, 84]),
        chapters: &["The Ledger", "Two Hands", "Low Tide"],
    },
    DemoStory {
        author: "alice",
        title: "Salt on the Windowsill",
        summary: "A retired detective, a missing cat, and a village that remembers everything except the night of the storm.",
        tags: &["mystery", "cozy"],
        colors: ([120, 40, 60], [240, 220, 200]),
        chapters: &["The Cat", "The Storm"],
    },
    DemoStory {
        author: "bruno",
        title: "Drydock",
        summary: "The freighter Halcyon comes in for repairs with one crew member too many.",
        tags: &["science-fiction", "space"],
        colors: ([10, 20, 40], [90, 200, 220]),
        chapters: &["Arrival", "Manifest", "The Extra Bunk", "Pressure"],
    },
    DemoStory {
        author: "chen",
        title: "The Paper Dragon of Lin'an",
        summary: "A calligrapher's apprentice folds a dragon that will not stay flat.",
        tags: &["fantasy", "short"],
        colors: ([150, 30, 30], [250, 200, 90]),
        chapters: &["Ink", "Fold", "Flight"],
    },
];

const PARAGRAPHS: &[&str] = &[
    "The morning came in grey and slow, the way it always did on this part of the coast. *Nothing* moved on the water but the light.",
    "She read the line twice, then a third time, as if the words might rearrange themselves into something kinder. They did not.",
    "\"You're late,\" he said, without looking up from the work in his hands. \"The tide won't wait for either of us.\"",
    "There are places where the map simply stops — not at a border, but at a **question**. This was one of them.",
    "By the time the lamps were lit, the whole street knew. Nobody said it aloud, which is how you could tell.",
];

pub async fn run(db: &Db, storage: &crate::storage::Storage) -> anyhow::Result<()> {
    let hash = passwords::hash(DEMO_PASSWORD.to_string()).await?;
    let mut created = 0;
    for (username, display_name, bio, role) in DEMO_USERS {
        let r = sqlx::query(
            "INSERT INTO users (username, email, password_hash, display_name, bio, role, email_verified_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (lower(username)) DO NOTHING",
        )
        .bind(username)
        .bind(format!("{username}@example.com"))
        .bind(&hash)
        .bind(display_name)
        .bind(bio)
        .bind(role)
        .execute(db.primary())
        .await?;
        created += r.rows_affected();
    }
    let mut stories_created = 0;
    for (i, demo) in STORIES.iter().enumerate() {
        let author_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(demo.author).fetch_one(db.primary()).await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM stories WHERE author_id = $1 AND title = $2)")
            .bind(author_id)
            .bind(demo.title)
            .fetch_one(db.primary())
            .await?;
        if exists {
            continue;
        }
        let mut tx = db.primary().begin().await?;
        let (w, h) = (1200, 800);
        let cover = ImageUpload {
            bytes: gradient_png(w, h, demo.colors.0, demo.colors.1).into(),
            kind: ImageKind::Png,
            width: w,
            height: h,
            original_name: "cover.png".into(),
        };
        let cover_id = media::db::create(&mut tx, storage, author_id, Purpose::Cover, &cover, None).await?;
        let id = stories::insert(&mut tx, &stories::NewStory { author_id, title: demo.title, summary: demo.summary, cover_id: Some(cover_id) }).await?;
        let tags: Vec<String> = demo.tags.iter().map(|t| t.to_string()).collect();
        stories::set_tags(&mut tx, id, &tags).await?;
        for (n, title) in demo.chapters.iter().enumerate() {
            let body: String = (0..6).map(|k| PARAGRAPHS[(n + k + i) % PARAGRAPHS.len()]).collect::<Vec<_>>().join("\n\n");
            let html = markdown::render(&body);
            let words = markdown::word_count(&body) as i32;
            stories::add_chapter(&mut tx, id, &stories::NewChapter { title, body_markdown: &body, body_html: &html, word_count: words }).await?;
        }
        stories::update(&mut tx, id, &stories::StoryUpdate { title: demo.title, summary: demo.summary, publish: true, cover_id: None }).await?;
        tx.commit().await?;
        stories_created += 1;
    }
    seed_social(db).await?;
    seed_stats(db).await?;
    seed_failed_job(db).await?;
    tracing::info!(created, stories_created, "seeded demo data (password: {DEMO_PASSWORD})");
    Ok(())
}

/// One job that gave up, so `/admin/jobs` has a failed job to show and retry (a no-op:
/// retried, it finishes). Once: the idempotency key makes a second seed a duplicate.
async fn seed_failed_job(db: &Db) -> anyhow::Result<()> {
    const KEY: &str = "demo:failed-job";
    let mut tx = db.primary().begin().await?;
    match crate::jobs::enqueue_with_key(&mut tx, &crate::jobs::maintenance::Noop::default(), None, Some(KEY)).await {
        Err(e) if e.is_duplicate() => return Ok(()),
        other => other?,
    }
    sqlx::query(
        "UPDATE apalis.jobs SET status = 'Failed', attempts = max_attempts, done_at = now() - interval '20 minutes',
                last_result = jsonb_build_object('Err', 'demo: connection refused by smtp.example.com:587 (seeded failure)')
          WHERE idempotency_key = $1",
    )
    .bind(KEY)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn user_id(db: &Db, username: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(username).fetch_one(db.primary()).await?)
}

async fn story_id(db: &Db, title: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT id FROM stories WHERE title = $1 ORDER BY id LIMIT 1").bind(title).fetch_one(db.primary()).await?)
}

/// Idempotent like the rest: follows, likes and saves are no-ops the second time, and a
/// comment is posted only if its author has not posted that text on that story yet.
async fn seed_social(db: &Db) -> anyhow::Result<()> {
    for (follower, followee) in FOLLOWS {
        let (follower_id, followee_id) = (user_id(db, follower).await?, user_id(db, followee).await?);
        let mut tx = db.primary().begin().await?;
        if social::follow(&mut tx, follower_id, followee_id).await? {
            notify(&mut tx, Activity::Follow { follower_id, followee_id }).await?;
        }
        tx.commit().await?;
    }
    for (title, likers) in LIKES {
        let story = story_id(db, title).await?;
        let story_author_id = author_of(db, story).await?;
        for liker in *likers {
            let user_id = user_id(db, liker).await?;
            let mut tx = db.primary().begin().await?;
            if social::like(&mut tx, story, user_id).await?.is_some() && user_id != story_author_id {
                notify(&mut tx, Activity::Like { user_id, story_id: story, story_author_id }).await?;
            }
            tx.commit().await?;
        }
    }
    for c in COMMENTS {
        let story = story_id(db, c.story).await?;
        let parent = comment_once(db, story, c.author, c.body, None).await?;
        for (author, body) in c.replies {
            comment_once(db, story, author, body, Some(parent)).await?;
        }
    }
    for (reader, title, chapter) in PROGRESS {
        social::record_progress(db.primary(), user_id(db, reader).await?, story_id(db, title).await?, *chapter).await?;
    }
    for (reader, title) in SAVES {
        social::save(&mut *db.primary().acquire().await?, user_id(db, reader).await?, story_id(db, title).await?).await?;
    }
    Ok(())
}

/// Thirty days of made-up reads for every public story (more for the early chapters and
/// recent days, as real reading looks), then a trending recompute, so `bin/dev` shows a
/// non-empty Trending section and statistics page at once. Idempotent: existing
/// (chapter, day) rows are left alone. The synthetic readers are negative numbers, as
/// anonymous readers are stored.
async fn seed_stats(db: &Db) -> anyhow::Result<()> {
    let mut tx = db.primary().begin().await?;
    sqlx::query(concat!(
        "WITH cd AS (
             SELECT c.story_id, c.number, d::date AS day,
                    -- a few readers a day, more for early chapters, recent days and some stories
                    (1 + (c.story_id * 7 + c.number * 3 + extract(day FROM d)::int) % 5
                       + greatest(0, 30 - ((now() AT TIME ZONE 'UTC')::date - d::date)) / 6
                       + greatest(0, 4 - c.number))::int AS readers
             FROM chapters c JOIN stories s ON s.id = c.story_id AND ", crate::public_story!("s"), "
             CROSS JOIN generate_series((now() AT TIME ZONE 'UTC')::date - 29, (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d
         ),
         r AS (
             INSERT INTO chapter_readers_daily (story_id, chapter_number, day, reader)
             SELECT cd.story_id, cd.number, cd.day, -(1000 + k) FROM cd CROSS JOIN LATERAL generate_series(1, cd.readers) AS k
             ON CONFLICT DO NOTHING
         )
         INSERT INTO chapter_views_daily (story_id, chapter_number, day, views)
         SELECT story_id, number, day, readers + readers / 2 FROM cd
         ON CONFLICT DO NOTHING"
    ))
    .execute(&mut *tx)
    .await?;
    crate::trending::db::recompute(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn comment_once(db: &Db, story: i64, author: &str, body: &str, parent_id: Option<i64>) -> anyhow::Result<i64> {
    let author_id = user_id(db, author).await?;
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM comments WHERE story_id = $1 AND author_id = $2 AND body_markdown = $3")
        .bind(story)
        .bind(author_id)
        .bind(body)
        .fetch_optional(db.primary())
        .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let html = markdown::render_comment(body);
    let new = social::NewComment { story_id: story, author_id, parent_id, body_markdown: body, body_html: &html };
    let story_author_id = author_of(db, story).await?;
    let parent_author_id: Option<i64> = match parent_id {
        Some(p) => sqlx::query_scalar("SELECT author_id FROM comments WHERE id = $1").bind(p).fetch_optional(db.primary()).await?,
        None => None,
    };
    let mut tx = db.primary().begin().await?;
    let id = social::insert_comment(&mut tx, &new).await?.id;
    let excerpt = markdown::excerpt(body, 280);
    let activity = Activity::Comment { comment_id: id, story_id: story, commenter_id: author_id, story_author_id, parent_author_id, excerpt };
    notify(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(id)
}

/// Queues the notifications a demo action causes, as the pages do (the worker that
/// `bin/dev` starts creates them), so demo users find some waiting.
async fn notify(conn: &mut sqlx::PgConnection, activity: Activity) -> anyhow::Result<()> {
    crate::jobs::enqueue(conn, &Notify { activity }, None).await?;
    Ok(())
}

async fn author_of(db: &Db, story: i64) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT author_id FROM stories WHERE id = $1").bind(story).fetch_one(db.primary()).await?)
}

/// A diagonal two-colour gradient as an 8-bit RGB PNG, written by hand (the web binary
/// links no image codec): signature, IHDR, one zlib IDAT, IEND.
pub fn gradient_png(width: u32, height: u32, from: [u8; 3], to: [u8; 3]) -> Vec<u8> {
    use std::io::Write;
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let t = (x as f32 / width as f32 + y as f32 / height as f32) / 2.0;
            for c in 0..3 {
                raw.push((from[c] as f32 + (to[c] as f32 - from[c] as f32) * t) as u8);
            }
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = z.write_all(&raw);
    let idat = z.finish().unwrap_or_default();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &idat[..]), (b"IEND", &[][..])] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    }
    png
}
