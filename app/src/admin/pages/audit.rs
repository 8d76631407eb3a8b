//! `/admin/audit`: the audit log, newest first, filtered by action, user and object.

use minijinja::{Value, context};
use poem::{Response, Route, get, handler, web::Query};
use serde::Deserialize;

use crate::{
    accounts::users,
    audit::{actions, db},
    error::Result,
    policy::Action,
    web::ctx::Ctx,
};

pub fn routes(route: Route) -> Route {
    route.at("/admin/audit", get(list))
}

pub const PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditQuery {
    action: String,
    /// A username: rows where they acted or were acted upon.
    user: String,
    kind: String,
    object: String,
    before: Option<i64>,
}

#[handler]
async fn list(ctx: Ctx, Query(q): Query<AuditQuery>) -> Result<Response> {
    ctx.require(Action::Administer)?;
    let nonempty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty() && s.len() <= 100);
    // An unknown user matches nothing rather than everything.
    let user_id = match nonempty(&q.user) {
        Some(name) => Some(users::find_by_username(ctx.state.db.primary(), &name).await?.map_or(-1, |u| u.id)),
        None => None,
    };
    let filter = db::Filter {
        action: nonempty(&q.action).filter(|a| actions::ALL.contains(&a.as_str())),
        user_id,
        object_kind: nonempty(&q.kind),
        object_id: nonempty(&q.object),
        before_id: q.before,
    };
    let mut rows = db::list(ctx.state.db.primary(), &filter, PAGE + 1).await?;
    let next = if rows.len() as i64 > PAGE {
        rows.truncate(PAGE as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    // The filters again, for the form and the next-page link.
    let query = serde_urlencoded::to_string([("action", &q.action), ("user", &q.user), ("kind", &q.kind), ("object", &q.object)])
        .unwrap_or_default();
    ctx.render(
        "admin/audit.html",
        context! {
            rows => Value::from(minijinja::value::Serde(&rows)), next => next, actions => actions::ALL.to_vec(),
            f => context! { action => q.action, user => q.user, kind => q.kind, object => q.object }, query => query,
        },
    )
}
