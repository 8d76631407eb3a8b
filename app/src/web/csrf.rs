//! CSRF protection for every unsafe request (POST, PUT, PATCH, DELETE).
//!
//! The token is per session (an HMAC of the session's secret, see `sessions`). Forms send
//! it as the hidden field `csrf_token`; htmx sends `X-CSRF-Token` (set once with
//! `hx-headers` on `<body>`). A request without a valid token gets the 403 page. Unlike
//! poem's `Csrf` middleware, this one rejects by itself, so no handler can forget.
//!
//! Where the token is looked for, in order:
//! 1. the `X-CSRF-Token` header (htmx, any body type);
//! 2. `application/x-www-form-urlencoded`: the `csrf_token` field of the (bounded) body;
//! 3. `multipart/form-data` (forms with a file input): the FIRST part, which must be the
//!    text field `csrf_token`. Only the start of the body is read, chunk by chunk until
//!    that part is complete (a few hundred bytes; never more than
//!    [`MULTIPART_PREFIX_LIMIT`] plus one chunk). Then the body is put back together —
//!    the bytes already read followed by the rest of the stream, untouched — so the
//!    handler parses the whole multipart form, and a 10 MiB upload is neither buffered
//!    here nor read at all when the token is wrong. **Every multipart form template must
//!    therefore have `<input type="hidden" name="csrf_token" …>` as the first field
//!    inside the `<form>`** (browsers send fields in document order). A multipart body
//!    without a boundary, or whose start is malformed, has no valid token.
//!
//! Any other body type without the header is rejected.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, http::Method};

use crate::{error::Error, sessions::RequestSession, tokens, web::form};

pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf_token";

pub struct CsrfProtection;

impl<E: Endpoint> Middleware<E> for CsrfProtection {
    type Output = CsrfEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        CsrfEndpoint { inner: ep }
    }
}

pub struct CsrfEndpoint<E> {
    inner: E,
}

fn rejected() -> poem::Error {
    Error::Forbidden(
        "This form has expired or did not come from this site. Go back, reload the page and try again.".into(),
    )
    .into()
}

impl<E: Endpoint> Endpoint for CsrfEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        if is_one_click_unsubscribe(req.method(), req.uri().path()) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let expected = req
            .extensions()
            .get::<RequestSession>()
            .map(|s| s.csrf_token.clone())
            .ok_or_else(rejected)?;

        let provided = match req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
            Some(v) => Some(v.to_string()),
            None if form::is_urlencoded(&req) => {
                // Read the (bounded) body, find the field, and put the body back for the handler.
                let bytes = form::read_body(req.take_body()).await?;
                let token = form::field(&bytes, FIELD);
                req.set_body(Body::from(bytes));
                token
            }
            None if is_multipart(&req) => {
                let boundary = req.content_type().and_then(|ct| multer::parse_boundary(ct).ok());
                let (token, body) = multipart_token(boundary, req.take_body()).await;
                req.set_body(body);
                token
            }
            None => None,
        };
        match provided {
            Some(p) if tokens::constant_time_eq(p.as_bytes(), expected.as_bytes()) => {
                self.inner.call(req).await.map(IntoResponse::into_response)
            }
            _ => {
                tracing::warn!("rejected unsafe request without a valid CSRF token");
                Err(rejected())
            }
        }
    }
}

/// `POST /unsubscribe/{token}`, the one exemption. RFC 8058 one-click unsubscribe: a
/// mail client POSTs `List-Unsubscribe=One-Click` to the mail's link with no cookies and
/// so no CSRF token. Safe without one: the signed token in the path is itself the proof
/// the request came from our mail (it names one user and one kind, cannot be forged
/// without SECRET_KEY, and can only turn mail off), so a cross-site form cannot do
/// anything with it that the link's holder could not. Exactly that path shape: one
/// segment after `/unsubscribe/`.
fn is_one_click_unsubscribe(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && path.strip_prefix("/unsubscribe/").is_some_and(|token| !token.is_empty() && !token.contains('/'))
}

