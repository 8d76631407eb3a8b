//! `bench/search`: full-text search over the load benchmark's corpus (10,000 stories,
//! 50,000 chapters of about 2,000 words), with generated prose so common and rare words
//! exist (`bench::seed::Corpus::Prose`).
//!
//! ```sh
//! cargo run -p bench --bin search -- [--runs N] [--reseed] [--no-record]
//! # the client only sends statements: PostgreSQL does the work, a debug build is fine
//! ```
//!
//! It starts its own PostgreSQL cluster `benchsearch` (bin/lib.sh, under `var/pg/`),
//! creates database `bench_search`, migrates it with the app's migrator and seeds it
//! (kept between runs; `--reseed` redoes it), then measures:
//! 1. p50/p99 of `search::db::search` — the statement the page runs, through the app's
//!    own function and pool — for common, medium, rare and misspelt queries, page 1 and,
//!    where there is one, page 2; with the number of chapters each word is in;
//! 2. the size of every search index (`pg_relation_size`) and of the chapters' tsvectors;
//! 3. the write cost: inserting a chapter of the corpus's typical size (one connection,
//!    each insert timed) with the generated column and its GIN index, with the column
//!    but no index, and with neither (column and index dropped inside a transaction that
//!    is rolled back);
//! 4. EXPLAIN (ANALYZE) of the main statement for a common word, checking the GIN indexes
//!    are used;
//! and appends a section to bench/RESULTS.md unless `--no-record`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use app::search::db as search_db;
use bench::{Cluster, ms, percentile};
use sqlx::{Connection, PgConnection, postgres::PgPoolOptions};

type R<T> = Result<T, String>;

const CLUSTER: &str = "benchsearch";
const DATABASE: &str = "bench_search";
const INSERTS: usize = 200;

/// (query, what it exercises)
const QUERIES: &[(&str, &str)] = &[
    ("light", "common: in nearly every chapter"),
    ("harbour storm", "two common words (AND)"),
    ("lantern", "pool word of middling frequency"),
    ("cerulean", "vocabulary tail: planted, ~1/40 of chapters"),
    ("thistlewick", "rare: 50 chapters"),
    ("marrowgale", "rare: 1 chapter"),
    ("drgon", "misspelt title word (trigram)"),
    ("usr4242", "misspelt author name"),
    ("\"keeper of carrow point\"", "phrase in every summary"),
];





fn psql_file(cluster: &Cluster, file: &Path) -> R<()> {
    let status = Command::new(cluster.bindir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &cluster.port.to_string(), "-U", "quire", "-d", DATABASE, "-f"])
        .arg(file)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| "seeding failed".to_string())
}



#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench/search: {e}");
        std::process::exit(1);
    }
}

