//! The HTTP side: shared state, the route table and the middleware stack.

pub mod compression;
pub mod cookies;
pub mod csrf;
pub mod ctx;
pub mod error_pages;
pub mod form;
pub mod headers;
pub mod hostile_input;
pub mod ops;
pub mod page_cache;
pub mod read_routing;
pub mod request_id;
pub mod server;
pub mod session_layer;
pub mod static_files;
pub mod stitched;
pub mod timeouts;
pub mod uploads;

use std::{sync::Arc, time::Duration};

use poem::{Endpoint, EndpointExt, Route, get, middleware::CookieJarManager, web::cookie::CookieKey};

use crate::{
    accounts, admin, config::Config, db::Db, exports, feeds, live, media, moderation, notifications, ratelimit::RateLimiter, search,
    sessions::SessionStore, social, stats, stories, templates::Templates,
};
use compression::Compression;
use static_files::StaticFiles;

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
    /// Sessions, with this process's lookup cache.
    pub sessions: SessionStore,
    /// Live updates: this process's LISTEN connection and its open event streams.
    pub live: live::Broker,
    /// Chapter views counted in memory, flushed every `STATS_FLUSH_SECS` (`stats::counter`).
    pub views: Arc<stats::ViewCounter>,
    /// The two-level cache (pages for anonymous visitors, shared data), and Redis if
    /// configured (also the rate limiter's store).
    pub cache: crate::cache::Cache,
    /// The job queue's counts for `/metrics`, reused for a few seconds.
    pub queue_gauge: ops::metrics::QueueGauge,
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
        let storage = crate::storage::Storage::from_config(&config)?;
        if let Some(s3) = &config.media_s3 {
            tracing::info!(store = %s3.url(), endpoint = s3.endpoint.as_deref().unwrap_or("AWS"), "media in S3");
        }
        let live = live::Broker::start(db.primary(), config.live);
        let redis = crate::redis_client::connect(&config)?;
        let cache = crate::cache::Cache::new(crate::cache::Options {
            l1_bytes: Some(config.cache_l1_bytes),
            redis: redis.clone(),
            enabled: config.cache_enabled,
        });
        live::follow_cache(&live, &cache, db.primary().clone());
        let sessions = SessionStore::new(db.clone());
        sessions.follow(&live);
        let views = Arc::new(stats::ViewCounter::new(&config.secret_key, stats::counter::DEFAULT_CAP));
        views.spawn_flusher(db.primary().clone(), config.stats_flush);
        Ok(AppState(Arc::new(Inner {
            live,
            views,
            storage,
            config: Arc::new(config),
            sessions,
            db,
            templates,
            statics,
            limiter: RateLimiter::new(redis),
            cache,
            cookie_key,
            queue_gauge: ops::metrics::QueueGauge::default(),
        })))
    }
}

/// The pages: every route that has a session. Each area's `pages` contributes its own;
/// this is the one place that lists the areas.
pub fn routes(state: &AppState) -> Route {
    let route = Route::new().at("/", get(stories::pages::home));
    let route = accounts::pages::routes(route);
    let route = stories::pages::routes(route);
    let route = media::pages::routes(route);
    let route = social::pages::routes(route);
    let route = notifications::pages::routes(route);
    let route = live::pages::routes(route);
    let route = stats::pages::routes(route);
    let route = search::pages::routes(route);
    let route = moderation::pages::routes(route);
    let route = exports::pages::routes(route);
    let route = admin::pages::routes(route);
    ops::dev_mail::routes(route, state.config.is_production())
}

