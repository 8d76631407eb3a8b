//! Reporting (anyone logged in), the moderators' queue and its resolutions, undoing a
//! hide, and bans. Every handler asks `policy` first; every moderator action writes its
//! audit row in the action's transaction.

use chrono::{NaiveDate, TimeZone, Utc};
use minijinja::{Value, context};
use poem::{
    handler,
    http::StatusCode,
    web::{Path, Query},
    Response, Route, get, post,
};
use serde::Deserialize;

use super::{
    db::{self, ObjectKind},
    validate,
};
use crate::{
    cache::Tag,
    accounts::users,
    audit::{self, actions},
    error::{Error, Result},
    live::{self, Channel},
    policy::Action,
    ratelimit::limits,
    sessions,
    web::{ctx::Ctx, form},
};

pub fn routes(route: Route) -> Route {
    route
        .at("/s/:id/report", post(report_story))
        .at("/s/:id/comments/:cid/report", post(report_comment))
        .at("/u/:username/report", post(report_user))
        .at("/mod/reports", get(queue))
        .at("/mod/reports/:id/resolve", post(resolve))
        .at("/mod/hidden", get(hidden))
        .at("/mod/hidden/:kind/:id/unhide", post(unhide))
        .at("/admin/users/:username/ban", post(ban))
        .at("/admin/users/:username/unban", post(unban))
}

// ---- reporting ----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReportForm {
    reason: String,
    /// The page the form was on (a local path), to go back to.
    next: String,
}

/// Files the report (one open report per reporter and object: a repeat is thanked the
/// same way and changes nothing). Drafts, deleted comments and one's own things are not
/// reportable: 404 for what the reporter may not see, 422 for their own.
async fn file_report(ctx: &Ctx, kind: ObjectKind, target: Option<db::Reportable>, f: ReportForm, back: &str) -> Result<Response> {
    let user = ctx.require(Action::Participate)?;
    let target = target.filter(|t| t.public && !t.hidden).ok_or(Error::NotFound)?;
    if target.owner_id == user.id {
        return Err(Error::Unprocessable("You cannot report your own posts or profile.".into()));
    }
    let reason = validate::reason(&f.reason).map_err(Error::Unprocessable)?;
    ctx.state.limiter.hit(&format!("report:{}", user.id), limits::REPORTS_PER_ACCOUNT).await?;
    let mut tx = ctx.state.db.primary().begin().await?;
    db::insert_report(&mut tx, user.id, kind, target.id, &reason).await?;
    tx.commit().await?;
    let thanks = "Thanks — a moderator will look at it.";
    if ctx.htmx {
        return ctx.render_form(StatusCode::OK, "moderation/_reported.html", "fragment", context! { message => thanks });
    }
    ctx.flash("info", thanks);
    Ok(ctx.redirect(&back_to(&f.next, back)))
}

#[handler]
async fn report_story(ctx: Ctx, Path(id): Path<i64>, form::Form(f): form::Form<ReportForm>) -> Result<Response> {
    let target = db::story_target(ctx.state.db.primary(), id).await?;
    file_report(&ctx, ObjectKind::Story, target, f, &format!("/s/{id}")).await
}

#[handler]
async fn report_comment(ctx: Ctx, Path((id, cid)): Path<(i64, i64)>, form::Form(f): form::Form<ReportForm>) -> Result<Response> {
    let target = db::comment_target(ctx.state.db.primary(), id, cid).await?;
    file_report(&ctx, ObjectKind::Comment, target, f, &format!("/s/{id}#comment-{cid}")).await
}

#[handler]
async fn report_user(ctx: Ctx, Path(username): Path<String>, form::Form(f): form::Form<ReportForm>) -> Result<Response> {
    let target = db::user_target(ctx.state.db.primary(), &username).await?;
    file_report(&ctx, ObjectKind::User, target, f, &format!("/u/{username}")).await
}

// ---- the queue ----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QueueQuery {
    /// `micros_reportid` of the last item of the previous page.
    after: String,
}

fn decode_after(s: &str) -> Option<(chrono::DateTime<Utc>, i64)> {
    let (micros, id) = s.split_once('_')?;
    Some((chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?, id.parse().ok()?))
}

