//! Migrations must not break the release that is still running while they are applied
//! (README, "Migrations and rolling deploys"): during a rolling deploy the previous
//! release's web and workers run against the new schema. `migrations/RELEASED` names the
//! last migration shipped; everything after it is checked three ways:
//!
//! 1. a linter rejects destructive statements (drops, renames, type changes, SET NOT
//!    NULL, a NOT NULL column without a default, new constraints on existing tables)
//!    unless the statement is preceded by a `-- contract: <reason>` comment;
//! 2. the schema itself is compared before and after: every relation, column (with its
//!    type), default, function, enum label and unique index the released schema had must
//!    still be there, and a column added to an existing table must accept the previous
//!    release's inserts (nullable or with a default) — this catches what a linter cannot
//!    see (DDL inside a DO block or a function);
//! 3. every SQL statement of the released code (`app/tests/compat/released_statements.sql`,
//!    string literals extracted from app/src and worker/src when the release was marked)
//!    that prepares against the released schema must still prepare against the new one.
//!
//! Marking a release: `QUIRE_MARK_RELEASE=1 bin/test -E 'binary(migrations_compat)'`
//! rewrites `migrations/RELEASED` (the newest migration) and the statement snapshot from
//! the current source; commit both with the release.

#[path = "common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool, SqlSafeStr};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn snapshot_path() -> PathBuf {
    root().join("app/tests/compat/released_statements.sql")
}

/// The migrations, sorted: (version, file name without `.sql`, text).
fn migrations() -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("migrations")).expect("migrations dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".sql") else { continue };
        let Some(version) = stem.split('_').next().and_then(|v| v.parse().ok()) else { continue };
        out.push((version, stem.to_string(), std::fs::read_to_string(entry.path()).expect("read migration")));
    }
    out.sort();
    out
}

/// The name in `migrations/RELEASED` (comment lines start with `#`) and its version.
fn released() -> (i64, String) {
    let text = std::fs::read_to_string(root().join("migrations/RELEASED")).expect("migrations/RELEASED");
    let name = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).expect("a migration name in RELEASED").to_string();
    let found = migrations().into_iter().find(|(_, stem, _)| *stem == name);
    let (version, _, _) = found.unwrap_or_else(|| panic!("migrations/RELEASED names `{name}`, which is not a migration"));
    (version, name)
}

// ---- 1. the linter ---------------------------------------------------------------------

