//! The job registry and each job's own policy, on the real runtime and PostgreSQL: every
//! job type of `app::jobs` is registered; a job's `MAX_ATTEMPTS`, backoff and `TIMEOUT`
//! are what the worker applies; a duplicate schedule is told by its SQLSTATE.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use app::jobs::{Job, QUEUE_DEFAULT};
use common::TestApp;
use serde::{Deserialize, Serialize};
use support::{job_context, start_worker, wait_finished};
use worker::{
    jobs::{JobContext, JobError, Run},
    mailer::Mailer,
    runtime::Options,
};

/// `impl Job for X { … const NAME: &'static str = "…"; … }` in every file of
/// `app/src/jobs/`, read from the source: X → NAME.
fn job_types_in_app_source() -> BTreeMap<String, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/src/jobs");
    let mut found = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let source = std::fs::read_to_string(&file).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find("Job for ") {
            let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
            let is_impl = rest[line_start..at].trim_start().starts_with("impl");
            rest = &rest[at + "Job for ".len()..];
            if !is_impl {
                continue;
            }
            let ty: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            // NAME is required (no default), so it is in this impl block, before the next.
            let block = &rest[..rest.find("\nimpl").unwrap_or(rest.len())];
            let name = block
                .split("const NAME: &'static str = \"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("{}: no NAME literal in `impl Job for {ty}`", file.display()));
            found.insert(ty, name.to_string());
        }
    }
    found
}

#[test]
fn every_job_type_in_app_jobs_is_registered() {
    let in_source = job_types_in_app_source();
    assert!(in_source.len() >= 5, "the scan finds the jobs: {in_source:?}");
    let registry = worker::jobs::registry();
    let missing: Vec<_> = in_source.iter().filter(|(_, name)| registry.get(name).is_none()).collect();
    assert!(missing.is_empty(), "job types not registered in worker::jobs::all(): {missing:?}");
    let names: Vec<&String> = in_source.values().collect();
    let unknown: Vec<_> = registry.names().filter(|n| !names.iter().any(|m| m.as_str() == *n)).collect();
    assert!(unknown.is_empty(), "registered names with no job type in app/src/jobs: {unknown:?}");
    for name in registry.names() {
        let entry = registry.get(name).unwrap();
        assert!(app::jobs::ALL_QUEUES.contains(&entry.queue), "{name}: unknown queue {}", entry.queue);
    }
    // The policy comes from the type's own constants.
    let purge = registry.get(app::jobs::maintenance::PurgeExpired::NAME).unwrap();
    assert_eq!(purge.max_attempts, 3);
    assert_eq!(purge.timeout, Duration::from_secs(120));
}

#[derive(Serialize, Deserialize)]
struct SameNameAsNoop {}

impl Job for SameNameAsNoop {
    const NAME: &'static str = "noop";
    const QUEUE: &'static str = QUEUE_DEFAULT;
}

impl Run for SameNameAsNoop {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[test]
#[should_panic(expected = "job name `noop` registered twice")]
fn registering_a_job_name_twice_panics_at_start_up() {
    let _ = worker::jobs::all().register::<SameNameAsNoop>();
}

// ---- attempts ------------------------------------------------------------------------

static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);
static FLAKY_EXHAUSTED: AtomicUsize = AtomicUsize::new(0);

/// Fails every run with a retryable error; allows two attempts.
#[derive(Serialize, Deserialize)]
struct AlwaysFlaky {}

impl Job for AlwaysFlaky {
    const NAME: &'static str = "test_always_flaky";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    const MAX_ATTEMPTS: usize = 2;
    const BACKOFF_MIN: Duration = Duration::from_millis(300);
    const BACKOFF_MAX: Duration = Duration::from_secs(1);
}

impl Run for AlwaysFlaky {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
        Err(JobError::Retry(anyhow::anyhow!("the flaky dependency is down")))
    }

    async fn exhausted(self, _ctx: &JobContext) -> Result<(), JobError> {
        FLAKY_EXHAUSTED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn options_with(registry: worker::jobs::Registry) -> Options {
    Options { queues: vec![QUEUE_DEFAULT.into()], registry: Arc::new(registry), ..Options::default() }
}

async fn enqueue<J: Job>(app: &TestApp, job: &J) {
    let mut conn = app.db.pool.acquire().await.unwrap();
    app::jobs::enqueue(&mut conn, job, None).await.unwrap();
}

#[tokio::test]
async fn a_job_allowing_two_attempts_runs_twice_then_is_kept_failed_with_its_error() {
    let app = TestApp::new().await;
    enqueue(&app, &AlwaysFlaky {}).await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let started = Instant::now();
    let worker = start_worker(ctx, options_with(worker::jobs::all().register::<AlwaysFlaky>()));
    let (status, attempts, error) = wait_finished(&app, Duration::from_secs(20)).await;
    let elapsed = started.elapsed();
    assert_eq!(status, "Failed");
    assert_eq!(attempts, 2, "the job's own MAX_ATTEMPTS, not the default of 5");
    assert!(error.contains("the flaky dependency is down"), "error kept: {error}");
    assert!(elapsed >= Duration::from_millis(300), "the job's own backoff between the runs: {elapsed:?}");
    // Not run again: neither in-process nor fetched again from the table.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(the_attempts(&app).await, 2);
    assert_eq!(FLAKY_EXHAUSTED.load(Ordering::SeqCst), 1, "told once that it gave up");
    worker.abort();
}

async fn the_attempts(app: &TestApp) -> i32 {
    sqlx::query_scalar("SELECT attempts FROM apalis.jobs").fetch_one(&app.db.pool).await.unwrap()
}

// ---- timeouts ------------------------------------------------------------------------

/// When each run of a sleeping job was dropped, measured from its start.
static DROPPED_AFTER: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

struct NoteDrop(Instant);

impl Drop for NoteDrop {
    fn drop(&mut self) {
        DROPPED_AFTER.lock().unwrap().push(self.0.elapsed());
    }
}

/// Sleeps far longer than its own 300 ms timeout; one attempt.
#[derive(Serialize, Deserialize)]
struct Sleepy {}

impl Job for Sleepy {
    const NAME: &'static str = "test_sleepy";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    const MAX_ATTEMPTS: usize = 1;
    const TIMEOUT: Duration = Duration::from_millis(300);
}

impl Run for Sleepy {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        let _note = NoteDrop(Instant::now());
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }
}

