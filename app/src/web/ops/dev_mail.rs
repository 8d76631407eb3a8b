//! `/dev/mail`: the development outbox. Without `SMTP_URL` the worker writes each message
//! as an `.eml` file into `var/mail/`; these pages list them and show their text and HTML
//! parts. In production the routes do not exist (404).
//!
//! Even in development they answer only the machine itself: the outbox holds every
//! password-reset and verification link, so a dev server reachable from a network (or a
//! deploy that came up in development mode) must not hand them to anyone who asks.

use std::path::PathBuf;

use minijinja::{Value, context};
use poem::{Endpoint, EndpointExt, Request, Response, Route, get, handler, http::StatusCode, web::Path};
use serde::Serialize;

use crate::{error::{Error, Result}, web::ctx::Ctx};

pub fn routes(route: Route, production: bool) -> Route {
    if production {
        return route;
    }
    route
        .at("/dev/mail", local_only(get(list)))
        .at("/dev/mail/:name", local_only(get(show)))
        .at("/dev/mail/:name/html", local_only(get(show_html)))
}

/// `ep` for requests from this machine; a 404 like any unknown URL for the rest.
fn local_only(ep: impl Endpoint + 'static) -> impl Endpoint {
    ep.before(|req: Request| async move { if from_this_machine(&req) { Ok(req) } else { Err(Error::NotFound.into()) } })
}

/// The socket's peer is a loopback address, and no proxy forwarded the request. Only the
/// socket counts: `X-Forwarded-For` is whatever the client wrote. A proxy on the same
/// host connects from loopback too, on behalf of anyone, so a request it forwarded (it
/// says so in `Forwarded`/`X-Forwarded-For`) is not local either.
pub(crate) fn from_this_machine(req: &Request) -> bool {
    let loopback_peer = req.remote_addr().as_socket_addr().is_some_and(|a| a.ip().is_loopback());
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| req.headers().contains_key(*h));
    loopback_peer && !forwarded
}

#[derive(Debug, Serialize)]
struct Summary {
    name: String,
    subject: String,
    to: String,
    date: String,
}

struct Parsed {
    subject: String,
    to: String,
    date: String,
    text: String,
    html: Option<String>,
}

fn parse(bytes: &[u8]) -> Option<Parsed> {
    let msg = mail_parser::MessageParser::default().parse(bytes)?;
    let to = msg
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    Some(Parsed {
        subject: msg.subject().unwrap_or("(no subject)").to_string(),
        to,
        date: msg.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
        text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        html: msg.body_html(0).map(|t| t.into_owned()),
    })
}

/// Only names the worker writes (`<key>.eml`): no path tricks.
fn file_for(ctx: &Ctx, name: &str) -> Result<PathBuf> {
    let ok = name.len() <= 80 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(Error::NotFound);
    }
    Ok(ctx.state.config.mail_dir.join(format!("{name}.eml")))
}

async fn read(ctx: &Ctx, name: &str) -> Result<Parsed> {
    let bytes = tokio::fs::read(file_for(ctx, name)?).await.map_err(|_| Error::NotFound)?;
    parse(&bytes).ok_or_else(|| Error::BadRequest("That message could not be parsed.".into()))
}

#[handler]
async fn list(ctx: Ctx) -> Result<Response> {
    let dir = ctx.state.config.mail_dir.clone();
    let messages = tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "eml") {
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                found.push((modified, path));
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        found
            .into_iter()
            .take(200)
            .filter_map(|(_, path)| {
                let parsed = parse(&std::fs::read(&path).ok()?)?;
                Some(Summary {
                    name: path.file_stem()?.to_string_lossy().into_owned(),
                    subject: parsed.subject,
                    to: parsed.to,
                    date: parsed.date,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?;
    ctx.render("dev/mail_list.html", context! { messages => Value::from(minijinja::value::Serde(&messages)) })
}

#[handler]
async fn show(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    let m = read(&ctx, &name).await?;
    ctx.render(
        "dev/mail_show.html",
        context! { name => name, subject => m.subject, to => m.to, date => m.date, text => m.text, has_html => m.html.is_some() },
    )
}

/// The HTML part as the recipient's mail client would render it, sandboxed: no script,
/// no forms, no framing.
#[handler]
async fn show_html(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    let m = read(&ctx, &name).await?;
    let html = m.html.ok_or(Error::NotFound)?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type("text/html; charset=utf-8")
        .header("content-security-policy", "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'")
        .body(html))
}
