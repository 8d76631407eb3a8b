//! Static file serving and the compression middleware, tested on the real
//! `static/` directory.

use std::{
    io::Read,
    sync::{Arc, LazyLock},
};

use app::web::{compression::Compression, static_files::StaticFiles};
use poem::{
    Endpoint, EndpointExt, Request, Response, Route,
    endpoint::make_sync,
    http::{Method, StatusCode, header},
    test::{TestClient, TestResponse},
};
use sha2::{Digest, Sha256};

const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../static");

/// Loaded once for all tests: brotli at quality 11 is slow in debug builds.
static FILES: LazyLock<Arc<StaticFiles>> =
    LazyLock::new(|| Arc::new(StaticFiles::load().expect("static files load")));

fn files() -> Arc<StaticFiles> {
    FILES.clone()
}

fn app(files: &Arc<StaticFiles>) -> Route {
    Route::new().nest("/static", files.clone().endpoint())
}

fn original(logical: &str) -> Vec<u8> {
    std::fs::read(format!("{STATIC_DIR}/{logical}")).expect("read static file")
}

fn header(resp: &TestResponse, name: header::HeaderName) -> Option<String> {
    resp.0
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

async fn body(resp: TestResponse) -> Vec<u8> {
    resp.0.into_body().into_vec().await.expect("read body")
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli stream");
    out
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip stream");
    out
}

fn site_css_url(files: &StaticFiles) -> String {
    files.url("css/site.css").expect("site.css exists")
}

#[test]
fn url_is_fingerprinted_with_content_hash() {
    let files = files();
    let url = site_css_url(&files);
    let hash = url
        .strip_prefix("/static/css/site.")
        .and_then(|rest| rest.strip_suffix(".css"))
        .unwrap_or_else(|| panic!("unexpected URL {url}"));
    assert_eq!(hash.len(), 10);
    let expected: String = Sha256::digest(original("css/site.css"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, &expected[..10]);

    assert_eq!(files.url("/css/site.css"), Some(url));
    let htmx = files.url("vendor/htmx/htmx.min.js").expect("htmx vendored");
    assert!(
        htmx.starts_with("/static/vendor/htmx/htmx.min.") && htmx.ends_with(".js"),
        "{htmx}"
    );
    assert!(files.url("js/app.js").is_some());
    assert!(files.url("img/favicon.svg").is_some());
    assert_eq!(files.url("css/nope.css"), None);
}

#[tokio::test]
async fn brotli_variant_decompresses_to_original() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let resp = cli
        .get(site_css_url(&files))
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_header(header::CONTENT_ENCODING, "br");
    resp.assert_header(header::CONTENT_TYPE, "text/css; charset=utf-8");
    resp.assert_header(header::VARY, "Accept-Encoding");
    resp.assert_header(header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    let data = body(resp).await;
    let orig = original("css/site.css");
    assert!(data.len() < orig.len(), "br body should be smaller");
    assert_eq!(unbrotli(&data), orig);
}

#[tokio::test]
async fn gzip_variant_decompresses_to_original() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let url = files.url("vendor/htmx/htmx.min.js").unwrap();
    // br refused explicitly: gzip must be chosen.
    let resp = cli
        .get(&url)
        .header(header::ACCEPT_ENCODING, "br;q=0, gzip")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_header(header::CONTENT_ENCODING, "gzip");
    resp.assert_header(header::CONTENT_TYPE, "text/javascript; charset=utf-8");
    resp.assert_header(header::VARY, "Accept-Encoding");
    let data = body(resp).await;
    let orig = original("vendor/htmx/htmx.min.js");
    assert!(data.len() < orig.len());
    assert_eq!(gunzip(&data), orig);

    let resp = cli
        .get(&url)
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await;
    resp.assert_header(header::CONTENT_ENCODING, "gzip");
}

#[tokio::test]
async fn identity_without_accept_encoding() {
    let files = files();
    let cli = TestClient::new(app(&files));
    for accept in [
        None,
        Some("identity"),
        Some("br;q=0, gzip;q=0"),
        Some("*;q=0"),
    ] {
        let mut req = cli.get(site_css_url(&files));
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT_ENCODING, accept);
        }
        let resp = req.send().await;
        resp.assert_status_is_ok();
        resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
        resp.assert_header(header::VARY, "Accept-Encoding");
        resp.assert_header(header::CACHE_CONTROL, "public, max-age=31536000, immutable");
        assert_eq!(
            body(resp).await,
            original("css/site.css"),
            "accept {accept:?}"
        );
    }
}

