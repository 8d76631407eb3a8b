//! What the benchmark programs share.

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