/// Splits SQL into statements, each with the comments that precede it: `;` ends a
/// statement outside quotes, quoted identifiers, dollar quotes and comments.
fn statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => i = sql[i..].find('\n').map_or(b.len(), |n| i + n),
            b'/' if b.get(i + 1) == Some(&b'*') => i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 1),
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'$' => {
                // $tag$ … $tag$ (a bare $1 parameter has no closing `$` before a non-word char)
                let tag_end = sql[i + 1..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map(|n| i + 1 + n);
                if let Some(e) = tag_end.filter(|e| b[*e] == b'$') {
                    let tag = &sql[i..=e];
                    i = sql[e + 1..].find(tag).map_or(b.len(), |n| e + 1 + n + tag.len() - 1);
                }
            }
            b';' => {
                out.push(sql[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(sql[start.min(sql.len())..].to_string());
    out.into_iter().filter(|s| !code_of(s).trim().is_empty()).collect()
}

/// The statement without its comments, upper-cased, whitespace collapsed.
fn code_of(stmt: &str) -> String {
    let no_comments: Vec<&str> = stmt.lines().map(|l| l.split("--").next().unwrap_or("")).collect();
    no_comments.join(" ").split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase()
}

/// A `-- contract: reason` comment in the statement's leading comments, with a reason.
fn is_contract(stmt: &str) -> bool {
    stmt.lines().map(str::trim).take_while(|l| l.is_empty() || l.starts_with("--")).any(|l| {
        l.trim_start_matches('-').trim().strip_prefix("contract:").is_some_and(|reason| reason.trim().len() >= 10)
    })
}

/// Why `stmt` would break the previous release, if it would. `new_tables` are tables
/// created after the release: no released code uses them, so anything goes there.
fn destructive(stmt: &str, new_tables: &BTreeSet<String>) -> Option<&'static str> {
    let code = code_of(stmt);
    let re = |p: &str| regex::Regex::new(p).expect("pattern");
    let target = re(r"^(?:ALTER TABLE|CREATE (?:UNIQUE )?INDEX(?: CONCURRENTLY)?(?: IF NOT EXISTS)?(?: \S+)? ON|DROP TABLE)(?: IF EXISTS)?(?: ONLY)? ([\w.]+)")
        .captures(&code)
        .map(|c| c[1].trim_start_matches("PUBLIC.").to_string());
    if target.is_some_and(|t| new_tables.contains(&t)) {
        return None;
    }
    if re(r"\bRENAME\b").is_match(&code) {
        return Some("renames something the previous release uses by its old name");
    }
    if re(r"^DROP\b").is_match(&code) || re(r"\bDROP (?:COLUMN|CONSTRAINT|DEFAULT|EXPRESSION|IDENTITY)\b").is_match(&code) {
        return Some("drops something the previous release may still use");
    }
    if re(r"\b(?:SET DATA TYPE|ALTER (?:COLUMN )?\S+ TYPE)\b").is_match(&code) {
        return Some("changes a column's type under the previous release");
    }
    if code.contains("SET NOT NULL") {
        return Some("makes a column NOT NULL: the previous release may write NULL or omit it");
    }
    for add in code.split("ADD COLUMN").skip(1) {
        let column = add.split(", ADD ").next().unwrap_or(add);
        if column.contains("NOT NULL") && !column.contains("DEFAULT") && !column.contains("GENERATED") {
            return Some("adds a NOT NULL column without a default: the previous release's inserts omit it");
        }
    }
    if code.starts_with("ALTER TABLE") && re(r"\bADD (?:CONSTRAINT|CHECK|UNIQUE|PRIMARY KEY|FOREIGN KEY|EXCLUDE)\b").is_match(&code) {
        return Some("adds a constraint to an existing table: it may reject the previous release's writes");
    }
    if re(r"^CREATE UNIQUE INDEX\b").is_match(&code) {
        return Some("adds a unique index to an existing table: it may reject the previous release's writes");
    }
    if code.starts_with("TRUNCATE") {
        return Some("empties a table the previous release uses");
    }
    None
}

/// Every problem in the migrations after the released one: "file: reason: statement".
fn lint(migrations: &[(i64, String, String)], released: i64) -> Vec<String> {
    let unreleased: Vec<_> = migrations.iter().filter(|(v, _, _)| *v > released).collect();
    let create = regex::Regex::new(r"^CREATE TABLE(?: IF NOT EXISTS)? ([\w.]+)").expect("pattern");
    let mut new_tables = BTreeSet::new();
    let mut problems = Vec::new();
    for (_, stem, sql) in unreleased {
        for stmt in statements(sql) {
            if let Some(c) = create.captures(&code_of(&stmt)) {
                new_tables.insert(c[1].trim_start_matches("PUBLIC.").to_string());
            }
            if let Some(why) = destructive(&stmt, &new_tables).filter(|_| !is_contract(&stmt)) {
                problems.push(format!("{stem}.sql: {why}:\n    {}", code_of(&stmt)));
            }
        }
    }
    problems
}

#[test]
fn migrations_after_the_released_one_only_expand_unless_marked_as_a_contract_step() {
    let (version, _) = released();
    let problems = lint(&migrations(), version);
    assert!(
        problems.is_empty(),
        "these migrations would break the release still running during a rolling deploy \
         (README, \"Migrations and rolling deploys\"): expand now, contract in a later release, \
         or mark a deliberate contract step with a `-- contract: <reason>` comment:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_linter_tells_expanding_statements_from_destructive_ones() {
    // Table names as the linter sees them (it reads statements upper-cased).
    let new = BTreeSet::from(["FRESH".to_string()]);
    for bad in [
        "ALTER TABLE stories DROP COLUMN summary",
        "alter table stories rename column summary to blurb",
        "ALTER TABLE stories RENAME TO tales",
        "DROP TABLE likes",
        "DROP INDEX stories_tags_idx",
        "ALTER TABLE stories ALTER COLUMN title TYPE varchar(80)",
        "ALTER TABLE stories ALTER title SET DATA TYPE text",
        "ALTER TABLE stories ALTER COLUMN summary SET NOT NULL",
        "ALTER TABLE stories ALTER COLUMN summary DROP DEFAULT",
        "ALTER TABLE stories ADD COLUMN rating int NOT NULL",
        "ALTER TABLE stories ADD COLUMN a int, ADD COLUMN b int NOT NULL",
        "ALTER TABLE stories ADD CONSTRAINT title_short CHECK (length(title) < 80)",
        "CREATE UNIQUE INDEX stories_title ON stories (title)",
        "ALTER TYPE user_role RENAME VALUE 'writer' TO 'author'",
        "TRUNCATE sessions",
    ] {
        assert!(destructive(bad, &new).is_some(), "not flagged: {bad}");
    }
    for good in [
        "ALTER TABLE stories ADD COLUMN rating int",
        "ALTER TABLE stories ADD COLUMN rating int NOT NULL DEFAULT 0",
        "ALTER TABLE stories ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE stories ALTER COLUMN summary DROP NOT NULL",
        "CREATE TABLE fresh (id bigint PRIMARY KEY, name text NOT NULL)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS stories_rating ON stories (rating)",
        "ALTER TABLE fresh ADD COLUMN other text NOT NULL",
        "CREATE UNIQUE INDEX fresh_name ON fresh (name)",
        "ALTER TYPE user_role ADD VALUE IF NOT EXISTS 'editor'",
        "UPDATE stories SET rating = 0 WHERE rating IS NULL",
        "-- renamed columns are mentioned in this comment only\nALTER TABLE stories ADD COLUMN x int",
    ] {
        assert_eq!(destructive(good, &new), None, "flagged: {good}");
    }
    // The contract mark needs a reason.
    assert!(is_contract("-- contract: release 41 stopped reading stories.summary\nALTER TABLE stories DROP COLUMN summary"));
    assert!(!is_contract("-- contract:\nALTER TABLE stories DROP COLUMN summary"));
    // The splitter keeps semicolons inside quotes, dollar quotes and comments.
    let sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- a; b\nSELECT ';', \"a;b\", $1;";
    assert_eq!(statements(sql).len(), 2, "{:?}", statements(sql));
    // And the whole check, over a released set and one bad migration after it.
    let set = vec![
        (1, "1_a".to_string(), "CREATE TABLE t (id int);".to_string()),
        (2, "2_b".to_string(), "CREATE TABLE u (id int);\nALTER TABLE u DROP COLUMN id;\nALTER TABLE t DROP COLUMN id;".to_string()),
    ];
    let problems = lint(&set, 1);
    assert_eq!(problems.len(), 1, "only the released table's drop: {problems:?}");
    assert!(lint(&set, 2).is_empty());
}

// ---- 3. statements of the released code ------------------------------------------------

/// String literals in Rust source (plain, raw, byte), skipping comments and char literals.
fn string_literals(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < c.len() {
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            '\'' => {
                // A char literal ('x', '\n', '\''), or a lifetime (left alone).
                if c.get(i + 1) == Some(&'\\') {
                    i += 3; // past the quote, the backslash and the escaped char
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 2;
                }
            }
            'r' if (c.get(i + 1) == Some(&'"') || c.get(i + 1) == Some(&'#')) && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_')) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) == Some(&'"') {
                    let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                    let rest: String = c[j + 1..].iter().collect();
                    let end = rest.find(&close).unwrap_or(rest.len());
                    out.push(rest[..end].to_string());
                    i = j + 1 + rest[..end].chars().count() + close.chars().count() - 1;
                }
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        i += 1;
                        match c.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('\n') => {
                                // A line continuation: the newline and the next line's indent go.
                                while c.get(i + 1).is_some_and(|c| c.is_whitespace()) {
                                    i += 1;
                                }
                            }
                            Some(other) => s.push(*other),
                            None => {}
                        }
                    } else {
                        s.push(c[i]);
                    }
                    i += 1;
                }
                out.push(s);
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The SQL statements of the code now checked out: string literals in app/src and
/// worker/src that start like a statement. Fragments (pieces of `concat!`, `format!`
/// templates) are kept too; those that do not prepare against the released schema are
/// left out of the check there.
fn current_statements() -> BTreeMap<String, String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("source dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("app/src"), &mut files);
    walk(&root().join("worker/src"), &mut files);
    files.sort();
    let start = regex::Regex::new(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s").expect("pattern");
    let mut out = BTreeMap::new();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read source");
        let rel = f.strip_prefix(root()).unwrap_or(&f).to_string_lossy().replace("app/../", "");
        for lit in string_literals(&src) {
            if start.is_match(&lit) {
                let sql = lit.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string();
                out.entry(sql).or_insert(rel.clone());
            }
        }
    }
    out
}

const SNAPSHOT_HEAD: &str = "-- released: ";
const SNAPSHOT_ITEM: &str = "-- @ ";

/// (release marker, statements) of the snapshot.
fn read_snapshot() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(snapshot_path()).expect("app/tests/compat/released_statements.sql");
    let marker = text.lines().find_map(|l| l.strip_prefix(SNAPSHOT_HEAD)).unwrap_or_default().trim().to_string();
    let mut stmts = Vec::new();
    for chunk in text.split(&format!("\n{SNAPSHOT_ITEM}")).skip(1) {
        let sql = chunk.split_once('\n').map_or("", |(_, s)| s).trim();
        stmts.push(sql.to_string());
    }
    (marker, stmts)
}

