//! The database handle both binaries share.
//!
//! Every query site chooses: `primary()` for writes, transactions and reads that must be
//! current; `replica_read!(db, pool => query(pool))` for page reads that may be a little
//! behind (a replica when one may serve this request, retried once on the primary when
//! the replica fails). Which replica serves a read, and whether one may at all,
//! is decided by `routing`: only replicas that are up, not too far behind and — for a
//! visitor who just wrote — past that visitor's last write (read-your-writes). With no
//! replicas configured both are the primary and none of that machinery runs.

pub mod routing;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::Config;
pub use routing::{Lsn, PoolStats, ReadScope, ReplicaStatus};
use routing::{Replica, Router};

#[derive(Clone, Debug)]
pub struct Db {
    primary: PgPool,
    router: Arc<Router>,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

impl Db {
    /// Connects to the primary (failing when it is unreachable) and, lazily, to each
    /// replica; starts the replica health loop and waits for its first round, so a fresh
    /// process starts with its healthy replicas already in rotation.
    pub async fn connect(config: &Config) -> Result<Db, sqlx::Error> {
        let primary = PgPoolOptions::new()
            .max_connections(config.db_pool_size)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect_with(connect_options(&config.database_url, config)?)
            .await?;
        let mut replicas = Vec::new();
        for (i, url) in config.replica_urls.iter().enumerate() {
            let pool = routing::replica_pool_with(connect_options(url, config)?, config.db_pool_size);
            replicas.push(Replica::new(i, url, pool));
        }
        Ok(Db::assemble(primary, replicas, config.replica_max_lag).await)
    }

    /// A handle on one pool and no replicas (tests, one-off tools).
    pub fn from_pool(primary: PgPool) -> Db {
        Db { primary, router: Arc::new(Router::new(Vec::new(), Duration::from_secs(10))) }
    }

    /// A handle on a primary and the given replica pools (tests wire real replicas in).
    pub async fn with_replicas(primary: PgPool, replicas: Vec<(String, PgPool)>, max_lag: Duration) -> Db {
        let replicas = replicas.into_iter().enumerate().map(|(i, (url, pool))| Replica::new(i, &url, pool)).collect();
        Db::assemble(primary, replicas, max_lag).await
    }

    async fn assemble(primary: PgPool, replicas: Vec<Replica>, max_lag: Duration) -> Db {
        let router = Arc::new(Router::new(replicas, max_lag));
        if router.has_replicas() {
            routing::start_health_loop(primary.clone(), router.clone()).await;
        }
        Db { primary, router }
    }

    /// Writes, transactions, and reads that must see the latest commit.
    pub fn primary(&self) -> &PgPool {
        self.router.count_primary();
        &self.primary
    }

    /// Chooses the pool for one read (see `replica_read!`, which also retries).
    pub fn pick_read(&self) -> ReadPick {
        ReadPick { replica: self.router.pick().map(|i| (i, Instant::now())) }
    }

    pub fn has_replicas(&self) -> bool {
        self.router.has_replicas()
    }

    /// The primary's WAL insert position now: at least the commit of every transaction
    /// this process has finished. Stored after a write for read-your-writes.
    pub async fn current_lsn(&self) -> Result<Lsn, sqlx::Error> {
        routing::primary_lsn(&self.primary).await
    }

    /// True when every replica has replayed `lsn`: a visitor pinned at `lsn` can stop
    /// being pinned.
    pub fn all_replicas_reached(&self, lsn: Lsn) -> bool {
        self.router.all_reached(lsn)
    }

    /// State of each replica, for /health.
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        self.router.status()
    }

    /// Queries handed out per pool, reads that fell back to the primary, retries.
    pub fn stats(&self) -> PoolStats {
        self.router.stats()
    }

    /// Every pool by the name `/metrics` gives it: `primary`, then each replica (a clone
    /// of each handle; not counted as a query, unlike `primary()`).
    pub fn pools(&self) -> Vec<(String, PgPool)> {
        let mut pools = vec![("primary".to_string(), self.primary.clone())];
        pools.extend(self.router.replica_pools());
        pools
    }

    pub async fn close(&self) {
        self.router.stop();
        self.primary.close().await;
        self.router.close().await;
    }
}

/// A URL's options (`sslmode=require` and the rest are read from it), named after the
/// process when it has a name (`DYNO` on Heroku: `web.1`), so `pg_stat_activity` and the
/// server's logs say which process holds a connection.
fn connect_options(url: &str, config: &Config) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(match &config.instance {
        Some(name) => options.application_name(&format!("quire {name}")),
        None => options,
    })
}

/// Where one read goes; made by `Db::pick_read`.
#[derive(Debug, Clone, Copy)]
pub struct ReadPick {
    /// The replica and when it was picked (a pool timeout on it means "gone" only if it
    /// answered nothing since).
    replica: Option<(usize, Instant)>,
}

impl ReadPick {
    pub fn pool<'a>(&self, db: &'a Db) -> &'a PgPool {
        match self.replica {
            Some((i, _)) => db.router.pool(i),
            None => &db.primary,
        }
    }

    /// Runs the first attempt of a read: on a replica, it gives up (to be retried on the
    /// primary) as soon as that replica goes down; on the primary, it just runs.
    pub async fn run<T, F>(&self, db: &Db, read: F) -> Result<T, sqlx::Error>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        match self.replica {
            Some((i, _)) => db.router.guard(i, read).await,
            None => read.await,
        }
    }

    /// The read failed with `err`: true (after taking the replica out of rotation when it
    /// looks gone) when it ran on a replica and is worth running again on the primary.
    pub fn retry_on_primary(&self, db: &Db, err: &sqlx::Error) -> bool {
        match self.replica {
            Some((i, picked)) if routing::worth_retrying(err) => {
                if matches!(err, sqlx::Error::PoolClosed) {
                    // The replica went down while this read waited (see `Router::guard`).
                    tracing::debug!("replica went down during a read; retrying on the primary");
                } else {
                    tracing::warn!(error = %err, "read failed on a replica; retrying on the primary");
                }
                db.router.failed(i, picked, err);
                true
            }
            _ => false,
        }
    }
}

/// `replica_read!(db, pool => expr)`: evaluates the read `expr` with `pool` bound to
/// a replica when one may serve this read; if it fails there because the replica went
/// away (or is overloaded), or the replica goes down while it waits, takes that replica
/// out of rotation (the circuit breaker) and evaluates `expr` once more on the primary,
/// so the visitor sees no error. `expr` yields `Result<_, sqlx::Error>`.
///
/// A macro rather than a closure-taking method: the expression borrows locals freely
/// and the handler's future stays `Send` without higher-ranked closure bounds.
#[macro_export]
macro_rules! replica_read {
    ($db:expr, $pool:ident => $read:expr) => {{
        let db: &$crate::db::Db = &$db;
        let pick = db.pick_read();
        let first = {
            let $pool = pick.pool(db);
            pick.run(db, $read).await
        };
        match first {
            Err(e) if pick.retry_on_primary(db, &e) => {
                let $pool = db.primary();
                $read.await
            }
            other => other,
        }
    }};
}

/// Runs the job queue's migrations, then ours (apalis keeps its own tables, and its own
/// migration history, in schema `apalis`). The queue's first, because ours may index its
/// tables (`jobs_dashboard`).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool).await?;
    MIGRATOR.run(pool).await?;
    Ok(())
}
