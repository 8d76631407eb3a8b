//! The story page with nothing around it: the ceiling of our crates for `bench/load`.
//!
//! Same three SQL statements as the real `GET /s/{id}` (story with author and tags, its
//! chapter list, its cover's media row: `app/src/stories/db.rs` and `app/src/media.rs`),
//! same template files (`templates/stories/show.html` extending `base.html`), rendered by
//! minijinja with the same filters — on poem + sqlx + minijinja and nothing else: no
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

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use minijinja::{Environment, Value, context};
use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::TcpListener,
    web::{Data, Path},
};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

// The SQL, verbatim from app/src/stories/db.rs (story_select! + find), chapters_of and
// media::find_many.
const FIND_STORY: &str = "SELECT s.id, s.author_id, u.username AS author_username, u.display_name AS author_display_name,
                s.title, s.summary, s.status, s.published_at, s.cover_id, s.chapter_count, s.word_count,
                s.created_at,
                coalesce((SELECT array_agg(t.name ORDER BY t.name) FROM story_tags st JOIN tags t ON t.id = st.tag_id
                          WHERE st.story_id = s.id), ARRAY[]::text[]) AS tags
         FROM stories s JOIN users u ON u.id = s.author_id WHERE s.id = $1";
const CHAPTERS: &str = "SELECT number, title, word_count, created_at FROM chapters WHERE story_id = $1 ORDER BY number";
const MEDIA: &str = "SELECT id, owner_id, status, error, width, height, variants FROM media WHERE id = ANY($1)";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
struct StoryRow {
    id: i64,
    author_id: i64,
    author_username: String,
    author_display_name: String,
    title: String,
    summary: String,
    status: String,
    published_at: Option<DateTime<Utc>>,
    cover_id: Option<i64>,
    chapter_count: i32,
    word_count: i32,
    created_at: DateTime<Utc>,
    tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
struct ChapterSummary {
    number: i32,
    title: String,
    word_count: i32,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VariantRef {
    width: u32,
    height: u32,
    format: String,
    key: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
struct Media {
    id: i64,
    owner_id: i64,
    status: String,
    error: Option<String>,
    width: i32,
    height: i32,
    #[sqlx(json)]
    variants: Vec<VariantRef>,
}

struct State {
    db: sqlx::PgPool,
    env: Environment<'static>,
}

/// Same as `media::figure_value`.
fn figure_value(media: &Media) -> Value {
    let srcset = |format: &str| {
        media
            .variants
            .iter()
            .filter(|v| v.format == format)
            .map(|v| format!("/media/{} {}w", v.key, v.width))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fallback = media
        .variants
        .iter()
        .filter(|v| v.format == "jpeg")
        .min_by_key(|v| (v.width as i64 - 800).abs())
        .map(|v| format!("/media/{}", v.key));
    let (width, height) = media
        .variants
        .iter()
        .max_by_key(|v| v.width)
        .map(|v| (v.width as i32, v.height as i32))
        .unwrap_or((media.width, media.height));
    context! {
        id => media.id,
        status => &media.status,
        error => &media.error,
        width => width,
        height => height,
        webp_srcset => srcset("webp"),
        jpeg_srcset => srcset("jpeg"),
        src => fallback,
    }
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
    let Some(story) = sqlx::query_as::<_, StoryRow>(FIND_STORY).bind(id).fetch_optional(&state.db).await? else {
        return Ok(None);
    };
    if story.status != "published" {
        return Ok(None);
    }
    let chapters: Vec<ChapterSummary> = sqlx::query_as(CHAPTERS).bind(id).fetch_all(&state.db).await?;
    let covers: HashMap<i64, Media> = if let Some(cover_id) = story.cover_id {
        let rows: Vec<Media> = sqlx::query_as(MEDIA).bind(vec![cover_id]).fetch_all(&state.db).await?;
        rows.into_iter().map(|m| (m.id, m)).collect()
    } else {
        HashMap::new()
    };
    let cover = story.cover_id.and_then(|id| covers.get(&id)).map(figure_value);
    let story_v = context! {
        ..Value::from(minijinja::value::Serde(&story)),
        ..context! { cover => cover, reading_minutes => reading_minutes(story.word_count) }
    };
    let html = state.env.get_template("stories/show.html")?.render(context! {
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

fn environment() -> Environment<'static> {
    let dir = std::env::var("TEMPLATES_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../templates").to_string());
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_loader(minijinja::path_loader(dir));
    // Fingerprinted URLs like the app's (`css/site.css` → `/static/css/site.<10 hex>.css`).
    env.add_function("static", |path: &str| -> Value {
        let (stem, ext) = path.rsplit_once('.').unwrap_or((path, ""));
        Value::from_safe_string(format!("/static/{stem}.0123456789.{ext}"))
    });
    env.add_filter("timeago", timeago);
    env.add_filter("truncate", truncate);
    env
}

/// As in app/src/templates.rs.
fn truncate(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_string();
    }
    let cut: String = value.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map(|(head, _)| head).unwrap_or(&cut);
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

/// As in app/src/templates.rs.
fn timeago(value: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) else { return value.to_string() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        _ => return t.format("%-d %b %Y").to_string(),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is required")?;
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8100);
    let pool: u32 = std::env::var("POOL").ok().and_then(|p| p.parse().ok()).unwrap_or(4);
    let db = PgPoolOptions::new().max_connections(pool).min_connections(1).connect(&url).await?;
    let env = environment();
    env.get_template("stories/show.html")?; // fail at start, not per request
    let state = Arc::new(State { db, env });
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