/// How much of a multipart body is read, at most, to find the token (plus the chunk that
/// crosses the limit: the body is pulled in whatever chunks the connection delivers).
pub const MULTIPART_PREFIX_LIMIT: usize = 64 * 1024;

/// The longest token accepted from a multipart part (ours are 43 characters).
const MAX_TOKEN_BYTES: usize = 256;
/// The longest header block of the first part (a browser's is under 100 bytes).
const MAX_PART_HEADER_BYTES: usize = 4 * 1024;
/// RFC 2046 allows 70 characters; anything much longer is not a browser.
const MAX_BOUNDARY_BYTES: usize = 200;

pub fn is_multipart(req: &Request) -> bool {
    req.content_type()
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/"))
}

/// Pulls chunks of a multipart body until its first part is complete (or the start is
/// malformed, or [`MULTIPART_PREFIX_LIMIT`] is reached), returns that part's value if
/// it is the field `csrf_token`, and a body equal to the original one, byte for byte:
/// the chunks read, then the rest of the stream, untouched.
async fn multipart_token(boundary: Option<String>, body: Body) -> (Option<String>, Body) {
    let Some(boundary) = boundary.filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY_BYTES) else {
        return (None, body);
    };
    let mut rest = body.into_bytes_stream().boxed();
    let mut read = BytesMut::new();
    let token = loop {
        match first_part_token(&read, boundary.as_bytes()) {
            Scan::Done(token) => break token,
            Scan::NeedMore if read.len() >= MULTIPART_PREFIX_LIMIT => break None,
            Scan::NeedMore => match rest.next().await {
                Some(Ok(chunk)) => read.extend_from_slice(&chunk),
                // A broken or finished stream: no token (and the request is refused, so
                // the body handed back does not matter).
                Some(Err(_)) | None => break None,
            },
        }
    };
    let read = read.freeze();
    let head = futures::stream::iter((!read.is_empty()).then_some(Ok::<Bytes, std::io::Error>(read)));
    (token, Body::from_bytes_stream(head.chain(rest)))
}

enum Scan {
    NeedMore,
    /// The first part is complete: its value if it is the `csrf_token` text field.
    Done(Option<String>),
}

