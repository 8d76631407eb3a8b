//! Views counted in this process's memory, flushed to the database in one statement.
//!
//! What counts: a chapter page seen by anyone but its author, unless the user agent is a
//! crawler's (`is_crawler`: then nothing is counted at all). Who counts as a unique
//! reader: a logged-in user (by id) or an anonymous visitor whose browser sent back our
//! anonymous cookie (by a keyed hash of it); a visitor without the cookie (a first visit,
//! a client that keeps no cookies) adds a view but no reader, so scripts cannot inflate
//! the reader count by dropping cookies.
//!
//! Losing counts is accepted within bounds: a crash loses what was recorded since the
//! last flush (at most `STATS_FLUSH_SECS`); a failed flush puts its batch back for the
//! next attempt; and the batch never holds more than `cap` entries — past half of it a
//! flush starts early, and when full (the database has been unreachable for a while)
//! further new entries are dropped and counted in `quire_stats_views_dropped_total`
//! rather than letting memory grow without limit.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{NaiveDate, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

/// Entries (distinct (chapter, day) view counters plus distinct (chapter, day, reader)
/// keys) one process holds at most between flushes: about 10 MB at worst.
pub const DEFAULT_CAP: usize = 100_000;

/// Substrings (lower case) of the user agents of crawlers, link previewers and command
/// line clients. Small on purpose: it catches the well-behaved bots that say what they
/// are; the cookie rule (no cookie, no unique reader) covers the rest.
pub const CRAWLER_MARKERS: &[&str] =
    &["bot", "crawl", "spider", "slurp", "facebookexternalhit", "curl/", "wget/", "python-requests", "go-http-client", "libwww-perl"];

/// True when `user_agent` names a crawler or a scripted client (see `CRAWLER_MARKERS`).
pub fn is_crawler(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    CRAWLER_MARKERS.iter().any(|m| ua.contains(m))
}

/// Who read a chapter, as the page knows it.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    User(i64),
    /// The anonymous cookie's value as the browser sent it back (never stored: hashed).
    Anonymous(&'a str),
    /// No cookie came with the request: a view, not a reader.
    Unknown,
}

/// (story id, chapter number, UTC day)
pub type ChapterDay = (i64, i32, NaiveDate);

/// What waits for the next flush.
#[derive(Debug, Default)]
pub struct Batch {
    pub views: HashMap<ChapterDay, i64>,
    /// (story, chapter, day, reader): see `ViewCounter::reader_id` for the reader number.
    pub readers: HashSet<(i64, i32, NaiveDate, i64)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.views.len() + self.readers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty() && self.readers.is_empty()
    }

    fn merge(&mut self, other: Batch) {
        for (k, n) in other.views {
            *self.views.entry(k).or_default() += n;
        }
        self.readers.extend(other.readers);
    }
}

pub struct ViewCounter {
    pending: Mutex<Batch>,
    cap: usize,
    key: Vec<u8>,
    dropped: AtomicU64,
    flushed_views: AtomicU64,
    flush_soon: tokio::sync::Notify,
}

impl ViewCounter {
    /// `secret_key` keys the hash of anonymous cookies (a key of its own is derived from
    /// it, so the stored numbers say nothing about other uses of the secret).
    pub fn new(secret_key: &[u8], cap: usize) -> ViewCounter {
        ViewCounter {
            pending: Mutex::new(Batch::default()),
            cap: cap.max(2),
            key: hmac_bytes(secret_key, b"quire stats: anonymous reader key"),
            dropped: AtomicU64::new(0),
            flushed_views: AtomicU64::new(0),
            flush_soon: tokio::sync::Notify::new(),
        }
    }

    /// Counts one view of chapter `chapter` of story `story_id` today (UTC).
    pub fn record(&self, story_id: i64, chapter: i32, reader: Reader<'_>) {
        self.record_on(Utc::now().date_naive(), story_id, chapter, reader);
    }

    pub fn record_on(&self, day: NaiveDate, story_id: i64, chapter: i32, reader: Reader<'_>) {
        let reader = self.reader_id(reader);
        let mut batch = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let key = (story_id, chapter, day);
        let mut dropped = 0;
        let full = batch.len() >= self.cap;
        match batch.views.get_mut(&key) {
            Some(n) => *n += 1,
            None if !full => {
                batch.views.insert(key, 1);
            }
            None => dropped += 1,
        }
        if let Some(r) = reader {
            let entry = (story_id, chapter, day, r);
            if !batch.readers.contains(&entry) {
                if batch.len() < self.cap {
                    batch.readers.insert(entry);
                } else if dropped == 0 {
                    dropped += 1;
                }
            }
        }
        let half_full = batch.len() >= self.cap / 2;
        drop(batch);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if half_full {
            self.flush_soon.notify_one();
        }
    }

