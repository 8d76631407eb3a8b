//! Live updates over Server-Sent Events.
//!
//! Raising an event ([`publish`]) inserts a row into `live_events` and queues
//! `NOTIFY quire_live, '<id>'` on the caller's connection: pass the transaction that makes
//! the change, and the event exists exactly when the change commits. The data is an HTML
//! fragment the raiser renders once (a comment, a like count); every subscriber gets the
//! same bytes.
//!
//! Delivery: each web process runs one [`broker::Broker`] (one LISTEN connection) that
//! reads new rows on each NOTIFY and fans them out to the streams open in that process
//! (`pages`: `GET /s/{id}/live`, `GET /live`). Ids are table ids, the same everywhere, so
//! a browser resuming with `Last-Event-ID` on any process gets exactly what it missed.

pub mod broker;
pub mod db;
pub mod pages;
pub mod sse;

pub use broker::Broker;

use sqlx::PgConnection;

/// The NOTIFY channel every web process LISTENs on.
pub const NOTIFY_CHANNEL: &str = "quire_live";

/// The channel of process-wide signals (`publish_control`): read by every web process's
/// broker and handed to its `on_control` hooks, never to a stream.
pub const CONTROL_CHANNEL: &str = "control";

/// Who receives an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Everyone with the story's page open (who may see the story).
    Story(i64),
    /// One user's open pages (the notification count in the navigation).
    User(i64),
}

impl Channel {
    pub fn key(self) -> String {
        match self {
            Channel::Story(id) => format!("story:{id}"),
            Channel::User(id) => format!("user:{id}"),
        }
    }

    pub fn parse(key: &str) -> Option<Channel> {
        let (kind, id) = key.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "story" => Some(Channel::Story(id)),
            "user" => Some(Channel::User(id)),
            _ => None,
        }
    }
}

/// Raises `event` on `channel` with `data` (an HTML fragment) as part of `conn`'s
/// transaction. Returns the event's id (also its SSE `id:`).
pub async fn publish(conn: &mut PgConnection, channel: Channel, event: &str, data: &str) -> Result<i64, sqlx::Error> {
    insert_and_notify(conn, &channel.key(), event, data).await
}

/// Cache invalidations through the control channel: applied here from every process,
/// and the way this process sends its own when Redis cannot take them (`cache::bus`).
/// The control channel is replayed from its table after a reconnect, so it has no gaps.
pub fn follow_cache(broker: &Broker, cache: &crate::cache::Cache, pool: sqlx::PgPool) {
    let c = cache.clone();
    broker.on_control(move |event, data| {
        if event == crate::cache::bus::CONTROL_EVENT {
            c.apply_message(data);
        }
    });
    let listening = broker.clone();
    cache.set_fallback(cache_fallback(pool, std::sync::Arc::new(move || listening.listener_pid().is_some())));
}

/// Invalidations sent through the control channel on `pool` (`hearing`: whether this
/// process hears that channel; the worker does not, it only sends).
pub fn cache_fallback(pool: sqlx::PgPool, hearing: std::sync::Arc<dyn Fn() -> bool + Send + Sync>) -> crate::cache::bus::Fallback {
    crate::cache::bus::Fallback {
        publish: std::sync::Arc::new(move |message: String| {
            let pool = pool.clone();
            Box::pin(async move {
                let sent = async {
                    let mut conn = pool.acquire().await?;
                    publish_control(&mut conn, crate::cache::bus::CONTROL_EVENT, &message).await
                };
                if let Err(error) = sent.await {
                    tracing::error!(%error, "could not send a cache invalidation through PostgreSQL either");
                }
            })
        }),
        hearing,
    }
}

/// Raises a process-wide signal as part of `conn`'s transaction: every web process's
/// broker runs its `on_control` hooks with (`event`, `data`) once it commits.
pub async fn publish_control(conn: &mut PgConnection, event: &str, data: &str) -> Result<i64, sqlx::Error> {
    insert_and_notify(conn, CONTROL_CHANNEL, event, data).await
}

