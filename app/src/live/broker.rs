//! The broker: one `LISTEN quire_live` connection per web process, fanning events out in
//! memory to the streams open here.
//!
//! A NOTIFY carries only an event's id. On a wake-up the broker reads every row it has
//! not seen in one query (`id > last_id`), so a burst of notifications costs one query:
//! the ones after the first name ids already read and cost nothing. Each row then goes
//! to the broadcast channel of its `channel` key, which exists only while some stream
//! here subscribes to it.
//!
//! Ids are handed out at INSERT but rows become visible at COMMIT, so a later id can be
//! read before an earlier one commits. The ids skipped that way are remembered as gaps
//! for a while and asked for again on every wake-up (the earlier transaction's own
//! NOTIFY is one), so an event is delivered once even when transactions commit out of
//! order. A gap that never fills was rolled back.
//!
//! When the LISTEN connection is lost the broker reconnects with backoff and then reads
//! everything after `last_id`: what committed while it was away is delivered late, not
//! lost. Nothing here panics; failures are logged and retried.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use sqlx::{
    PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

use super::{Channel, NOTIFY_CHANNEL, db, sse};
use crate::config::LiveLimits;

/// Events a subscriber may fall behind by before it is cut off (it reconnects and
/// resumes from the table instead of this process holding its backlog). The buffer is
/// one per channel holding shared events, so it is cheap; it must absorb a burst fanned
/// out in one batch (a like storm) without cutting off every reader of the story.
const BUFFER: usize = 256;
/// Rows read per query; a longer backlog takes several.
const BATCH: i64 = 500;
/// Remembered ids that were skipped while in flight, at most (beyond: given up).
const MAX_GAPS: usize = 10_000;
/// How long a skipped id may take to commit. Longer than any request deadline or job
/// transaction; after that it was rolled back.
const GAP_TTL: Duration = Duration::from_secs(120);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// One event as every subscriber gets it, encoded once.
#[derive(Debug)]
pub struct Event {
    pub id: i64,
    pub channel: String,
    pub event: String,
    /// The SSE frame (`id:`, `event:`, `data:` lines and the blank line).
    pub frame: Bytes,
}

impl From<db::EventRow> for Event {
    fn from(row: db::EventRow) -> Event {
        let frame = sse::event_frame(row.id, &row.event, &row.data);
        Event { id: row.id, channel: row.channel, event: row.event, frame }
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `LIVE_MAX_STREAMS` streams are open already.
    Full,
    /// The process is stopping.
    ShuttingDown,
}

/// This process's broker: cheap to clone (the state is shared).
#[derive(Clone)]
pub struct Broker(Arc<Shared>);

struct Shared {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>,
    slots: Arc<Semaphore>,
    max_streams: usize,
    heartbeat: Duration,
    shutdown: watch::Sender<bool>,
    /// The LISTEN connection's backend pid (0 while disconnected).
    listener_pid: AtomicU32,
    /// The broker's read position (`Cursor::last_id`), for pages to start their stream at.
    last_id: AtomicI64,
    delivered: AtomicU64,
    reconnects: AtomicU64,
    /// Called with (event, data) for every event on the `control` channel: process-wide
    /// signals rather than page updates (`live::publish_control`).
    control: Mutex<Vec<ControlHook>>,
}

type ControlHook = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct BrokerStats {
    pub open_streams: usize,
    pub max_streams: usize,
    pub listening: bool,
    pub delivered: u64,
    pub reconnects: u64,
}

impl Broker {
    /// A broker for `primary`'s database, its listener started on the current runtime.
    /// The LISTEN connection has a pool of its own (of one), so it never takes a slot
    /// from the request pool.
    pub fn start(primary: &PgPool, limits: LiveLimits) -> Broker {
        let broker = Broker::idle(limits);
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with((*primary.connect_options()).clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let shutdown = broker.0.shutdown.subscribe();
                rt.spawn(listen(Arc::downgrade(&broker.0), primary.clone(), listen_pool, shutdown));
            }
            Err(_) => tracing::error!("no async runtime: live updates are off in this process"),
        }
        broker
    }

