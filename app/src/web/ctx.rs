//! `Ctx`: what a handler needs about the request (state, session, htmx, flash), and the
//! one place pages are rendered, so every page gets the same globals.

use minijinja::{Value, context};
use poem::{
    FromRequest, Request, RequestBody, Response,
    http::{StatusCode, header},
    web::cookie::CookieJar,
};
use serde::{Deserialize, Serialize};

use crate::{
    config::TrustedProxies,
    error::{Error, Result},
    sessions::{CurrentUser, RequestSession},
    web::{AppState, cookies, request_id::RequestId},
};

const FLASH_COOKIE: &str = "quire_flash";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    pub level: String,
    pub message: String,
}

pub struct Ctx {
    pub state: AppState,
    pub session: RequestSession,
    /// The request came from htmx (`HX-Request: true`): answer with a fragment.
    pub htmx: bool,
    pub request_id: String,
    pub ip: String,
    pub user_agent: String,
    /// Path and query of this request, for `?next=` after login.
    pub path: String,
    jar: CookieJar,
    flash: Vec<Flash>,
}

impl<'a> FromRequest<'a> for Ctx {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req.data::<AppState>().cloned().ok_or_else(|| Error::Internal(anyhow::anyhow!("no AppState")))?;
        let session = req
            .extensions()
            .get::<RequestSession>()
            .cloned()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no session middleware")))?;
        let jar = req.cookie().clone();
        let flash = jar
            .signed_with_key(&state.cookie_key)
            .get(FLASH_COOKIE)
            .and_then(|c| serde_json::from_str(c.value_str()).ok())
            .unwrap_or_default();
        Ok(Ctx {
            htmx: req.headers().get("hx-request").is_some_and(|v| v == "true"),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default(),
            ip: client_ip(req, &state.config.trusted_proxies),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            path: req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into()),
            state,
            session,
            jar,
            flash,
        })
    }
}

/// The client's address as `TRUSTED_PROXIES` says to read it: the socket's peer, or the
/// `X-Forwarded-For` entry our own proxies vouch for. "unknown" when the server has no IP
/// for the peer (an in-memory test client, a Unix socket): all such clients then share
/// one rate-limit bucket, which fails safe (limited together, never unlimited).
pub fn client_ip(req: &Request, trusted: &TrustedProxies) -> String {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let forwarded: Vec<&str> = match trusted {
        // Not even read: with no proxy in front the header is the client's own invention.
        TrustedProxies::None => Vec::new(),
        // A value that is not text stays in place as an unreadable entry, so the entries
        // right of it keep their positions.
        _ => req.headers().get_all("x-forwarded-for").iter().map(|v| v.to_str().unwrap_or("")).collect(),
    };
    match trusted.client_ip(peer, &forwarded) {
        Some(ip) => ip.to_string(),
        None => "unknown".into(),
    }
}

impl Ctx {
    pub fn user(&self) -> Option<&CurrentUser> {
        self.session.user.as_ref()
    }

    /// The logged-in user, or a redirect to the login page that comes back here.
    pub fn require_user(&self) -> Result<&CurrentUser> {
        self.user().ok_or_else(|| Error::LoginRequired(self.path.clone()))
    }

    /// The logged-in user if `policy::may` allows them `action`; else a login redirect
    /// (visitors) or 403 (everyone else).
    pub fn require(&self, action: crate::policy::Action) -> Result<&CurrentUser> {
        crate::policy::require(self.user(), action, &self.path)?;
        self.require_user()
    }

