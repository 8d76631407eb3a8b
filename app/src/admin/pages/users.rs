//! `/admin` and `/admin/users`: the overview, the user search, role changes. Bans are in
//! `moderation::pages` (moderators may ban too).

use minijinja::{Value, context};
use poem::{
    Response, Route, get, handler, post,
    web::{Path, Query},
};
use serde::Deserialize;

use crate::admin::db;
use crate::{
    accounts::users,
    error::{Error, Result},
    policy::{Action, Role},
    web::{ctx::Ctx, form},
};

pub fn routes(route: Route) -> Route {
    route
        .at("/admin", get(index))
        .at("/admin/users", get(list))
        .at("/admin/users/:username/role", post(set_role))
}

#[handler]
async fn index(ctx: Ctx) -> Result<Response> {
    ctx.require(Action::Administer)?;
    let summary = db::summary(ctx.state.db.primary()).await?;
    // This process's cache since it started (each process counts its own; /metrics has
    // them all by kind).
    let hit_ratio = crate::cache::stats::overall_hit_ratio().map(|r| format!("{:.1} %", r * 100.0));
    let redis = ctx.state.cache.redis().map(|r| if r.is_up() { "up" } else { "down" });
    ctx.render("admin/index.html", context! { summary => Value::from(minijinja::value::Serde(&summary)), cache_hit_ratio => hit_ratio, redis => redis })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    q: String,
    before: Option<i64>,
}

#[handler]
async fn list(ctx: Ctx, Query(query): Query<ListQuery>) -> Result<Response> {
    ctx.require(Action::Administer)?;
    let q: String = query.q.trim().chars().take(100).collect();
    let mut rows = db::users(ctx.state.db.primary(), &q, query.before).await?;
    let next = if rows.len() as i64 > db::USERS_PAGE {
        rows.truncate(db::USERS_PAGE as usize);
        rows.last().map(|u| u.id)
    } else {
        None
    };
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    ctx.render(
        "admin/users.html",
        context! { users => Value::from(minijinja::value::Serde(&rows)), q => q, next => next, roles => roles, paged => query.before.is_some() },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoleForm {
    role: String,
    next: String,
}

#[handler]
async fn set_role(ctx: Ctx, Path(username): Path<String>, form::Form(f): form::Form<RoleForm>) -> Result<Response> {
    let admin = ctx.require(Action::Administer)?;
    let role: Role = f.role.parse().map_err(|e: crate::policy::UnknownRole| Error::Unprocessable(e.to_string()))?;
    if admin.username.eq_ignore_ascii_case(&username) {
        // The last admin demoting themselves would lock everyone out of these pages;
        // another admin (or `web role`) can do it.
        return Err(Error::Unprocessable("You cannot change your own role here; ask another admin or use `web role`.".into()));
    }
    let old = users::set_role(ctx.state.db.primary(), &ctx.origin(), &username, role).await?.ok_or(Error::NotFound)?;
    ctx.flash("info", if old == role { format!("{username} is already a {role}.") } else { format!("{username} is now a {role} (was {old}).") });
    let next = if f.next.is_empty() { "/admin/users".to_string() } else { crate::accounts::validate::safe_next(&f.next).to_string() };
    Ok(ctx.redirect(&next))
}
