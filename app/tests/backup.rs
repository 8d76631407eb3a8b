//! bin/backup and bin/restore on a real cluster of their own (not the test server: turning
//! on archive_mode restarts the server): archiving is set up once and left alone on the
//! next run, retention keeps the newest N base backups, and a point-in-time restore has
//! exactly the rows committed before the target time — the same contract as the
//! `backup-restore` drill in bench/src/bin/drills.rs, on a tiny database (about 20 s).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the checkout")
}

/// bash with bin/lib.sh sourced; stdout, or a panic with stderr.
fn lib_sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; ROOT='{}'; . \"$ROOT/bin/lib.sh\"; {script}", root().display()))
        .output()
        .expect("run bash");
    assert!(out.status.success(), "`{script}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(name: &str, args: &[&str]) -> Output {
    let out = Command::new(root().join("bin").join(name))
        .args(args)
        .env_remove("BACKUP_DIR")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run the script");
    eprintln!("bin/{name} {}:\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn ok(name: &str, args: &[&str]) -> String {
    let out = script(name, args);
    assert!(out.status.success(), "bin/{name} {} failed ({})", args.join(" "), out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Pg {
    bindir: PathBuf,
    port: u16,
}

impl Pg {
    fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "quire", "-d", "quire", "-p"])
            .arg(self.port.to_string())
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The port in bin/restore's last line, `URL=postgres://quire@127.0.0.1:PORT/quire`.
fn restored_port(stdout: &str) -> u16 {
    let line = stdout.lines().rev().find_map(|l| l.strip_prefix("URL=postgres://quire@127.0.0.1:")).expect("bin/restore prints URL=");
    line.split('/').next().and_then(|p| p.parse().ok()).expect("a port in the URL")
}

/// Stops both clusters and deletes them and the backups, also when the test fails.
struct Cleanup {
    clusters: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.clusters {
            let _ = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "ROOT='{}'; . \"$ROOT/bin/lib.sh\"; pg_setup >/dev/null; pg_stop_cluster {c} >/dev/null; rm -rf \"$(pg_data_dir {c})\" \"$(pg_log_file {c})\" \"$(pg_socket_dir {c})\" \"$(pg_port_file {c})\"",
                    root().display()
                ))
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn point_in_time_restore_has_exactly_the_rows_committed_before_the_target() {
    // One name per bin/test run (its cluster is test, test-2, ...), so parallel runs in one
    // checkout do not share it.
    let base = std::env::var("QUIRE_TEST_REPLICA_NAME").ok().and_then(|n| n.strip_suffix("-replica").map(str::to_owned)).unwrap_or("test".into());
    let name = format!("{base}-backup");
    let restored = format!("{base}-backup-restored");
    let dir = root().join("var/backups").join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = Cleanup { clusters: vec![restored.clone(), name.clone()], dir: dir.clone() };
    let out = lib_sh(&format!(
        "pg_setup >&2; for c in {name} {restored}; do pg_clear_stale $c >&2; rm -rf \"$(pg_data_dir $c)\"; done; \
         pg_ensure_cluster {name} dev >&2; echo \"$PG_PORT\"; echo \"$PG_BINDIR\""
    ));
    let mut lines = out.lines();
    let port = lines.next().and_then(|p| p.trim().parse().ok()).expect("a port");
    let pg = Pg { port, bindir: PathBuf::from(lines.next().expect("PG_BINDIR").trim()) };
    let d = dir.display().to_string();

    // First run: turns archiving on (restarting the cluster) and takes a base backup.
    let first = ok("backup", &["--cluster", &name, "--dir", &d]);
    assert!(first.contains("WAL archiving on"), "{first}");
    assert_eq!(pg.psql("SHOW archive_mode"), "on");
    std::thread::sleep(Duration::from_millis(1100)); // base backups are named by the second
    // Second run: nothing to set up (no restart), a second backup, and --keep 1 deletes the first.
    let pid = pg.psql("SELECT pg_postmaster_start_time()");
    let second = ok("backup", &["--cluster", &name, "--dir", &d, "--keep", "1"]);
    assert!(second.contains("already on"), "{second}");
    assert_eq!(pg.psql("SELECT pg_postmaster_start_time()"), pid, "the second run must not restart the server");
    let bases: Vec<_> = std::fs::read_dir(dir.join("base")).expect("base/").filter_map(Result::ok).collect();
    assert_eq!(bases.len(), 1, "--keep 1 leaves one base backup");

    pg.psql("CREATE TABLE t (seq int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())");
    for i in 1..=3 {
        pg.psql(&format!("INSERT INTO t (seq) VALUES ({i})"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let target = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    std::thread::sleep(Duration::from_millis(300));
    for i in 4..=6 {
        pg.psql(&format!("INSERT INTO t (seq) VALUES ({i})"));
    }
    // Close the segment now rather than after archive_timeout, and wait for the archiver.
    let segment = pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
    let t = Instant::now();
    while !dir.join("wal").join(format!("{segment}.gz")).exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "segment {segment} was not archived within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = ok("restore", &["--to", &target, "--from", &d, "--into", &restored]);
    let copy = Pg { port: restored_port(&out), bindir: pg.bindir.clone() };
    assert_eq!(copy.psql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM t"), "1,2,3", "restored to {target}");
    // The copy is a primary of its own (promoted), and does not archive into the source's archive.
    assert_eq!(copy.psql("SELECT pg_is_in_recovery()"), "f");
    copy.psql("INSERT INTO t (seq) VALUES (100)");
    assert_eq!(copy.psql("SHOW archive_mode"), "off");

    // An existing cluster is not overwritten without --force.
    let refused = script("restore", &["--to", "latest", "--from", &d, "--into", &restored]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));

    let out = ok("restore", &["--to", "latest", "--from", &d, "--into", &restored, "--force"]);
    let copy = Pg { port: restored_port(&out), bindir: pg.bindir.clone() };
    assert_eq!(copy.psql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM t"), "1,2,3,4,5,6", "restored to the end of the archive");

    // Before the oldest kept base backup there is nothing to restore from.
    let early = script("restore", &["--to", "2000-01-01 00:00:00+00", "--from", &d, "--into", &restored, "--force"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("no base backup"));
}
