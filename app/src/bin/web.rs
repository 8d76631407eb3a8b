//! The `web` binary: `web serve` (the HTTP server), `web migrate` (the release step),
//! `web seed` (demo data for development; refused in production).

use std::process::ExitCode;

use app::{config::Config, db::Db, web::AppState};

const USAGE: &str = "usage: web <serve|migrate|seed>";

/// glibc raises its mmap threshold each time a large block is freed, so after the first
/// password hash (a 19 MiB argon2 block) such blocks come from per-thread heaps that are
/// never given back: bench/load saw web processes grow to GBs under a login flood. A
/// fixed threshold keeps large blocks mmapped, so they return to the OS when freed.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(async_main()),
        Err(e) => {
            eprintln!("web: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    if !matches!(command.as_str(), "serve" | "migrate" | "seed") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let config = Config::from_env_or_exit();
    // Demo accounts with known passwords have no place on a real site; refuse before
    // touching the database, like a configuration error.
    if command == "seed" && config.is_production() {
        eprintln!("web seed: refusing to add demo data in production (APP_ENV=production); it is for development only");
        return ExitCode::from(2);
    }
    app::telemetry::init(config.log_format);
    match run(&command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "web {command} failed");
            eprintln!("web {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: &str, config: Config) -> anyhow::Result<()> {
    let db = Db::connect(&config).await?;
    match command {
        "migrate" => {
            app::db::migrate(db.primary()).await?;
            tracing::info!("migrations applied");
        }
        "seed" => {
            let storage = app::storage::Storage::local(&config.media_root)?;
            app::seed::run(&db, &storage).await?
        }
        _ => {
            let state = AppState::new(config, db)?;
            app::web::serve(state).await?;
        }
    }
    Ok(())
}
