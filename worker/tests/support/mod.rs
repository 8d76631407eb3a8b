//! Helpers shared by the worker's newer integration tests: a job context over a
//! `TestApp`, the real runtime in the background, and polling.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use app::templates::Templates;
use worker::{
    jobs::JobContext,
    mailer::Mailer,
    runtime::{self, Options},
};

use crate::common::TestApp;

pub fn job_context(app: &TestApp, mailer: Mailer) -> Arc<JobContext> {
    Arc::new(JobContext {
        db: app.db.db(),
        storage: app.state.storage.clone(),
        config: app.state.config.clone(),
        templates: Templates::new(|_| None).unwrap(),
        mailer,
    })
}

/// Runs the real worker runtime in the background; abort the handle to stop it.
pub fn start_worker(ctx: Arc<JobContext>, options: Options) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = runtime::monitor(ctx, &options).run().await;
    })
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The one job row's status, attempts and last result (as text).
pub async fn the_job(app: &TestApp) -> (String, i32, String) {
    let (status, attempts, result): (String, i32, Option<serde_json::Value>) =
        sqlx::query_as("SELECT status, attempts, last_result FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap();
    (status, attempts, result.map(|r| r.to_string()).unwrap_or_default())
}

/// Waits until the one job row has left the queue for good (done, failed, killed).
pub async fn wait_finished(app: &TestApp, within: Duration) -> (String, i32, String) {
    wait_for("the job to finish", within, || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)").await
            == 1
    })
    .await;
    the_job(app).await
}
