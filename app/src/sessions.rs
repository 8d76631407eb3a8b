//! Sessions live in PostgreSQL (table `sessions`), so any web process can serve any request.
//!
//! The cookie holds 256 random bits; the table stores only their SHA-256. A session
//! expires after 14 idle days or 90 days in all. `last_seen_at` is refreshed at most once
//! an hour, so an ordinary request is a read, not a write.
//!
//! Anonymous visitors get no row: they carry a signed random `quire_anon` cookie, which
//! seeds their CSRF token until they log in.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    web::cookie::{Cookie, CookieJar, SameSite},
};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use crate::{
    db::{Lsn, ReadScope},
    tokens,
    web::AppState,
};

pub const COOKIE: &str = "quire_session";
pub const ANON_COOKIE: &str = "quire_anon";
/// Signed; the WAL position of an anonymous visitor's last write (read-your-writes).
pub const LSN_COOKIE: &str = "quire_lsn";
pub const IDLE_DAYS: i64 = 14;
pub const ABSOLUTE_DAYS: i64 = 90;

/// Who is logged in, as pages need it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub role: String,
    pub email_verified: bool,
}

/// The session as one request sees it; put into the request's extensions by `Sessions`.
#[derive(Debug, Clone)]
pub struct RequestSession {
    pub user: Option<CurrentUser>,
    /// Public id of the session row (for "this device" in /settings/sessions).
    pub session_id: Option<i64>,
    /// The raw cookie value of the session, kept to delete the row at logout.
    pub token: Option<String>,
    pub csrf_token: String,
}

/// Filled by the session middleware, read by the error pages (which run outside it) so
/// an error page still knows who is logged in.
pub type SessionSlot = Arc<OnceLock<RequestSession>>;

// ---- SQL ---------------------------------------------------------------------------

/// Creates a session row for `user_id` and returns the raw token for the cookie.
pub async fn create(conn: impl PgExecutor<'_>, user_id: i64, user_agent: &str, ip: &str) -> Result<String, sqlx::Error> {
    let token = tokens::random_token();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, expires_at, user_agent, ip)
         VALUES ($1, $2, now() + make_interval(days => $3), $4, $5)",
    )
    .bind(tokens::hash_token(&token))
    .bind(user_id)
    .bind(ABSOLUTE_DAYS as i32)
    .bind(truncate(user_agent, 512))
    .bind(truncate(ip, 64))
    .execute(conn)
    .await?;
    Ok(token)
}

#[derive(sqlx::FromRow)]
struct Row {
    public_id: i64,
    last_seen_at: DateTime<Utc>,
    read_lsn: i64,
    #[sqlx(flatten)]
    user: CurrentUser,
}

/// A live session as the middleware needs it.
#[derive(Debug, Clone)]
pub struct Found {
    pub public_id: i64,
    pub user: CurrentUser,
    /// WAL position of this session's last write (0: none yet).
    pub read_lsn: Lsn,
}

/// The live session for `token`, if any; touches `last_seen_at` when it is over an
/// hour old (one small write per session per hour, not one per request).
///
/// Always on the primary: a session created a moment ago (login on another web process)
/// must be found, and a replica may not have it yet.
pub async fn lookup(db: &sqlx::PgPool, token: &str) -> Result<Option<Found>, sqlx::Error> {
    if !tokens::is_well_formed(token) {
        return Ok(None);
    }
    let hash = tokens::hash_token(token);
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.public_id, s.last_seen_at, s.read_lsn, u.id, u.username, u.display_name, u.email, u.role,
                u.email_verified_at IS NOT NULL AS email_verified
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now()
           AND s.last_seen_at > now() - make_interval(days => $2)",
    )
    .bind(&hash)
    .bind(IDLE_DAYS as i32)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if Utc::now() - row.last_seen_at > chrono::Duration::hours(1) {
        sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1")
            .bind(&hash)
            .execute(db)
            .await?;
    }
    Ok(Some(Found { public_id: row.public_id, user: row.user, read_lsn: row.read_lsn.max(0) as Lsn }))
}

