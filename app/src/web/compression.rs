//! Response compression for dynamic responses.
//!
//! poem's own `Compression` middleware compresses every response, including
//! images and event streams. This one compresses only text-like bodies that are
//! big enough to benefit. It reads the whole body into memory before
//! compressing, so it must not be used for streaming responses (it skips
//! `text/event-stream`, which is the only streaming text type we use).
//! It uses the `brotli` and `flate2` crates directly.
//!
//! Responses that already did their own content negotiation (they carry
//! `Content-Encoding` or `Vary: Accept-Encoding`, like the static file
//! endpoint) pass through unchanged. So the middleware may wrap the whole app.

use std::io::{self, Write};

use poem::{
    Body, Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
};

/// Bodies smaller than this are sent uncompressed. Compressing them saves
/// little and can even make them bigger.
pub const DEFAULT_MIN_SIZE: usize = 860;

/// Bodies at least this large are compressed on the blocking thread pool
/// so the async workers are not held up.
const BLOCKING_THRESHOLD: usize = 128 * 1024;

/// A content coding this app can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The token used in `Content-Encoding`, or `None` for identity.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
            Encoding::Identity => None,
        }
    }
}

/// The q-values a request gives brotli and gzip in `Accept-Encoding`
/// (explicit, or from `*`; 0 when not accepted).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AcceptEncoding {
    pub brotli: f32,
    pub gzip: f32,
}

impl AcceptEncoding {
    /// Parses all `Accept-Encoding` headers. Items with an invalid q-value
    /// are ignored. No header means only identity is wanted.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut br: Option<f32> = None;
        let mut gzip: Option<f32> = None;
        let mut star: Option<f32> = None;

        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                if coding.is_empty() {
                    continue;
                }
                let mut q = Some(1.0_f32);
                for param in parts {
                    if let Some((name, val)) = param.split_once('=')
                        && name.trim().eq_ignore_ascii_case("q")
                    {
                        q = val
                            .trim()
                            .parse::<f32>()
                            .ok()
                            .filter(|q| q.is_finite())
                            .map(|q| q.clamp(0.0, 1.0));
                    }
                }
                let Some(q) = q else { continue };
                if coding.eq_ignore_ascii_case("br") {
                    br = Some(q);
                } else if coding.eq_ignore_ascii_case("gzip")
                    || coding.eq_ignore_ascii_case("x-gzip")
                {
                    gzip = Some(q);
                } else if coding == "*" {
                    star = Some(q);
                }
            }
        }

        AcceptEncoding {
            brotli: br.or(star).unwrap_or(0.0),
            gzip: gzip.or(star).unwrap_or(0.0),
        }
    }

    /// Picks among the encodings that are available and accepted (q > 0):
    /// the higher q-value wins, brotli wins a tie, identity if none.
    pub fn choose(self, brotli_available: bool, gzip_available: bool) -> Encoding {
        let br = if brotli_available { self.brotli } else { 0.0 };
        let gzip = if gzip_available { self.gzip } else { 0.0 };
        if br > 0.0 && br >= gzip {
            Encoding::Brotli
        } else if gzip > 0.0 {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

/// The best encoding for a response from the request headers: brotli or gzip
/// by q-value (brotli on a tie), identity when neither is accepted.
pub fn preferred_encoding(headers: &HeaderMap) -> Encoding {
    AcceptEncoding::from_headers(headers).choose(true, true)
}

/// Whether a `Content-Type` is worth compressing. Covers text (except event
/// streams), JavaScript, JSON, XML and SVG.
pub fn is_compressible_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/event-stream" => false,
        "application/javascript"
        | "application/json"
        | "application/xml"
        | "image/svg+xml"
        | "application/wasm" => true,
        e if e.starts_with("text/") => true,
        e if e.starts_with("application/") && (e.ends_with("+json") || e.ends_with("+xml")) => true,
        _ => false,
    }
}

/// Brotli-compresses `data` at `quality` (0–11).
pub fn brotli_compress(data: &[u8], quality: u32) -> io::Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: quality.min(11) as i32,
        lgwin: 22,
        size_hint: data.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    let mut input = data;
    brotli::BrotliCompress(&mut input, &mut out, &params)?;
    Ok(out)
}

/// Gzip-compresses `data` at `level` (0–9). The header's mtime is zero, so
/// the output is deterministic.
pub fn gzip_compress(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        flate2::Compression::new(level.min(9)),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

/// Compresses `data` with `encoding`. Identity returns a copy.
pub fn compress(
    data: &[u8],
    encoding: Encoding,
    brotli_quality: u32,
    gzip_level: u32,
) -> io::Result<Vec<u8>> {
    match encoding {
        Encoding::Brotli => brotli_compress(data, brotli_quality),
        Encoding::Gzip => gzip_compress(data, gzip_level),
        Encoding::Identity => Ok(data.to_vec()),
    }
}

/// Whether any `Vary` header already lists `Accept-Encoding` (or is `*`).
pub(crate) fn varies_on_accept_encoding(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|v| v == "*" || v.eq_ignore_ascii_case("accept-encoding"))
}

/// Middleware that compresses dynamic text responses with brotli or gzip.
///
/// ```ignore
/// let app = routes.with(app::compression::Compression::new());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    brotli_quality: u32,
    gzip_level: u32,
    min_size: usize,
}

