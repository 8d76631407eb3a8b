//! The session middleware: resolves the request's session (one indexed query when a
//! cookie is present and this process has not seen it in the last few seconds, none
//! otherwise), seeds anonymous visitors' CSRF tokens, and after a write records the
//! visitor's read-your-writes floor.

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, web::cookie::CookieJar};

use crate::{
    db::{Lsn, ReadScope},
    sessions::{CACHE_TTL, RequestSession, SessionSlot, csrf_token_for},
    tokens,
    web::{
        AppState,
        cookies::{ANON_COOKIE, COOKIE, LSN_COOKIE, WROTE_COOKIE, cookie, expire},
    },
};

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

        // A page the cache will store: rendered as for any anonymous visitor, from the
        // primary, with no cookie of its own (`web::page_cache`).
        if req.extensions().get::<crate::web::page_cache::Filling>().is_some() {
            let neutral = RequestSession { csrf_token: String::new(), user: None, session_id: None, token: None };
            if let Some(slot) = req.extensions().get::<SessionSlot>() {
                let _ = slot.set(neutral.clone());
            }
            req.extensions_mut().insert(neutral);
            ReadScope::raise_floor(Lsn::MAX);
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let mut session = None;
        let wrote_lately = jar.signed_with_key(&state.cookie_key).get(WROTE_COOKIE).is_some();
        if let Some(c) = jar.get(COOKIE) {
            let token = c.value_str().to_string();
            match state.sessions.lookup(&token, wrote_lately).await.map_err(crate::error::Error::from)? {
                Some(found) => session = Some((token, found)),
                None => expire(&jar, COOKIE, secure),
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
        state.sessions.forget(t);
    }
    if let Some(c) = jar.get(COOKIE) {
        state.sessions.forget(c.value_str());
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
    let token = jar.get(COOKIE).map(|c| c.value_str().to_string()).filter(|t| !t.is_empty());
    let stored = match token {
        Some(token) => state.sessions.remember_write(&token).await,
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
