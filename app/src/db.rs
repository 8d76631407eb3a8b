//! The database handle both binaries share.
//!
//! Every query site chooses: `primary()` for writes, transactions and reads that must be
//! current; `replica()` for page reads that may be a little behind. With no replicas
//! configured (today) both are the primary, so choosing costs nothing yet.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::config::Config;

#[derive(Clone, Debug)]
pub struct Db {
    primary: PgPool,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

impl Db {
    pub async fn connect(config: &Config) -> Result<Db, sqlx::Error> {
        let primary = PgPoolOptions::new()
            .max_connections(config.db_pool_size)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(300))
            .connect(&config.database_url)
            .await?;
        Ok(Db { primary })
    }

    pub fn from_pool(primary: PgPool) -> Db {
        Db { primary }
    }

    /// Writes, transactions, and reads that must see the latest commit.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Reads that may lag slightly behind the primary.
    pub fn replica(&self) -> &PgPool {
        &self.primary
    }

    pub async fn close(&self) {
        self.primary.close().await;
    }
}

/// Runs our migrations and the job queue's (apalis keeps its own tables in schema `apalis`).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    apalis_postgres::PostgresStorage::setup(pool).await?;
    Ok(())
}

/// True when `err` is a violation of the named constraint (unique index, check, FK).
/// Lets handlers turn the schema's verdict into a form error instead of a 500.
pub fn is_constraint(err: &sqlx::Error, name: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.constraint() == Some(name))
}
