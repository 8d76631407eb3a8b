//! `capacity`: the capacity model's table (docs/capacity.md) from the figures in
//! bench/RESULTS.md — so every number in it traces back to a measured run.
//!
//! It reads the newest "HTTP load" section (req/s and CPU µs per request of web and
//! PostgreSQL, 64 connections), the pgbench ceiling in it, the newest job-queue section
//! and the newest media-pipeline section, applies the traffic mix below (assumed, and
//! said so in the table), and rewrites the block between the markers in
//! docs/capacity.md. `capacity --print` prints the block instead.

use std::{collections::BTreeMap, fs};

const START: &str = "<!-- capacity-table:start (bench/src/bin/capacity.rs writes this block) -->";
const END: &str = "<!-- capacity-table:end -->";

/// The assumed mix of MueJam's stated peak (200 req/s): (share, bench/RESULTS.md row
/// label prefix, what it stands for). Shares sum to 1.
const MIX: [(f64, &str, &str); 8] = [
    (0.40, "story page, anonymous, browser", "anonymous story pages (cached)"),
    (0.15, "home `/`, browser `Accept-Encoding` (cached)", "anonymous home and listings (cached)"),
    (0.15, "story page, logged in", "logged-in story pages"),
    (0.12, "chapter page", "chapter pages (uncached reads of 2,000-word chapters)"),
    (0.08, "`/notifications`, logged in", "logged-in dynamic pages (notifications, settings)"),
    (0.05, "home `/`, logged in", "logged-in home (continue reading, followed authors)"),
    (0.048, "`/search?q=N`", "search misses"),
    (0.002, "login POST", "logins (argon2id)"),
];

struct Row {
    rps: f64,
    web_us: f64,
    pg_us: f64,
    bytes: f64,
}

fn sections(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut starts: Vec<usize> = text.match_indices("\n## ").map(|(i, _)| i + 1).collect();
    starts.push(text.len());
    for w in starts.windows(2) {
        let s = &text[w[0]..w[1]];
        let head = s.lines().next().unwrap_or("");
        out.push((head, s));
    }
    out
}

fn num(s: &str) -> Option<f64> {
    let t: String = s.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',').filter(|c| *c != ',').collect();
    t.parse().ok()
}

/// The 64-connection rows of an HTTP load section's main table, by label.
fn load_rows(section: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        if cells.len() < 9 || cells[1] != "64" {
            continue;
        }
        let cpu: Vec<f64> = cells[8].split('/').filter_map(num).collect();
        let (Some(rps), Some(bytes)) = (num(cells[2]), num(cells[6])) else { continue };
        if cpu.len() < 2 {
            continue;
        }
        rows.entry(cells[0].to_string()).or_insert(Row { rps, web_us: cpu[0], pg_us: cpu[1], bytes });
    }
    rows
}

fn find<'a>(rows: &'a BTreeMap<String, Row>, prefix: &str) -> Option<(&'a String, &'a Row)> {
    rows.iter().find(|(k, _)| k.starts_with(prefix))
}

