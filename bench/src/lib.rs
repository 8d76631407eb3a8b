//! What the benchmark programs share.

pub mod http;
pub mod seed;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The workspace root (bench/'s parent): where bin/lib.sh and the Procfile live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ has a parent").to_path_buf()
}

/// A private PostgreSQL cluster (bin/lib.sh `dev` profile) under var/, stopped on drop.
pub struct Cluster {
    pub name: &'static str,
    pub port: u16,
    pub bindir: PathBuf,
}

impl Cluster {
    pub fn start(name: &'static str) -> Result<Cluster, String> {
        let out = lib_sh(&format!("pg_ensure_cluster {name} dev >&2; echo \"$PG_PORT\"; echo \"$PG_BINDIR\""))?;
        let mut lines = out.lines();
        let port = lines.next().and_then(|p| p.trim().parse().ok()).ok_or("no port")?;
        let bindir = PathBuf::from(lines.next().ok_or("no PG_BINDIR")?.trim());
        Ok(Cluster { name, port, bindir })
    }

    /// A URL for database `db` as the `quire` role, tagged with `app` in pg_stat_activity.
    pub fn url(&self, db: &str, app: &str) -> String {
        format!("postgres://quire@127.0.0.1:{}/{db}?application_name={app}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        println!("stopping PostgreSQL ({})", self.name);
        let _ = lib_sh(&format!("pg_setup >&2; pg_stop_cluster {} >&2", self.name));
    }
}

/// The `p` quantile (0..=1) of ascending `sorted` (nearest rank); NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `script` in bash with bin/lib.sh sourced (the same PostgreSQL helpers bin/test
/// uses); returns its stdout. Its messages go to our stderr.
pub fn lib_sh(script: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; ROOT='{}'; . \"$ROOT/bin/lib.sh\"; {script}", root().display()))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("bash: {e}"))?;
    if !out.status.success() {
        return Err(format!("bin/lib.sh: `{script}` failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The machine a benchmark ran on, for the dated sections of bench/RESULTS.md.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    /// /proc/loadavg's 1-minute figure at start: other work on the machine inflates wall
    /// times (CPU times much less), so every result records it.
    pub load: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_owned()))
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        Machine { cpu, cores, load }
    }
}

/// `YYYY-MM-DD` (UTC), for the dated sections of bench/RESULTS.md.
pub fn today_utc() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Appends `section` to bench/RESULTS.md (`path`), creating it with a title if missing.
pub fn append_results(path: &std::path::Path, section: &str) {
    use std::io::Write;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open RESULTS.md");
    if new {
        let _ = f.write_all(b"# Benchmark results\n\nAppended by the programs under bench/src/bin.\n");
    }
    f.write_all(section.as_bytes()).expect("write RESULTS.md");
}
