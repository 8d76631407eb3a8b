//! `/admin/jobs`: the jobs dashboard (admins only). Per queue the counts by state, the
//! failure rate and the oldest pending job's age; throughput and failures over the last
//! hour as a chart with a table; the workers and their heartbeats; the failed jobs with
//! their error, each with Retry and Discard, and bulk actions (checked jobs, or every
//! failed job of a queue). Reads and changes the queue only through `jobs::admin`.
//!
//! Every action is a plain form (POST, then 303 back with a flash message); each changed
//! job writes an audit row (`job.retried` / `job.discarded`) in the action's transaction.

use minijinja::{Value, context};
use poem::{Body, Request, Response, Route, get, handler, post, web::{Path, Query}};
use serde::Deserialize;

use crate::{
    audit,
    error::{Error, Result},
    jobs::{
        self,
        admin::{self as queue, ActionError, Cursor, Outcome, Selection},
    },
    policy::Action,
    stats::chart::{self, Chart, Series},
    web::{ctx::Ctx, form},
};

pub fn routes(route: Route) -> Route {
    route
        .at("/admin/jobs", get(dashboard))
        .at("/admin/jobs/retry", post(bulk_retry))
        .at("/admin/jobs/discard", post(bulk_discard))
        .at("/admin/jobs/:id/retry", post(retry))
        .at("/admin/jobs/:id/discard", post(discard))
}

const HERE: &str = "/admin/jobs";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DashboardQuery {
    /// Only this queue's failed jobs.
    queue: String,
    /// Cursor of the failed list's page.
    after: String,
}

