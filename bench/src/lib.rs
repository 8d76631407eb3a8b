//! What the benchmark programs share.

pub mod seed;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The workspace root (bench/'s parent): where bin/lib.sh and the Procfile live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ has a parent").to_path_buf()
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