/// Records, after a request of this session wrote, the primary's WAL position (which is
/// past that request's commits) as the session's read-your-writes floor. One statement:
/// the position is read by the UPDATE itself. False when no such session exists.
pub async fn remember_write_in_session(db: &sqlx::PgPool, token: &str) -> Result<bool, sqlx::Error> {
    if !tokens::is_well_formed(token) {
        return Ok(false);
    }
    let r = sqlx::query(
        "UPDATE sessions SET read_lsn = greatest(read_lsn, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint)
         WHERE id_hash = $1",
    )
    .bind(tokens::hash_token(token))
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete(db: impl PgExecutor<'_>, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(tokens::hash_token(token))
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_all_for_user(conn: &mut PgConnection, user_id: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected())
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SessionInfo {
    pub id: i64,
    pub user_agent: String,
    pub ip: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn list_for_user(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<SessionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT public_id AS id, user_agent, ip, created_at, last_seen_at FROM sessions
         WHERE user_id = $1 AND expires_at > now() AND last_seen_at > now() - make_interval(days => $2)
         ORDER BY last_seen_at DESC",
    )
    .bind(user_id)
    .bind(IDLE_DAYS as i32)
    .fetch_all(db)
    .await
}

/// Ends one of the user's sessions; false when no such session belongs to the user.
pub async fn revoke(db: impl PgExecutor<'_>, user_id: i64, public_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND public_id = $2")
        .bind(user_id)
        .bind(public_id)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn purge_expired(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(days => $1)",
    )
    .bind(IDLE_DAYS as i32)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---- cookies -----------------------------------------------------------------------

pub fn cookie(name: &str, value: &str, max_age_days: Option<i64>, secure: bool) -> Cookie {
    let mut c = Cookie::new_with_str(name, value);
    c.set_path("/");
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_secure(secure);
    if let Some(days) = max_age_days {
        c.set_max_age(std::time::Duration::from_secs(days as u64 * 86400));
    }
    c
}

/// Tells the browser to drop a cookie (same path, so the removal actually matches).
pub fn expire(jar: &CookieJar, name: &str, secure: bool) {
    let mut c = cookie(name, "", None, secure);
    c.set_max_age(std::time::Duration::ZERO);
    c.set_expires(DateTime::<Utc>::UNIX_EPOCH);
    jar.add(c);
}

/// Sets the session cookie after login.
pub fn set_cookie(jar: &CookieJar, token: &str, secure: bool) {
    jar.add(cookie(COOKIE, token, Some(ABSOLUTE_DAYS), secure));
}

pub fn csrf_token_for(secret_key: &[u8], seed: &str) -> String {
    tokens::hmac(secret_key, format!("csrf|{seed}").as_bytes())
}

// ---- lookup cache ------------------------------------------------------------------

/// Signed, short-lived: this visitor wrote a moment ago, so every web process looks their
/// session up afresh instead of trusting its cache (their own changes show at once).
pub const WROTE_COOKIE: &str = "quire_w";

/// Recently looked-up sessions, per process, for `CACHE_TTL`. A logged-in page then
/// costs one round trip, like an anonymous one (bench/load: the lookup was a quarter of
/// the logged-in story page). What it costs: a session revoked or deleted through
/// another web process keeps working here for up to `CACHE_TTL`; through this process,
/// never (logout, revocation and password changes evict at once). After a write the
/// visitor carries `WROTE_COOKIE` for longer than the TTL, so no process serves them a
/// cached (older) view of their own account.
pub struct SessionCache {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (std::time::Instant, Found)>>,
}

pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
const CACHE_MAX: usize = 50_000;

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache { entries: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, (std::time::Instant, Found)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, token: &str) -> Option<Found> {
        let map = self.lock();
        map.get(&tokens::hash_token(token)).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, f)| f.clone())
    }

    fn put(&self, token: &str, found: &Found) {
        let mut map = self.lock();
        if map.len() >= CACHE_MAX {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(tokens::hash_token(token), (std::time::Instant::now(), found.clone()));
    }

    pub fn forget(&self, token: &str) {
        self.lock().remove(&tokens::hash_token(token));
    }

    /// Drops every cached session of `user_id` (revocation, password change).
    pub fn forget_user(&self, user_id: i64) {
        self.lock().retain(|_, (_, f)| f.user.id != user_id);
    }
}

// ---- middleware --------------------------------------------------------------------

/// Resolves the request's session (one indexed query when a cookie is present, none
/// otherwise) and makes it available as `RequestSession`.
pub struct Sessions;

impl<E: Endpoint> Middleware<E> for Sessions {
    type Output = SessionsEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        SessionsEndpoint { inner: ep }
    }
}