    /// Who is asking, for the audit log: the user, IP, user agent and request id.
    pub fn origin(&self) -> crate::audit::Origin {
        crate::audit::Origin {
            actor_id: self.user().map(|u| u.id),
            actor_name: self.user().map(|u| u.username.clone()).unwrap_or_default(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
        }
    }

    /// Counts a hit on `action` for this client's IP. In development, loopback clients are
    /// exempt: there every visitor is 127.0.0.1, so a per-IP limit would only get in the
    /// way of trying things out (per-account limits still apply).
    pub async fn limit_ip(&self, action: &str, limit: crate::ratelimit::Limit) -> Result<()> {
        let loopback = self.ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback && !self.state.config.is_production() {
            return Ok(());
        }
        self.state.limiter.hit(&format!("{action}:ip:{}", self.ip_bucket()), limit).await
    }

    /// This client's address as per-IP limits count it (IPv6 by its /64).
    pub fn ip_bucket(&self) -> String {
        crate::ratelimit::ip_bucket(&self.ip)
    }

    /// After a write has committed: every cached page and value built from `tags` is
    /// stale, here and on every other process (`cache`).
    pub async fn invalidate(&self, tags: &[crate::cache::Tag]) {
        self.state.cache.invalidate(tags).await;
    }

    pub fn secure_cookies(&self) -> bool {
        self.state.config.is_production()
    }

    pub fn cookies(&self) -> &CookieJar {
        &self.jar
    }

    /// Queues a message for the next page this visitor sees (a signed cookie: no server state).
    pub fn flash(&self, level: &str, message: impl Into<String>) {
        let mut all = self.flash.clone();
        all.push(Flash { level: level.into(), message: message.into() });
        let value = serde_json::to_string(&all).unwrap_or_default();
        let c = cookies::cookie(FLASH_COOKIE, &value, None, self.secure_cookies());
        self.jar.signed_with_key(&self.state.cookie_key).add(c);
    }

    /// Renders a full page with status 200.
    pub fn render(&self, template: &str, extra: Value) -> Result<Response> {
        self.render_status(StatusCode::OK, template, extra)
    }

    /// Renders a full page. Flash messages shown on it are consumed.
    pub fn render_status(&self, status: StatusCode, template: &str, extra: Value) -> Result<Response> {
        if !self.flash.is_empty() {
            cookies::expire(&self.jar, FLASH_COOKIE, self.secure_cookies());
        }
        let html = self.state.templates.render(template, self.globals(extra))?;
        Ok(html_response(status, html))
    }

    /// For forms: the whole page normally, only `block` when htmx asked (validation
    /// errors are then swapped into the form in place).
    pub fn render_form(&self, status: StatusCode, template: &str, block: &str, extra: Value) -> Result<Response> {
        if self.htmx {
            let html = self.state.templates.render_block(template, block, self.globals(extra))?;
            Ok(html_response(status, html))
        } else {
            self.render_status(status, template, extra)
        }
    }

    /// After a successful POST: 303 to `to`. htmx gets `HX-Redirect` instead (a plain
    /// redirect would be followed inside the XHR and the target swapped with a whole page).
    pub fn redirect(&self, to: &str) -> Response {
        redirect(self.htmx, to)
    }

    /// A flash message waits to be shown on this visitor's next page.
    pub fn has_flash(&self) -> bool {
        !self.flash.is_empty()
    }

    /// The visitor wrote a moment ago (read-your-writes pins their reads): pages shared
    /// between readers are not for them until every process has heard of the write.
    pub fn wrote_lately(&self) -> bool {
        self.jar.get(cookies::WROTE_COOKIE).is_some() || self.jar.get(cookies::LSN_COOKIE).is_some()
    }

    /// `template` as any plain logged-in reader sees it, for `web::stitched`: a reader
    /// with no name, no role beyond reading and a confirmed address, the CSRF token and
    /// the template's `hole(…)` regions marked, no flash message.
    pub fn render_stitching(&self, template: &str, extra: Value) -> Result<String> {
        let neutral = RequestSession {
            user: Some(crate::sessions::CurrentUser {
                id: 0,
                username: String::new(),
                display_name: String::new(),
                email: String::new(),
                role: crate::policy::Role::Reader,
                email_verified: true,
                unread: 0,
            }),
            session_id: None,
            token: None,
            csrf_token: String::new(),
        };
        let path = self.path.split(['?', '#']).next().unwrap_or("/");
        let extra = context! {
            ..extra,
            ..context! {
                canonical_path => url_value(path),
                stitching => true,
                csrf_token => Value::from_safe_string(crate::stitch::csrf_marker()),
            }
        };
        Ok(self.state.templates.render(template, page_globals(&self.state, Some(&neutral), &[], "", extra))?)
    }

    /// A partial for this visitor, with the page globals (for a region of a stitched page).
    pub fn render_partial(&self, template: &str, extra: Value) -> Result<String> {
        Ok(self.state.templates.render(template, self.globals(extra))?)
    }

    fn globals(&self, extra: Value) -> Value {
        // The page's own URL for `<link rel="canonical">` (base.html): the path without
        // its query, so `?after=` pagination and tracking parameters never make a
        // second address of the same page. Pages may still override it.
        let path = self.path.split(['?', '#']).next().unwrap_or("/");
        let extra = context! { ..extra, ..context! { canonical_path => url_value(path) } };
        page_globals(&self.state, Some(&self.session), &self.flash, &self.request_id, extra)
    }
}

pub fn redirect(htmx: bool, to: &str) -> Response {
    if htmx {
        Response::builder().status(StatusCode::OK).header("HX-Redirect", to).finish()
    } else {
        Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, to).finish()
    }
}

pub fn html_response(status: StatusCode, html: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(html)
}

/// A URL for an attribute, as is: the autoescaper would write every `/` as `&#x2f;`,
/// which parsers undo but link-preview scrapers and people reading the source need not
/// see. Only a URL with nothing an attribute needs escaped is passed through unescaped;
/// anything else is left to the autoescaper.
fn url_value(url: &str) -> Value {
    if url.contains(['"', '\'', '<', '>', '&']) { Value::from(url) } else { Value::from_safe_string(url.to_string()) }
}

/// Variables every page can use, merged under the page's own.
pub fn page_globals(
    state: &AppState,
    session: Option<&RequestSession>,
    flash: &[Flash],
    request_id: &str,
    extra: Value,
) -> Value {
    let globals = context! {
        current_user => Value::from(minijinja::value::Serde(session.and_then(|s| s.user.as_ref()))),
        csrf_token => session.map(|s| s.csrf_token.as_str()).unwrap_or(""),
        flash => Value::from(minijinja::value::Serde(flash)),
        request_id => request_id,
        dev => !state.config.is_production(),
        // Where this page's event stream starts (base.html; `live`).
        live_after => state.live.last_id(),
        // Absolute URLs in the <head> (canonical, OpenGraph) and feed links.
        base_url => url_value(&state.config.base_url),
    };
    context! { ..extra, ..globals }
}