#[tokio::test]
async fn etag_differs_per_encoding_and_if_none_match_gives_304() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let url = site_css_url(&files);

    let mut etags = Vec::new();
    for accept in ["br", "gzip", "identity"] {
        let resp = cli
            .get(&url)
            .header(header::ACCEPT_ENCODING, accept)
            .send()
            .await;
        resp.assert_status_is_ok();
        let etag = header(&resp, header::ETAG).expect("ETag present");
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong ETag: {etag}"
        );
        etags.push(etag);
    }
    assert_ne!(etags[0], etags[1]);
    assert_ne!(etags[0], etags[2]);
    assert_ne!(etags[1], etags[2]);

    let br_etag = &etags[0];
    let resp = cli
        .get(&url)
        .header(header::ACCEPT_ENCODING, "br")
        .header(header::IF_NONE_MATCH, br_etag.as_str())
        .send()
        .await;
    resp.assert_status(StatusCode::NOT_MODIFIED);
    resp.assert_header(header::ETAG, br_etag.as_str());
    resp.assert_header(header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    assert!(body(resp).await.is_empty(), "304 has no body");

    // A list that contains the ETag also matches.
    let list = format!("\"nope\", {br_etag}");
    let resp = cli
        .get(&url)
        .header(header::ACCEPT_ENCODING, "br")
        .header(header::IF_NONE_MATCH, list)
        .send()
        .await;
    resp.assert_status(StatusCode::NOT_MODIFIED);

    // The br ETag does not validate the identity representation.
    let resp = cli
        .get(&url)
        .header(header::IF_NONE_MATCH, br_etag.as_str())
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(body(resp).await, original("css/site.css"));
}

#[tokio::test]
async fn logical_path_served_with_no_cache() {
    let files = files();
    let cli = TestClient::new(app(&files));

    let fingerprinted = cli
        .get(site_css_url(&files))
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    let etag = header(&fingerprinted, header::ETAG).unwrap();

    let resp = cli
        .get("/static/css/site.css")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_header(header::CACHE_CONTROL, "no-cache");
    resp.assert_header(header::CONTENT_ENCODING, "br");
    resp.assert_header(header::ETAG, etag.as_str());
    assert_eq!(unbrotli(&body(resp).await), original("css/site.css"));

    let resp = cli
        .get("/static/css/site.css")
        .header(header::ACCEPT_ENCODING, "br")
        .header(header::IF_NONE_MATCH, etag.as_str())
        .send()
        .await;
    resp.assert_status(StatusCode::NOT_MODIFIED);
    resp.assert_header(header::CACHE_CONTROL, "no-cache");
}

#[tokio::test]
async fn head_has_headers_but_no_body() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let resp = cli.head(site_css_url(&files)).send().await;
    resp.assert_status_is_ok();
    resp.assert_header(header::CONTENT_TYPE, "text/css; charset=utf-8");
    let len = original("css/site.css").len().to_string();
    resp.assert_header(header::CONTENT_LENGTH, len.as_str());
    assert!(body(resp).await.is_empty());
}