fn write_snapshot(marker: &str) {
    let mut text = format!(
        "{SNAPSHOT_HEAD}{marker}\n-- The SQL string literals of app/src and worker/src when the release was marked\n\
         -- (app/tests/migrations_compat.rs). Generated: do not edit; regenerate with\n\
         -- QUIRE_MARK_RELEASE=1 bin/test -E 'binary(migrations_compat)'\n"
    );
    for (sql, file) in current_statements() {
        text.push_str(&format!("\n{SNAPSHOT_ITEM}{file}\n{sql}\n"));
    }
    std::fs::create_dir_all(snapshot_path().parent().expect("parent")).expect("mkdir");
    std::fs::write(snapshot_path(), text).expect("write snapshot");
}

#[test]
fn mark_release_when_asked() {
    if std::env::var_os("QUIRE_MARK_RELEASE").is_none() {
        return;
    }
    let (_, newest, _) = migrations().pop().expect("a migration");
    std::fs::write(
        root().join("migrations/RELEASED"),
        format!(
            "# The last migration shipped in a release: later ones must keep it working\n\
             # (README, \"Migrations and rolling deploys\"; app/tests/migrations_compat.rs).\n{newest}\n"
        ),
    )
    .expect("write RELEASED");
    write_snapshot(&newest);
}

