//! The benchmark corpus: 5,000 users, 10,000 published stories with a processed cover and
//! three tags each, 50,000 chapters of about 2,000 words, seeded with one SQL script
//! (`generate_series`). bench/load uses the `Repeated` text (five paragraphs, what a
//! page costs does not depend on the words); bench/search the `Prose` text, where words
//! have realistic frequencies (see `prose`).

use std::fmt::Write as _;

pub const USERS: u32 = 5_000;
pub const STORIES: u32 = 10_000;
pub const CHAPTERS_PER_STORY: u32 = 5;
pub const PASSWORD: &str = "bench-load-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corpus {
    /// Every chapter the same five paragraphs (plus its number).
    Repeated,
    /// Generated prose: sentences drawn from a Zipf-like vocabulary, plus planted rare words.
    Prose,
}

/// One argon2id hash (the app's default parameters) for every seeded user.
pub fn password_hash() -> String {
    use argon2::{Argon2, PasswordHasher, password_hash::SaltString};
    let salt = SaltString::encode_b64(b"bench-load-salt!").expect("16 bytes of salt");
    Argon2::default().hash_password(PASSWORD.as_bytes(), &salt).expect("argon2").to_string()
}

fn chapter_text() -> (String, String, u32) {
    const PARAGRAPHS: &[&str] = &[
        "The morning came in grey and slow, the way it always did on this part of the coast. Nothing moved on the water but the light, and the light moved as if it had somewhere better to be.",
        "She read the line twice, then a third time, as if the words might rearrange themselves into something kinder. They did not. They sat on the page with the patience of stones.",
        "\"You're late,\" he said, without looking up from the work in his hands. \"The tide won't wait for either of us, and I have stopped asking it to.\"",
        "There are places where the map simply stops, not at a border but at a question. This was one of them, and everyone in the village knew better than to ask it aloud.",
        "By the time the lamps were lit, the whole street knew. Nobody said it, which is how you could tell; the bakery closed early and the church bell did not ring at six.",
    ];
    let mut md = String::new();
    let mut html = String::new();
    let mut words = 0;
    let mut i = 0;
    while words < 2_000 {
        let p = PARAGRAPHS[i % PARAGRAPHS.len()];
        md.push_str(p);
        md.push_str("\n\n");
        let _ = write!(html, "<p>{}</p>\n", p.replace('"', "&quot;"));
        words += p.split_whitespace().count() as u32;
        i += 1;
    }
    (md, html, words)
}

pub fn seed_sql(corpus: Corpus) -> String {
    let hash = password_hash();
    let (md, html, words) = chapter_text();
    let tags = [
        "mystery", "fantasy", "science-fiction", "romance", "horror", "thriller", "historical", "literary", "short", "slow-burn",
        "cozy", "space", "adventure", "humor", "drama", "poetry", "fairy-tale", "noir", "western", "dystopia",
    ];
    let tag_list = tags.iter().map(|t| format!("('{t}')")).collect::<Vec<_>>().join(", ");
    let chapters = STORIES * CHAPTERS_PER_STORY;
    let (prelude, chapter_insert) = match corpus {
        Corpus::Repeated => (String::new(), repeated_chapters(&md, &html, words)),
        Corpus::Prose => prose::chapters_sql(),
    };
    let words = match corpus { Corpus::Repeated => words, Corpus::Prose => prose::WORDS_PER_CHAPTER };
    let chapters_sql = chapter_insert;
    format!(
        r#"
BEGIN;
{prelude}
INSERT INTO users (username, email, password_hash, display_name, bio, email_verified_at, created_at)
SELECT 'user' || i, 'user' || i || '@example.com', '{hash}', 'Writer ' || i,
       'Writes stories chapter by chapter.', now() - interval '300 days', now() - interval '400 days'
FROM generate_series(1, {USERS}) i;

-- covers, processed: 320/800/1600 px in WebP and JPEG, like the worker leaves them
INSERT INTO media (owner_id, purpose, original_key, content_type, byte_size, status, width, height, variants, processed_at)
SELECT ((i - 1) % {USERS}) + 1, 'cover', 'originals/bench-' || i || '.jpg', 'image/jpeg', 512000, 'ready', 1600, 1067,
       (SELECT jsonb_agg(jsonb_build_object('width', w, 'height', (w * 2) / 3, 'format', f,
                                            'key', 'variants/' || md5(i::text) || '-' || w || '.' || CASE f WHEN 'jpeg' THEN 'jpg' ELSE f END))
        FROM unnest(ARRAY[320, 800, 1600]) w, unnest(ARRAY['webp', 'jpeg']) f),
       now()
FROM generate_series(1, {STORIES}) i;

-- published newest = highest id, one every 7 minutes
INSERT INTO stories (author_id, title, summary, status, published_at, cover_id, chapter_count, word_count, created_at, updated_at)
SELECT ((i - 1) % {USERS}) + 1,
       (ARRAY['The Lighthouse Keeper''s Ledger', 'Salt on the Windowsill', 'Drydock', 'The Paper Dragon', 'Low Tide', 'A Map That Stops', 'The Extra Bunk', 'Two Hands'])[1 + i % 8] || ', part ' || i,
       'When the keeper of Carrow Point vanishes, his ledger is the only witness, and it has been written in two hands. '
         || 'A slow-burning mystery in a harbour town that remembers everything except the night of the storm (story ' || i || ').',
       'published', now() - ({STORIES} + 1 - i) * interval '7 minutes', i, {CHAPTERS_PER_STORY}, {CHAPTERS_PER_STORY} * {words},
       now() - ({STORIES} + 1 - i) * interval '7 minutes' - interval '1 day', now()
FROM generate_series(1, {STORIES}) i;

INSERT INTO tags (name) VALUES {tag_list};
INSERT INTO story_tags (story_id, tag_id)
SELECT s, ((s * 7 + k) % 20) + 1 FROM generate_series(1, {STORIES}) s, generate_series(0, 2) k;
-- The copy of the names listings and the search index read (stories::db::set_tags).
UPDATE stories s SET tags_text = coalesce((SELECT string_agg(t.name, ' ' ORDER BY t.name)
  FROM story_tags st JOIN tags t ON t.id = st.tag_id WHERE st.story_id = s.id), '');

{chapters_sql}COMMIT;
SELECT 'seeded', (SELECT count(*) FROM chapters) = {chapters};
"#
    )
}