fn table(results: &str) -> Result<String, String> {
    let secs = sections(results);
    let (load_head, load) = secs.iter().rev().find(|(h, _)| h.contains("HTTP load")).ok_or("no HTTP load section in bench/RESULTS.md")?;
    let rows = load_rows(load);
    let pgbench = load
        .lines()
        .find(|l| l.contains("database ceiling: pgbench"))
        .and_then(|l| l.split(" | ").nth(2).and_then(num))
        .ok_or("no pgbench row in the HTTP load section")?;
    let jobs = secs.iter().rev().find(|(h, _)| h.contains("job queue"));
    let media = secs.iter().find(|(_, s)| s.contains("| worker::media::process |"));

    let mut out = String::new();
    out.push_str(&format!("Source: bench/RESULTS.md, section \"{}\" (64 connections, two web processes on 2 cores).\n\n", load_head.trim_start_matches("## ").trim()));
    out.push_str("| traffic (share of the mix: assumed) | measured req/s | web CPU µs/req | PostgreSQL CPU µs/req | bytes/resp | web cores at 200 req/s | PostgreSQL cores at 200 req/s | web cores at 20,000 req/s | PostgreSQL cores at 20,000 req/s |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let (mut web, mut pg, mut bytes) = (0.0, 0.0, 0.0);
    for (share, prefix, what) in MIX {
        let Some((label, r)) = find(&rows, prefix) else {
            out.push_str(&format!("| {what} ({:.1} %) | not in this run (`{prefix}…`) | | | | | | | |\n", share * 100.0));
            continue;
        };
        let (w, p) = (share * r.web_us, share * r.pg_us);
        web += w;
        pg += p;
        bytes += share * r.bytes;
        out.push_str(&format!(
            "| {what} ({:.1} %; row \"{}\") | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.1} | {:.1} |\n",
            share * 100.0,
            label.chars().take(60).collect::<String>(),
            r.rps,
            r.web_us,
            r.pg_us,
            r.bytes,
            200.0 * w / 1e6,
            200.0 * p / 1e6,
            20_000.0 * w / 1e6,
            20_000.0 * p / 1e6
        ));
    }
    out.push_str(&format!(
        "| **the mix** | | **{web:.0}** | **{pg:.0}** | {bytes:.0} | **{:.2}** | **{:.2}** | **{:.1}** | **{:.1}** |\n\n",
        200.0 * web / 1e6,
        200.0 * pg / 1e6,
        20_000.0 * web / 1e6,
        20_000.0 * pg / 1e6
    ));
    out.push_str(&format!(
        "PostgreSQL ceiling on this machine: pgbench on the story page's statement, {pgbench:.0} pages/s on 2 cores. Egress at 20,000 req/s: {:.0} Mbit/s of HTML (media not included).\n",
        20_000.0 * bytes * 8.0 / 1e6
    ));
    if let Some((head, s)) = jobs {
        let drain = s.lines().find(|l| l.contains("drain of the")).and_then(|l| l.split(" | ").nth(1).map(|c| c.replace("**", "")));
        let cpu = s.lines().find(|l| l.contains("CPU per job")).and_then(|l| l.split(" | ").nth(1).map(str::to_string));
        out.push_str(&format!(
            "Job queue (\"{}\"): drain {}, CPU per job (worker / whole machine) {}.\n",
            head.trim_start_matches("## ").trim(),
            drain.as_deref().unwrap_or("?").trim().trim_end_matches('|').trim(),
            cpu.as_deref().unwrap_or("?").trim().trim_end_matches('|').trim()
        ));
    }
    if let Some((head, s)) = media {
        let line = s.lines().find(|l| l.starts_with("| worker::media::process |")).unwrap_or("");
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        if cells.len() >= 4 {
            out.push_str(&format!(
                "Media pipeline (\"{}\"): {} per 12-megapixel upload ({} CPU), {} images/s per core.\n",
                head.trim_start_matches("## ").trim(),
                cells[1],
                cells[3],
                cells[2]
            ));
        }
    }
    Ok(out)
}

fn main() {
    let root = bench::root();
    let print = std::env::args().any(|a| a == "--print");
    let results = match fs::read_to_string(root.join("bench/RESULTS.md")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("capacity: cannot read bench/RESULTS.md: {e}");
            std::process::exit(1);
        }
    };
    let block = match table(&results) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("capacity: {e}");
            std::process::exit(1);
        }
    };
    if print {
        print!("{block}");
        return;
    }
    let path = root.join("docs/capacity.md");
    let doc = fs::read_to_string(&path).unwrap_or_default();
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        eprintln!("capacity: docs/capacity.md has no {START} … {END} block");
        std::process::exit(1);
    };
    let new = format!("{}{START}\n{block}{}", &doc[..a], &doc[b..]);
    if let Err(e) = fs::write(&path, new) {
        eprintln!("capacity: cannot write docs/capacity.md: {e}");
        std::process::exit(1);
    }
    println!("docs/capacity.md: table rewritten from bench/RESULTS.md");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_comes_from_the_results_file() {
        let text = std::fs::read_to_string(bench::root().join("bench/RESULTS.md")).unwrap();
        let t = table(&text).unwrap();
        assert!(t.contains("**the mix**") && t.contains("pgbench"), "{t}");
    }
}
