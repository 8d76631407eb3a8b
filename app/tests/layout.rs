//! The layout rules of app/src, checked on the source tree itself so that breaking one
//! fails `bin/test`:
//!
//! 1. Only `web/` and each area's `pages.rs` (and the `web` binary) speak HTTP: no other
//!    file — `db.rs` files, infrastructure, `jobs/`, an area's `validate.rs` or tables —
//!    imports `poem` or reaches into `crate::web`.
//! 2. `web/mod.rs` is the one place that lists the feature areas' pages; an area never
//!    calls another area's handlers (`crate::<other>::pages`), only its tables and plain
//!    functions.

use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Feature areas: a folder with a `pages.rs`.
fn areas() -> Vec<String> {
    let mut areas: Vec<String> = std::fs::read_dir(SRC)
        .expect("read app/src")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("pages.rs").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    areas.sort();
    areas
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (path relative to app/src, source without comments)
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(SRC).expect("under src").to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&p).expect("read source");
            let code: String = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) => &l[..i],
                    None => l,
                })
                .collect::<Vec<_>>()
                .join("\n");
            (rel, code)
        })
        .collect()
}

fn speaks_http(rel: &str) -> bool {
    // An area's handlers: `pages.rs`, or `pages/` once they outgrow one file.
    rel.starts_with("web/") || rel.ends_with("/pages.rs") || rel.contains("/pages/") || rel.starts_with("bin/")
}

fn mentions(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(i, _)| {
        // A whole path segment: `poem::`, not `my_poem::`.
        i == 0 || !code[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn only_web_and_pages_speak_http() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| !speaks_http(rel))
        .filter(|(_, code)| mentions(code, "poem::") || mentions(code, "poem ") || code.contains("crate::web"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(offenders.is_empty(), "these files must not import poem or crate::web: {offenders:?}");
}

#[test]
fn db_files_and_jobs_are_covered_by_the_rule() {
    // The rule above is only worth something if it sees the files it is about.
    let all: Vec<String> = sources().into_iter().map(|(rel, _)| rel).collect();
    for must in ["stories/db.rs", "media/db.rs", "jobs/mod.rs", "db/mod.rs", "error.rs", "sessions/store.rs", "ratelimit.rs"] {
        assert!(all.iter().any(|r| r == must), "{must} should exist");
        assert!(!speaks_http(must));
    }
}

#[test]
fn areas_never_call_each_others_handlers() {
    let areas = areas();
    assert!(areas.len() >= 3, "areas found: {areas:?}");
    let mut offenders = Vec::new();
    for (rel, code) in sources() {
        if rel == "web/mod.rs" {
            continue;
        }
        let own = rel.split('/').next().unwrap_or_default();
        for area in &areas {
            if area == own {
                continue;
            }
            for needle in [format!("crate::{area}::pages"), format!("{area}::pages::"), format!("app::{area}::pages")] {
                if code.contains(&needle) {
                    offenders.push(format!("{rel} uses {needle}"));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "only web/mod.rs may use an area's pages: {offenders:?}");
}

#[test]
fn web_mod_lists_every_area() {
    let web = sources().into_iter().find(|(rel, _)| rel == "web/mod.rs").map(|(_, c)| c).expect("web/mod.rs");
    for area in areas() {
        assert!(web.contains(&format!("{area}::pages::routes")), "web/mod.rs must mount {area}::pages::routes");
    }
}
