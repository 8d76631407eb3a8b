//! The signals both binaries stop on, and the one they restart on.
//!
//! - SIGTERM (what Heroku, systemd and honcho send) or SIGINT (Ctrl-C): stop for good.
//! - SIGHUP: a rolling restart (`bin/stack restart`). The process stops the same graceful
//!   way, then [`reexec`]s its own binary with the same arguments and environment. The
//!   pid stays the same, so a Procfile runner (honcho stops every process when one
//!   exits) never sees it go, and a rebuilt binary is picked up. While it stops,
//!   [`draining`] is true: `/health` answers 503 so the load balancer takes the process
//!   out of rotation before it stops accepting.
//!
//! A SIGTERM or SIGINT that arrives during a restart wins: the process then exits.

use std::sync::OnceLock;

use tokio::sync::watch;

/// How a process was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Exit,
    Restart,
}

// The watch value: 0 running, 1 restart requested, 2 exit requested (never goes down).
const RUNNING: u8 = 0;
const RESTART: u8 = 1;
const EXIT: u8 = 2;

fn state() -> &'static watch::Sender<u8> {
    static STATE: OnceLock<watch::Sender<u8>> = OnceLock::new();
    STATE.get_or_init(|| watch::channel(RUNNING).0)
}

/// This process image's id, for `/health`: a restarted process keeps its pid, so
/// `bin/stack restart` waits for a new id to know the new image serves.
pub fn boot_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        format!("{}-{ms}", std::process::id())
    })
}

/// Installs the signal handlers (once; later calls do nothing). Call it early: until
/// then SIGHUP has its default action, which ends the process.
pub fn listen() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        boot_id();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate());
            let hup = signal(SignalKind::hangup());
            tokio::spawn(async move {
                let (mut term, mut hup) = match (term, hup) {
                    (Ok(t), Ok(h)) => (t, h),
                    _ => {
                        let _ = tokio::signal::ctrl_c().await;
                        state().send_replace(EXIT);
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = term.recv() => { tracing::info!("SIGTERM received"); state().send_replace(EXIT); }
                        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT received"); state().send_replace(EXIT); }
                        _ = hup.recv() => {
                            tracing::info!("SIGHUP received: restarting");
                            state().send_if_modified(|s| { let was = *s; *s = (*s).max(RESTART); was != *s });
                        }
                    }
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async {
            let _ = tokio::signal::ctrl_c().await;
            state().send_replace(EXIT);
        });
    });
}

/// Resolves at the first stop request; which one it was.
pub async fn requested() -> Stop {
    listen();
    let mut rx = state().subscribe();
    let _ = rx.wait_for(|s| *s != RUNNING).await;
    outcome()
}

/// Resolves once an exit (SIGTERM/SIGINT) is requested, even during a restart.
pub async fn exit_requested() {
    listen();
    let mut rx = state().subscribe();
    let _ = rx.wait_for(|s| *s == EXIT).await;
}

/// What to do now that the process has stopped serving.
pub fn outcome() -> Stop {
    if *state().borrow() == RESTART { Stop::Restart } else { Stop::Exit }
}

/// A stop or restart is under way: `/health` should send traffic elsewhere.
pub fn draining() -> bool {
    *state().borrow() != RUNNING
}

/// Resolves at the first SIGTERM, SIGINT or SIGHUP (what tests and older callers need).
pub async fn signal() {
    requested().await;
}

/// Replaces this process with a fresh run of its own binary (same pid, arguments and
/// environment). Returns only on failure. Call it once everything is closed: our files
/// and sockets are close-on-exec, so the new image starts with stdin/out/err only.
#[cfg(unix)]
pub fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    // When the binary was rebuilt under us, Linux names the running one "PATH (deleted)":
    // exec the new file at PATH, which is what a deploy wants.
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) => std::path::PathBuf::from(path),
        None => exe,
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(&exe);
    if let Some(argv0) = args.next() {
        cmd.arg0(argv0);
    }
    tracing::info!(exe = %exe.display(), "exec'ing a fresh image of this process");
    cmd.args(args).exec()
}

#[cfg(not(unix))]
pub fn reexec() -> std::io::Error {
    std::io::Error::other("restarting in place needs exec(2)")
}
