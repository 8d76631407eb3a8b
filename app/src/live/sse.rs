//! The `text/event-stream` wire format and one stream's body: the replayed events, then
//! live ones, with heartbeats in between.

use std::{collections::HashSet, collections::VecDeque, time::Duration};

use bytes::Bytes;
use futures::Stream;

use super::broker::{Event, Next, Subscription};

/// A comment line: ignored by EventSource, but bytes on the wire, so no proxy or idle
/// timeout takes the stream for dead and a closed tab is noticed at the next write.
pub const HEARTBEAT: &[u8] = b": hb\n\n";

/// The event that tells a page it missed more than can be replayed: reload. No `id:`, so
/// the browser's resume point stays where it was.
pub const RELOAD: &[u8] = b"event: reload\ndata: \n\n";

/// An event as SSE: `id:`, `event:`, then one `data:` line per line of `data` (CR, LF
/// and CRLF all end a line, as the spec reads them), then a blank line. Empty data still
/// gets its `data:` line: an event with none is never dispatched by EventSource.
pub fn event_frame(id: i64, event: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + event.len() + 32);
    out.push_str("id: ");
    out.push_str(&id.to_string());
    out.push_str("\nevent: ");
    // The table's CHECK allows only [a-z_-] here; never let a line break through anyway.
    out.extend(event.chars().filter(|c| !matches!(c, '\r' | '\n')));
    out.push('\n');
    for line in lines(data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// `data`'s lines, split at CRLF, CR or LF; "" is one empty line.
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// The first bytes of every stream: how long the browser waits before reconnecting,
/// spread over 2-5 s so a restart does not bring every page back in the same instant.
pub fn opening() -> Bytes {
    let retry_ms = 2000 + rand::random_range(0..3000u32);
    Bytes::from(format!("retry: {retry_ms}\n\n"))
}

struct State {
    sub: Subscription,
    pending: VecDeque<Bytes>,
    /// Ids sent from the table: the same events arriving live are not sent again.
    replayed: HashSet<i64>,
    heartbeat: tokio::time::Interval,
}

/// The body of one stream. `replay` (already fetched, oldest first) is sent first, after
/// `RELOAD` when more were missed than replayed; then live events from `sub` (which was
/// subscribed before the replay was read, so nothing falls between the two), skipping
/// those already replayed. Ends when the subscription lags or closes (shutdown), or when
/// the client goes away (the body is dropped, and with it the subscription).
pub fn body(
    sub: Subscription,
    replay: Vec<Event>,
    reload: bool,
    heartbeat: Duration,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut pending = VecDeque::with_capacity(replay.len() + 2);
    pending.push_back(opening());
    if reload {
        pending.push_back(Bytes::from_static(RELOAD));
    }
    let replayed = replay.iter().map(|e| e.id).collect();
    pending.extend(replay.into_iter().map(|e| e.frame));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State { sub, pending, replayed, heartbeat };
    futures::stream::unfold(state, |mut s| async move {
        if let Some(bytes) = s.pending.pop_front() {
            return Some((Ok(bytes), s));
        }
        loop {
            tokio::select! {
                next = s.sub.next() => match next {
                    Next::Event(e) if s.replayed.contains(&e.id) => continue,
                    Next::Event(e) => return Some((Ok(e.frame.clone()), s)),
                    Next::Lagged => {
                        tracing::debug!("live: a stream fell behind; closing it (the browser resumes)");
                        return None;
                    }
                    Next::Closed => return None,
                },
                _ = s.heartbeat.tick() => return Some((Ok(Bytes::from_static(HEARTBEAT)), s)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: i64, event: &str, data: &str) -> String {
        String::from_utf8(event_frame(id, event, data).to_vec()).unwrap()
    }

    #[test]
    fn frames_split_data_per_line() {
        assert_eq!(frame(7, "likes", "<span>3</span>"), "id: 7\nevent: likes\ndata: <span>3</span>\n\n");
        assert_eq!(
            frame(8, "comment", "<li>\n  a\r\n  b\rc</li>"),
            "id: 8\nevent: comment\ndata: <li>\ndata:   a\ndata:   b\ndata: c</li>\n\n"
        );
        assert_eq!(frame(9, "unread", ""), "id: 9\nevent: unread\ndata: \n\n");
        assert_eq!(frame(10, "x", "a\n"), "id: 10\nevent: x\ndata: a\ndata: \n\n");
        assert_eq!(frame(11, "bad\nevent: y", "d"), "id: 11\nevent: badevent: y\ndata: d\n\n");
    }

    #[test]
    fn opening_sets_a_spread_retry() {
        for _ in 0..50 {
            let s = String::from_utf8(opening().to_vec()).unwrap();
            let ms: u32 = s.trim_start_matches("retry: ").trim_end().parse().unwrap();
            assert!((2000..5000).contains(&ms), "{s}");
            assert!(s.ends_with("\n\n"));
        }
    }
}