/// The `Repeated` corpus's chapters: the same Markdown and HTML for each.
fn repeated_chapters(md: &str, html: &str, words: u32) -> String {
    format!(
        r#"INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count, created_at)
SELECT s, n, (ARRAY['The Ledger', 'Two Hands', 'Low Tide', 'The Storm', 'Pressure'])[n] || ' (' || s || '.' || n || ')',
       'Chapter ' || n || ' of story ' || s || E'.\n\n' || $md${md}$md$,
       '<p>Chapter ' || n || ' of story ' || s || E'.</p>\n' || $html${html}$html$,
       {words}, now() - ({STORIES} + 1 - s) * interval '7 minutes' + n * interval '1 minute'
FROM generate_series(1, {STORIES}) s, generate_series(1, {CHAPTERS_PER_STORY}) n;
"#
    )
}

/// Generated prose for search: a pool of sentences whose words follow a steep power law
/// over [`prose::VOCABULARY`] (function words first, so "the" is everywhere and the
/// tail words are in a few percent of chapters), each chapter 125 sentences of the pool
/// chosen by hash, and planted rare words ([`prose::PLANTED`]).
pub mod prose {
    use std::fmt::Write as _;

    pub const SENTENCES: usize = 4_000;
    pub const SENTENCES_PER_CHAPTER: u32 = 125;
    /// Sentences average 16 words.
    pub const WORDS_PER_CHAPTER: u32 = SENTENCES_PER_CHAPTER * 16;

    pub const VOCABULARY: &[&str] = &[
        "the", "and", "of", "to", "a", "in", "was", "she", "he", "it", "that", "her", "his", "had", "with", "on", "for", "at", "as", "but",
        "not", "they", "from", "by", "were", "all", "one", "said", "out", "into", "up", "over", "no", "down", "then", "when", "there", "what",
        "light", "sea", "house", "night", "water", "hand", "door", "eyes", "time", "day", "road", "voice", "wind", "face", "town", "room",
        "harbour", "window", "stone", "morning", "boat", "storm", "fire", "bread", "letter", "tide", "mother", "rain", "village", "street",
        "dark", "old", "long", "small", "cold", "quiet", "grey", "slow", "last", "little", "white", "black", "empty", "warm", "broken",
        "walked", "looked", "turned", "waited", "knew", "thought", "came", "went", "kept", "held", "heard", "watched", "opened", "carried",
        "lantern", "ledger", "keeper", "chapel", "bridge", "garden", "orchard", "kitchen", "table", "candle", "rope", "net", "gull", "shore",
        "cliff", "field", "river", "well", "bell", "church", "market", "baker", "sailor", "captain", "widow", "child", "brother", "sister",
        "promise", "secret", "silence", "memory", "winter", "summer", "autumn", "spring", "fog", "salt", "iron", "copper", "glass", "ink",
        "whispered", "laughed", "remembered", "forgot", "believed", "listened", "climbed", "burned", "sang", "counted", "folded", "mended",
        "lighthouse", "dragon", "compass", "anchor", "mapmaker", "clocktower", "apothecary", "cartographer", "telescope", "astrolabe",
        "heron", "kestrel", "otter", "badger", "fox", "moth", "beetle", "willow", "hawthorn", "bramble", "nettle", "foxglove", "juniper",
        "violin", "accordion", "harpsichord", "gramophone", "typewriter", "locket", "thimble", "spindle", "lattice", "weathervane",
        "quarantine", "shipwreck", "inheritance", "betrayal", "reckoning", "pilgrimage", "masquerade", "labyrinth", "sanctuary", "exile",
        "obsidian", "vermilion", "saffron", "cinnabar", "alabaster", "verdigris", "umber", "ochre", "indigo", "cerulean",
    ];