#[handler]
async fn queue(ctx: Ctx, Query(q): Query<QueueQuery>) -> Result<Response> {
    ctx.require(Action::Moderate)?;
    let mut items = db::queue(ctx.state.db.primary(), decode_after(&q.after)).await?;
    let next = if items.len() as i64 > db::QUEUE_PAGE {
        items.truncate(db::QUEUE_PAGE as usize);
        items.last().map(|i| format!("{}_{}", i.latest_at.timestamp_micros(), i.report_id))
    } else {
        None
    };
    let open = db::open_count(ctx.state.db.primary()).await?;
    ctx.render(
        "moderation/reports.html",
        context! { items => Value::from(minijinja::value::Serde(&items)), next => next, open => open, paged => !q.after.is_empty() },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResolveForm {
    action: String,
    note: String,
}

#[handler]
async fn resolve(ctx: Ctx, Path(id): Path<i64>, form::Form(f): form::Form<ResolveForm>) -> Result<Response> {
    let moderator = ctx.require(Action::Moderate)?;
    let hide = match f.action.as_str() {
        "hide" => true,
        "dismiss" => false,
        _ => return Err(Error::Unprocessable("Choose hide or dismiss.".into())),
    };
    let note = validate::note(&f.note).map_err(Error::Unprocessable)?;
    let origin = ctx.origin();
    let mut tx = ctx.state.db.primary().begin().await?;
    let report = db::lock_report(&mut tx, id).await?.ok_or(Error::NotFound)?;
    if report.status != "open" {
        let by = report.resolved_by_name.as_deref().unwrap_or("a moderator");
        return Err(Error::Conflict(format!("This report was already resolved ({}) by {by}.", report.status)));
    }
    let kind = report.object_kind;
    let closed = db::close_reports(&mut tx, kind, report.object_id, if hide { "hidden" } else { "dismissed" }, moderator.id, &note).await?;
    let mut stale = Vec::new();
    let mut entry = audit::Entry::new(&origin, actions::REPORT_DISMISSED, kind.as_str(), report.object_id)
        .after(serde_json::json!({ "reports_closed": closed, "note": note, "report_id": id }));
    if hide {
        let why = if note.is_empty() { report.reason.as_str() } else { note.as_str() };
        // Hidden already (another report's resolution, or a ban): the reports close all
        // the same, and the audit row says so.
        let newly = db::set_hidden(&mut tx, kind, report.object_id, Some(why)).await?;
        entry = audit::Entry::new(&origin, hide_action(kind, true), kind.as_str(), report.object_id)
            .before(serde_json::json!({ "hidden": newly.is_none() }))
            .after(serde_json::json!({ "hidden": true, "reason": why, "reports_closed": closed, "report_id": id }));
        if let Some(h) = &newly {
            stale = hidden_tags(kind, report.object_id, h.story_id);
            entry = entry.subject(h.owner_id);
            announce_hidden(&mut tx, kind, report.object_id, h).await?;
        }
    }
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    ctx.invalidate(&stale).await;
    ctx.flash("info", if hide { "Hidden. The author sees why; undo it from Hidden." } else { "Dismissed." });
    Ok(ctx.redirect("/mod/reports"))
}

/// Where a form goes back to: its local `next`, else `default`.
fn back_to(next: &str, default: &str) -> String {
    if next.is_empty() { default.to_string() } else { crate::accounts::validate::safe_next(next).to_string() }
}

fn hide_action(kind: ObjectKind, hide: bool) -> &'static str {
    match (kind, hide) {
        (ObjectKind::Story, true) => actions::STORY_HIDDEN,
        (ObjectKind::Story, false) => actions::STORY_UNHIDDEN,
        (ObjectKind::Comment, true) => actions::COMMENT_HIDDEN,
        (ObjectKind::Comment, false) => actions::COMMENT_UNHIDDEN,
        (ObjectKind::User, true) => actions::PROFILE_HIDDEN,
        (ObjectKind::User, false) => actions::PROFILE_UNHIDDEN,
    }
}

/// What hiding or showing an object changes in the cache (`story_id`: a comment's story).
fn hidden_tags(kind: ObjectKind, id: i64, story_id: Option<i64>) -> Vec<Tag> {
    match kind {
        ObjectKind::Story => vec![Tag::story(id), Tag::listing()],
        ObjectKind::Comment => story_id.map(Tag::story).into_iter().collect(),
        ObjectKind::User => vec![Tag::user(id)],
    }
}

/// Open pages drop a hidden comment at once (the same event as a deletion); a hidden
/// story's open pages are told to reload (they then get its 404).
async fn announce_hidden(conn: &mut sqlx::PgConnection, kind: ObjectKind, id: i64, h: &db::Hidden) -> Result<()> {
    match (kind, h.story_id) {
        (ObjectKind::Comment, Some(story)) => {
            live::publish(conn, Channel::Story(story), "comment_deleted", &format!("comment-{id}")).await?;
        }
        (ObjectKind::Story, Some(story)) => {
            live::publish(conn, Channel::Story(story), "reload", "hidden").await?;
        }
        _ => {}
    }
    Ok(())
}

// ---- hidden things, and undoing ----------------------------------------------------

#[handler]
async fn hidden(ctx: Ctx) -> Result<Response> {
    ctx.require(Action::Moderate)?;
    let items = db::hidden_items(ctx.state.db.primary(), 100).await?;
    ctx.render("moderation/hidden.html", context! { items => Value::from(minijinja::value::Serde(&items)) })
}

#[handler]
async fn unhide(ctx: Ctx, Path((kind, id)): Path<(String, i64)>) -> Result<Response> {
    ctx.require(Action::Moderate)?;
    let kind = match kind.as_str() {
        "story" => ObjectKind::Story,
        "comment" => ObjectKind::Comment,
        "user" => ObjectKind::User,
        _ => return Err(Error::NotFound),
    };
    let origin = ctx.origin();
    let mut tx = ctx.state.db.primary().begin().await?;
    let Some(h) = db::set_hidden(&mut tx, kind, id, None).await? else {
        return Err(Error::Conflict("That is not hidden (any more).".into()));
    };
    let entry = audit::Entry::new(&origin, hide_action(kind, false), kind.as_str(), id)
        .subject(h.owner_id)
        .before(serde_json::json!({ "hidden": true }))
        .after(serde_json::json!({ "hidden": false }));
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    ctx.invalidate(&hidden_tags(kind, id, h.story_id)).await;
    ctx.flash("info", "Visible again.");
    Ok(ctx.redirect("/mod/hidden"))
}

// ---- bans ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BanForm {
    reason: String,
    /// YYYY-MM-DD, the last day of the suspension; empty: until lifted.
    until: String,
    /// `hide` hides their stories and comments for the ban's length; anything else keeps them.
    content: String,
    next: String,
}