// ---- 2 and 3 against a real database ---------------------------------------------------

/// What the previous release relies on in the schema, one line per fact, keyed so that a
/// fact that disappears (or changes) shows as a missing key.
async fn schema_facts(conn: &mut PgConnection) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let columns: Vec<(String, String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("columns");
    for (rel, col, ty, not_null, has_default) in columns {
        facts.insert(format!("relation {rel}"), String::new());
        facts.insert(format!("column {rel}.{col}"), ty);
        // "insertable without it": nullable or defaulted (what an old INSERT needs).
        facts.insert(format!("column {rel}.{col} may be omitted"), (!not_null || has_default).to_string());
        facts.insert(format!("column {rel}.{col} takes NULL"), (!not_null).to_string());
    }
    let more: Vec<(String,)> = sqlx::query_as(
        "SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
         UNION ALL
         SELECT 'enum ' || t.typname || ' ' || e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
         UNION ALL
         SELECT 'unique index on ' || regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE UNIQUE INDEX \\S+ ON ', '')
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE i.indisunique AND n.nspname = 'public'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("functions, enums, unique indexes");
    for (fact,) in more {
        facts.insert(fact, String::new());
    }
    facts
}

/// What went wrong between the released schema's facts and the new one's.
fn schema_breaks(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut breaks = Vec::new();
    for (fact, was) in before {
        match after.get(fact) {
            None => breaks.push(format!("gone: {fact}")),
            // Accepting more (NULL now allowed, a default added) does not break old code.
            Some(now) if now != was && !(was == "false" && now == "true") => breaks.push(format!("changed: {fact}: {was} -> {now}")),
            _ => {}
        }
    }
    // A column added to a released relation must be omittable by the old INSERTs.
    for (fact, now) in after {
        if let Some(col) = fact.strip_prefix("column ").and_then(|c| c.strip_suffix(" may be omitted")) {
            let rel = col.split('.').next().unwrap_or_default();
            if !before.contains_key(fact) && before.contains_key(&format!("relation {rel}")) && now == "false" {
                breaks.push(format!("new NOT NULL column without a default in a released table: {col}"));
            }
        }
    }
    breaks
}

/// The statements that prepare on `conn`, and the errors of those that do not.
async fn prepare_all(conn: &mut PgConnection, stmts: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for sql in stmts {
        match (&mut *conn).prepare(AssertSqlSafe(sql.clone()).into_sql_str()).await {
            Ok(_) => ok.push(sql.clone()),
            Err(e) => failed.push(format!("{e}\n    {sql}")),
        }
    }
    (ok, failed)
}

#[tokio::test]
async fn the_released_schema_and_statements_survive_the_new_migrations() {
    if std::env::var_os("QUIRE_MARK_RELEASE").is_some() {
        return; // mark_release_when_asked is rewriting the snapshot this reads
    }
    let (version, name) = released();
    let (marker, stmts) = read_snapshot();
    assert_eq!(
        marker, name,
        "app/tests/compat/released_statements.sql is for another release than migrations/RELEASED: \
         regenerate both with QUIRE_MARK_RELEASE=1 bin/test -E 'binary(migrations_compat)'"
    );
    assert!(stmts.len() > 100, "the snapshot lists the released code's statements: {}", stmts.len());

    // A database of its own, migrated as the released code last saw it.
    let admin_url = common::admin_url();
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin");
    let db = format!("compat_{}", uuid::Uuid::new_v4().simple());
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.expect("create");
    let url = common::with_db(&admin_url, &db);
    let pool = PgPool::connect(&url).await.expect("connect");
    apalis_postgres::PostgresStorage::setup(&pool).await.expect("job queue tables");
    app::db::MIGRATOR.run_to(version, &pool).await.expect("migrate to the released version");
    let mut conn = pool.acquire().await.expect("conn").detach();
    let before = schema_facts(&mut conn).await;
    let (baseline, unprepared) = prepare_all(&mut conn, &stmts).await;
    drop(conn);

    // Then the new migrations, and a new connection (a connection caches its prepared
    // statements, which would hide a change).
    app::db::MIGRATOR.run(&pool).await.expect("the new migrations");
    let mut conn = pool.acquire().await.expect("conn").detach();
    let after = schema_facts(&mut conn).await;
    let (_, broken) = prepare_all(&mut conn, &baseline).await;
    drop(conn);
    pool.close().await;
    let _ = admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).await;

    let breaks = schema_breaks(&before, &after);
    assert!(
        breaks.is_empty() && broken.is_empty(),
        "the new migrations break the released code (README, \"Migrations and rolling deploys\").\n\
         Schema it relies on, taken away:\n{}\nIts statements that no longer prepare:\n{}",
        breaks.join("\n"),
        broken.join("\n")
    );
    // Most of the snapshot is real statements; what does not prepare is fragments.
    assert!(baseline.len() * 2 > stmts.len(), "{} of {} prepared on the released schema; first failures:\n{}", baseline.len(), stmts.len(), unprepared.iter().take(5).cloned().collect::<Vec<_>>().join("\n"));
    eprintln!("{} released statements prepare on the new schema ({} fragments skipped)", baseline.len(), unprepared.len());
}

