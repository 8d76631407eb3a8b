//! The accept loop: poem's endpoint served by hyper with the limits poem's `Server` cannot
//! set (`config::HttpLimits`).
//!
//! - **Header-read timeout.** poem builds hyper's connection without a timer, so hyper's
//!   `header_read_timeout` never fires and a client sending one header byte per second
//!   (slowloris) holds its connection forever. Here hyper gets a timer: the headers must
//!   be complete within `header_read_timeout`. hyper starts that timer whenever it waits
//!   for a request, so it also closes an idle HTTP/1.1 keep-alive connection.
//! - **Idle timeout.** A connection on which no byte moves either way for `idle_timeout`
//!   is dropped (an idle HTTP/2 connection, a client that stopped reading its response).
//! - **Connection cap.** At most `max_connections` connections at once: the loop takes a
//!   permit before it accepts, so further connections wait in the kernel's accept backlog
//!   (and are served as soon as one closes) instead of costing memory and tasks here.
//! - **Graceful shutdown.** On the signal: stop accepting, let every connection finish its
//!   request in flight (up to the grace period), then return.
//!
//! The per-request deadline (the 503 page) is a middleware: `web::timeouts`.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use poem::{
    Addr, Endpoint, Response,
    endpoint::BoxEndpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};

use crate::config::HttpLimits;

/// Connections open now, accepted since start, and the cap of the last `run` (for
/// `/metrics`). Process-wide: one server per process in production.
static OPEN: AtomicU64 = AtomicU64::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static MAX: AtomicU64 = AtomicU64::new(0);

/// (open, accepted, max) connections, for `/metrics`.
pub fn connections() -> (u64, u64, u64) {
    (OPEN.load(Ordering::Relaxed), ACCEPTED.load(Ordering::Relaxed), MAX.load(Ordering::Relaxed))
}

/// Counts a connection open for as long as it lives (dropped however its task ends).
struct OpenConnection;

impl OpenConnection {
    fn new() -> OpenConnection {
        OPEN.fetch_add(1, Ordering::Relaxed);
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `ep` on `listener` until `signal` resolves, then shuts down gracefully, waiting
/// at most `grace` for requests in flight.
pub async fn run(
    listener: TcpListener,
    ep: BoxEndpoint<'static, Response>,
    limits: HttpLimits,
    signal: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let ep = Arc::new(ep);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    MAX.store(max as u64, Ordering::Relaxed);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(signal);
    loop {
        // A permit first: at the cap, connections are left in the accept backlog.
        let permit = tokio::select! {
            _ = &mut signal => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (socket, peer) = tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Typically EMFILE: wait a little rather than spin on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ep = ep.clone();
        let local = local.clone();
        let stop = stop_rx.clone();
        let open = OpenConnection::new();
        tokio::spawn(async move {
            let _open = open;
            serve_connection(socket, local, RemoteAddr(Addr::SocketAddr(peer)), ep, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it closes: all permits back means all done.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all)).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "connections still open after the grace period: closing them");
    }
    Ok(())
}

async fn serve_connection(
    socket: TcpStream,
    local: LocalAddr,
    remote: RemoteAddr,
    ep: Arc<BoxEndpoint<'static, Response>>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked { inner: socket, activity: activity.clone() });
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let ep = ep.clone();
        let req = poem::Request::from((req, local.clone(), remote.clone(), Scheme::HTTP));
        async move { Ok::<_, Infallible>(hyper::Response::from(ep.get_response(req).await)) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        // As poem's defaults: bounds on what one HTTP/2 client can make us hold.
        .max_pending_accept_reset_streams(20)
        .max_header_list_size(16 * 1024);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);

    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let mut idle_check = tokio::time::Instant::now() + limits.idle_timeout;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = stop.changed(), if !stopping => {
                // Finish the request in flight (or close at once when idle).
                stopping = true;
                if changed.is_err() || *stop.borrow() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(idle_check) => {
                let quiet = activity.since_last();
                if quiet >= limits.idle_timeout {
                    tracing::debug!(quiet_secs = quiet.as_secs(), "closing an idle connection");
                    return; // dropping the connection closes the socket
                }
                idle_check = tokio::time::Instant::now() + (limits.idle_timeout - quiet);
            }
        }
    }
}

/// When bytes last moved on a connection.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn since_last(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The socket, noting each read or write that moved bytes (attempts that wait do not
/// count: a client that stops reading is idle).
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
