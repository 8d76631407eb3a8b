//! Live updates end to end on real sockets: web processes (an `AppState` each, with its
//! own broker and LISTEN connection) served by `web::serve_on`, streams read by a raw
//! HTTP/1.1 client, events raised through `live::publish` in real transactions.

mod common;

use std::time::{Duration, Instant};

use app::{
    config::Config,
    db::Db,
    live::{self, Channel},
    web::AppState,
};
use common::TestApp;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};

const PW: &str = "correct horse battery";

/// A running server: the port, and the sender that starts its graceful shutdown.
struct Served {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve(state: AppState) -> Served {
    // The broker must be listening before the test raises anything.
    wait_until("the broker listens", Duration::from_secs(10), || state.live.listener_pid().is_some()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(app::web::serve_on(listener, state, async move {
        let _ = rx.await;
    }));
    Served { port, stop: Some(tx), done }
}

async fn wait_until(what: &str, max: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < max, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second web process on the same database: its own pool, broker and listener.
fn second_process(app: &TestApp) -> AppState {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_lazy(&app.db.url).expect("pool");
    AppState::new(Config::for_tests(&app.db.url, app.mail_dir.clone()), Db::from_pool(pool)).expect("state")
}

/// One SSE frame as the browser would parse it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    comment: bool,
    retry: bool,
}

impl Frame {
    fn parse(text: &str) -> Frame {
        let mut f = Frame::default();
        let mut data: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with(':') {
                f.comment = true;
                continue;
            }
            let (field, value) = line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
            match field {
                "id" => f.id = Some(value.into()),
                "event" => f.event = Some(value.into()),
                "retry" => f.retry = true,
                "data" => data.push(value),
                _ => {}
            }
        }
        if !data.is_empty() {
            f.data = Some(data.join("\n"));
        }
        f
    }

    fn id(&self) -> i64 {
        self.id.as_deref().and_then(|i| i.parse().ok()).expect("an event id")
    }

    fn is_event(&self) -> bool {
        self.event.is_some() || self.data.is_some()
    }
}

/// A raw HTTP/1.1 event-stream client (chunked transfer decoding included).
struct Stream {
    sock: TcpStream,
    head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
}

impl Stream {
    async fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).await.expect("write");
        let mut s = Stream { sock, head: String::new(), raw: Vec::new(), body: Vec::new(), ended: false };
        let t0 = Instant::now();
        loop {
            if let Some(end) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                s.head = String::from_utf8_lossy(&s.raw[..end]).into_owned();
                s.raw.drain(..end + 4);
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no response head");
            if !s.read_more(Duration::from_secs(10)).await {
                s.head = String::from_utf8_lossy(&s.raw).into_owned();
                s.raw.clear();
                break;
            }
        }
        s
    }

    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// Reads what the socket has (up to `max`); false on EOF, error or timeout.
    async fn read_more(&mut self, max: Duration) -> bool {
        let mut buf = [0u8; 8192];
        match tokio::time::timeout(max, self.sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.ended = true;
                false
            }
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves complete chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else { return };
            let size = std::str::from_utf8(&self.raw[..line_end]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
            let Some(size) = size else { panic!("bad chunk header: {:?}", String::from_utf8_lossy(&self.raw)) };
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next frame (comments and `retry:` included), or None after `max` or at the end.
    async fn next_frame(&mut self, max: Duration) -> Option<Frame> {
        let t0 = Instant::now();
        loop {
            self.dechunk();
            if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8_lossy(&self.body[..end]).into_owned();
                self.body.drain(..end + 2);
                return Some(Frame::parse(&text));
            }
            if self.ended {
                return None;
            }
            let left = max.checked_sub(t0.elapsed())?;
            if !self.read_more(left).await && !self.ended {
                return None;
            }
        }
    }

    /// The next real event (skipping comments and `retry:`), or None after `max`.
    async fn next_event(&mut self, max: Duration) -> Option<Frame> {
        let t0 = Instant::now();
        loop {
            let left = max.checked_sub(t0.elapsed())?;
            let f = self.next_frame(left).await?;
            if f.is_event() {
                return Some(f);
            }
        }
    }

    /// Whether the server ends the stream within `max`.
    async fn ends_within(&mut self, max: Duration) -> bool {
        let t0 = Instant::now();
        while !self.ended {
            let Some(left) = max.checked_sub(t0.elapsed()) else { return false };
            self.dechunk();
            if self.ended {
                break;
            }
            if !self.read_more(left).await && !self.ended {
                return false;
            }
        }
        true
    }
}

