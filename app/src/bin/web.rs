//! The `web` binary: `web serve` (the HTTP server), `web migrate` (the release step),
//! `web seed` (demo data for development).

use std::process::ExitCode;

use app::{config::Config, db::Db, web::AppState};

const USAGE: &str = "usage: web <serve|migrate|seed>";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    if !matches!(command.as_str(), "serve" | "migrate" | "seed") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let config = Config::from_env_or_exit();
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
