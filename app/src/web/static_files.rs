//! Static assets (CSS, JS, images) with fingerprinted URLs.
//!
//! All files under `static/` are loaded once at start-up. Debug builds read
//! them from the directory, so a restart picks up edits. Release builds embed
//! them in the binary. For every file we keep:
//!
//! * a content hash (SHA-256, first 10 hex chars) and the fingerprinted name
//!   `css/site.<hash>.css`,
//! * the `Content-Type`,
//! * brotli and gzip copies for text-like types, if they are smaller.
//!
//! Nest the endpoint at `/static`:
//! `GET /static/css/site.<hash>.css` is served with a one-year immutable cache
//! lifetime. `GET /static/css/site.css` (the logical path) is served with
//! `no-cache`. Everything else is a 404. Lookups only go to the in-memory
//! map, so path traversal is impossible.

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use bytes::Bytes;
use poem::{
    Body, Endpoint, Error, Request, Response, Result,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
};
use sha2::{Digest, Sha256};

use crate::web::compression::{self, AcceptEncoding, Encoding};

/// URL prefix the endpoint is nested under.
pub const URL_PREFIX: &str = "/static";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
/// Hex characters of the hash used in file names.
const FINGERPRINT_LEN: usize = 10;
/// Hex characters of the hash used in ETags.
const ETAG_HASH_LEN: usize = 20;

#[cfg(not(debug_assertions))]
static EMBEDDED: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../static");

/// One file, with its precompressed variants.
#[derive(Debug)]
struct Asset {
    fingerprinted: String,
    content_type: &'static str,
    identity: Variant,
    brotli: Option<Variant>,
    gzip: Option<Variant>,
}

#[derive(Debug)]
struct Variant {
    body: Bytes,
    etag: HeaderValue,
}

impl Asset {
    /// The best variant the client accepts.
    fn variant(&self, accept: AcceptEncoding) -> (&Variant, Encoding) {
        let encoding = accept.choose(self.brotli.is_some(), self.gzip.is_some());
        let variant = match encoding {
            Encoding::Brotli => self.brotli.as_ref(),
            Encoding::Gzip => self.gzip.as_ref(),
            Encoding::Identity => None,
        };
        match variant {
            Some(v) => (v, encoding),
            None => (&self.identity, Encoding::Identity),
        }
    }
}

/// All static files, held in memory.
#[derive(Debug, Default)]
pub struct StaticFiles {
    /// Fingerprinted path (no leading slash) → asset.
    by_fingerprint: HashMap<String, Arc<Asset>>,
    /// Logical path (no leading slash) → asset.
    by_logical: HashMap<String, Arc<Asset>>,
}

impl StaticFiles {
    /// Loads all files: from `static/` on disk in debug builds, from the copy
    /// embedded in the binary in release builds.
    pub fn load() -> anyhow::Result<StaticFiles> {
        #[cfg(debug_assertions)]
        {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../static");
            Self::load_dir(std::path::Path::new(dir))
        }
        #[cfg(not(debug_assertions))]
        {
            let mut files = Vec::new();
            collect_embedded(&EMBEDDED, &mut files);
            Self::from_files(files)
        }
    }