/// A job id as apalis makes them (ULIDs), or a queue name: short, letters, digits, `-`
/// and `_`. Anything else names nothing we have.
fn plausible(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn age(secs: f64) -> String {
    let s = secs.max(0.0).round() as i64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// Four statements (counts, throughput, workers, one page of failed jobs),
/// each on a partial index: the page costs the same with a million finished jobs.
#[handler]
async fn dashboard(ctx: Ctx, Query(q): Query<DashboardQuery>) -> Result<Response> {
    ctx.require(Action::Administer)?;
    let filter = if q.queue.is_empty() { None } else if plausible(&q.queue) { Some(q.queue.as_str()) } else { return Err(Error::NotFound) };
    let cursor = Cursor::decode(&q.after);
    let mut conn = ctx.state.db.primary().acquire().await?;
    let counts = queue::counts(&mut conn, jobs::ALL_QUEUES).await?;
    let (starts, throughput) = queue::throughput(&mut conn, jobs::ALL_QUEUES).await?;
    let workers = queue::workers(&mut *conn).await?;
    let (failed, next) = queue::failed(&mut *conn, filter, cursor.as_ref(), queue::PAGE_SIZE).await?;
    drop(conn);

    let labels: Vec<String> = starts.iter().map(|t| t.format("%H:%M").to_string()).collect();
    let total = |f: fn(&queue::Throughput) -> &Vec<i64>| -> Vec<i64> {
        (0..queue::BUCKETS).map(|i| throughput.iter().map(|t| f(t)[i]).sum()).collect()
    };
    let done_total = total(|t| &t.done);
    let failed_total = total(|t| &t.failed);
    let (hour_done, hour_failed): (i64, i64) = (done_total.iter().sum(), failed_total.iter().sum());
    let points = |v: &[i64]| labels.iter().cloned().zip(v.iter().map(|&n| n as f64)).collect::<Vec<_>>();
    let svg = chart::render(&Chart {
        id: "jobs-chart",
        title: "Jobs finished and failed per 5 minutes, last hour",
        desc: &format!(
            "{hour_done} jobs finished and {hour_failed} failed in the last hour, all queues, from {} to now (UTC). The table below gives each interval's numbers per queue.",
            labels.first().cloned().unwrap_or_default()
        ),
        series: vec![Series { name: "Finished", points: points(&done_total) }, Series { name: "Failed", points: points(&failed_total) }],
    });

    let queues: Vec<Value> = counts
        .iter()
        .map(|c| {
            let t = throughput.iter().find(|t| t.queue == c.queue);
            let done: i64 = t.map_or(0, |t| t.done.iter().sum());
            let failed: i64 = t.map_or(0, |t| t.failed.iter().sum());
            let rate = if done + failed > 0 { format!("{:.1} %", 100.0 * failed as f64 / (done + failed) as f64) } else { "—".into() };
            context! {
                name => &c.queue,
                states => queue::STATES.iter().map(|s| context! { state => *s, count => c.get(s) }).collect::<Vec<_>>(),
                failed_now => c.get("Failed") + c.get("Killed"),
                done_hour => done,
                failed_hour => failed,
                failure_rate => rate,
                oldest_pending => c.oldest_pending_secs.map(age),
            }
        })
        .collect();
    let intervals: Vec<Value> = (0..queue::BUCKETS)
        .rev()
        .map(|i| {
            context! {
                label => &labels[i],
                start => starts[i].to_rfc3339(),
                done => done_total[i],
                failed => failed_total[i],
                per_queue => throughput.iter().map(|t| context! { queue => &t.queue, done => t.done[i], failed => t.failed[i] }).collect::<Vec<_>>(),
            }
        })
        .collect();
    let alive_workers = workers.iter().filter(|w| w.alive).count();
    let workers: Vec<Value> = workers
        .iter()
        .map(|w| {
            context! {
                process => &w.process,
                queues => &w.queues,
                alive => w.alive,
                last_seen => age(w.last_seen_secs),
                started_at => w.started_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            }
        })
        .collect();
    let failed: Vec<Value> = failed
        .iter()
        .map(|j| {
            context! {
                id => &j.id,
                queue => &j.queue,
                name => &j.name,
                status => &j.status,
                attempts => j.attempts,
                max_attempts => j.max_attempts,
                failed_at => j.failed_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                failed_at_iso => j.failed_at.to_rfc3339(),
                error => &j.error,
            }
        })
        .collect();
    // Only letters, digits, `.`, `-` and `_` go in (the queue name is `plausible`, the
    // cursor digits and a ULID): safe to write as is, `&` already as `&amp;`.
    let next_url = next.map(|c| {
        Value::from_safe_string(match filter {
            Some(f) => format!("{HERE}?queue={f}&amp;after={}", c.encode()),
            None => format!("{HERE}?after={}", c.encode()),
        })
    });
    ctx.render(
        "admin/jobs.html",
        context! {
            queues => queues,
            chart => Value::from_safe_string(svg),
            intervals => intervals,
            queue_names => throughput.iter().map(|t| t.queue.clone()).collect::<Vec<_>>(),
            hour_done => hour_done,
            hour_failed => hour_failed,
            workers => workers,
            alive_workers => alive_workers,
            failed => failed,
            filter => filter,
            paged => cursor.is_some(),
            next_url => next_url,
            max_bulk => queue::MAX_BULK,
        },
    )
}

fn refused(e: ActionError, verb: &str) -> Error {
    match e {
        ActionError::NotFound => Error::NotFound,
        ActionError::NotFailed { id, state } => Error::Unprocessable(format!(
            "Job {id} is {} now, not failed: only failed jobs can be {verb}. Reload the jobs page to see its state.",
            state.to_lowercase()
        )),
        ActionError::Database(e) => e.into(),
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Retry,
    Discard,
}

impl Verb {
    fn past(self) -> &'static str {
        match self {
            Verb::Retry => "retried",
            Verb::Discard => "discarded",
        }
    }

    fn audit_action(self) -> &'static str {
        match self {
            Verb::Retry => audit::actions::JOB_RETRIED,
            Verb::Discard => audit::actions::JOB_DISCARDED,
        }
    }

    fn after(self) -> serde_json::Value {
        match self {
            Verb::Retry => serde_json::json!({ "status": "Pending", "state": "Pending", "attempts": 0 }),
            Verb::Discard => serde_json::json!({ "status": "Discarded", "state": "Discarded" }),
        }
    }
}

async fn record(tx: &mut sqlx::PgConnection, ctx: &Ctx, verb: Verb, job: &queue::Changed) -> Result<()> {
    let origin = ctx.origin();
    audit::record(tx, audit::Entry::new(&origin, verb.audit_action(), "job", &job.id).before(job.before.clone()).after(verb.after()))
        .await?;
    Ok(())
}

#[handler]
async fn retry(ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    one(&ctx, &id, Verb::Retry).await
}

#[handler]
async fn discard(ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    one(&ctx, &id, Verb::Discard).await
}

/// The policy's answer for an action: visitors log in and come back to the dashboard
/// (not to the POST-only action URL).
fn require_admin(ctx: &Ctx) -> Result<()> {
    crate::policy::require(ctx.user(), Action::Administer, HERE)
}

async fn one(ctx: &Ctx, id: &str, verb: Verb) -> Result<Response> {
    require_admin(ctx)?;
    if !plausible(id) {
        return Err(Error::NotFound);
    }
    let mut tx = ctx.state.db.primary().begin().await?;
    let job = match verb {
        Verb::Retry => queue::retry(&mut tx, id).await,
        Verb::Discard => queue::discard(&mut tx, id).await,
    }
    .map_err(|e| refused(e, verb.past()))?;
    record(&mut tx, ctx, verb, &job).await?;
    tx.commit().await?;
    let message = match verb {
        Verb::Retry => format!("Job {} ({}) is queued again in “{}”.", job.name, job.id, job.queue),
        Verb::Discard => format!("Job {} ({}) was discarded.", job.name, job.id),
    };
    ctx.flash("success", message);
    Ok(ctx.redirect(HERE))
}

/// The bulk form: `ids` (repeated, the checked jobs) or `queue` (every failed job of it).
async fn selection(req: &Request, body: Body) -> Result<Selection> {
    if !form::is_urlencoded(req) {
        return Err(Error::BadRequest("Expected a submitted form (application/x-www-form-urlencoded).".into()));
    }
    let pairs = form::pairs(&form::read_body(body).await?)?;
    let mut ids: Vec<String> = pairs.iter().filter(|(k, v)| k == "ids" && !v.is_empty()).map(|(_, v)| v.clone()).collect();
    ids.sort();
    ids.dedup();
    let queue = pairs.iter().find(|(k, _)| k == "queue").map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    if !ids.is_empty() {
        if ids.len() > queue::MAX_BULK {
            return Err(Error::Unprocessable(format!("Select at most {} jobs at once.", queue::MAX_BULK)));
        }
        if let Some(bad) = ids.iter().find(|id| !plausible(id)) {
            return Err(Error::BadRequest(format!("“{}” is not a job id.", bad.chars().take(80).collect::<String>())));
        }
        return Ok(Selection::Ids(ids));
    }
    if !queue.is_empty() {
        if !plausible(&queue) {
            return Err(Error::BadRequest("That is not a queue name.".into()));
        }
        return Ok(Selection::Queue(queue));
    }
    Err(Error::Unprocessable("Select at least one job (tick its box), or choose a queue.".into()))
}

#[handler]
async fn bulk_retry(ctx: Ctx, req: &Request, body: Body) -> Result<Response> {
    bulk(&ctx, req, body, Verb::Retry).await
}

#[handler]
async fn bulk_discard(ctx: Ctx, req: &Request, body: Body) -> Result<Response> {
    bulk(&ctx, req, body, Verb::Discard).await
}

async fn bulk(ctx: &Ctx, req: &Request, body: Body, verb: Verb) -> Result<Response> {
    require_admin(ctx)?;
    let which = selection(req, body).await?;
    let mut tx = ctx.state.db.primary().begin().await?;
    let out: Outcome = match verb {
        Verb::Retry => queue::retry_many(&mut tx, &which).await?,
        Verb::Discard => queue::discard_many(&mut tx, &which).await?,
    };
    if let Selection::Ids(ids) = &which {
        // Nothing to act on: say why, change nothing.
        if out.changed.is_empty() {
            if out.missing.len() == ids.len() {
                return Err(Error::NotFound);
            }
            return Err(Error::Unprocessable(format!(
                "None of the selected jobs is failed (they are {}): only failed jobs can be {}. Reload the jobs page to see their state.",
                states_list(&out),
                verb.past()
            )));
        }
    }
    for job in &out.changed {
        record(&mut tx, ctx, verb, job).await?;
    }
    tx.commit().await?;
    let n = out.changed.len();
    let mut message = match (&which, n) {
        (Selection::Queue(q), 0) => format!("There are no failed jobs in “{q}”."),
        (Selection::Queue(q), _) => format!("{n} failed job{} in “{q}” {}.", if n == 1 { "" } else { "s" }, verb.past()),
        (Selection::Ids(_), _) => format!("{n} job{} {}.", if n == 1 { "" } else { "s" }, verb.past()),
    };
    if matches!(which, Selection::Queue(_)) && n == queue::MAX_BULK {
        message.push_str(&format!(" At most {} are done at once: submit again for the rest.", queue::MAX_BULK));
    }
    let skipped = out.not_failed.len() + out.missing.len();
    if skipped > 0 {
        message.push_str(&format!(
            " {skipped} selected job{} no longer failed and {} left alone.",
            if skipped == 1 { " was" } else { "s were" },
            if skipped == 1 { "was" } else { "were" }
        ));
    }
    ctx.flash("success", message);
    Ok(ctx.redirect(HERE))
}

fn states_list(out: &Outcome) -> String {
    let mut states: Vec<String> = out.not_failed.iter().map(|(_, s)| s.to_lowercase()).collect();
    if !out.missing.is_empty() {
        states.push("gone".into());
    }
    states.sort();
    states.dedup();
    states.join(", ")
}
