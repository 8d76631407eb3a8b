//! `/settings/export` (the request form and the latest export's progress, polled by htmx
//! as a fragment) and `/exports/{token}` (the download). See the module doc for who may
//! download.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use minijinja::{Value, context};
use poem::{
    Body, Response, Route, get, handler,
    http::{StatusCode, header},
    web::Path,
};

use super::{db, download_path, download_token, human_size};
use crate::{
    audit,
    error::{Error, Result},
    jobs::{self, export::BuildExport},
    ratelimit::limits,
    storage::StorageError,
    tokens,
    web::ctx::Ctx,
};

pub fn routes(route: Route) -> Route {
    route.at("/settings/export", get(page).post(request)).at("/exports/:token", get(download))
}

fn when(t: Option<DateTime<Utc>>) -> Value {
    match t {
        Some(t) => context! { iso => t.to_rfc3339(), text => t.format("%-d %B %Y, %H:%M UTC").to_string() },
        None => Value::from(()),
    }
}

/// The export as the page shows it.
fn export_value(e: &db::Export, secret_key: &[u8]) -> Value {
    let status = e.effective_status(Utc::now());
    let download_url = match (status, e.link_key) {
        // `/exports/` and a URL-safe base64 token: nothing to escape (the autoescaper would
        // write each `/` as `&#x2f;`).
        (db::Status::Ready, Some(key)) => Some(Value::from_safe_string(download_path(&download_token(secret_key, key)))),
        _ => None,
    };
    context! {
        status => status.as_str(),
        in_flight => status.in_flight(),
        progress => e.progress,
        total => e.total,
        percent => e.percent(),
        size => e.byte_size.map(human_size),
        created_at => when(Some(e.created_at)),
        expires_at => when(e.expires_at),
        error => e.error.as_deref(),
        download_url => download_url,
    }
}

/// The page, or (htmx polling) only its `state` block, which stops polling once the
/// export is no longer queued or running.
#[handler]
async fn page(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    // The primary: the page follows a worker's progress second by second.
    let latest = db::latest(ctx.state.db.primary(), user.id).await?;
    let export = latest.as_ref().map(|e| export_value(e, &ctx.state.config.secret_key));
    let in_flight = latest.as_ref().is_some_and(|e| e.effective_status(Utc::now()).in_flight());
    let vars = context! { export => export, in_flight => in_flight, valid_hours => db::VALID_FOR_HOURS };
    ctx.render_form(StatusCode::OK, "exports/index.html", "state", vars)
}

/// Asks for an export: one in flight per user (a second request just shows the first),
/// at most three a day; the row, its audit entry and its job commit together.
#[handler]
async fn request(ctx: Ctx) -> Result<Response> {
    let user = ctx.require_user()?;
    let already = || -> Result<Response> {
        ctx.flash("info", "Your export is already being prepared: its progress is below.");
        Ok(ctx.redirect("/settings/export"))
    };
    let mut tx = ctx.state.db.primary().begin().await?;
    if db::in_flight(&mut *tx, user.id).await?.is_some() {
        return already();
    }
    // Per process first (cheap), then the database's count, which holds across processes
    // and restarts.
    ctx.state.limiter.hit(&format!("export:{}", user.id), limits::EXPORTS_PER_ACCOUNT).await?;
    let (today, retry_after_secs) = db::requested_today(&mut *tx, user.id).await?;
    if today >= i64::from(limits::EXPORTS_PER_ACCOUNT.max) {
        return Err(Error::TooManyRequests { retry_after_secs: retry_after_secs.max(1) as u64 });
    }
    let Some(id) = db::create(&mut *tx, user.id).await? else {
        // A concurrent request created one between our check and our insert.
        return already();
    };
    let origin = ctx.origin();
    let entry = audit::Entry::new(&origin, audit::actions::EXPORT_REQUESTED, "export", id)
        .subject(user.id)
        .after(serde_json::json!({ "status": "queued" }));
    audit::record(&mut *tx, entry).await?;
    jobs::enqueue(&mut *tx, &BuildExport { export_id: id }, Some(&ctx.request_id)).await?;
    tx.commit().await?;
    ctx.flash("success", "We are preparing your export. This page shows its progress, and we will email you a link when it is ready.");
    Ok(ctx.redirect("/settings/export"))
}

/// Streams the ZIP to its owner while the link is valid: unknown or someone else's token
/// 404, expired 410.
#[handler]
async fn download(ctx: Ctx, Path(token): Path<String>) -> Result<Response> {
    if !tokens::is_well_formed(&token) {
        return Err(Error::NotFound);
    }
    let user = ctx.require_user()?;
    let found = db::by_token_hash(ctx.state.db.primary(), &tokens::hash_token(&token)).await?;
    // Someone else's link is as unknown as a made-up one: nothing says it exists.
    let Some(d) = found.filter(|d| d.user_id == user.id) else { return Err(Error::NotFound) };
    let gone = || ctx.render_status(StatusCode::GONE, "exports/gone.html", context! { valid_hours => db::VALID_FOR_HOURS });
    if d.expired {
        return gone();
    }
    let (db::Status::Ready, Some(key)) = (d.status, d.storage_key.as_deref()) else { return Err(Error::NotFound) };
    let (size, chunks) = match ctx.state.storage.get_stream(key).await {
        Ok(found) => found,
        Err(StorageError::NotFound(_)) => {
            tracing::warn!(export_id = d.id, "a ready export's file is missing");
            return gone();
        }
        Err(e) => return Err(e.into()),
    };
    let day = d.ready_at.unwrap_or_else(Utc::now).format("%Y-%m-%d");
    tracing::info!(export_id = d.id, bytes = size, "export downloaded");
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type("application/zip")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"quire-export-{}-{day}.zip\"", user.username))
        .header(header::CONTENT_LENGTH, size)
        .header(header::CACHE_CONTROL, "private, no-store")
        .body(Body::from_bytes_stream(chunks.map_err(std::io::Error::other))))
}