async fn user(app: &TestApp, name: &str) -> (TestApp, i64, String) {
    let b = app.new_browser();
    b.signup(name, &format!("{name}@example.com"), PW).await.assert_status(303);
    let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(name).fetch_one(&app.db.pool).await.unwrap();
    let cookie = format!("quire_session={}", b.cookie("quire_session").expect("session cookie"));
    (b, id, cookie)
}

async fn story(app: &TestApp, author: i64, status: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO stories (author_id, title, status, published_at)
         VALUES ($1, 'Live story', $2, CASE WHEN $2 = 'published' THEN now() END) RETURNING id",
    )
    .bind(author)
    .bind(status)
    .fetch_one(&app.db.pool)
    .await
    .expect("story")
}

/// Raises an event in its own committed transaction.
async fn publish(state: &AppState, channel: Channel, event: &str, data: &str) -> i64 {
    let mut tx = state.db.primary().begin().await.expect("begin");
    let id = live::publish(&mut tx, channel, event, data).await.expect("publish");
    tx.commit().await.expect("commit");
    id
}

const SOON: Duration = Duration::from_secs(1);
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn an_event_committed_on_one_process_reaches_a_stream_on_another_within_a_second() {
    let a = TestApp::new().await;
    let (_w, uid, _) = user(&a, "amy").await;
    let id = story(&a, uid, "published").await;
    let b_state = second_process(&a);
    let served_a = serve(a.state.clone()).await;
    let served_b = serve(b_state.clone()).await;
    assert_ne!(a.state.live.listener_pid(), b_state.live.listener_pid(), "a LISTEN connection each");

    let mut on_b = Stream::open(served_b.port, &format!("/s/{id}/live"), &[("Accept-Encoding", "gzip, br")]).await;
    assert_eq!(on_b.status(), 200, "{}", on_b.head);
    assert_eq!(on_b.header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(on_b.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(on_b.header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(on_b.header("content-encoding"), None, "the compression middleware leaves streams alone");
    let first = on_b.next_frame(SOON).await.expect("the opening frame");
    assert!(first.retry, "{first:?}");

    // Raised by process A (its pool, its transaction), heard on process B.
    let html = "<li id=\"comment-1\">\n  <p>Lovely.</p>\n</li>";
    let t0 = Instant::now();
    let eid = publish(&a.state, Channel::Story(id), "comment", html).await;
    let got = on_b.next_event(SOON).await.expect("B's stream delivers A's event within 1 s");
    assert!(t0.elapsed() < SOON);
    assert_eq!(got.id(), eid);
    assert_eq!(got.event.as_deref(), Some("comment"));
    assert_eq!(got.data.as_deref(), Some(html), "multi-line data arrives whole");
    // Another story's events do not.
    let other = story(&a, uid, "published").await;
    publish(&a.state, Channel::Story(other), "likes", "9").await;
    assert_eq!(on_b.next_event(QUIET).await, None);

    // /metrics counts the open stream.
    let metrics = Stream::open(served_b.port, "/metrics", &[("Connection", "close")]).await;
    let mut m = metrics;
    while m.read_more(Duration::from_secs(2)).await {}
    m.dechunk();
    let text = String::from_utf8_lossy(&m.body).into_owned() + &String::from_utf8_lossy(&m.raw);
    assert!(text.contains("quire_live_streams_open 1"), "{text}");
    assert!(text.contains("quire_live_listening 1"), "{text}");
    drop((served_a, served_b));
}

#[tokio::test]
async fn rolled_back_events_never_arrive_and_out_of_order_commits_arrive_once() {
    let app = TestApp::new().await;
    let (_w, uid, _) = user(&app, "amy").await;
    let id = story(&app, uid, "published").await;
    let served = serve(app.state.clone()).await;
    let mut s = Stream::open(served.port, &format!("/s/{id}/live"), &[]).await;
    assert_eq!(s.status(), 200);

    let mut tx = app.state.db.primary().begin().await.unwrap();
    live::publish(&mut tx, Channel::Story(id), "comment", "<li>rolled back</li>").await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(s.next_event(QUIET).await, None, "nothing for a rolled-back transaction");

    // The earlier id commits after the later one: both arrive, each once.
    let mut early = app.state.db.primary().begin().await.unwrap();
    let e1 = live::publish(&mut early, Channel::Story(id), "comment", "<li>early</li>").await.unwrap();
    let e2 = publish(&app.state, Channel::Story(id), "comment", "<li>late</li>").await;
    assert!(e1 < e2);
    assert_eq!(s.next_event(SOON).await.expect("the later commit").id(), e2);
    early.commit().await.unwrap();
    assert_eq!(s.next_event(SOON).await.expect("the earlier id, committed last").id(), e1);
    let e3 = publish(&app.state, Channel::Story(id), "likes", "2").await;
    assert_eq!(s.next_event(SOON).await.expect("the next").id(), e3);
    assert_eq!(s.next_event(QUIET).await, None, "no duplicates");
}

#[tokio::test]
async fn last_event_id_replays_exactly_the_missed_events_then_continues_live() {
    let app = TestApp::new().await;
    let (_w, uid, cookie) = user(&app, "amy").await;
    let id = story(&app, uid, "published").await;
    let other = story(&app, uid, "published").await;
    let served = serve(app.state.clone()).await;
    let path = format!("/s/{id}/live");

    let seen = publish(&app.state, Channel::Story(id), "comment", "<li>1</li>").await;
    let m1 = publish(&app.state, Channel::Story(id), "comment", "<li>2</li>").await;
    publish(&app.state, Channel::Story(other), "comment", "<li>elsewhere</li>").await;
    let m2 = publish(&app.state, Channel::User(uid), "unread", "").await;
    let m3 = publish(&app.state, Channel::Story(id), "likes", "3").await;

    let mut s = Stream::open(served.port, &path, &[("Cookie", &cookie), ("Last-Event-ID", &seen.to_string())]).await;
    assert_eq!(s.status(), 200);
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let f = s.next_event(SOON).await.expect("a replayed event");
        replayed.push((f.id(), f.event.clone().unwrap_or_default(), f.data.clone().unwrap_or_default()));
    }
    assert_eq!(
        replayed,
        vec![(m1, "comment".into(), "<li>2</li>".into()), (m2, "unread".into(), String::new()), (m3, "likes".into(), "3".into())]
    );
    let live = publish(&app.state, Channel::Story(id), "likes", "4").await;
    assert_eq!(s.next_event(SOON).await.expect("then live").id(), live);
    assert_eq!(s.next_event(QUIET).await, None, "nothing twice");

    // Anonymous: the story's channel only. And ?after= (a new EventSource) works too.
    let mut anon = Stream::open(served.port, &format!("{path}?after={seen}"), &[]).await;
    assert_eq!(anon.next_event(SOON).await.unwrap().id(), m1);
    assert_eq!(anon.next_event(SOON).await.unwrap().id(), m3);
    assert_eq!(anon.next_event(SOON).await.unwrap().id(), live);
    assert_eq!(anon.next_event(QUIET).await, None);

    // More missed than the replay bound: told to reload, nothing replayed.
    sqlx::query("INSERT INTO live_events (channel, event, data) SELECT $1, 'likes', i::text FROM generate_series(1, 201) i")
        .bind(format!("story:{id}"))
        .execute(&app.db.pool)
        .await
        .unwrap();
    let mut far = Stream::open(served.port, &path, &[("Last-Event-ID", &live.to_string())]).await;
    let f = far.next_event(SOON).await.expect("reload");
    assert_eq!(f.event.as_deref(), Some("reload"));
    assert_eq!(f.id, None, "the resume point stays");
    assert_eq!(far.next_event(QUIET).await, None);

    // A resume point older than what is kept (purged): reload too.
    sqlx::query("DELETE FROM live_events WHERE id <= $1").bind(m3).execute(&app.db.pool).await.unwrap();
    let mut stale = Stream::open(served.port, &path, &[("Last-Event-ID", &seen.to_string())]).await;
    assert_eq!(stale.next_event(SOON).await.expect("reload").event.as_deref(), Some("reload"));
    // Garbage is no resume point.
    let mut junk = Stream::open(served.port, &path, &[("Last-Event-ID", "abc")]).await;
    assert_eq!(junk.status(), 200);
    assert_eq!(junk.next_event(QUIET).await, None);
}

#[tokio::test]
async fn a_draft_stream_is_404_for_others_and_200_for_its_author() {
    let app = TestApp::new().await;
    let (_w, uid, author) = user(&app, "amy").await;
    let (_o, _, other) = user(&app, "bob").await;
    let draft = story(&app, uid, "draft").await;
    let served = serve(app.state.clone()).await;
    let path = format!("/s/{draft}/live");
    assert_eq!(Stream::open(served.port, &path, &[("Connection", "close")]).await.status(), 404);
    assert_eq!(Stream::open(served.port, &path, &[("Cookie", &other), ("Connection", "close")]).await.status(), 404);
    assert_eq!(Stream::open(served.port, "/s/999999/live", &[("Connection", "close")]).await.status(), 404);
    let mut own = Stream::open(served.port, &path, &[("Cookie", &author)]).await;
    assert_eq!(own.status(), 200);
    let e = publish(&app.state, Channel::Story(draft), "comment", "<li>x</li>").await;
    assert_eq!(own.next_event(SOON).await.expect("the author's stream works").id(), e);
}

#[tokio::test]
async fn the_stream_bound_answers_503_with_retry_after() {
    let app = TestApp::with_config(|c| c.live.max_streams = 2).await;
    let (_w, uid, _) = user(&app, "amy").await;
    let id = story(&app, uid, "published").await;
    let served = serve(app.state.clone()).await;
    let path = format!("/s/{id}/live");
    let one = Stream::open(served.port, &path, &[]).await;
    let two = Stream::open(served.port, &path, &[]).await;
    assert_eq!((one.status(), two.status()), (200, 200));
    let three = Stream::open(served.port, &path, &[("Connection", "close")]).await;
    assert_eq!(three.status(), 503, "{}", three.head);
    assert!(three.header("retry-after").is_some(), "{}", three.head);
    // A page without a stream still loads at the bound.
    let page = Stream::open(served.port, &format!("/s/{id}"), &[("Connection", "close")]).await;
    assert_eq!(page.status(), 200);
    // A closed stream frees its slot.
    drop(one);
    wait_until("the slot is free", Duration::from_secs(5), || app.state.live.stats().open_streams < 2).await;
    assert_eq!(Stream::open(served.port, &path, &[]).await.status(), 200);
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_stream_open_past_the_idle_and_header_timeouts() {
    let app = TestApp::with_config(|c| {
        c.live.heartbeat = Duration::from_millis(300);
        c.http.idle_timeout = Duration::from_secs(1);
        c.http.header_read_timeout = Duration::from_secs(1);
        c.http.request_timeout = Duration::from_secs(1);
    })
    .await;
    let (_w, _uid, cookie) = user(&app, "amy").await;
    let served = serve(app.state.clone()).await;
    let mut s = Stream::open(served.port, "/live", &[("Cookie", &cookie)]).await;
    assert_eq!(s.status(), 200, "{}", s.head);
    let t0 = Instant::now();
    let mut beats = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        let f = s.next_frame(Duration::from_secs(1)).await.expect("a frame every heartbeat; the stream stays open");
        if f.comment {
            beats += 1;
        }
    }
    assert!(beats >= 5, "{beats} heartbeats in 2.5 s at 300 ms");
    // Still alive after outliving every timeout: an event gets through.
    let uid: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'amy'").fetch_one(&app.db.pool).await.unwrap();
    let e = publish(&app.state, Channel::User(uid), "unread", "").await;
    assert_eq!(s.next_event(SOON).await.expect("event").id(), e);
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams_at_once() {
    let app = TestApp::new().await;
    let (_w, uid, cookie) = user(&app, "amy").await;
    let id = story(&app, uid, "published").await;
    let mut served = serve(app.state.clone()).await;
    let mut story_stream = Stream::open(served.port, &format!("/s/{id}/live"), &[]).await;
    let mut nav_stream = Stream::open(served.port, "/live", &[("Cookie", &cookie)]).await;
    assert_eq!((story_stream.status(), nav_stream.status()), (200, 200));
    assert!(story_stream.next_frame(SOON).await.is_some());
    let t0 = Instant::now();
    drop(served.stop.take());
    tokio::time::timeout(Duration::from_secs(3), &mut served.done)
        .await
        .expect("the server stops in well under the 25 s grace period")
        .expect("join")
        .expect("serve_on");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(story_stream.ends_within(SOON).await, "the stream was ended");
    assert!(nav_stream.ends_within(SOON).await, "the stream was ended");
    assert_eq!(app.state.live.stats().open_streams, 0);
}

#[tokio::test]
async fn the_listener_reconnects_after_its_backend_is_killed_and_delivers_what_committed_meanwhile() {
    let app = TestApp::new().await;
    let (_w, uid, _) = user(&app, "amy").await;
    let id = story(&app, uid, "published").await;
    let served = serve(app.state.clone()).await;
    let mut s = Stream::open(served.port, &format!("/s/{id}/live"), &[]).await;
    let before = publish(&app.state, Channel::Story(id), "likes", "1").await;
    assert_eq!(s.next_event(SOON).await.unwrap().id(), before);

    // A row whose NOTIFY never arrives (as if sent while the listener was away): only
    // the catch-up after reconnecting can deliver it.
    let silent: i64 = sqlx::query_scalar("INSERT INTO live_events (channel, event, data) VALUES ($1, 'likes', 'silent') RETURNING id")
        .bind(format!("story:{id}"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(s.next_event(QUIET).await, None, "not delivered without a notification");
    let pid = app.state.live.listener_pid().expect("listening");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid as i32).fetch_one(&app.db.pool).await.unwrap();
    assert!(killed);
    // Committed while the listener is (probably) down: nobody hears its NOTIFY.
    let meanwhile = publish(&app.state, Channel::Story(id), "likes", "2").await;
    let got = s.next_event(Duration::from_secs(5)).await.expect("delivered by the catch-up after reconnecting");
    assert_eq!(got.id(), silent);
    let got = s.next_event(Duration::from_secs(5)).await.expect("delivered after the reconnect");
    assert_eq!(got.id(), meanwhile);
    wait_until("a new LISTEN connection", Duration::from_secs(5), || {
        app.state.live.listener_pid().is_some_and(|p| p != pid)
    })
    .await;
    assert!(app.state.live.stats().reconnects >= 1);
    let after = publish(&app.state, Channel::Story(id), "likes", "3").await;
    assert_eq!(s.next_event(SOON).await.expect("live again").id(), after);
    assert_eq!(s.next_event(QUIET).await, None, "nothing twice");
}

#[tokio::test]
async fn a_user_event_reaches_only_that_users_streams() {
    let app = TestApp::new().await;
    let (_a, amy, amy_cookie) = user(&app, "amy").await;
    let (_b, bob, bob_cookie) = user(&app, "bob").await;
    let id = story(&app, amy, "published").await;
    let served = serve(app.state.clone()).await;
    let mut amy_nav = Stream::open(served.port, "/live", &[("Cookie", &amy_cookie)]).await;
    let mut amy_story = Stream::open(served.port, &format!("/s/{id}/live"), &[("Cookie", &amy_cookie)]).await;
    let mut bob_story = Stream::open(served.port, &format!("/s/{id}/live"), &[("Cookie", &bob_cookie)]).await;
    let mut anon_story = Stream::open(served.port, &format!("/s/{id}/live"), &[]).await;
    let anon_nav = Stream::open(served.port, "/live", &[("Connection", "close")]).await;
    assert_eq!(anon_nav.status(), 204, "no stream for anonymous visitors");

    let for_amy = publish(&app.state, Channel::User(amy), "unread", "").await;
    let f = amy_nav.next_event(SOON).await.expect("amy's nav stream");
    assert_eq!((f.id(), f.event.as_deref(), f.data.as_deref()), (for_amy, Some("unread"), Some("")));
    assert_eq!(amy_story.next_event(SOON).await.expect("amy's story page").id(), for_amy);
    assert_eq!(bob_story.next_event(QUIET).await, None, "bob does not get amy's event");
    assert_eq!(anon_story.next_event(QUIET).await, None);

    let for_bob = publish(&app.state, Channel::User(bob), "unread", "").await;
    assert_eq!(bob_story.next_event(SOON).await.expect("bob's own").id(), for_bob);
    assert_eq!(amy_nav.next_event(QUIET).await, None, "amy does not get bob's");
}

#[tokio::test]
async fn pages_connect_to_a_stream_only_when_there_is_one() {
    let app = TestApp::new().await;
    let anon = app.get("/").await;
    anon.assert_status(200);
    assert!(!anon.body.contains("sse-connect"), "no stream for anonymous visitors on ordinary pages");
    assert!(anon.body.contains("vendor/htmx-ext-sse/sse."), "the extension is loaded");
    let (w, _, _) = user(&app, "amy").await;
    let page = w.get("/").await;
    page.assert_status(200).assert_contains(r#"hx-ext="sse" sse-connect="/live""#);
    page.assert_contains(r#"id="nav-notifications""#).assert_contains(r#"hx-trigger="sse:unread""#);
}

#[tokio::test]
async fn an_event_committed_between_the_page_and_its_stream_is_not_missed() {
    let app = TestApp::new().await;
    let (w, uid, cookie) = user(&app, "amy").await;
    let served = serve(app.state.clone()).await;
    let before = publish(&app.state, Channel::User(uid), "unread", "").await;
    wait_until("the broker has read it", Duration::from_secs(5), || app.state.live.last_id() >= before).await;
    let page = w.get("/").await;
    let url = page.body.split("sse-connect=\"").nth(1).and_then(|r| r.split('"').next()).expect("sse-connect").to_string();
    assert_eq!(url, format!("/live?after={before}"), "the page starts its stream at the broker's position");
    // Committed after the page was rendered, before the browser connects.
    let between = publish(&app.state, Channel::User(uid), "unread", "").await;
    let mut s = Stream::open(served.port, &url, &[("Cookie", &cookie)]).await;
    assert_eq!(s.status(), 200);
    assert_eq!(s.next_event(SOON).await.expect("replayed").id(), between);
    assert_eq!(s.next_event(QUIET).await, None, "and nothing from before the page");
    // A later Last-Event-ID (the browser reconnecting) wins over the rendered position.
    let later = publish(&app.state, Channel::User(uid), "unread", "").await;
    let mut again = Stream::open(served.port, &url, &[("Cookie", &cookie), ("Last-Event-ID", &between.to_string())]).await;
    assert_eq!(again.next_event(SOON).await.expect("replayed").id(), later);
    assert_eq!(again.next_event(QUIET).await, None);
}

/// The issue's proof, through the real routes: a comment and a like POSTed to process A
/// reach a story stream held on process B within a second, as the fragments the story
/// page swaps in; the poster's own stream on A gets the same events (one transaction
/// raised them, whichever process serves the stream).
#[tokio::test]
async fn a_comment_and_a_like_posted_through_one_process_reach_a_stream_on_another() {
    let a = TestApp::new().await;
    let (_author, author_id, _) = user(&a, "ann").await;
    let (reader, reader_id, reader_cookie) = user(&a, "rob").await;
    let id = story(&a, author_id, "published").await;
    let b_state = second_process(&a);
    let served_a = serve(a.state.clone()).await;
    let served_b = serve(b_state.clone()).await;

    let mut on_b = Stream::open(served_b.port, &format!("/s/{id}/live"), &[]).await;
    assert_eq!(on_b.status(), 200, "{}", on_b.head);
    on_b.next_frame(SOON).await.expect("the opening frame");
    let mut own_on_a = Stream::open(served_a.port, &format!("/s/{id}/live"), &[("Cookie", &reader_cookie)]).await;
    assert_eq!(own_on_a.status(), 200, "{}", own_on_a.head);
    own_on_a.next_frame(SOON).await.expect("the opening frame");

    // The browser's client is process A's app (its pool, its transaction).
    let t0 = Instant::now();
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "Lovely *storm*.")]).await.assert_status(303);
    let got = on_b.next_event(SOON).await.expect("B's stream delivers the comment posted through A within 1 s");
    assert!(t0.elapsed() < SOON);
    assert_eq!(got.event.as_deref(), Some("comment"));
    let html = got.data.unwrap_or_default();
    let cid: i64 = sqlx::query_scalar("SELECT id FROM comments WHERE story_id = $1").bind(id).fetch_one(&a.db.pool).await.unwrap();
    assert!(html.starts_with(&format!("<li id=\"comment-{cid}\"")), "{html}");
    assert!(html.contains("<em>storm</em>") && html.contains("rob"), "{html}");
    assert_eq!(own_on_a.next_event(SOON).await.and_then(|f| f.event).as_deref(), Some("comment"));

    reader.post_form(&format!("/s/{id}/like"), &[]).await.assert_status(303);
    let got = on_b.next_event(SOON).await.expect("B's stream delivers the new like count");
    assert_eq!(got.event.as_deref(), Some("likes"));
    assert_eq!(got.data.as_deref().map(str::trim), Some("1 like"));

    // A reply travels as `reply` with its parent, for the page's script to thread it.
    reader.post_form(&format!("/s/{id}/comments"), &[("body", "And another thing."), ("parent_id", &cid.to_string())]).await.assert_status(303);
    let got = on_b.next_event(SOON).await.expect("the reply");
    assert_eq!(got.event.as_deref(), Some("reply"));
    assert!(got.data.unwrap_or_default().contains(&format!("data-parent-id=\"{cid}\"")));

    // Deleting says which comment went, as its DOM id.
    reader.post_form(&format!("/s/{id}/comments/{cid}/delete"), &[]).await.assert_status(303);
    let got = on_b.next_event(SOON).await.expect("the deletion");
    assert_eq!(got.event.as_deref(), Some("comment_deleted"));
    assert_eq!(got.data.as_deref(), Some(format!("comment-{cid}").as_str()));
    let _ = reader_id;
    drop((served_a, served_b));
}
