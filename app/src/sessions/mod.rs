//! Sessions live in PostgreSQL (table `sessions`), so any web process can serve any request.
//!
//! The cookie holds 256 random bits; the table stores only their SHA-256. A session
//! expires after 14 idle days or 90 days in all. `last_seen_at` is refreshed at most once
//! an hour, so an ordinary request is a read, not a write.
//!
//! Anonymous visitors get no row: they carry a signed random `quire_anon` cookie, which
//! seeds their CSRF token until they log in.
//!
//! `SessionStore` is the one way in: it creates, finds, revokes and ends sessions, and
//! keeps this process's lookup cache (`cache`) in step, so no caller evicts by hand.
//! The middleware that resolves a request's session is `web::session_layer`.

pub mod cache;
pub mod store;

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use sqlx::{PgConnection, Postgres, Transaction};

pub use cache::{CACHE_TTL, SessionCache};
pub use store::{ABSOLUTE_DAYS, Found, IDLE_DAYS, SessionInfo};

use crate::{db::Db, tokens};

/// Who is logged in, as pages need it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub role: crate::policy::Role,
    pub email_verified: bool,
    /// Unread notifications, counted up to `notifications::db::UNREAD_CAP` (the
    /// navigation shows "99+" beyond): read with the session in the same statement, so
    /// the count in every page's navigation costs no extra round trip, and cached with it.
    pub unread: i64,
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

/// The CSRF token of a visitor, derived from their session token (or anonymous seed).
pub fn csrf_token_for(secret_key: &[u8], seed: &str) -> String {
    tokens::hmac(secret_key, format!("csrf|{seed}").as_bytes())
}

/// Sessions: the table and this process's lookup cache, kept in step.
pub struct SessionStore {
    db: Db,
    cache: Arc<SessionCache>,
    /// Whether this process hears `announce_changed` now (its broker listens): the
    /// cache is used only then, so an eviction can never be missed.
    hearing: OnceLock<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// The control event (`live::publish_control`) that tells every web process to drop a
/// user's cached sessions: their sessions ended, or what a session carries changed (role).
pub const CHANGED_EVENT: &str = "sessions_changed";

/// Tells every web process, when `conn`'s transaction commits, to forget `user_id`'s
/// cached sessions, so the next request anywhere reads them from the table: a ban or a
/// role change takes effect at once, not after `CACHE_TTL`.
pub async fn announce_changed(conn: &mut PgConnection, user_id: i64) -> Result<(), sqlx::Error> {
    crate::live::publish_control(conn, CHANGED_EVENT, &user_id.to_string()).await.map(drop)
}

impl SessionStore {
    pub fn new(db: Db) -> SessionStore {
        SessionStore { db, cache: Arc::new(SessionCache::default()), hearing: OnceLock::new() }
    }

    /// Evicts on `announce_changed` from any process, through this process's broker.
    pub fn follow(&self, broker: &crate::live::Broker) {
        let listening = broker.clone();
        let _ = self.hearing.set(Arc::new(move || listening.listener_pid().is_some()));
        let cache = self.cache.clone();
        broker.on_control(move |event, data| {
            if event == CHANGED_EVENT
                && let Ok(user_id) = data.parse()
            {
                cache.forget_user(user_id);
            }
        });
    }

    /// Creates a session row for `user_id` on `conn` (pass a transaction to make it part
    /// of one) and returns the raw token for the cookie.
    pub async fn create(&self, conn: &mut PgConnection, user_id: i64, user_agent: &str, ip: &str) -> Result<String, sqlx::Error> {
        store::create(conn, user_id, user_agent, ip).await
    }

    /// The live session for `token`. From this process's cache when it was looked up in
    /// the last `CACHE_TTL`, unless `fresh` (the visitor wrote lately); else from the
    /// primary (a session created a moment ago on another process must be found).
    pub async fn lookup(&self, token: &str, fresh: bool) -> Result<Option<Found>, sqlx::Error> {
        let hearing = self.hearing.get().is_some_and(|h| h());
        if !fresh && hearing && let Some(found) = self.cache.get(token) {
            return Ok(Some(found));
        }
        let found = store::lookup(self.db.primary(), token).await?;
        if let Some(found) = &found {
            self.cache.put(token, found);
        }
        Ok(found)
    }

    /// Drops `token` from this process's cache (after a request that wrote: login and
    /// logout change what it maps to). For the session middleware only: handlers end
    /// sessions through `end`, `revoke` and `end_all_for_user`, which evict themselves.
    pub(crate) fn forget(&self, token: &str) {
        self.cache.forget(token);
    }

