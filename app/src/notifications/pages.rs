//! Notification pages and actions: the list (`/notifications`), marking read, the
//! navigation's count fragment, email preferences and one-click unsubscribe.

use minijinja::{Value, context};
use poem::{Response, Route, get, handler, http::StatusCode, post, web::{Path, Query}};
use serde::Deserialize;

use super::{
    Delivery, Kind, db,
    prefs::{self, Prefs},
    unsubscribe::{self, Scope},
};
use crate::{
    error::{Error, Result},
    web::{ctx::Ctx, form},
};

pub fn routes(route: Route) -> Route {
    route
        .at("/notifications", get(index))
        .at("/notifications/read", post(mark_read))
        .at("/notifications/count", get(count))
        .at("/settings/notifications", get(settings_page).post(save_settings))
        .at("/unsubscribe/:token", get(unsubscribe_page).post(unsubscribe_now))
}

/// A notification for templates, with its link.
fn item_value(n: &db::Notification) -> Value {
    context! { ..Value::from(minijinja::value::Serde(n)), ..context! { url => n.path() } }
}

fn item_values(ns: &[db::Notification]) -> Vec<Value> {
    ns.iter().map(item_value).collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PageQuery {
    after: String,
}

/// The viewer's notifications, newest first, 20 a page ("Load more" swaps in the next
/// page with htmx, or is a plain link). One statement (the unread count in the
/// navigation came with the session).
#[handler]
async fn index(ctx: Ctx, Query(q): Query<PageQuery>) -> Result<Response> {
    let user = ctx.require_user()?;
    // A malformed cursor starts at the top, as the story listings do.
    let before = q.after.parse::<i64>().ok();
    let (items, next) = crate::replica_read!(ctx.state.db, db => db::page(db, user.id, before))?;
    let vars = context! { notifications => item_values(&items), next => next };
    if ctx.htmx && before.is_some() {
        return ctx.render_form(StatusCode::OK, "notifications/index.html", "items", vars);
    }
    ctx.render("notifications/index.html", vars)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReadForm {
    id: String,
}

/// Marks one notification read (`id`: only the viewer's own; another's is 404) or,
/// without `id`, all of them. htmx gets the updated item (or list) and the navigation's
/// count out of band; a plain form gets a 303 back to the list. Writing on the primary
/// makes the session layer evict this visitor's cached session, so the next page's
/// count is fresh.
#[handler]
async fn mark_read(ctx: Ctx, form::Form(f): form::Form<ReadForm>) -> Result<Response> {
    let user = ctx.require_user()?;
    let db = ctx.state.db.primary();
    let id = f.id.trim();
    if id.is_empty() {
        db::mark_all_read(db, user.id).await?;
        if ctx.htmx {
            let (items, next) = db::page(db, user.id, None).await?;
            let vars = context! { notifications => item_values(&items), next => next, oob_nav => true, unread => 0 };
            return ctx.render_form(StatusCode::OK, "notifications/index.html", "list", vars);
        }
        ctx.flash("success", "All notifications are marked as read.");
    } else {
        let id: i64 = id.parse().map_err(|_| Error::NotFound)?;
        let n = db::mark_read(db, user.id, id).await?.ok_or(Error::NotFound)?;
        if ctx.htmx {
            let unread = db::unread_count(db, user.id).await?;
            let vars = context! { n => item_value(&n), unread => unread, oob_nav => true };
            return ctx.render_form(StatusCode::OK, "notifications/read_one.html", "fragment", vars);
        }
    }
    Ok(ctx.redirect("/notifications"))
}

/// The navigation's link with the unread count, alone: what the live `unread` event makes
/// the page fetch. Counted afresh on the primary (the event announces a commit there; the
/// session's count may be up to 5 s old). Anonymous: 204, nothing to swap.
#[handler]
async fn count(ctx: Ctx) -> Result<Response> {
    let Some(user) = ctx.user() else {
        return Ok(Response::builder().status(StatusCode::NO_CONTENT).finish());
    };
    let unread = db::unread_count(ctx.state.db.primary(), user.id).await?;
    // Rendered on its own (not through `ctx.render`, which would consume pending flash
    // messages: this is a background fetch).
    let html = ctx.state.templates.render("notifications/_nav.html", context! { unread => unread })?;
    Ok(crate::web::ctx::html_response(StatusCode::OK, html))
}

// ---- email preferences ---------------------------------------------------------------

fn settings_vars(p: &Prefs, errors: &crate::error::FieldErrors, saved: bool) -> Value {
    let kinds: Vec<Value> = Kind::ALL
        .iter()
        .map(|&k| context! { name => k.as_str(), label => k.label(), value => p.get(k).as_str(), default => prefs::default_for(k).as_str() })
        .collect();
    let choices: Vec<&str> = Delivery::ALL.iter().map(|d| d.as_str()).collect();
    context! { kinds => kinds, choices => choices, errors => errors, saved => saved }
}

#[handler]
async fn settings_page(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    let p = crate::replica_read!(ctx.state.db, db => prefs::load(db, user.id))?;
    ctx.render("notifications/settings.html", settings_vars(&p, &Default::default(), false))
}

#[handler]
async fn save_settings(ctx: Ctx, form::Form(fields): form::Form<std::collections::HashMap<String, String>>) -> Result<Response> {
    let user = ctx.require_user()?;
    let db = ctx.state.db.primary();
    let current = prefs::load(db, user.id).await?;
    let (p, errors) = Prefs::from_form(current, |k| fields.get(k).cloned());
    if !errors.is_empty() {
        return ctx.render_form(StatusCode::UNPROCESSABLE_ENTITY, "notifications/settings.html", "form", settings_vars(&p, &errors, false));
    }
    prefs::save(db, user.id, &p).await?;
    if ctx.htmx {
        return ctx.render_form(StatusCode::OK, "notifications/settings.html", "form", settings_vars(&p, &errors, true));
    }
    ctx.flash("success", "Your email preferences are saved.");
    Ok(ctx.redirect("/settings/notifications"))
}

// ---- one-click unsubscribe -----------------------------------------------------------

/// The user and scope of a link, or 404 (a forged, damaged or foreign token).
fn verified(ctx: &Ctx, token: &str) -> Result<(i64, Scope)> {
    unsubscribe::verify(&ctx.state.config.secret_key, token).ok_or(Error::NotFound)
}

fn scope_vars(scope: Scope, token: &str) -> Value {
    context! { kind => scope.kind().map(|k| k.as_str()), label => scope.kind().map(|k| k.label()), token => token }
}

/// The confirmation page: a GET must not unsubscribe (mail scanners follow links).
#[handler]
async fn unsubscribe_page(ctx: Ctx, Path(token): Path<String>) -> Result<Response> {
    let (_, scope) = verified(&ctx, &token)?;
    ctx.render("notifications/unsubscribe.html", scope_vars(scope, &token))
}

/// Turns that kind (or every kind) off. No login, no cookies, no CSRF token needed
/// (RFC 8058 one-click: the mail client POSTs `List-Unsubscribe=One-Click`; the signed
/// token is the authority, see `web::csrf`). Answers the done page itself, 200: a mail
/// client does not follow redirects.
#[handler]
async fn unsubscribe_now(ctx: Ctx, Path(token): Path<String>) -> Result<Response> {
    let (user_id, scope) = verified(&ctx, &token)?;
    if !prefs::turn_off(ctx.state.db.primary(), user_id, scope.kind()).await? {
        // Signed by us, but the account is gone.
        return Err(Error::NotFound);
    }
    ctx.render("notifications/unsubscribed.html", scope_vars(scope, &token))
}