impl Default for Compression {
    fn default() -> Self {
        // Fast levels: this runs on every dynamic response, on the request's CPU (the
        // story page lost 43 % of its throughput to brotli 4 with a browser's
        // Accept-Encoding). Pages served from the cache were compressed once, harder.
        Self {
            brotli_quality: 2,
            gzip_level: 3,
            min_size: DEFAULT_MIN_SIZE,
        }
    }
}

impl Compression {
    /// Brotli quality 2, gzip level 3, minimum size 860 bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the brotli quality (0–11).
    #[must_use]
    pub fn brotli_quality(mut self, quality: u32) -> Self {
        self.brotli_quality = quality.min(11);
        self
    }

    /// Sets the gzip level (0–9).
    #[must_use]
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.min(9);
        self
    }

    /// Bodies smaller than `bytes` are not compressed.
    #[must_use]
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }
}

impl<E: Endpoint> Middleware<E> for Compression {
    type Output = CompressionEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        CompressionEndpoint {
            inner: ep,
            config: *self,
        }
    }
}

/// The endpoint made by the [`Compression`] middleware.
pub struct CompressionEndpoint<E> {
    inner: E,
    config: Compression,
}

fn status_may_have_compressible_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT)
}

impl<E: Endpoint> Endpoint for CompressionEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let is_head = req.method() == Method::HEAD;
        let encoding = preferred_encoding(req.headers());

        let mut resp = self.inner.call(req).await?.into_response();

        if is_head || !status_may_have_compressible_body(resp.status()) {
            return Ok(resp);
        }
        let headers = resp.headers();
        if headers.contains_key(header::CONTENT_ENCODING)
            || headers.contains_key(header::CONTENT_RANGE)
            || varies_on_accept_encoding(headers)
        {
            return Ok(resp);
        }
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-transform"));
        if no_transform {
            return Ok(resp);
        }
        match resp.content_type() {
            Some(ct) if is_compressible_content_type(ct) => {}
            _ => return Ok(resp),
        }
        let declared_len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if declared_len.is_some_and(|len| len < self.config.min_size) {
            // Too small for this response to ever be compressed: it does not
            // vary by Accept-Encoding.
            return Ok(resp);
        }

        // The response could be compressed, so it depends on Accept-Encoding.
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));

        if encoding == Encoding::Identity {
            return Ok(resp);
        }
        let body = resp.take_body();
        if body.is_empty() {
            return Ok(resp);
        }
        let data = body.into_bytes().await?;
        if data.len() < self.config.min_size {
            resp.set_body(Body::from_bytes(data));
            return Ok(resp);
        }

        let Compression {
            brotli_quality,
            gzip_level,
            ..
        } = self.config;
        let compressed = if data.len() >= BLOCKING_THRESHOLD {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                compress(&data, encoding, brotli_quality, gzip_level)
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
        } else {
            compress(&data, encoding, brotli_quality, gzip_level)
        };
        let compressed = match compressed {
            Ok(c) if c.len() < data.len() => c,
            Ok(_) => {
                resp.set_body(Body::from_bytes(data));
                return Ok(resp);
            }
            Err(err) => {
                tracing::warn!(error = %err, "response compression failed; sending uncompressed");
                resp.set_body(Body::from_bytes(data));
                return Ok(resp);
            }
        };

        let headers = resp.headers_mut();
        if let Some(value) = encoding.header_value() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
        }
        headers.remove(header::CONTENT_LENGTH);
        // The bytes changed, so a strong validator no longer holds. Make it
        // weak, the same as nginx does.
        if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
            && etag.starts_with('"')
            && let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}"))
        {
            headers.insert(header::ETAG, weak);
        }
        resp.set_body(Body::from_vec(compressed));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn negotiation() {
        assert_eq!(preferred_encoding(&HeaderMap::new()), Encoding::Identity);
        assert_eq!(
            preferred_encoding(&headers("gzip, deflate, br, zstd")),
            Encoding::Brotli
        );
        assert_eq!(preferred_encoding(&headers("gzip")), Encoding::Gzip);
        assert_eq!(preferred_encoding(&headers("br;q=0, gzip")), Encoding::Gzip);
        assert_eq!(
            preferred_encoding(&headers("br; q=0.5, gzip;q=0.9")),
            Encoding::Gzip
        );
        assert_eq!(
            preferred_encoding(&headers("br;q=0, gzip;q=0")),
            Encoding::Identity
        );
        assert_eq!(preferred_encoding(&headers("*")), Encoding::Brotli);
        assert_eq!(preferred_encoding(&headers("*;q=0")), Encoding::Identity);
        assert_eq!(preferred_encoding(&headers("gzip, *;q=0")), Encoding::Gzip);
        assert_eq!(preferred_encoding(&headers("identity")), Encoding::Identity);
        assert_eq!(preferred_encoding(&headers("BR;Q=1")), Encoding::Brotli);
        assert_eq!(
            preferred_encoding(&headers("br;q=abc, gzip")),
            Encoding::Gzip
        );
    }

    #[test]
    fn content_types() {
        assert!(is_compressible_content_type("text/html; charset=utf-8"));
        assert!(is_compressible_content_type("application/json"));
        assert!(is_compressible_content_type("application/problem+json"));
        assert!(is_compressible_content_type("image/svg+xml"));
        assert!(!is_compressible_content_type("text/event-stream"));
        assert!(!is_compressible_content_type("image/png"));
        assert!(!is_compressible_content_type("application/octet-stream"));
        assert!(!is_compressible_content_type("application/gzip"));
    }
}