/// The whole application: routes wrapped in the middleware stack, outermost last.
///
/// `/health`, `/metrics`, `/static` and the feeds area sit outside the session stack: they need no session, must not
/// cost a session lookup, and health must answer even when the database does not.
pub fn app(state: AppState) -> impl Endpoint<Output = poem::Response> {
    let secure = state.config.is_production();
    let limits = state.config.http;
    // The deadline inside the error pages (its 503 is a page) and outside the session
    // lookup and the CSRF check's body read (both count against it).
    let pages = routes(&state)
        .with(csrf::CsrfProtection)
        .with(session_layer::Sessions)
        .with(timeouts::Deadline { request: limits.request_timeout, upload: limits.upload_timeout })
        .with(error_pages::ErrorPages)
        .with(read_routing::ReadRouting { expose: !secure && state.db.has_replicas() })
        .with(CookieJarManager::with_key(state.cookie_key.clone()));
    let machines = Route::new().at("/health", get(ops::health::health)).at("/metrics", get(ops::metrics::metrics));
    // Feeds, sitemap and robots.txt: for machines, cookie-less and cacheable.
    feeds::pages::routes(machines)
        .nest("/static", state.statics.clone().endpoint().with(error_pages::ErrorPages))
        .nest("/media", media::pages::files().with(error_pages::ErrorPages))
        .nest("/", pages)
        // Once, before any routing: NUL in the path (404) or query (400), as a page.
        .with(hostile_input::RefuseNul)
        .with(error_pages::ErrorPages)
        // Inside compression: stored pages carry their own encoding, which it passes.
        .with(page_cache::PageCache)
        .with(Compression::default())
        .with(headers::SecurityHeaders { hsts: secure })
        // Outside everything that answers (the page cache included), inside the request
        // id, which turns errors into responses and so drops the matched route.
        .with(ops::metrics::RequestMetrics)
        .with(request_id::RequestIds)
        .data(state)
}

/// How long a process asked to restart (SIGHUP) keeps serving after `/health` turned 503,
/// so the load balancer's active check (every 500 ms in ops/stack/Caddyfile.in) takes it
/// out of rotation before it stops accepting: four intervals.
pub const RESTART_DRAIN: Duration = Duration::from_secs(2);

/// Serves until SIGTERM/SIGINT or SIGHUP, then stops accepting, lets in-flight requests
/// finish (up to 25 s), flushes the view counts and closes the pools. On SIGHUP it first
/// drains for `RESTART_DRAIN`; the caller then re-executes the binary (`shutdown::reexec`).
pub async fn serve(state: AppState) -> anyhow::Result<crate::shutdown::Stop> {
    use crate::shutdown::{self, Stop};
    // Before the port answers: `bin/stack restart` may send SIGHUP as soon as it does.
    shutdown::listen();
    let addr = format!("0.0.0.0:{}", state.config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, boot = shutdown::boot_id(), "listening");
    let db = state.db.clone();
    let signal = async {
        if shutdown::requested().await == Stop::Restart {
            tracing::info!(drain_ms = RESTART_DRAIN.as_millis() as u64, "draining: /health answers 503 while requests still come in");
            tokio::select! {
                _ = tokio::time::sleep(RESTART_DRAIN) => {}
                _ = shutdown::exit_requested() => {}
            }
        }
    };
    let result = serve_on(listener, state, signal).await;
    tracing::info!("stopped accepting; closing database pools");
    db.close().await;
    result.map(|()| shutdown::outcome())
}

/// Serves the app on `listener` with the configured timeouts and connection cap
/// (`web::server`) until `signal`, then flushes the view counts; tests call it with a
/// port of their own.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = state.config.http;
    // Open event streams never finish on their own: end them as soon as shutdown
    // begins, so the grace period waits only for real requests.
    let live = state.live.clone();
    let signal = async move {
        signal.await;
        live.shut_down();
    };
    let views = state.views.clone();
    let db = state.db.clone();
    let result = server::run(listener, app(state).boxed(), limits, signal, Duration::from_secs(25)).await;
    // The last views counted in memory: after the server stopped (no view comes in
    // after this), before `serve` closes the pools.
    match views.flush(db.primary()).await {
        Ok(entries) => tracing::info!(entries, "flushed view counts"),
        Err(error) => tracing::warn!(%error, "could not flush view counts at shutdown; they are lost"),
    }
    result.map_err(Into::into)
}
