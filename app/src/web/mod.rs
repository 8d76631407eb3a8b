//! The HTTP side: shared state, the route table and the middleware stack.

pub mod csrf;
pub mod ctx;
pub mod error_pages;
pub mod form;
pub mod headers;
pub mod request_id;

use std::{sync::Arc, time::Duration};

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, Route, Server, get,
    listener::TcpListener,
    middleware::CookieJarManager,
    web::cookie::CookieKey,
};

use crate::{
    accounts, compression::Compression, config::Config, db::Db, health, ratelimit::RateLimiter,
    sessions::Sessions, static_files::StaticFiles, templates::Templates,
};

/// Everything a handler may need, cloned cheaply into each request.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    pub db: Db,
    pub templates: Templates,
    pub statics: Arc<StaticFiles>,
    pub limiter: RateLimiter,
    pub cookie_key: CookieKey,
    /// Uploaded originals (private) and their processed variants.
    pub storage: crate::storage::Storage,
    /// Recently looked-up sessions (see `sessions::SessionCache`).
    pub session_cache: crate::sessions::SessionCache,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, db: Db) -> anyhow::Result<AppState> {
        let statics = Arc::new(StaticFiles::load()?);
        let for_templates = statics.clone();
        let templates = Templates::new(move |path| for_templates.url(path))?;
        let cookie_key = CookieKey::derive_from(&config.secret_key);
        let storage = crate::storage::Storage::local(&config.media_root)?;
        Ok(AppState(Arc::new(Inner {
            storage,
            config: Arc::new(config),
            db,
            templates,
            statics,
            limiter: RateLimiter::in_process(),
            cookie_key,
            session_cache: Default::default(),
        })))
    }
}

/// The pages: every route that has a session. Each area module contributes its own.
pub fn routes(state: &AppState) -> Route {
    let route = Route::new().at("/", get(crate::stories::home));
    let route = accounts::routes(route);
    let route = crate::stories::routes(route);
    let route = crate::media::routes(route);
    crate::dev_mail::routes(route, state.config.is_production())
}

/// The whole application: routes wrapped in the middleware stack, outermost last.
///
/// `/health`, `/metrics` and `/static` sit outside the session stack: they need no session, must not
/// cost a session lookup, and health must answer even when the database does not.
pub fn app(state: AppState) -> impl Endpoint<Output = poem::Response> {
    let secure = state.config.is_production();
    let pages = routes(&state)
        .with(csrf::CsrfProtection)
        .with(Sessions)
        .with(error_pages::ErrorPages)
        .with(crate::db::routing::ReadRouting { expose: !secure && state.db.has_replicas() })
        .with(CookieJarManager::with_key(state.cookie_key.clone()));
    Route::new()
        .at("/health", get(health::health))
        .at("/metrics", get(crate::metrics::metrics))
        .nest("/static", state.statics.clone().endpoint().with(error_pages::ErrorPages))
        .nest("/media", crate::media::files().with(error_pages::ErrorPages))
        .nest("/", pages)
        .with(Compression::default())
        .with(headers::SecurityHeaders { hsts: secure })
        .with(request_id::RequestIds)
        .data(state)
}

/// Serves until SIGTERM/SIGINT, then stops accepting, lets in-flight requests finish (up
/// to 25 s) and closes the pools.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let addr = format!("0.0.0.0:{}", state.config.port);
    let db = state.db.clone();
    tracing::info!(%addr, "listening");
    let result = Server::new(TcpListener::bind(addr))
        .name("quire")
        .run_with_graceful_shutdown(app(state).into_endpoint(), shutdown_signal(), Some(Duration::from_secs(25)))
        .await;
    tracing::info!("stopped accepting; closing database pools");
    db.close().await;
    result.map_err(Into::into)
}

pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