/// Reads the first part of a `multipart/form-data` body from its beginning `buf`, as
/// browsers send it: `--boundary CRLF headers CRLF CRLF value CRLF --boundary`.
/// Deliberately strict: anything unusual is no token (a client can always use the header).
fn first_part_token(buf: &[u8], boundary: &[u8]) -> Scan {
    // An optional CRLF before the first delimiter (older clients send one).
    let buf = match buf {
        [b'\r'] => return Scan::NeedMore,
        [b'\r', b'\n', rest @ ..] => rest,
        _ => buf,
    };
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let first_line_len = delimiter.len() + 2;
    if buf.len() < first_line_len {
        let n = buf.len().min(delimiter.len());
        return if buf[..n] == delimiter[..n] { Scan::NeedMore } else { Scan::Done(None) };
    }
    if !buf.starts_with(&delimiter) || &buf[delimiter.len()..first_line_len] != b"\r\n" {
        return Scan::Done(None);
    }
    let after_delimiter = &buf[first_line_len..];
    let Some(headers_end) = find(after_delimiter, b"\r\n\r\n") else {
        // Bounded, so rescanning the buffer as chunks arrive stays cheap.
        return if after_delimiter.len() > MAX_PART_HEADER_BYTES { Scan::Done(None) } else { Scan::NeedMore };
    };
    let Some(name) = form_data_field_name(&after_delimiter[..headers_end]) else {
        return Scan::Done(None);
    };
    if name != FIELD {
        return Scan::Done(None);
    }
    let value_and_rest = &after_delimiter[headers_end + 4..];
    let mut closing = b"\r\n".to_vec();
    closing.extend_from_slice(&delimiter);
    let Some(value_end) = find(value_and_rest, &closing) else {
        // Not ended yet: wait for more, unless it is already longer than any token.
        return if value_and_rest.len() > MAX_TOKEN_BYTES + closing.len() { Scan::Done(None) } else { Scan::NeedMore };
    };
    // The delimiter must end its line (another part follows) or close the body (`--`).
    match value_and_rest.get(value_end + closing.len()..value_end + closing.len() + 2) {
        None => Scan::NeedMore,
        Some(b"\r\n" | b"--") => {
            let value = &value_and_rest[..value_end];
            Scan::Done((value.len() <= MAX_TOKEN_BYTES).then(|| String::from_utf8(value.to_vec()).ok()).flatten())
        }
        Some(_) => Scan::Done(None),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `name` of a part whose headers (CRLF-separated) hold exactly one
/// `Content-Disposition: form-data; name="…"` without a `filename` (a file is never the
/// token). Other headers are ignored.
fn form_data_field_name(headers: &[u8]) -> Option<String> {
    let headers = std::str::from_utf8(headers).ok()?;
    let mut dispositions = headers.split("\r\n").filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-disposition").then_some(value.trim())
    });
    let disposition = dispositions.next()?;
    if dispositions.next().is_some() {
        return None;
    }
    let mut params = disposition.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut field_name = None;
    for param in params.filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').filter(|v| !v.contains(['"', '\\']))?,
            None => value,
        };
        match key.as_str() {
            "name" if field_name.is_none() => field_name = Some(value.to_string()),
            "name" | "filename" | "filename*" => return None,
            _ => {}
        }
    }
    field_name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(buf: &[u8]) -> Option<Option<String>> {
        match first_part_token(buf, b"XyZ") {
            Scan::NeedMore => None,
            Scan::Done(t) => Some(t),
        }
    }

    #[test]
    fn only_post_to_one_unsubscribe_token_is_exempt() {
        assert!(is_one_click_unsubscribe(&Method::POST, "/unsubscribe/42.chapter.abc"));
        for path in ["/unsubscribe/", "/unsubscribe", "/unsubscribe/a/b", "/settings/notifications", "/x/unsubscribe/a", "/unsubscribe/a/"] {
            assert!(!is_one_click_unsubscribe(&Method::POST, path), "{path}");
        }
        assert!(!is_one_click_unsubscribe(&Method::PUT, "/unsubscribe/42.chapter.abc"));
        assert!(!is_one_click_unsubscribe(&Method::DELETE, "/unsubscribe/42.chapter.abc"));
    }

    #[test]
    fn reads_the_first_part_only_when_complete() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc\r\n--XyZ\r\nmore";
        // Every strict prefix up to the delimiter's line end needs more; the whole is a token.
        let complete_at = body.len() - 4;
        for n in 0..complete_at {
            assert!(scan(&body[..n]).is_none(), "prefix of {n} bytes");
        }
        assert_eq!(scan(&body[..complete_at]), Some(Some("abc".into())));
        assert_eq!(scan(body), Some(Some("abc".into())));
        assert_eq!(scan(b"\r\n--XyZ\r\ncontent-disposition: Form-Data; name=csrf_token\r\n\r\nabc\r\n--XyZ--"), Some(Some("abc".into())));
    }

    #[test]
    fn anything_unusual_is_no_token() {
        for body in [
            &b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nabc\r\n--XyZ\r\n"[..],
            b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"; filename=\"t\"\r\n\r\nabc\r\n--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"; name=\"x\"\r\n\r\nabc\r\n--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"x\"; name=\"csrf_token\"\r\n\r\nabc\r\n--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition: attachment; name=\"csrf_token\"\r\n\r\nabc\r\n--XyZ\r\n",
            b"--XyZ\r\nX: y\r\n\r\nabc\r\n--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc\r\n--XyZWW",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n\xff\r\n--XyZ\r\n",
            b"--XyZ--\r\n",
            b"--Other\r\n",
            b"preamble\r\n--XyZ\r\n",
        ] {
            assert_eq!(scan(body), Some(None), "{}", String::from_utf8_lossy(body));
        }
        let mut headers = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\nX-Pad: ".to_vec();
        headers.extend(std::iter::repeat_n(b'a', MAX_PART_HEADER_BYTES));
        assert_eq!(scan(&headers), Some(None), "endless headers are refused");
        let mut long = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', 1000));
        assert_eq!(scan(&long), Some(None), "a value longer than any token is refused before its end");
    }

    /// A first part with 3 KiB of headers: under MAX_PART_HEADER_BYTES, and over a kilobyte
    /// read before the token, so both bounds are pinned from below (a smaller limit
    /// would refuse a request a browser could send).
    fn padded_token_part() -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\nX-Pad: ".to_vec();
        body.extend(std::iter::repeat_n(b'a', 3 * 1024));
        body.extend_from_slice(b"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nT\r\n--XyZ--\r\n");
        body
    }

    /// Older clients send a CRLF before the first delimiter; a chunk holding only its CR
    /// must wait for more, not end the scan.
    #[tokio::test]
    async fn a_leading_crlf_split_after_its_cr_still_finds_the_token() {
        assert_eq!(scan(b"\r"), None);
        let body = b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc\r\n--XyZ--\r\n".to_vec();
        let chunks: Vec<Result<Bytes, std::io::Error>> = body.chunks(1).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let (token, _) = multipart_token(Some("XyZ".into()), Body::from_bytes_stream(futures::stream::iter(chunks))).await;
        assert_eq!(token.as_deref(), Some("abc"));
    }

    /// A boundary no browser sends (empty, or past MAX_BOUNDARY_BYTES) is no token, even
    /// when the body around it is well formed.
    #[tokio::test]
    async fn an_empty_or_overlong_boundary_is_no_token() {
        let long = "b".repeat(MAX_BOUNDARY_BYTES + 1);
        for boundary in [String::new(), long] {
            let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc\r\n--{boundary}--\r\n");
            let (token, rest) = multipart_token(Some(boundary.clone()), Body::from(body.clone())).await;
            assert_eq!(token, None, "boundary of {} bytes", boundary.len());
            assert_eq!(rest.into_vec().await.expect("body"), body.into_bytes(), "the body is handed back untouched");
        }
        // Just inside the bound it is read.
        let ok = "b".repeat(MAX_BOUNDARY_BYTES);
        let body = format!("--{ok}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc\r\n--{ok}--\r\n");
        assert_eq!(multipart_token(Some(ok), Body::from(body)).await.0.as_deref(), Some("abc"));
    }

    #[test]
    fn long_but_bounded_part_headers_are_read() {
        assert_eq!(scan(&padded_token_part()), Some(Some("abc".into())));
        // Exactly MAX_PART_HEADER_BYTES of headers so far, not yet ended: still waiting.
        let mut at_bound = b"--XyZ\r\n".to_vec();
        let start = at_bound.len();
        at_bound.extend_from_slice(b"Content-Disposition: form-data; name=\"csrf_token\"\r\nX-Pad: ");
        at_bound.resize(start + MAX_PART_HEADER_BYTES, b'a');
        assert_eq!(scan(&at_bound), None);
        at_bound.push(b'a');
        assert_eq!(scan(&at_bound), Some(None), "one byte more and the part is refused");
    }

    #[tokio::test]
    async fn the_token_is_found_after_kilobytes_arriving_in_small_chunks() {
        let body = padded_token_part();
        let chunks: Vec<Result<Bytes, std::io::Error>> = body.chunks(256).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let (token, rest) = multipart_token(Some("XyZ".into()), Body::from_bytes_stream(futures::stream::iter(chunks))).await;
        assert_eq!(token.as_deref(), Some("abc"));
        assert_eq!(rest.into_vec().await.expect("body"), body, "the body is handed on whole");
    }
}