    /// Loads every file under `root`, recursively. Hidden files (names
    /// starting with `.`) are skipped.
    pub fn load_dir(root: &std::path::Path) -> anyhow::Result<StaticFiles> {
        use anyhow::Context as _;

        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("reading static directory {}", dir.display()))?;
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let file_type = entry.file_type()?;
                if file_type.is_dir() {
                    stack.push(path);
                } else if file_type.is_file() {
                    let rel = path
                        .strip_prefix(root)
                        .context("static file outside root")?
                        .components()
                        .map(|c| c.as_os_str().to_str())
                        .collect::<Option<Vec<_>>>()
                        .with_context(|| format!("non-UTF-8 static path {}", path.display()))?
                        .join("/");
                    let data = std::fs::read(&path)
                        .with_context(|| format!("reading static file {}", path.display()))?;
                    files.push((rel, data));
                }
            }
        }
        Self::from_files(files)
    }

    /// Builds the set from `(logical path, contents)` pairs, e.g.
    /// `("css/site.css", bytes)`. Hidden files are skipped.
    pub fn from_files<P, D>(files: impl IntoIterator<Item = (P, D)>) -> anyhow::Result<StaticFiles>
    where
        P: AsRef<str>,
        D: Into<Bytes>,
    {
        let mut out = StaticFiles::default();
        for (logical, data) in files {
            let logical = logical.as_ref().trim_start_matches('/');
            if logical.is_empty()
                || logical
                    .split('/')
                    .any(|seg| seg.is_empty() || seg.starts_with('.'))
            {
                continue;
            }
            let asset = Arc::new(build_asset(logical, data.into())?);
            anyhow::ensure!(
                !out.by_logical.contains_key(&asset.fingerprinted)
                    && !out.by_fingerprint.contains_key(logical),
                "static file name clash: {logical}"
            );
            out.by_fingerprint
                .insert(asset.fingerprinted.clone(), asset.clone());
            out.by_logical.insert(logical.to_string(), asset);
        }
        Ok(out)
    }

    /// The fingerprinted URL of a file, e.g. `url("css/site.css")` →
    /// `Some("/static/css/site.0123456789.css")`. `None` if there is no such
    /// file. A leading `/` is accepted.
    pub fn url(&self, logical: &str) -> Option<String> {
        self.by_logical
            .get(logical.trim_start_matches('/'))
            .map(|a| format!("{URL_PREFIX}/{}", a.fingerprinted))
    }

    /// Logical paths of all files, in no particular order.
    pub fn logical_paths(&self) -> impl Iterator<Item = &str> {
        self.by_logical.keys().map(String::as_str)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.by_logical.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.by_logical.is_empty()
    }

    /// The endpoint that serves the files. Nest it at `/static`.
    pub fn endpoint(self: Arc<Self>) -> impl Endpoint<Output = Response> {
        StaticEndpoint { files: self }
    }

    fn lookup(&self, path: &str) -> Option<(&Asset, &'static str)> {
        let path = path.strip_prefix('/')?;
        if let Some(asset) = self.by_fingerprint.get(path) {
            Some((asset, IMMUTABLE))
        } else {
            self.by_logical.get(path).map(|a| (&**a, NO_CACHE))
        }
    }
}

#[cfg(not(debug_assertions))]
fn collect_embedded(dir: &include_dir::Dir<'static>, out: &mut Vec<(String, Bytes)>) {
    for file in dir.files() {
        if let Some(path) = file.path().to_str() {
            // include_dir paths are relative to the root; normalise Windows
            // separators just in case.
            out.push((path.replace('\\', "/"), Bytes::from_static(file.contents())));
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, out);
    }
}

fn build_asset(logical: &str, data: Bytes) -> anyhow::Result<Asset> {
    let digest = Sha256::digest(&data);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    let fingerprinted = fingerprint_name(logical, &hex[..FINGERPRINT_LEN]);
    let content_type = content_type_for(logical);
    let etag_hash = &hex[..ETAG_HASH_LEN];
    let etag = |suffix: &str| {
        HeaderValue::from_str(&format!("\"{etag_hash}{suffix}\""))
            .expect("hex ETag is a valid header")
    };

    let (brotli, gzip) = if is_compressible_path(logical, content_type) {
        let br = compression::brotli_compress(&data, 11)?;
        let gz = compression::gzip_compress(&data, 9)?;
        (
            (br.len() < data.len()).then(|| Variant {
                body: Bytes::from(br),
                etag: etag("-br"),
            }),
            (gz.len() < data.len()).then(|| Variant {
                body: Bytes::from(gz),
                etag: etag("-gz"),
            }),
        )
    } else {
        (None, None)
    };

    Ok(Asset {
        fingerprinted,
        content_type,
        identity: Variant {
            body: data,
            etag: etag(""),
        },
        brotli,
        gzip,
    })
}