    /// Ends the session of `token` (logout, or the old session at login), here and, when
    /// it commits, in every other web process's cache: a stolen cookie stops working
    /// everywhere on the next request.
    pub async fn end(&self, token: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.db.primary().begin().await?;
        if let Some(user_id) = store::delete(&mut *tx, token).await? {
            announce_changed(&mut tx, user_id).await?;
        }
        self.cache.forget(token);
        tx.commit().await?;
        self.cache.forget(token);
        Ok(())
    }

    /// Ends one of the user's sessions by its public id; false when no such session
    /// belongs to the user.
    pub async fn revoke(&self, user_id: i64, public_id: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.primary().begin().await?;
        let ended = store::revoke(&mut *tx, user_id, public_id).await?;
        if ended {
            announce_changed(&mut tx, user_id).await?;
        }
        tx.commit().await?;
        self.cache.forget_user(user_id);
        Ok(ended)
    }

    /// Ends every session of `user_id` as part of `tx`, commits it, then evicts them from
    /// the cache (after the commit: evicting first would let a concurrent request cache
    /// the rows again before they are gone). Password resets, bans, account deletion;
    /// every other web process evicts them too, moments after the commit.
    pub async fn end_all_for_user(&self, mut tx: Transaction<'_, Postgres>, user_id: i64) -> Result<u64, sqlx::Error> {
        let ended = store::delete_all_for_user(&mut tx, user_id).await?;
        // The other web processes evict when this commits.
        announce_changed(&mut tx, user_id).await?;
        self.cache.forget_user(user_id);
        tx.commit().await?;
        self.cache.forget_user(user_id);
        Ok(ended)
    }

    /// Ends one of the user's sessions by its public id on `conn` (a transaction the
    /// caller goes on to write its audit row in), returning it; None when no such session
    /// belongs to the user. Finish with `commit_ended`, which commits and evicts.
    pub async fn revoke_on(&self, conn: &mut PgConnection, user_id: i64, public_id: i64) -> Result<Option<SessionInfo>, sqlx::Error> {
        let ended = store::revoke_returning(conn, user_id, public_id).await?;
        self.cache.forget_user(user_id);
        Ok(ended)
    }

    /// Commits `tx`, in which sessions of `user_id` were ended (`revoke_on`), then evicts
    /// them from the cache again (see `end_all_for_user` for why after the commit too).
    pub async fn commit_ended(&self, mut tx: Transaction<'_, Postgres>, user_id: i64) -> Result<(), sqlx::Error> {
        // The other web processes evict when this commits.
        announce_changed(&mut tx, user_id).await?;
        self.cache.forget_user(user_id);
        tx.commit().await?;
        self.cache.forget_user(user_id);
        Ok(())
    }

    /// `end_all_for_user`, sparing the session with public id `keep` (the device that
    /// changed the password stays logged in; every other one is logged out).
    pub async fn end_others_for_user(&self, mut tx: Transaction<'_, Postgres>, user_id: i64, keep: Option<i64>) -> Result<u64, sqlx::Error> {
        let ended = store::delete_others_for_user(&mut tx, user_id, keep).await?;
        announce_changed(&mut tx, user_id).await?;
        self.cache.forget_user(user_id);
        tx.commit().await?;
        self.cache.forget_user(user_id);
        Ok(ended)
    }

    pub async fn list_for_user(&self, user_id: i64) -> Result<Vec<SessionInfo>, sqlx::Error> {
        store::list_for_user(self.db.primary(), user_id).await
    }

    /// Records the primary's WAL position as the session's read-your-writes floor.
    pub async fn remember_write(&self, token: &str) -> Result<bool, sqlx::Error> {
        store::remember_write_in_session(self.db.primary(), token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_per_visitor_and_per_key() {
        let t = csrf_token_for(b"key", "seed-1");
        assert_eq!(t, csrf_token_for(b"key", "seed-1"), "stable for one session");
        assert_ne!(t, csrf_token_for(b"key", "seed-2"), "another visitor's token differs");
        assert_ne!(t, csrf_token_for(b"other", "seed-1"), "another key's token differs");
        assert!(tokens::is_well_formed(&t));
        // Domain-separated from the session token itself and from link tokens.
        assert_ne!(t, tokens::hmac(b"key", b"seed-1"));
    }
}
