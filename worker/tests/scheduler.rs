//! The schedule runs as one role across any number of workers: three schedulers (each
//! with its own pool, as three worker processes would have) share one database with a
//! fast schedule. One leads (holds the advisory lock), two wait on it; the leader is then
//! killed mid-run and a standby takes over. Every period of every job is enqueued once,
//! none is skipped across the takeover, and the real runtime runs each job once.

#[path = "../../app/tests/common/mod.rs"]
mod common;
mod support;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use common::TestApp;
use support::{job_context, start_worker, wait_for};
use worker::{
    mailer::Mailer,
    runtime::Options,
    scheduler::{LEADER_LOCK, Schedule, Stats},
};

async fn own_pool(app: &TestApp) -> app::db::Db {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&app.db.url).await.expect("pool");
    app::db::Db::from_pool(pool)
}

fn fast_schedule() -> Schedule {
    Schedule {
        tick: Duration::from_millis(20),
        trending_every: Duration::from_millis(200),
        purge_every: Duration::from_millis(300),
        digest_every: Duration::from_millis(500),
        digest_after: Duration::ZERO,
        retry: Duration::from_millis(50),
    }
}

/// (holders, waiters) of the scheduler lock, as PostgreSQL sees them.
async fn lock_holders(app: &TestApp) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) FROM pg_locks
          WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid AND objsubid = 1",
    )
    .bind(LEADER_LOCK)
    .fetch_one(&app.db.pool)
    .await
    .expect("pg_locks")
}

fn terms(stats: &[Arc<Stats>]) -> Vec<u64> {
    stats.iter().map(|s| Stats::get(&s.terms)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_enqueue_each_period_once_and_a_standby_takes_over_from_a_dead_leader() {
    let app = TestApp::new().await;
    let stats: Vec<Arc<Stats>> = (0..3).map(|_| Arc::default()).collect();
    let mut schedulers = Vec::new();
    for s in &stats {
        schedulers.push(tokio::spawn(worker::scheduler::run_with(own_pool(&app).await, fast_schedule(), s.clone())));
    }
    let runner = start_worker(job_context(&app, Mailer::files(app.mail_dir.clone())), Options { queues: vec!["default".into()], ..Options::default() });

    wait_for("a leader", Duration::from_secs(10), || async { terms(&stats).iter().sum::<u64>() == 1 }).await;
    wait_for("two standbys waiting on the lock", Duration::from_secs(10), || async { lock_holders(&app).await == (1, 2) }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(terms(&stats).iter().sum::<u64>(), 1, "one leader at a time: {:?}", terms(&stats));
    let leader = terms(&stats).iter().position(|t| *t == 1).expect("the leader");
    let steady_dups: u64 = stats.iter().map(|s| Stats::get(&s.duplicates)).sum();
    assert_eq!(steady_dups, 0, "a lone leader enqueues each period once and tries no duplicate");
    assert!(Stats::get(&stats[leader].enqueued) >= 10, "the leader enqueued the periods: {:?}", stats[leader]);

    // Kill the leader (its task and with it its lock connection, as when the process dies).
    schedulers[leader].abort();
    wait_for("a standby to take over", Duration::from_secs(5), || async { terms(&stats).iter().sum::<u64>() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = terms(&stats);
    // The one still waiting first: stopping the successor first would hand it the lock.
    let mut order: Vec<usize> = (0..schedulers.len()).collect();
    order.sort_by_key(|&i| t[i]);
    for i in order {
        schedulers[i].abort();
        let _ = (&mut schedulers[i]).await;
    }
    assert_eq!(terms(&stats), t, "no term began while the schedulers stopped");
    assert_eq!(t.iter().sum::<u64>(), 2, "the dead leader and one successor led, the third stood by: {t:?}");
    assert_eq!(t[leader], 1);
    // The successor's first tick may meet the periods its predecessor had just enqueued:
    // the idempotency keys turn those away, at most one per job.
    let dups: u64 = stats.iter().map(|s| Stats::get(&s.duplicates)).sum();
    assert!(dups <= 3, "duplicates only at the takeover: {dups}");

    let keys: Vec<(String, i64)> =
        sqlx::query_as("SELECT idempotency_key, count(*) FROM apalis.jobs GROUP BY 1 ORDER BY 1").fetch_all(&app.db.pool).await.unwrap();
    let mut periods: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, n) in &keys {
        assert_eq!(*n, 1, "{key} enqueued once");
        let (kind, period) = key.rsplit_once(':').expect("kind:period");
        periods.entry(kind.to_string()).or_default().push(period.parse().expect("period number"));
    }
    assert_eq!(periods.keys().collect::<Vec<_>>(), ["daily_digest", "purge_expired", "trending"]);
    // ~3.2 s of schedule: 16 trending periods of 200 ms, 10 purges, 6 digests; each run
    // is contiguous (no period lost at the takeover).
    for (kind, min) in [("trending", 13), ("purge_expired", 8), ("daily_digest", 5)] {
        let mut p = periods[kind].clone();
        p.sort();
        assert!(p.windows(2).all(|w| w[1] == w[0] + 1), "{kind}: no period skipped: {p:?}");
        assert!(p.len() >= min, "{kind}: every period of the run: {p:?}");
    }

    let total = keys.len() as i64;
    wait_for("every periodic job to run", Duration::from_secs(30), || async {
        app.count("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'").await == total
    })
    .await;
    runner.abort();
    assert_eq!(app.count("SELECT count(*) FROM apalis.jobs WHERE attempts > 1").await, 0, "each job ran once");
}