async fn run() -> R<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(30);
    let reseed = args.iter().any(|a| a == "--reseed");
    let record = !args.iter().any(|a| a == "--no-record");
    let machine = bench::Machine::read();
    let e = |e: sqlx::Error| e.to_string();

    let cluster = Cluster::start(CLUSTER)?;
    let mut admin = PgConnection::connect(&cluster.url("postgres", "bench-search")).await.map_err(e)?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(DATABASE)
        .fetch_one(&mut admin)
        .await
        .map_err(e)?;
    let mut seeded = false;
    if exists && !reseed {
        let pool = PgPoolOptions::new().max_connections(1).connect(&cluster.url(DATABASE, "bench-search")).await.map_err(e)?;
        app::db::migrate(&pool).await.map_err(|e| e.to_string())?;
        let n: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM chapters WHERE search_doc @@ 'marrowgale'::tsquery")
            .fetch_one(&pool)
            .await
            .ok();
        let tail: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM chapters WHERE search_doc @@ 'cerulean'::tsquery")
            .fetch_one(&pool)
            .await
            .ok();
        // Also a corpus from before the tail was planted (tail words in every chapter) is redone.
        seeded = n == Some(1) && tail.is_some_and(|t| t < 5_000);
        pool.close().await;
    }
    if !seeded {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))).execute(&mut admin).await.map_err(e)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}"))).execute(&mut admin).await.map_err(e)?;
        let pool = PgPoolOptions::new().max_connections(1).connect(&cluster.url(DATABASE, "bench-search")).await.map_err(e)?;
        app::db::migrate(&pool).await.map_err(|e| e.to_string())?;
        pool.close().await;
        let dir = bench::root().join("var/bench/search");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join("seed.sql");
        std::fs::write(&file, bench::seed::seed_sql(bench::seed::Corpus::Prose)).map_err(|e| e.to_string())?;
        let t = Instant::now();
        psql_file(&cluster, &file)?;
        println!("seeded in {:.1} s (tsvectors and GIN entries included)", t.elapsed().as_secs_f64());
    }
    let pool = PgPoolOptions::new().max_connections(2).connect(&cluster.url(DATABASE, "bench-search")).await.map_err(e)?;
    sqlx::query("VACUUM (ANALYZE) stories, chapters, users").execute(&pool).await.map_err(e)?;

    let mut out = String::new();
    let date = bench::today_utc();
    out.push_str(&format!(
        "\n## Search — {date}\n\n`cargo run -p bench --bin search` on {} ({} cores, load {} at start). \
         Corpus: bench::seed (10,000 published stories, 50,000 chapters) with `Corpus::Prose` text: \
         {} sentences drawn from the first {} words of a {}-word vocabulary with a power law (function words first), \
         {} per chapter (~{} words); each chapter also gets one of the last {} words (by hash), plus planted \
         words: {}. Times: `search::db::search` (BEGIN, SET LOCAL, the statement, COMMIT) through sqlx on one \
         connection, {runs} runs each after one warm-up, PostgreSQL on the same machine.\n\n\
         | query | kind | chapters with it | results (page 1) | p50 ms | p99 ms | page 2 p50 ms |\n|---|---|---:|---:|---:|---:|---:|\n",
        machine.cpu,
        machine.cores,
        machine.load,
        bench::seed::prose::SENTENCES,
        bench::seed::prose::HEAD,
        bench::seed::prose::VOCABULARY.len(),
        bench::seed::prose::SENTENCES_PER_CHAPTER,
        bench::seed::prose::WORDS_PER_CHAPTER,
        bench::seed::prose::TAIL,
        bench::seed::prose::PLANTED.iter().map(|(w, wh)| format!("“{w}” ({wh})")).collect::<Vec<_>>().join(", "),
    ));
    for (query, kind) in QUERIES {
        let chapters: i64 = sqlx::query_scalar("SELECT count(*) FROM chapters WHERE search_doc @@ websearch_to_tsquery('english', $1)")
            .bind(query)
            .fetch_one(&pool)
            .await
            .map_err(e)?;
        let (first, next) = search_db::search(&pool, query, None, None).await.map_err(e)?;
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            search_db::search(&pool, query, None, None).await.map_err(e)?;
            times.push(ms(t.elapsed()));
        }
        times.sort_by(f64::total_cmp);
        let page2 = match next {
            Some(c) => {
                let mut t2 = Vec::new();
                for _ in 0..runs.min(10) {
                    let t = Instant::now();
                    search_db::search(&pool, query, None, Some(c)).await.map_err(e)?;
                    t2.push(ms(t.elapsed()));
                }
                t2.sort_by(f64::total_cmp);
                format!("{:.1}", percentile(&t2, 0.5))
            }
            None => "—".into(),
        };
        let line = format!(
            "| `{query}` | {kind} | {chapters} | {}{} | {:.1} | {:.1} | {page2} |\n",
            first.len(),
            if next.is_some() { "+" } else { "" },
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
        print!("{line}");
        out.push_str(&line);
    }

    // Index sizes.
    out.push_str("\n| index / data | size |\n|---|---:|\n");
    let sizes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_size_pretty(pg_relation_size(c.oid)) FROM pg_class c
          WHERE c.relname IN ('chapters_search_idx', 'stories_search_idx', 'stories_title_trgm_idx',
                              'users_username_trgm_idx', 'users_display_name_trgm_idx', 'chapters')
          ORDER BY pg_relation_size(c.oid) DESC",
    )
    .fetch_all(&pool)
    .await
    .map_err(e)?;
    for (name, size) in sizes {
        out.push_str(&format!("| `{name}`{} | {size} |\n", if name == "chapters" { " (heap, without TOAST)" } else { "" }));
    }
    let tsv: String = sqlx::query_scalar("SELECT pg_size_pretty(sum(pg_column_size(search_doc))::bigint) FROM chapters")
        .fetch_one(&pool)
        .await
        .map_err(e)?;
    let text: String = sqlx::query_scalar("SELECT pg_size_pretty(sum(pg_column_size(body_markdown))::bigint) FROM chapters")
        .fetch_one(&pool)
        .await
        .map_err(e)?;
    out.push_str(&format!("| chapters' `search_doc` tsvectors (stored, compressed) | {tsv} |\n| chapters' `body_markdown` (stored, compressed) | {text} |\n"));

    // Write cost.
    let (md, html, words): (String, String, i32) =
        sqlx::query_as("SELECT body_markdown, body_html, word_count FROM chapters WHERE story_id = 17 AND number = 1")
            .fetch_one(&pool)
            .await
            .map_err(e)?;
    let mut conn = pool.acquire().await.map_err(e)?;
    let mut write_rows = Vec::new();
    for (label, setup) in [
        ("generated tsvector + GIN index (as deployed)", ""),
        ("generated tsvector, no GIN index", "DROP INDEX chapters_search_idx"),
        ("neither (plain table)", "ALTER TABLE chapters DROP COLUMN search_doc"),
    ] {
        let mut tx = conn.begin().await.map_err(e)?;
        if !setup.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(setup)).execute(&mut *tx).await.map_err(e)?;
        }
        let mut times = Vec::new();
        for k in 0..INSERTS {
            let t = Instant::now();
            sqlx::query("INSERT INTO chapters (story_id, number, title, body_markdown, body_html, word_count) VALUES ($1, $2, 'Bench', $3, $4, $5)")
                .bind(1 + (k as i64 % 1000))
                .bind(100 + (k / 1000) as i32)
                .bind(&md)
                .bind(&html)
                .bind(words)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
            times.push(ms(t.elapsed()));
        }
        tx.rollback().await.map_err(e)?;
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        times.sort_by(f64::total_cmp);
        write_rows.push((label, percentile(&times, 0.5), percentile(&times, 0.99), mean));
    }
    out.push_str(&format!(
        "\nChapter insert, {INSERTS} inserts of a {} KB / {words}-word chapter each, one connection, inside a transaction rolled back \
         (no commit or fsync in the figure; that part is the same for all three):\n\n| table | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|\n",
        md.len() / 1024
    ));
    for (label, p50, p99, mean) in &write_rows {
        out.push_str(&format!("| {label} | {p50:.2} | {p99:.2} | {mean:.2} |\n"));
    }

    // The pool closes only once every connection is back.
    drop(conn);

    // EXPLAIN: the GIN indexes must be used.
    let mut tx = pool.begin().await.map_err(e)?;
    sqlx::query(search_db::TRGM_THRESHOLD_SQL).execute(&mut *tx).await.map_err(e)?;
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {}", search_db::SEARCH_SQL)))
        .bind("lantern")
        .bind(None::<String>)
        .bind(None::<f64>)
        .bind(0i64)
        .bind(search_db::PAGE_SIZE + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(e)?;
    tx.rollback().await.map_err(e)?;
    let used: Vec<&str> = ["chapters_search_idx", "stories_search_idx", "stories_title_trgm_idx", "users_username_trgm_idx", "users_display_name_trgm_idx"]
        .into_iter()
        .filter(|i| plan.iter().any(|l| l.contains(i)))
        .collect();
    let total = plan.iter().rev().find(|l| l.contains("Execution Time")).cloned().unwrap_or_default();
    std::fs::create_dir_all(bench::root().join("var/bench/search")).map_err(|e| e.to_string())?;
    std::fs::write(bench::root().join("var/bench/search/explain.txt"), plan.join("\n")).map_err(|e| e.to_string())?;
    out.push_str(&format!(
        "\nEXPLAIN ANALYZE of `search::db::SEARCH_SQL` for “lantern”: indexes used: {}; {}. (Full plan: var/bench/search/explain.txt.)\n",
        used.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "),
        total.trim()
    ));
    print!("{out}");
    if record {
        bench::append_results(&bench::root().join("bench/RESULTS.md"), &out);
    }
    pool.close().await;
    drop(cluster);
    Ok(())
}
