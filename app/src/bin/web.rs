//! The `web` binary: `web serve` (the HTTP server), `web migrate` (the release step),
//! `web seed` (demo data for development; refused in production), `web role USERNAME
//! ROLE` (sets a role from the command line: how the first admin is made).

use std::process::ExitCode;

use app::{config::Config, db::Db, web::AppState};

const USAGE: &str = "usage: web <serve|migrate|seed|role USERNAME ROLE>";

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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // One thread per core the dyno (or container) is given, not per core the host has.
    if let Some(cores) = app::config::web_concurrency() {
        runtime.worker_threads(cores);
    }
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(async_main()),
        Err(e) => {
            eprintln!("web: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    if !matches!(command.as_str(), "serve" | "migrate" | "seed" | "role") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    // The role is checked before any configuration or database: a typo answers at once.
    let role_args = if command == "role" {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let [username, role] = args.as_slice() else {
            eprintln!("usage: web role USERNAME ROLE (reader, writer, moderator or admin)");
            return ExitCode::from(2);
        };
        match role.parse::<app::policy::Role>() {
            Ok(role) => Some((username.clone(), role)),
            Err(e) => {
                eprintln!("web role: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let config = Config::from_env_or_exit();
    // Demo accounts with known passwords have no place on a real site; refuse before
    // touching the database, like a configuration error.
    if command == "seed" && config.is_production() {
        eprintln!("web seed: refusing to add demo data in production (APP_ENV=production); it is for development only");
        return ExitCode::from(2);
    }
    app::telemetry::init(config.log_format);
    if let Some((username, role)) = role_args {
        return set_role(config, &username, role).await;
    }
    match run(&command, config).await {
        Ok(app::shutdown::Stop::Exit) => ExitCode::SUCCESS,
        Ok(app::shutdown::Stop::Restart) => {
            // Only returns when exec failed: exit, so the Procfile runner notices.
            let e = app::shutdown::reexec();
            eprintln!("web {command}: cannot restart: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "web {command} failed");
            eprintln!("web {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `web role USERNAME ROLE`: exit 0 when set (or already so), 2 for an unknown user.
async fn set_role(config: Config, username: &str, role: app::policy::Role) -> ExitCode {
    let result = async {
        let db = Db::connect(&config).await?;
        let origin = app::audit::Origin::command_line("web role");
        let changed = app::accounts::users::set_role(db.primary(), &origin, username, role).await?;
        db.close().await;
        anyhow::Ok(changed)
    }
    .await;
    match result {
        Ok(Some(old)) => {
            println!("{username}: {old} -> {role}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("web role: no user named {username:?}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("web role: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: &str, config: Config) -> anyhow::Result<app::shutdown::Stop> {
    let db = Db::connect(&config).await?;
    match command {
        "migrate" => {
            app::db::migrate(db.primary()).await?;
            tracing::info!("migrations applied");
        }
        "seed" => {
            let storage = app::storage::Storage::from_config(&config)?;
            app::seed::run(&db, &storage).await?
        }
        _ => {
            let state = AppState::new(config, db)?;
            return app::web::serve(state).await;
        }
    }
    Ok(app::shutdown::Stop::Exit)
}