/// `css/site.css` + `abc` → `css/site.abc.css`; `vendor/LICENSE` →
/// `vendor/LICENSE.abc`. Only the last extension is kept after the hash:
/// `htmx.min.js` → `htmx.min.abc.js`.
fn fingerprint_name(logical: &str, hash: &str) -> String {
    let (dir, name) = match logical.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, logical),
    };
    let name = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{hash}.{ext}"),
        _ => format!("{name}.{hash}"),
    };
    match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    }
}

fn extension(logical: &str) -> Option<String> {
    let name = logical.rsplit('/').next().unwrap_or(logical);
    name.rsplit_once('.')
        .filter(|(stem, _)| !stem.is_empty())
        .map(|(_, ext)| ext.to_ascii_lowercase())
}

fn content_type_for(logical: &str) -> &'static str {
    match extension(logical).as_deref() {
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("pdf") => "application/pdf",
        Some("wasm") => "application/wasm",
        // LICENSE, VERSION, README and the like.
        None => "text/plain; charset=utf-8",
        Some(_) => "application/octet-stream",
    }
}

fn is_compressible_path(logical: &str, content_type: &str) -> bool {
    matches!(
        extension(logical).as_deref(),
        Some("css" | "js" | "mjs" | "svg" | "json" | "txt" | "map" | "html" | "htm")
    ) || compression::is_compressible_content_type(content_type)
}

/// Whether `If-None-Match` matches `etag` (weak comparison, as RFC 9110
/// requires for `If-None-Match`).
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let etag = etag.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

struct StaticEndpoint {
    files: Arc<StaticFiles>,
}

impl Endpoint for StaticEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let (asset, cache_control) = self
            .files
            .lookup(req.uri().path())
            .ok_or_else(|| Error::from_status(StatusCode::NOT_FOUND))?;

        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return Err(Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
        }

        let (variant, encoding) = asset.variant(AcceptEncoding::from_headers(req.headers()));
        let has_variants = asset.brotli.is_some() || asset.gzip.is_some();

        let mut builder = Response::builder()
            .header(header::CACHE_CONTROL, cache_control)
            .header(header::ETAG, variant.etag.clone())
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        if has_variants {
            builder = builder.header(header::VARY, "Accept-Encoding");
        }

        if if_none_match(req.headers(), &variant.etag) {
            return Ok(builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()));
        }

        builder = builder.header(header::CONTENT_TYPE, asset.content_type);
        if let Some(value) = encoding.header_value() {
            builder = builder.header(header::CONTENT_ENCODING, value);
        }
        let body = if method == Method::HEAD {
            // No body, but the length the GET would have.
            builder = builder.header(header::CONTENT_LENGTH, variant.body.len());
            Body::empty()
        } else {
            Body::from_bytes(variant.body.clone())
        };
        Ok(builder.status(StatusCode::OK).body(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_names() {
        assert_eq!(fingerprint_name("css/site.css", "abc"), "css/site.abc.css");
        assert_eq!(
            fingerprint_name("vendor/htmx/htmx.min.js", "abc"),
            "vendor/htmx/htmx.min.abc.js"
        );
        assert_eq!(
            fingerprint_name("vendor/htmx/LICENSE", "abc"),
            "vendor/htmx/LICENSE.abc"
        );
        assert_eq!(fingerprint_name("favicon.svg", "abc"), "favicon.abc.svg");
        assert_eq!(fingerprint_name("a.b/README", "abc"), "a.b/README.abc");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("css/site.css"), "text/css; charset=utf-8");
        assert_eq!(
            content_type_for("js/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type_for("img/favicon.svg"), "image/svg+xml");
        assert_eq!(content_type_for("img/logo.PNG"), "image/png");
        assert_eq!(content_type_for("x.bin"), "application/octet-stream");
    }
}