    /// The number stored for a reader: the user id (> 0), or a negative number from the
    /// first 8 bytes of HMAC-SHA256(key, cookie) — so the two kinds never collide, and
    /// two anonymous readers collide with odds of 1 in 2^63.
    fn reader_id(&self, reader: Reader<'_>) -> Option<i64> {
        match reader {
            Reader::User(id) => Some(id),
            Reader::Unknown => None,
            Reader::Anonymous(cookie) => {
                let mac = hmac_bytes(&self.key, cookie.as_bytes());
                let mut first = [0u8; 8];
                first.copy_from_slice(&mac[..8]);
                // In -2^63..=-1: `-(0..=MAX) - 1` cannot overflow.
                Some(-(i64::from_be_bytes(first) & i64::MAX) - 1)
            }
        }
    }

    /// Entries waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Views and readers dropped because the batch was full (a metric).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Views written by this process's flushes (a metric).
    pub fn flushed_views(&self) -> u64 {
        self.flushed_views.load(Ordering::Relaxed)
    }

    /// Writes everything recorded so far in one statement (none when nothing is
    /// pending). On failure the batch is put back for the next flush.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(0);
        }
        match super::db::flush(pool, &batch).await {
            Ok(()) => {
                self.flushed_views.fetch_add(batch.views.values().sum::<i64>().max(0) as u64, Ordering::Relaxed);
                Ok(batch.len())
            }
            Err(e) => {
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).merge(batch);
                Err(e)
            }
        }
    }

    /// Flushes every `every`, and early when the batch is half full, until the counter
    /// is dropped. The final flush at shutdown is `web::serve`'s (after the server has
    /// stopped, so no view comes in after it).
    pub fn spawn_flusher(self: &Arc<Self>, pool: PgPool, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let weak: Weak<ViewCounter> = Arc::downgrade(self);
        Some(rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate: nothing to flush yet
            loop {
                let Some(counter) = weak.upgrade() else { return };
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = counter.flush_soon.notified() => {}
                }
                if let Err(error) = counter.flush(&pool).await {
                    tracing::warn!(%error, pending = counter.pending(), "could not flush view counts; keeping them for the next try");
                    drop(counter);
                    // Not at once again: an early-flush wake-up would otherwise spin
                    // against a database that is down.
                    tokio::time::sleep(every).await;
                }
            }
        }))
    }
}

fn hmac_bytes(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    #[test]
    fn crawlers_are_recognised_and_browsers_are_not() {
        for ua in ["Googlebot/2.1 (+http://www.google.com/bot.html)", "curl/8.5.0", "Wget/1.21", "facebookexternalhit/1.1", "Mozilla/5.0 (compatible; Yahoo! Slurp)", "AhrefsCrawler"] {
            assert!(is_crawler(ua), "{ua}");
        }
        for ua in ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0 Safari/537.36", ""] {
            assert!(!is_crawler(ua), "{ua}");
        }
    }

    #[test]
    fn views_aggregate_and_readers_are_distinct() {
        let c = ViewCounter::new(b"k", 100);
        c.record_on(day(), 1, 1, Reader::User(7));
        c.record_on(day(), 1, 1, Reader::User(7));
        c.record_on(day(), 1, 1, Reader::Anonymous("cookie-a"));
        c.record_on(day(), 1, 1, Reader::Unknown);
        let b = c.pending.lock().unwrap();
        assert_eq!(b.views[&(1, 1, day())], 4);
        assert_eq!(b.readers.len(), 2);
        let anon: Vec<i64> = b.readers.iter().map(|r| r.3).filter(|r| *r < 0).collect();
        assert_eq!(anon.len(), 1, "the anonymous reader is a negative number, never the cookie");
    }

    #[test]
    fn the_same_cookie_hashes_the_same_and_depends_on_the_key() {
        let a = ViewCounter::new(b"key one", 10);
        let b = ViewCounter::new(b"key two", 10);
        let x = a.reader_id(Reader::Anonymous("c")).unwrap();
        assert_eq!(Some(x), a.reader_id(Reader::Anonymous("c")));
        assert_ne!(Some(x), a.reader_id(Reader::Anonymous("d")));
        assert_ne!(Some(x), b.reader_id(Reader::Anonymous("c")));
        assert!(x < 0);
    }

    #[test]
    fn a_full_batch_drops_new_entries_and_counts_them() {
        let c = ViewCounter::new(b"k", 4);
        for chapter in 1..=10 {
            c.record_on(day(), 1, chapter, Reader::Unknown);
        }
        assert_eq!(c.pending(), 4);
        assert_eq!(c.dropped(), 6);
        // Known entries still count when full.
        c.record_on(day(), 1, 1, Reader::Unknown);
        assert_eq!(c.pending.lock().unwrap().views[&(1, 1, day())], 2);
    }
}