#[test]
fn the_schema_comparison_flags_what_old_code_would_trip_on() {
    let facts = |items: &[(&str, &str)]| items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let before = facts(&[("relation t", ""), ("column t.a", "text"), ("column t.a may be omitted", "true"), ("column t.a takes NULL", "true")]);
    assert!(schema_breaks(&before, &before).is_empty());
    let mut grown = before.clone();
    grown.extend(facts(&[("column t.b", "int"), ("column t.b may be omitted", "true"), ("column t.b takes NULL", "false"), ("relation u", "")]));
    assert!(schema_breaks(&before, &grown).is_empty(), "{:?}", schema_breaks(&before, &grown));
    let mut strict = before.clone();
    strict.insert("column t.a takes NULL".into(), "false".into());
    assert_eq!(schema_breaks(&before, &strict).len(), 1);
    let mut required = before.clone();
    required.insert("column t.c may be omitted".into(), "false".into());
    assert_eq!(schema_breaks(&before, &required).len(), 1);
    let mut retyped = before.clone();
    retyped.insert("column t.a".into(), "integer".into());
    assert_eq!(schema_breaks(&before, &retyped).len(), 1);
    let dropped = facts(&[("relation t", "")]);
    assert_eq!(schema_breaks(&before, &dropped).len(), 3);
}