    /// The pool's sentences draw from the first `HEAD` words only: every chapter takes 125
    /// of 4,000 sentences, so any word of the pool ends up in most chapters. The tail (the
    /// last `TAIL` words) is planted instead, one word per chapter chosen by hash: each
    /// tail word is in about 50,000 / TAIL chapters.
    pub const TAIL: usize = 40;
    pub const HEAD: usize = VOCABULARY.len() - TAIL;

    /// (word, where): planted in chapters the vocabulary never produces, to time rare words.
    pub const PLANTED: &[(&str, &str)] = &[
        ("marrowgale", "one chapter: story 4242, chapter 2"),
        ("thistlewick", "50 chapters: chapter 3 of every 200th story"),
    ];

    /// Deterministic xorshift: the same corpus on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    pub fn sentences() -> Vec<String> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let n = HEAD as f64;
        (0..SENTENCES)
            .map(|_| {
                let len = 10 + (rng.next() * 13.0) as usize;
                let mut words: Vec<String> =
                    (0..len).map(|_| VOCABULARY[((rng.next().powf(2.2)) * n) as usize % HEAD].to_string()).collect();
                if let Some(first) = words.first_mut() {
                    let mut c = first.chars();
                    *first = c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default();
                }
                words.join(" ") + "."
            })
            .collect()
    }

    /// The SQL that fills `chapters` from the sentence pool: (prelude, insert).
    pub fn chapters_sql() -> (String, String) {
        let mut values = String::new();
        for (i, s) in sentences().iter().enumerate() {
            let _ = write!(values, "{}({i}, '{s}')", if i == 0 { "" } else { ", " });
        }
        let prelude = format!("CREATE TEMP TABLE bench_sentences (i int PRIMARY KEY, t text NOT NULL);\nINSERT INTO bench_sentences VALUES {values};\n");
        let insert = format!(
            r#"INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count, created_at)
SELECT s, n, (ARRAY['The Ledger', 'Two Hands', 'Low Tide', 'The Storm', 'Pressure'])[n] || ' (' || s || '.' || n || ')',
       'Chapter ' || n || ' of story ' || s || E'.\n\n' || b.body || p.extra,
       '<p>Chapter ' || n || ' of story ' || s || '.</p><p>' || replace(b.body || p.extra, E'\n\n', '</p><p>') || '</p>',
       {words}, now() - ({stories} + 1 - s) * interval '7 minutes' + n * interval '1 minute'
FROM generate_series(1, {stories}) s, generate_series(1, {per}) n,
LATERAL (SELECT string_agg(bs.t, CASE WHEN k % 8 = 0 THEN E'\n\n' ELSE ' ' END ORDER BY k) AS body
           FROM generate_series(1, {spc}) k JOIN bench_sentences bs ON bs.i = ((hashint4(s * 1000 + n * 200 + k)::bigint % {pool}) + {pool}) % {pool}) b,
LATERAL (SELECT ' The ' || (ARRAY[{tail}])[1 + ((hashint4(s * 7 + n)::bigint % {ntail}) + {ntail}) % {ntail}] || ' was on the table.'
                || CASE WHEN s = 4242 AND n = 2 THEN E'\n\nThe marrowgale came in off the sea before dawn.'
                        WHEN s % 200 = 0 AND n = 3 THEN E'\n\nShe kept the thistlewick in her coat.'
                        ELSE '' END AS extra) p;
"#,
            words = WORDS_PER_CHAPTER,
            stories = super::STORIES,
            per = super::CHAPTERS_PER_STORY,
            spc = SENTENCES_PER_CHAPTER,
            pool = SENTENCES,
            tail = VOCABULARY[HEAD..].iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(", "),
            ntail = TAIL,
        );
        (prelude, insert)
    }
}