    /// A broker with no listener (nothing is ever delivered): for tools without a server.
    pub fn idle(limits: LiveLimits) -> Broker {
        let (shutdown, _) = watch::channel(false);
        Broker(Arc::new(Shared {
            channels: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(limits.max_streams.min(Semaphore::MAX_PERMITS))),
            max_streams: limits.max_streams,
            heartbeat: limits.heartbeat,
            shutdown,
            listener_pid: AtomicU32::new(0),
            last_id: AtomicI64::new(0),
            delivered: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            control: Mutex::new(Vec::new()),
        }))
    }

    /// Runs `hook(event, data)` for each `control` event this process reads, from every
    /// process (its own included), a few milliseconds after the raising transaction
    /// commits. Sessions use it to drop a banned user's cached sessions everywhere.
    pub fn on_control(&self, hook: impl Fn(&str, &str) + Send + Sync + 'static) {
        self.0.control.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(hook));
    }

    pub fn heartbeat(&self) -> Duration {
        self.0.heartbeat
    }

    /// Subscribes to `channels` (one stream's worth), taking one of the process's stream
    /// slots until the subscription is dropped.
    pub fn subscribe(&self, channels: &[Channel]) -> Result<Subscription, Refused> {
        if *self.0.shutdown.borrow() {
            return Err(Refused::ShuttingDown);
        }
        let permit = self.0.slots.clone().try_acquire_owned().map_err(|_| Refused::Full)?;
        let mut map = self.0.channels.lock().unwrap_or_else(|p| p.into_inner());
        let receivers = channels
            .iter()
            .map(|c| {
                let key = c.key();
                let rx = map.entry(key.clone()).or_insert_with(|| broadcast::channel(BUFFER).0).subscribe();
                Receiving { key, rx, held: None }
            })
            .collect();
        drop(map);
        Ok(Subscription { receivers, broker: self.0.clone(), shutdown: self.0.shutdown.subscribe(), _slot: permit })
    }

    /// Ends every open stream and refuses new ones; stops the listener. Called when
    /// graceful shutdown begins, so the server does not wait for pages left open.
    pub fn shut_down(&self) {
        self.0.shutdown.send_replace(true);
    }

    /// The id of the last event this process has read (0 before the first read). A
    /// page renders it into its stream's URL (`?after=`), so what commits between the
    /// page's queries and the stream's start is replayed instead of missed.
    pub fn last_id(&self) -> i64 {
        self.0.last_id.load(Ordering::Relaxed)
    }

    /// The LISTEN connection's backend pid, None while disconnected.
    pub fn listener_pid(&self) -> Option<u32> {
        Some(self.0.listener_pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            open_streams: self.0.max_streams.saturating_sub(self.0.slots.available_permits()),
            max_streams: self.0.max_streams,
            listening: self.listener_pid().is_some(),
            delivered: self.0.delivered.load(Ordering::Relaxed),
            reconnects: self.0.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Channels with a subscriber here (tests check that they are removed).
    pub fn channel_count(&self) -> usize {
        self.0.channels.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Shared {
    fn control(&self, event: &str, data: &str) {
        for hook in self.control.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            hook(event, data);
        }
    }

    fn fan_out(&self, event: Event) {
        let map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&event.channel) {
            // An error only means every receiver left meanwhile.
            let _ = tx.send(Arc::new(event));
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a subscription yields next.
#[derive(Debug)]
pub enum Next {
    Event(Arc<Event>),
    /// The stream fell more than the buffer behind: end it (the browser resumes).
    Lagged,
    /// The process is shutting down: end it.
    Closed,
}

/// One stream's subscription to its channels (a story's and/or a user's).
pub struct Subscription {
    receivers: Vec<Receiving>,
    broker: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

struct Receiving {
    key: String,
    rx: broadcast::Receiver<Arc<Event>>,
    /// Received but not yet handed out: events of several channels go out in id order.
    held: Option<Arc<Event>>,
}

impl Subscription {
    /// The channel keys subscribed to (for the replay query).
    pub fn keys(&self) -> Vec<String> {
        self.receivers.iter().map(|r| r.key.clone()).collect()
    }

    /// The next event on any of the channels; of those waiting, the lowest id, so the
    /// browser's Last-Event-ID only moves forward. Cancel-safe.
    pub async fn next(&mut self) -> Next {
        loop {
            if *self.shutdown.borrow() {
                return Next::Closed;
            }
            for r in &mut self.receivers {
                if r.held.is_none() {
                    match r.rx.try_recv() {
                        Ok(e) => r.held = Some(e),
                        Err(broadcast::error::TryRecvError::Empty) => {}
                        Err(broadcast::error::TryRecvError::Lagged(_)) => return Next::Lagged,
                        // The sender goes only with its last receiver: this is shutdown.
                        Err(broadcast::error::TryRecvError::Closed) => return Next::Closed,
                    }
                }
            }
            let lowest = self
                .receivers
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.held.as_ref().map(|e| (e.id, i)))
                .min();
            if let Some((_, i)) = lowest
                && let Some(e) = self.receivers[i].held.take()
            {
                return Next::Event(e);
            }
            // Nothing waiting: sleep until something arrives (or shutdown).
            let shutdown = self.shutdown.wait_for(|stop| *stop);
            let any = async {
                match self.receivers.as_mut_slice() {
                    [] => std::future::pending().await,
                    [a] => (0, a.rx.recv().await),
                    [a, b] => tokio::select! { r = a.rx.recv() => (0, r), r = b.rx.recv() => (1, r) },
                    many => {
                        let waits = many.iter_mut().map(|r| Box::pin(r.rx.recv()));
                        let (r, i, _) = futures::future::select_all(waits).await;
                        (i, r)
                    }
                }
            };
            let (i, received) = tokio::select! {
                _ = shutdown => return Next::Closed,
                got = any => got,
            };
            match received {
                Ok(e) => self.receivers[i].held = Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => return Next::Lagged,
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Receivers first, so the counts below no longer include ours.
        let keys: Vec<String> = self.receivers.drain(..).map(|r| r.key).collect();
        let mut map = self.broker.channels.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if map.get(&key).is_some_and(|tx| tx.receiver_count() == 0) {
                map.remove(&key);
            }
        }
    }
}

/// Where the broker has read up to.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    pub last_id: i64,
    /// Ids below `last_id` not seen yet (their transactions were in flight), with when
    /// they were first missed.
    pub gaps: BTreeMap<i64, Instant>,
}

impl Cursor {
    /// Takes note of `rows` (oldest first, as `db::new_since` returns them) and returns
    /// those not delivered before.
    pub fn advance(&mut self, rows: Vec<db::EventRow>, now: Instant) -> Vec<db::EventRow> {
        let mut fresh = Vec::with_capacity(rows.len());
        for row in rows {
            if row.id > self.last_id {
                for missing in (self.last_id + 1)..row.id {
                    if self.gaps.len() >= MAX_GAPS {
                        break;
                    }
                    self.gaps.insert(missing, now);
                }
                self.last_id = row.id;
                fresh.push(row);
            } else if self.gaps.remove(&row.id).is_some() {
                fresh.push(row);
            }
        }
        self.gaps.retain(|_, since| now.duration_since(*since) < GAP_TTL);
        fresh
    }

    /// Whether a notification for `id` can bring anything new.
    pub fn wants(&self, id: Option<i64>) -> bool {
        match id {
            Some(id) => id > self.last_id || self.gaps.contains_key(&id),
            None => true,
        }
    }

    fn gap_ids(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }
}

/// Reads and fans out everything new. Err: the database failed (retry after reconnecting).
async fn catch_up(shared: &Shared, pool: &PgPool, cursor: &mut Cursor) -> Result<(), sqlx::Error> {
    loop {
        let rows = db::new_since(pool, cursor.last_id, &cursor.gap_ids(), BATCH).await?;
        let full = rows.len() as i64 == BATCH;
        for row in cursor.advance(rows, Instant::now()) {
            if row.channel == super::CONTROL_CHANNEL {
                shared.control(&row.event, &row.data);
                continue;
            }
            shared.fan_out(Event::from(row));
        }
        shared.last_id.store(cursor.last_id, Ordering::Relaxed);
        if !full {
            return Ok(());
        }
    }
}

/// The listener task: connect, LISTEN, catch up, then read notifications until the
/// connection fails (reconnect) or the broker shuts down or is dropped (return).
async fn listen(shared: Weak<Shared>, pool: PgPool, listen_pool: PgPool, mut shutdown: watch::Receiver<bool>) {
    let mut cursor: Option<Cursor> = None;
    let mut backoff = BACKOFF_MIN;
    let stopped = |rx: &watch::Receiver<bool>| *rx.borrow();
    while !stopped(&shutdown) {
        let connected = tokio::select! {
            _ = shutdown.changed() => break,
            c = connect(&listen_pool) => c,
        };
        let (mut listener, pid) = match connected {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "live: cannot LISTEN; retrying");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let Some(state) = shared.upgrade() else { break };
        // Listening already, so nothing committed from here on is missed; read what
        // committed before (all of it on a reconnect, none on the first start: no stream
        // is open before the server accepts).
        let caught_up = match cursor.as_mut() {
            Some(c) => catch_up(&state, &pool, c).await,
            None => db::latest_id(&pool).await.map(|last_id| {
                state.last_id.store(last_id, Ordering::Relaxed);
                cursor = Some(Cursor { last_id, ..Cursor::default() });
            }),
        };
        drop(state);
        if let Err(error) = caught_up {
            tracing::warn!(%error, "live: catching up failed; reconnecting");
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        backoff = BACKOFF_MIN;
        if let Some(state) = shared.upgrade() {
            state.listener_pid.store(pid, Ordering::Relaxed);
        }
        tracing::info!(pid, "live: listening");
        loop {
            let notification = tokio::select! {
                _ = shutdown.changed() => break,
                n = listener.try_recv() => n,
            };
            let id = match notification {
                Ok(Some(n)) => n.payload().parse::<i64>().ok(),
                Ok(None) => {
                    tracing::warn!("live: LISTEN connection lost; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "live: LISTEN connection failed; reconnecting");
                    break;
                }
            };
            let Some(state) = shared.upgrade() else { return };
            let Some(c) = cursor.as_mut() else { break };
            if !c.wants(id) {
                continue;
            }
            if let Err(error) = catch_up(&state, &pool, c).await {
                tracing::warn!(%error, "live: reading new events failed; reconnecting");
                break;
            }
        }
        if let Some(state) = shared.upgrade() {
            state.listener_pid.store(0, Ordering::Relaxed);
            if !stopped(&shutdown) {
                state.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(listener);
    }
    listen_pool.close().await;
}

async fn connect(pool: &PgPool) -> Result<(PgListener, u32), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnecting is ours (with a catch-up after it), not sqlx's silent one.
    listener.eager_reconnect(false);
    listener.listen(NOTIFY_CHANNEL).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut listener).await?;
    Ok((listener, u32::try_from(pid).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> db::EventRow {
        db::EventRow { id, channel: "story:1".into(), event: "comment".into(), data: format!("<li>{id}</li>") }
    }

    fn ids(rows: &[db::EventRow]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn out_of_order_commits_are_delivered_once() {
        let now = Instant::now();
        let mut c = Cursor { last_id: 10, ..Cursor::default() };
        // 11 and 13 committed, 12 still in flight.
        assert_eq!(ids(&c.advance(vec![row(11), row(13)], now)), [11, 13]);
        assert_eq!(c.last_id, 13);
        assert!(c.wants(Some(12)) && !c.wants(Some(13)) && !c.wants(Some(11)) && c.wants(Some(14)));
        // 12 commits: delivered, and only once.
        assert_eq!(ids(&c.advance(vec![row(12), row(14)], now)), [12, 14]);
        assert_eq!(ids(&c.advance(vec![row(12), row(14)], now)), Vec::<i64>::new());
        assert!(c.gaps.is_empty());
    }

    #[test]
    fn gaps_that_never_fill_are_forgotten() {
        let start = Instant::now();
        let mut c = Cursor { last_id: 0, ..Cursor::default() };
        c.advance(vec![row(3)], start);
        assert_eq!(c.gaps.keys().copied().collect::<Vec<_>>(), [1, 2]);
        c.advance(Vec::new(), start + GAP_TTL);
        assert!(c.gaps.is_empty(), "rolled-back ids are not asked for forever");
        // A huge jump remembers a bounded number of gaps.
        c.advance(vec![row(3 + MAX_GAPS as i64 * 3)], start);
        assert_eq!(c.gaps.len(), MAX_GAPS);
    }

    fn limits(max_streams: usize) -> LiveLimits {
        LiveLimits { max_streams, heartbeat: Duration::from_secs(15) }
    }

    #[tokio::test]
    async fn fan_out_reaches_only_the_channel_and_channels_go_with_their_last_subscriber() {
        let broker = Broker::idle(limits(3));
        let mut story = broker.subscribe(&[Channel::Story(1)]).unwrap();
        let mut both = broker.subscribe(&[Channel::Story(1), Channel::User(9)]).unwrap();
        let mut other = broker.subscribe(&[Channel::User(8)]).unwrap();
        assert_eq!(broker.subscribe(&[Channel::Story(1)]).err(), Some(Refused::Full));
        assert_eq!(broker.stats().open_streams, 3);
        broker.0.fan_out(Event::from(db::EventRow { channel: "user:9".into(), ..row(5) }));
        broker.0.fan_out(Event::from(row(6)));
        let Next::Event(e) = both.next().await else { panic!("event") };
        assert_eq!(e.id, 5);
        let Next::Event(e) = both.next().await else { panic!("event") };
        assert_eq!(e.id, 6);
        let Next::Event(e) = story.next().await else { panic!("event") };
        assert_eq!(e.id, 6);
        let nothing = tokio::time::timeout(Duration::from_millis(50), other.next()).await;
        assert!(nothing.is_err(), "user:8 got another channel's event");
        assert_eq!(broker.channel_count(), 3);
        drop(story);
        assert_eq!(broker.channel_count(), 3, "story:1 still has a subscriber");
        drop(both);
        assert_eq!(broker.channel_count(), 1);
        drop(other);
        assert_eq!(broker.channel_count(), 0);
        assert_eq!(broker.stats().open_streams, 0);
    }

    #[test]
    fn control_events_reach_the_hooks_not_the_streams() {
        let broker = Broker::idle(limits(3));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        broker.on_control(move |event, data| s.lock().unwrap().push(format!("{event}={data}")));
        broker.0.control("sessions_changed", "42");
        assert_eq!(*seen.lock().unwrap(), ["sessions_changed=42"]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_cut_off_and_shutdown_ends_all() {
        let broker = Broker::idle(limits(10));
        let mut slow = broker.subscribe(&[Channel::Story(1)]).unwrap();
        for id in 0..(BUFFER as i64 + 1) {
            broker.0.fan_out(Event::from(row(id + 1)));
        }
        assert!(matches!(slow.next().await, Next::Lagged));
        let mut open = broker.subscribe(&[Channel::Story(2)]).unwrap();
        broker.shut_down();
        assert!(matches!(open.next().await, Next::Closed));
        assert_eq!(broker.subscribe(&[Channel::Story(2)]).err(), Some(Refused::ShuttingDown));
    }
}
