//! The `worker` binary: `worker [--queues mail,default] [--concurrency N] [--batch-size N]
//! [--no-scheduler | --scheduler-only]`. Every worker also stands by for the scheduler role
//! (see `worker::scheduler`: one of them at a time runs the periodic jobs);
//! `--no-scheduler` opts out, `--scheduler-only` runs the schedule and no queue (a beat).
//! SIGTERM/SIGINT stop it; SIGHUP restarts it in place (`app::shutdown`).

use std::{process::ExitCode, sync::Arc};

use app::{config::Config, db::Db, templates::Templates};
use worker::{
    jobs::JobContext,
    mailer::Mailer,
    runtime::{Options, Role},
};

const USAGE: &str = "usage: worker [--queues mail,default] [--concurrency N] [--batch-size N] [--no-scheduler | --scheduler-only]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--queues" => {
                let queues: Vec<String> = value()?.split(',').map(|q| q.trim().to_string()).filter(|q| !q.is_empty()).collect();
                if let Some(bad) = queues.iter().find(|q| !app::jobs::ALL_QUEUES.contains(&q.as_str())) {
                    return Err(format!("unknown queue `{bad}` (known: {})", app::jobs::ALL_QUEUES.join(", ")));
                }
                if queues.is_empty() {
                    return Err("--queues needs at least one queue".into());
                }
                options.queues = queues;
            }
            "--concurrency" => {
                options.concurrency = value()?.parse().ok().filter(|n| *n > 0).ok_or("--concurrency must be a positive number")?;
            }
            "--batch-size" => {
                options.batch_size = value()?.parse().ok().filter(|n| *n > 0).ok_or("--batch-size must be a positive number")?;
            }
            "--no-scheduler" => options.scheduler = Role::Off,
            "--scheduler-only" => options.scheduler = Role::Only,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

/// Connections the worker needs so that no job waits for one: every running job may
/// hold one (a mail job holds its transaction across the SMTP exchange, so that the
/// `sent_emails` claim and the link token commit only once the server took the mail),
/// each queue keeps one for LISTEN, and the fetch, the acker and the scheduler take one
/// now and then. The default pool is sized for the web's CPU-bound queries (2 × cores,
/// 4 on this machine), which capped mail at ~3 jobs in flight: `bench/drills
/// worker-kill` measured 68 mails/s with it. An explicit `DATABASE_POOL_SIZE` wins.
fn pool_size_for(options: &Options) -> u32 {
    let per_queue = options.concurrency as u32 + 1;
    (options.queues.len() as u32 * per_queue + 3).min(64)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("worker: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::from_env_or_exit();
    app::telemetry::init(config.log_format);
    if std::env::var_os("DATABASE_POOL_SIZE").is_none() {
        config.db_pool_size = config.db_pool_size.max(pool_size_for(&options));
    }
    match run(config, options).await {
        Ok(app::shutdown::Stop::Exit) => ExitCode::SUCCESS,
        Ok(app::shutdown::Stop::Restart) => {
            // Only returns when exec failed: exit, so the Procfile runner notices.
            let e = app::shutdown::reexec();
            eprintln!("worker: cannot restart: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs until SIGTERM/SIGINT (exit) or SIGHUP (restart: the caller re-executes the
/// binary). Either way fetching stops, running jobs finish, fetched-but-unstarted jobs go
/// back to the queue, and the pool closes first: the new image picks up where this one
/// left off, with nothing lost and nothing run twice.
async fn run(config: Config, options: Options) -> anyhow::Result<app::shutdown::Stop> {
    // Before the worker registers: `bin/stack restart` sends SIGHUP once it sees it.
    app::shutdown::listen();
    let db = Db::connect(&config).await?;
    let templates = Templates::new(|_| None)?;
    let mailer = Mailer::from_config(&config)?;
    let storage = app::storage::Storage::from_config(&config)?;
    let ctx = Arc::new(JobContext { db: db.clone(), storage, config: Arc::new(config), templates, mailer });
    tracing::info!(queues = ?options.queues, concurrency = options.concurrency, batch_size = options.batch_size, "worker starting");
    // Aborting the scheduler closes its lock connection: another worker takes over.
    let scheduler = (options.scheduler != Role::Off).then(|| tokio::spawn(worker::scheduler::run(db.clone())));
    let metrics = worker::metrics::listen(&ctx.config, options.registry.clone(), db.clone()).await?;
    let result = if options.scheduler == Role::Only {
        let stop = app::shutdown::requested().await;
        tracing::info!(?stop, "stopping the scheduler");
        Ok(())
    } else {
        worker::runtime::monitor(ctx, &options)
            .run_with_signal(async {
                let stop = app::shutdown::requested().await;
                tracing::info!(?stop, "stopping: no more fetches, waiting for running jobs");
                Ok(())
            })
            .await
    };
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    db.close().await;
    let stop = app::shutdown::outcome();
    tracing::info!(?stop, "worker stopped");
    result?;
    Ok(stop)
}
