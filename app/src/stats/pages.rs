//! The author's reading statistics page, `/s/{id}/stats`.

use chrono::{Duration, Utc};
use minijinja::{Value, context};
use poem::{Response, Route, get, handler, web::Path};

use super::{
    WINDOW_DAYS,
    chart::{self, Chart, Series},
    db,
};
use crate::{
    error::{Error, Result},
    stories::db::{self as stories, StoryStatus},
    web::ctx::Ctx,
};

pub fn routes(route: Route) -> Route {
    route.at("/s/:id/stats", get(story_stats))
}

/// The last 90 days of a story: views and unique readers per day (a chart and a table),
/// per chapter, and likes and comments per day. Author only: anonymous visitors are sent
/// to log in, other users get 403 for a published story and 404 for a draft (whose
/// existence must not leak).
///
/// Statements: the session (middleware), the story, the daily series (views, readers,
/// likes, comments and the window's distinct readers in one), the per-chapter totals:
/// three of our own, whatever the number of days or chapters. Reads from a replica: the
/// counts are at best a flush old anyway.
#[handler]
async fn story_stats(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    let user = ctx.require_user()?;
    let story = crate::replica_read!(ctx.state.db, db => stories::find(db, id))?.ok_or(Error::NotFound)?;
    if story.author_id != user.id {
        return Err(match story.status {
            StoryStatus::Published => Error::Forbidden("Only the author can see this story's statistics.".into()),
            StoryStatus::Draft => Error::NotFound,
        });
    }
    let today = Utc::now().date_naive();
    let since = today - Duration::days(WINDOW_DAYS - 1);
    let days = crate::replica_read!(ctx.state.db, db => db::daily(db, id, today, WINDOW_DAYS))?;
    let chapters = crate::replica_read!(ctx.state.db, db => db::per_chapter(db, id, since))?;

    let total_views: i64 = days.iter().map(|d| d.views).sum();
    let total_readers = days.first().map_or(0, |d| d.window_readers);
    let total_likes: i64 = days.iter().map(|d| d.likes).sum();
    let total_comments: i64 = days.iter().map(|d| d.comments).sum();
    let label = |d: &db::Day| d.day.format("%b %-d").to_string();
    let series = |f: fn(&db::Day) -> i64| days.iter().map(|d| (label(d), f(d) as f64)).collect::<Vec<_>>();
    let span = format!("{} to {}", since.format("%B %-d, %Y"), today.format("%B %-d, %Y"));
    let reads_chart = chart::render(&Chart {
        id: "reads-chart",
        title: "Views and unique readers per day",
        desc: &format!("{total_views} views by {total_readers} unique readers from {span}. The table below gives each day's numbers."),
        series: vec![Series { name: "Views", points: series(|d| d.views) }, Series { name: "Unique readers", points: series(|d| d.readers) }],
    });
    let social_chart = chart::render(&Chart {
        id: "social-chart",
        title: "Likes and comments per day",
        desc: &format!("{total_likes} likes and {total_comments} comments from {span}. The table below gives each day's numbers."),
        series: vec![Series { name: "Likes", points: series(|d| d.likes) }, Series { name: "Comments", points: series(|d| d.comments) }],
    });
    // The tables list the days on which something happened (newest first): 90 rows of
    // zeros would bury them.
    let read_days: Vec<&db::Day> = days.iter().rev().filter(|d| d.views > 0).collect();
    let social_days: Vec<&db::Day> = days.iter().rev().filter(|d| d.likes > 0 || d.comments > 0).collect();
    ctx.render(
        "stats/story.html",
        context! {
            story => Value::from(minijinja::value::Serde(&story)),
            window_days => WINDOW_DAYS,
            span => span,
            total_views => total_views,
            total_readers => total_readers,
            total_likes => total_likes,
            total_comments => total_comments,
            reads_chart => Value::from_safe_string(reads_chart),
            social_chart => Value::from_safe_string(social_chart),
            read_days => Value::from(minijinja::value::Serde(&read_days)),
            social_days => Value::from(minijinja::value::Serde(&social_days)),
            chapters => Value::from(minijinja::value::Serde(&chapters)),
        },
    )
}