#[tokio::test]
async fn content_types_of_other_files() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let resp = cli.get(files.url("img/favicon.svg").unwrap()).send().await;
    resp.assert_status_is_ok();
    resp.assert_header(header::CONTENT_TYPE, "image/svg+xml");
    assert_eq!(body(resp).await, original("img/favicon.svg"));

    let resp = cli.get(files.url("js/app.js").unwrap()).send().await;
    resp.assert_header(header::CONTENT_TYPE, "text/javascript; charset=utf-8");
    resp.assert_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let files = files();
    let cli = TestClient::new(app(&files));
    for path in [
        "/static/css/nope.css",
        "/static/css/site.0000000000.css",
        "/static/",
        "/static",
        "/static/css",
        "/static/css/",
        "/static//css/site.css",
        "/static/CSS/SITE.CSS",
        "/static/css/site.css/",
    ] {
        cli.get(path)
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn path_traversal_is_404() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let raw = TestClient::new(files.clone().endpoint());
    for path in [
        "/static/../Cargo.toml",
        "/static/../app/Cargo.toml",
        "/static/css/../../Cargo.toml",
        "/static/css/../css/site.css",
        "/static/./css/site.css",
        "/static/%2e%2e/Cargo.toml",
        "/static/..%2fCargo.toml",
        "/static/css/..%2f..%2fCargo.toml",
        "/static/..%5cCargo.toml",
    ] {
        let resp = cli.get(path).send().await;
        resp.assert_status(StatusCode::NOT_FOUND);
        let inner = path.strip_prefix("/static").unwrap();
        raw.get(inner)
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn not_found_is_a_poem_error_with_status_404() {
    let files = files();
    let ep = files.endpoint();
    let req = Request::builder().uri_str("/nope.css").finish();
    let err = ep
        .call(req)
        .await
        .expect_err("unknown file must be an error");
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_methods_are_rejected() {
    let files = files();
    let cli = TestClient::new(app(&files));
    let resp = cli.request(Method::POST, site_css_url(&files)).send().await;
    resp.assert_status(StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn vendored_htmx_matches_version_file() {
    let version = String::from_utf8(original("vendor/htmx/VERSION")).unwrap();
    assert!(version.contains("version: 2.0."), "{version}");
    assert!(version.contains("integrity: sha512-"), "{version}");
    let sha: String = Sha256::digest(original("vendor/htmx/htmx.min.js"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        version.contains(&format!("sha256 htmx.min.js: {sha}")),
        "htmx.min.js does not match VERSION"
    );
    assert!(!original("vendor/htmx/LICENSE").is_empty());
}

#[test]
fn app_js_sets_strict_csp_config() {
    let js = String::from_utf8(original("js/app.js")).unwrap();
    for needle in [
        "config.includeIndicatorStyles = false",
        "config.allowEval = false",
        "config.allowScriptTags = false",
        "config.responseHandling",
        "422",
        "429",
    ] {
        assert!(js.contains(needle), "app.js lacks {needle}");
    }
}

// ----- Compression middleware -----

fn big_html() -> String {
    let mut s = String::from("<!doctype html><html><body><main>");
    for i in 0..200 {
        s.push_str(&format!(
            "<p class=\"story\">Paragraph {i} of a story about compression.</p>\n"
        ));
    }
    s.push_str("</main></body></html>");
    s
}

fn responder(content_type: &'static str, body: Vec<u8>) -> impl Endpoint<Output = Response> {
    make_sync(move |_req| {
        Response::builder()
            .content_type(content_type)
            .body(body.clone())
    })
}

#[tokio::test]
async fn compression_brotli_for_large_html() {
    let html = big_html();
    assert!(html.len() > 860);
    let cli = TestClient::new(
        responder("text/html; charset=utf-8", html.clone().into_bytes()).with(Compression::new()),
    );
    let resp = cli
        .get("/")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_header(header::CONTENT_ENCODING, "br");
    resp.assert_header(header::VARY, "accept-encoding");
    resp.assert_header_is_not_exist(header::CONTENT_LENGTH);
    let data = body(resp).await;
    assert!(data.len() < html.len());
    assert_eq!(unbrotli(&data), html.as_bytes());
}

#[tokio::test]
async fn compression_gzip_when_br_not_accepted() {
    let html = big_html();
    let cli = TestClient::new(
        responder("text/html; charset=utf-8", html.clone().into_bytes()).with(Compression::new()),
    );
    let resp = cli
        .get("/")
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await;
    resp.assert_header(header::CONTENT_ENCODING, "gzip");
    assert_eq!(gunzip(&body(resp).await), html.as_bytes());
}

#[tokio::test]
async fn compression_identity_without_accept_encoding_but_vary() {
    let html = big_html();
    let cli = TestClient::new(
        responder("text/html; charset=utf-8", html.clone().into_bytes()).with(Compression::new()),
    );
    let resp = cli.get("/").send().await;
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
    resp.assert_header(header::VARY, "accept-encoding");
    assert_eq!(body(resp).await, html.as_bytes());
}

#[tokio::test]
async fn compression_skips_png() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
    let cli = TestClient::new(responder("image/png", data.clone()).with(Compression::new()));
    let resp = cli
        .get("/")
        .header(header::ACCEPT_ENCODING, "br, gzip")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
    resp.assert_header_is_not_exist(header::VARY);
    assert_eq!(body(resp).await, data);
}

#[tokio::test]
async fn compression_skips_small_body() {
    let small = "<p>hello</p>".repeat(20);
    assert!(small.len() < 860);
    let cli = TestClient::new(
        responder("text/html; charset=utf-8", small.clone().into_bytes()).with(Compression::new()),
    );
    let resp = cli
        .get("/")
        .header(header::ACCEPT_ENCODING, "br, gzip")
        .send()
        .await;
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
    assert_eq!(body(resp).await, small.as_bytes());
}

#[tokio::test]
async fn compression_skips_event_stream_head_and_encoded() {
    let html = big_html();
    let cli = TestClient::new(
        responder("text/event-stream", html.clone().into_bytes()).with(Compression::new()),
    );
    let resp = cli
        .get("/")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
    assert_eq!(body(resp).await, html.as_bytes());

    let cli = TestClient::new(
        responder("text/html; charset=utf-8", html.clone().into_bytes()).with(Compression::new()),
    );
    let resp = cli
        .head("/")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);

    let html2 = html.clone();
    let ep = make_sync(move |_req| {
        Response::builder()
            .content_type("text/html")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(html2.clone())
    })
    .with(Compression::new());
    let resp = TestClient::new(ep)
        .get("/")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_header(header::CONTENT_ENCODING, "gzip");
    assert_eq!(body(resp).await, html.as_bytes());

    let ep = make_sync(|_req| Response::builder().status(StatusCode::NO_CONTENT).finish())
        .with(Compression::new());
    let resp = TestClient::new(ep)
        .get("/")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_status(StatusCode::NO_CONTENT);
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
}

#[tokio::test]
async fn compression_weakens_strong_etag_and_compresses_error_pages() {
    let html = big_html();
    let ep = make_sync(move |_req| {
        Response::builder()
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .content_type("text/html; charset=utf-8")
            .header(header::ETAG, "\"abc\"")
            .body(html.clone())
    })
    .with(Compression::new());
    let resp = TestClient::new(ep)
        .get("/")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    resp.assert_header(header::CONTENT_ENCODING, "br");
    resp.assert_header(header::ETAG, "W/\"abc\"");
}

#[tokio::test]
async fn compression_leaves_static_files_alone() {
    // The static endpoint negotiates itself; wrapping the whole app must not
    // compress twice.
    let files = files();
    let cli = TestClient::new(app(&files).with(Compression::new()));
    let resp = cli
        .get(files.url("vendor/htmx/htmx.min.js").unwrap())
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await;
    resp.assert_header(header::CONTENT_ENCODING, "br");
    assert_eq!(
        unbrotli(&body(resp).await),
        original("vendor/htmx/htmx.min.js")
    );

    let resp = cli
        .get(files.url("vendor/htmx/htmx.min.js").unwrap())
        .send()
        .await;
    resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
    resp.assert_header(header::VARY, "Accept-Encoding");
    assert_eq!(body(resp).await, original("vendor/htmx/htmx.min.js"));
}

#[tokio::test]
async fn compression_respects_own_negotiation_and_no_transform() {
    let html = big_html();
    for (name, value) in [
        (header::VARY, "Accept-Encoding"),
        (header::CACHE_CONTROL, "private, no-transform"),
    ] {
        let html2 = html.clone();
        let ep = make_sync(move |_req| {
            Response::builder()
                .content_type("text/html; charset=utf-8")
                .header(name.clone(), value)
                .body(html2.clone())
        })
        .with(Compression::new());
        let resp = TestClient::new(ep)
            .get("/")
            .header(header::ACCEPT_ENCODING, "br, gzip")
            .send()
            .await;
        resp.assert_header_is_not_exist(header::CONTENT_ENCODING);
        assert_eq!(body(resp).await, html.as_bytes());
    }
}

/// Over a real HTTP/1.1 connection on loopback: what hyper puts on the wire
/// for GET and HEAD (e.g. that HEAD keeps the Content-Length).
#[tokio::test]
async fn real_server_get_and_head() {
    use poem::{
        Server,
        listener::{Acceptor, Listener, TcpListener},
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let files = files();
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind loopback");
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("TCP address");
    let server =
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app(&files).with(Compression::new())));

    async fn raw(addr: std::net::SocketAddr, request: String) -> (String, Vec<u8>) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut buf),
        )
        .await
        .expect("server answered in time")
        .unwrap();
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8(buf[..split].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        (head, buf[split + 4..].to_vec())
    }

    let url = files.url("vendor/htmx/htmx.min.js").unwrap();
    let orig = original("vendor/htmx/htmx.min.js");

    let (head, body) = raw(
        addr,
        format!("GET {url} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: br"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert_eq!(unbrotli(&body), orig);

    let (head, body) = raw(
        addr,
        format!("HEAD {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", orig.len())),
        "{head}"
    );
    assert!(body.is_empty());

    let (head, _) = raw(
        addr,
        "GET /static/../Cargo.toml HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            .to_string(),
    )
    .await;
    assert!(head.starts_with("http/1.1 404"), "{head}");

    server.abort();
}
