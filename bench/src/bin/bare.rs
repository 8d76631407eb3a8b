//! The story page with nothing around it: the ceiling of our crates for `bench/load`.
//!
//! The same SQL statement as the real `GET /s/{id}` (`app::stories::db::page`: story,
//! author, tags, cover and chapter list in one round trip), the same template files
//! (`templates/stories/show.html` extending `base.html`) in the same minijinja set-up
//! (`app::templates::Templates`) — called directly, on poem + sqlx + minijinja and
//! nothing else: no
//! sessions, no CSRF, no cookies, no security headers, no request ids or request log, no
//! compression, no error pages. What the real page's middleware would supply (CSRF token,
//! request id, fingerprinted static URLs) is given as constants of the same length, so
//! the rendered page has the size of the real anonymous one.
//!
//! ```sh
//! DATABASE_URL=postgres://… PORT=8100 POOL=4 target/release/bare
//! ```
//!
//! `GET /s/{id}` is the page; `GET /ping` answers `pong` without touching the database
//! (the HTTP ceiling of poem on this machine). Started and stopped by `bench/load`.

use std::sync::Arc;

use app::{media, stories::db as stories, templates::Templates};
use minijinja::{Value, context};
use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::TcpListener,
    web::{Data, Path},
};
use sqlx::postgres::PgPoolOptions;

struct State {
    db: sqlx::PgPool,
    templates: Templates,
}

fn reading_minutes(words: i32) -> i32 {
    ((words + 229) / 230).max(1)
}

#[handler]
async fn show(state: Data<&Arc<State>>, Path(id): Path<i64>) -> Response {
    match page(&state, id).await {
        Ok(Some(html)) => Response::builder().content_type("text/html; charset=utf-8").body(html),
        Ok(None) => Response::builder().status(StatusCode::NOT_FOUND).body("not found"),
        Err(e) => Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(e.to_string()),
    }
}

async fn page(state: &State, id: i64) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let Some((story, chapters)) = stories::page(&state.db, id).await? else {
        return Ok(None);
    };
    if story.status != app::stories::db::StoryStatus::Published {
        return Ok(None);
    }
    let cover = story.cover.as_ref().map(media::figure_value);
    let story_v = context! {
        ..Value::from(minijinja::value::Serde(&story)),
        ..context! { cover => cover, reading_minutes => reading_minutes(story.word_count) }
    };
    let html = state.templates.render("stories/show.html", context! {
        story => story_v,
        chapters => Value::from(minijinja::value::Serde(&chapters)),
        is_author => false,
        can_publish => false,
        values => context!{},
        errors => context!{},
        // What the real app's middleware supplies, as constants of the same length.
        current_user => Value::from(()),
        csrf_token => "bare-csrf-token-of-the-same-length-as-ours0",
        flash => Vec::<Value>::new(),
        request_id => "00000000000000000000000000000000",
        dev => false,
    })?;
    Ok(Some(html))
}

#[handler]
fn ping() -> &'static str {
    "pong"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is required")?;
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8100);
    let pool: u32 = std::env::var("POOL").ok().and_then(|p| p.parse().ok()).unwrap_or(4);
    let db = PgPoolOptions::new().max_connections(pool).min_connections(1).connect(&url).await?;
    // Fingerprinted URLs of the app's shape (`css/site.css` → `/static/css/site.<10 hex>.css`).
    let templates = Templates::new(|path| {
        let (stem, ext) = path.rsplit_once('.').unwrap_or((path, ""));
        Some(format!("/static/{stem}.0123456789.{ext}"))
    })?;
    let state = Arc::new(State { db, templates });
    let app = Route::new().at("/s/:id", get(show)).at("/ping", get(ping)).data(state);
    eprintln!("bare: listening on 0.0.0.0:{port}, pool {pool}");
    Server::new(TcpListener::bind(format!("0.0.0.0:{port}")))
        .run_with_graceful_shutdown(
            app,
            async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
            },
            Some(std::time::Duration::from_secs(5)),
        )
        .await?;
    Ok(())
}