/// Takes a second, within its own (default) timeout.
#[derive(Serialize, Deserialize)]
struct Patient {}

impl Job for Patient {
    const NAME: &'static str = "test_patient";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    const MAX_ATTEMPTS: usize = 1;
}

impl Run for Patient {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }
}

#[tokio::test]
async fn a_job_is_timed_out_at_its_own_timeout() {
    let app = TestApp::new().await;
    enqueue(&app, &Sleepy {}).await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let registry = worker::jobs::all().register::<Sleepy>().register::<Patient>();
    let worker = start_worker(ctx, options_with(registry));
    let (status, attempts, error) = wait_finished(&app, Duration::from_secs(15)).await;
    assert_eq!((status.as_str(), attempts), ("Failed", 1));
    assert!(error.contains("timed out after 300ms"), "error kept: {error}");
    let dropped = DROPPED_AFTER.lock().unwrap().clone();
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0] >= Duration::from_millis(300) && dropped[0] < Duration::from_secs(3), "stopped at ~300 ms: {dropped:?}");

    // Another job's run is not bound by that timeout: a second-long job finishes.
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap();
    enqueue(&app, &Patient {}).await;
    let (status, _, _) = wait_finished(&app, Duration::from_secs(15)).await;
    assert_eq!(status, "Done");
    worker.abort();
}

/// Panics on every run.
#[derive(Serialize, Deserialize)]
struct Panicky {}

impl Job for Panicky {
    const NAME: &'static str = "test_panicky";
    const QUEUE: &'static str = QUEUE_DEFAULT;
}

impl Run for Panicky {
    async fn run(self, _ctx: &JobContext) -> Result<(), JobError> {
        panic!("the handler has a bug")
    }
}

#[tokio::test]
async fn a_panicking_job_fails_permanently_and_the_worker_carries_on() {
    let app = TestApp::new().await;
    enqueue(&app, &Panicky {}).await;
    let ctx = job_context(&app, Mailer::files(app.mail_dir.clone()));
    let worker = start_worker(ctx, options_with(worker::jobs::all().register::<Panicky>()));
    let (status, attempts, error) = wait_finished(&app, Duration::from_secs(15)).await;
    assert_eq!((status.as_str(), attempts), ("Killed", 1), "not retried: a bug fails the same way");
    assert!(error.contains("panicked: the handler has a bug"), "error kept: {error}");
    // The same worker still runs jobs.
    sqlx::query("DELETE FROM apalis.jobs").execute(&app.db.pool).await.unwrap();
    enqueue(&app, &app::jobs::maintenance::Noop::default()).await;
    assert_eq!(wait_finished(&app, Duration::from_secs(15)).await.0, "Done");
    worker.abort();
}

// ---- the scheduler's duplicate check -------------------------------------------------

#[tokio::test]
async fn a_duplicate_schedule_is_recognised_by_its_sqlstate() {
    let db = common::TestDb::new().await;
    worker::scheduler::schedule(&db.db(), "purge_expired:1").await.unwrap();
    let again = worker::scheduler::schedule(&db.db(), "purge_expired:1").await.unwrap_err();
    assert!(worker::scheduler::is_duplicate(&again), "a second job with the key: {again:#}");
    worker::scheduler::schedule(&db.db(), "purge_expired:2").await.unwrap();

    // A bare sqlx unique violation too.
    sqlx::query("CREATE TABLE t (k int PRIMARY KEY)").execute(&db.pool).await.unwrap();
    sqlx::query("INSERT INTO t VALUES (1)").execute(&db.pool).await.unwrap();
    let bare = sqlx::query("INSERT INTO t VALUES (1)").execute(&db.pool).await.unwrap_err();
    assert!(worker::scheduler::is_duplicate(&bare.into()));

    // Words are not enough: an error that says "duplicate key" with another SQLSTATE is
    // a real failure, to be logged as one.
    let lookalike = sqlx::query("DO $$ BEGIN RAISE EXCEPTION 'duplicate key value violates unique constraint'; END $$")
        .execute(&db.pool)
        .await
        .unwrap_err();
    let lookalike = anyhow::Error::from(lookalike).context("scheduling");
    assert!(format!("{lookalike:#}").contains("duplicate key"));
    assert!(!worker::scheduler::is_duplicate(&lookalike));
    let other = sqlx::query("SELECT * FROM no_such_table").execute(&db.pool).await.unwrap_err();
    assert!(!worker::scheduler::is_duplicate(&other.into()));
}