async fn insert_and_notify(conn: &mut PgConnection, channel_key: &str, event: &str, data: &str) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar("INSERT INTO live_events (channel, event, data) VALUES ($1, $2, $3) RETURNING id")
        .bind(channel_key)
        .bind(event)
        .bind(data)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(id.to_string()).execute(&mut *conn).await?;
    Ok(id)
}

/// Raises `event` with `data` on the `User` channel of each of `user_ids`, as part of
/// `conn`'s transaction, in one statement (one row per user, one `INSERT … SELECT
/// unnest`, and one NOTIFY carrying the highest id: a listener reads every new row per
/// wake-up anyway). For fan-outs (a chapter to every follower's navigation).
pub async fn publish_to_users(conn: &mut PgConnection, user_ids: &[i64], event: &str, data: &str) -> Result<(), sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH ins AS (
             INSERT INTO live_events (channel, event, data)
             SELECT 'user:' || u, $2, $3 FROM unnest($1::bigint[]) u
             RETURNING id
         )
         SELECT pg_notify($4, (SELECT max(id) FROM ins)::text)",
    )
    .bind(user_ids)
    .bind(event)
    .bind(data)
    .bind(NOTIFY_CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes events older than an hour (the maintenance job): a browser away longer than
/// that reloads instead of resuming.
pub async fn purge_old(db: impl sqlx::PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM live_events WHERE created_at < now() - interval '1 hour'").execute(db).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::Channel;

    /// base.html connects a page to the stream its `live_url` block names (story pages
    /// override it), to `/live` for a logged-in visitor, and to nothing otherwise.
    #[test]
    fn base_html_connects_to_the_blocks_stream() {
        let mut env = minijinja::Environment::new();
        env.add_function("static", |p: String| p);
        env.add_template("base.html", include_str!("../../../templates/base.html")).unwrap();
        env.add_function("hole", |_: String| String::new());
        env.add_template("notifications/_nav.html", include_str!("../../../templates/notifications/_nav.html")).unwrap();
        env.add_template("partials/_nav_user.html", include_str!("../../../templates/partials/_nav_user.html")).unwrap();
        env.add_template("partials/_verify_banner.html", include_str!("../../../templates/partials/_verify_banner.html")).unwrap();
        env.add_template("story.html", r#"{% extends "base.html" %}{% block live_url %}/s/{{ id }}/live{% endblock %}"#).unwrap();
        env.add_template("page.html", r#"{% extends "base.html" %}{% block content %}hi{% endblock %}"#).unwrap();
        let user = minijinja::context! { current_user => minijinja::context! { username => "amy", email_verified => true } };
        let render = |t: &str, ctx: minijinja::Value| env.get_template(t).unwrap().render(ctx).unwrap();
        let story = render("story.html", minijinja::context! { id => 7 });
        assert!(story.contains(r#" hx-ext="sse" sse-connect="/s/7/live">"#), "{story}");
        let own = render("story.html", minijinja::context! { id => 7, ..user.clone() });
        assert!(own.contains(r#"sse-connect="/s/7/live""#), "{own}");
        let page = render("page.html", user.clone());
        assert!(page.contains(r#" hx-ext="sse" sse-connect="/live">"#), "{page}");
        let anon = render("page.html", minijinja::context! {});
        assert!(!anon.contains("sse-connect") && !anon.contains("hx-ext"), "{anon}");
        // With the broker's position: the stream starts after it.
        let at = minijinja::context! { live_after => 42, ..user.clone() };
        let page = render("page.html", at.clone());
        assert!(page.contains(r#"sse-connect="/live?after=42">"#), "{page}");
        let story = render("story.html", minijinja::context! { id => 7, ..at });
        assert!(story.contains(r#"sse-connect="/s/7/live?after=42">"#), "{story}");
        let anon = render("page.html", minijinja::context! { live_after => 42 });
        assert!(!anon.contains("sse-connect"), "{anon}");
    }

    #[test]
    fn channel_keys_round_trip() {
        for c in [Channel::Story(7), Channel::User(42)] {
            assert_eq!(Channel::parse(&c.key()), Some(c));
        }
        assert_eq!(Channel::parse("story:x"), None);
        assert_eq!(Channel::parse("other:1"), None);
    }
}