pub struct SessionsEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for SessionsEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let state = req.data::<AppState>().cloned().ok_or_else(|| anyhow_err("AppState missing"))?;
        let secure = state.config.is_production();
        let jar = req.cookie().clone();

        let mut session = None;
        let wrote_lately = jar.signed_with_key(&state.cookie_key).get(WROTE_COOKIE).is_some();
        if let Some(c) = jar.get(COOKIE) {
            let token = c.value_str().to_string();
            let cached = if wrote_lately { None } else { state.session_cache.get(&token) };
            match cached {
                Some(found) => session = Some((token, found)),
                None => match lookup(state.db.primary(), &token).await.map_err(crate::error::Error::from)? {
                    Some(found) => {
                        state.session_cache.put(&token, &found);
                        session = Some((token, found))
                    }
                    None => expire(&jar, COOKIE, secure),
                },
            }
        }
        let mut floor = 0;
        let request_session = match session {
            Some((token, found)) => {
                floor = found.read_lsn;
                RequestSession {
                    csrf_token: csrf_token_for(&state.config.secret_key, &token),
                    user: Some(found.user),
                    session_id: Some(found.public_id),
                    token: Some(token),
                }
            }
            None => {
                let signed = jar.signed_with_key(&state.cookie_key);
                let seed = match signed.get(ANON_COOKIE) {
                    Some(c) if tokens::is_well_formed(c.value_str()) => c.value_str().to_string(),
                    _ => {
                        let seed = tokens::random_token();
                        signed.add(cookie(ANON_COOKIE, &seed, Some(365), secure));
                        seed
                    }
                };
                RequestSession {
                    csrf_token: csrf_token_for(&state.config.secret_key, &seed),
                    user: None,
                    session_id: None,
                    token: None,
                }
            }
        };
        if let Some(slot) = req.extensions().get::<SessionSlot>() {
            let _ = slot.set(request_session.clone());
        }
        let old_token = request_session.token.clone();
        req.extensions_mut().insert(request_session);

        let writes = !req.method().is_safe();
        if !state.db.has_replicas() {
            let result = self.inner.call(req).await.map(IntoResponse::into_response);
            if writes || ReadScope::current_wrote() {
                after_write(&state, &jar, old_token.as_deref(), secure);
            }
            return result;
        }

        // Read-your-writes (the `ReadRouting` layer outside opened the scope). The floor
        // is the later of the session's stored position and the anonymous cookie's (a
        // visitor who wrote, then logged in, keeps both).
        let signed = jar.signed_with_key(&state.cookie_key);
        let cookie_floor = signed.get(LSN_COOKIE).and_then(|c| c.value_str().parse::<Lsn>().ok());
        ReadScope::raise_floor(floor.max(cookie_floor.unwrap_or(0)));
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        if writes || ReadScope::current_wrote() {
            after_write(&state, &jar, old_token.as_deref(), secure);
            remember_write(&state, &jar, secure).await;
        } else if cookie_floor.is_some_and(|lsn| state.db.all_replicas_reached(lsn)) {
            // Every replica has caught up with this visitor: stop pinning.
            expire(&jar, LSN_COOKIE, secure);
        }
        result
    }
}

/// After a request that wrote: this process forgets the visitor's cached session (before
/// and after: login and logout change it), and the visitor is marked as having written,
/// so the other processes skip their caches for them too.
fn after_write(state: &AppState, jar: &CookieJar, old_token: Option<&str>, secure: bool) {
    if let Some(t) = old_token {
        state.session_cache.forget(t);
    }
    if let Some(c) = jar.get(COOKIE) {
        state.session_cache.forget(c.value_str());
        let mut w = cookie(WROTE_COOKIE, "1", None, secure);
        w.set_max_age(CACHE_TTL + std::time::Duration::from_secs(2));
        jar.signed_with_key(&state.cookie_key).add(w);
    }
}

/// After a request that wrote: store the primary's position where the visitor's next
/// requests will find it — their session row (the one the response leaves them with:
/// login may just have created it) or, for an anonymous visitor, a signed cookie. A
/// failure here is logged, not shown: the write itself succeeded.
async fn remember_write(state: &AppState, jar: &CookieJar, secure: bool) {
    let db = state.db.primary();
    let token = jar.get(COOKIE).map(|c| c.value_str().to_string()).filter(|t| !t.is_empty());
    let stored = match token {
        Some(token) => self::remember_write_in_session(db, &token).await,
        None => Ok(false),
    };
    let result = match stored {
        Ok(true) => Ok(()),
        Ok(false) => state.db.current_lsn().await.map(|lsn| {
            jar.signed_with_key(&state.cookie_key).add(cookie(LSN_COOKIE, &lsn.to_string(), Some(1), secure));
        }),
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "could not record the write position for read-your-writes");
    }
}

fn anyhow_err(msg: &str) -> poem::Error {
    crate::error::Error::Internal(anyhow::anyhow!(msg.to_string())).into()
}