/// The end of a suspension "until YYYY-MM-DD": the end of that day (UTC), which must
/// be in the future.
fn parse_until(s: &str) -> std::result::Result<Option<chrono::DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "The end date must be a date (YYYY-MM-DD).".to_string())?;
    let end = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| Utc.from_utc_datetime(&t)).ok_or("That date is out of range.")?;
    if end <= Utc::now() {
        return Err("The end date must be today or later.".into());
    }
    Ok(Some(end))
}

#[handler]
async fn ban(ctx: Ctx, Path(username): Path<String>, form::Form(f): form::Form<BanForm>) -> Result<Response> {
    ctx.require(Action::Moderate)?;
    let target = users::find_by_username(ctx.state.db.primary(), &username).await?.ok_or(Error::NotFound)?;
    let staff = ctx.require(Action::Ban { target_role: target.role })?;
    if staff.id == target.id {
        return Err(Error::Unprocessable("You cannot ban yourself.".into()));
    }
    let reason = validate::reason(&f.reason).map_err(Error::Unprocessable)?;
    let until = parse_until(&f.until).map_err(Error::Unprocessable)?;
    let hide = f.content == "hide";
    let origin = ctx.origin();
    let mut tx = ctx.state.db.primary().begin().await?;
    let before = db::active_ban(&mut *tx, target.id).await?;
    let (ban_id, _) = db::ban(&mut tx, target.id, staff.id, &reason, until, hide).await?;
    let entry = audit::Entry::new(&origin, actions::BANNED, "user", target.id)
        .subject(target.id)
        .before(serde_json::json!({ "ban": before.as_ref().map(|b| serde_json::json!({ "reason": b.reason, "until": b.until })) }))
        .after(serde_json::json!({ "ban_id": ban_id, "reason": reason, "until": until, "content": if hide { "hidden" } else { "kept" } }));
    audit::record(&mut tx, entry).await?;
    // Their sessions end here and, through the brokers, on every web process.
    ctx.state.sessions.end_all_for_user(tx, target.id).await?;
    // Their profile, their stories in every listing, their comments on every story
    // page (pages name the people they show: `Tag::user`).
    ctx.invalidate(&[Tag::user(target.id), Tag::listing()]).await;
    ctx.flash("info", format!("{} is banned.", target.username));
    Ok(ctx.redirect(&back_to(&f.next, "/admin/users")))
}

#[handler]
async fn unban(ctx: Ctx, Path(username): Path<String>, form::Form(f): form::Form<BanForm>) -> Result<Response> {
    ctx.require(Action::Moderate)?;
    let target = users::find_by_username(ctx.state.db.primary(), &username).await?.ok_or(Error::NotFound)?;
    let staff = ctx.require(Action::Ban { target_role: target.role })?;
    let origin = ctx.origin();
    let mut tx = ctx.state.db.primary().begin().await?;
    let Some(lifted) = db::lift_ban(&mut tx, target.id, staff.id).await? else {
        return Err(Error::Conflict(format!("{} is not banned.", target.username)));
    };
    let entry = audit::Entry::new(&origin, actions::UNBANNED, "user", target.id)
        .subject(target.id)
        .before(serde_json::json!({ "ban_id": lifted.id, "reason": lifted.reason, "until": lifted.until }))
        .after(serde_json::json!({ "ban": null, "content_restored": lifted.hid_content }));
    audit::record(&mut tx, entry).await?;
    sessions::announce_changed(&mut tx, target.id).await?;
    tx.commit().await?;
    ctx.invalidate(&[Tag::user(target.id), Tag::listing()]).await;
    ctx.flash("info", format!("{} can log in again.", target.username));
    Ok(ctx.redirect(&back_to(&f.next, "/admin/users")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_the_end_of_a_future_day() {
        assert_eq!(parse_until(""), Ok(None));
        assert!(parse_until("2020-01-01").is_err());
        assert!(parse_until("tomorrow").is_err());
        let day = (Utc::now() + chrono::Duration::days(3)).date_naive();
        let end = parse_until(&day.format("%Y-%m-%d").to_string()).unwrap().unwrap();
        assert_eq!(end.date_naive(), day.succ_opt().unwrap());
    }

    #[test]
    fn after_cursor_round_trips_and_ignores_junk() {
        assert_eq!(decode_after("x"), None);
        assert_eq!(decode_after("1000000_5").map(|c| c.1), Some(5));
    }
}
