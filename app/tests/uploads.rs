//! Multipart uploads: `uploads::read_multipart` through a tiny endpoint, and the CSRF
//! check on multipart bodies (`web::csrf`), both in isolation (no database) and on the
//! real app (`TestApp`, needs PostgreSQL).

mod common;

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use app::{
    sessions::RequestSession,
    media::upload::{ImageKind, MAX_IMAGE_BYTES, UploadError},
    web::{csrf::CsrfProtection, uploads},
};
use bytes::Bytes;
use common::TestApp;
use futures::StreamExt;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, http::StatusCode, post, test::TestClient};

// ---- fixtures ---------------------------------------------------------------------

/// An 8×6 baseline JPEG (made with jpeg-encoder, decodes with jpeg-decoder).
const JPEG_HEX: &[&str] = &[
    "ffd8ffe000104a46494600010200000100010000ffc00011080006000803002200011101021101ffdb004300100b0c0e",
    "0c0a100e0d0e1211101318281a181616183123251d283a333d3c3933383740485c4e404457453738506d51575f626768",
    "673e4d71797064785c656763ffdb0043011112121815182f1a1a2f634238426363636363636363636363636363636363",
    "636363636363636363636363636363636363636363636363636363636363636363ffc4001f0000010501010101010100",
    "000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221",
    "31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a",
    "434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949596979899",
    "9aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1",
    "f2f3f4f5f6f7f8f9faffc4001f0100030101010101010101010000000000000102030405060708090a0bffc400b51100",
    "020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f015",
    "6272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869",
    "6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4",
    "c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c03000001110211003f008e",
    "c3438b8e957ffb0e2f6a9ec3b5685635711539b70c062eafb15a9fffd9",
];

/// A 3×2 lossless WebP (made and decoded with image-webp).
const WEBP_HEX: &[&str] = &[
    "5249464698000000574542505650384c8c0000002f02400010cd552022021ec826000000008001000000000000000000",
    "00002000000000000000000000000000000000000000740000c003910000000000387f00000000800100000000000000",
    "000003000000200000000000000000000000007820010000000000e71f00000000000000000000000001000000000000",
    "0000000000000000000000001039e516",
];

fn unhex(parts: &[&str]) -> Vec<u8> {
    let s: String = parts.concat();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn jpeg() -> Vec<u8> {
    unhex(JPEG_HEX)
}

fn webp() -> Vec<u8> {
    unhex(WEBP_HEX)
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A valid RGB PNG of `width`×`height`, built by hand. With `claim` the IHDR states other
/// dimensions than the (tiny) pixel data has: a header-only reader must still see them.
fn png(width: u32, height: u32, claim: Option<(u32, u32)>) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x * 40) as u8, (y * 60) as u8, 200]);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let idat = z.finish().unwrap();
    let (w, h) = claim.unwrap_or((width, height));
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, adaptive, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

const BOUNDARY: &str = "----QuireTestBoundary7MA4YWxkTrZu0gW";

enum Part<'a> {
    Text(&'a str, &'a [u8]),
    File { name: &'a str, file_name: &'a str, content_type: &'a str, data: &'a [u8] },
}

/// A multipart/form-data body as a browser sends it.
fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
                out.extend_from_slice(value);
            }
            Part::File { name, file_name, content_type, data } => {
                out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n")
                        .as_bytes(),
                );
                out.extend_from_slice(data);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn file<'a>(file_name: &'a str, data: &'a [u8]) -> Part<'a> {
    Part::File { name: "cover", file_name, content_type: "application/octet-stream", data }
}

/// A body delivered in `chunk`-byte pieces, counting how many bytes were pulled from it.
fn counted_body(bytes: Vec<u8>, chunk: usize) -> (Body, Arc<AtomicUsize>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks: Vec<Bytes> = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let stream = futures::stream::iter(chunks).map(move |c| {
        counter.fetch_add(c.len(), Ordering::SeqCst);
        Ok::<_, std::io::Error>(c)
    });
    (Body::from_bytes_stream(stream), pulled)
}

// ---- read_multipart through an endpoint -------------------------------------------

/// Answers what `read_multipart(…, "cover")` made of the body, as JSON (or its error).
async fn describe(mut req: Request) -> poem::Result<Response> {
    let body = req.take_body();
    let form = uploads::read_multipart(&req, body, "cover").await?;
    let mut fields: Vec<_> = form.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    fields.sort();
    let image = form.image.map(|i| {
        serde_json::json!({ "kind": format!("{:?}", i.kind), "width": i.width, "height": i.height, "len": i.bytes.len(), "name": i.original_name })
    });
    Ok(serde_json::json!({ "fields": fields, "image": image }).to_string().into_response())
}

fn upload_client() -> TestClient<impl Endpoint> {
    TestClient::new(Route::new().at("/upload", post(poem::endpoint::make(describe))))
}

struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }
}

async fn send(ct: &str, body: impl Into<Body>) -> Answer {
    let resp = upload_client().post("/upload").content_type(ct).body(body).send().await.0;
    let status = resp.status();
    Answer { status, body: resp.into_body().into_string().await.unwrap_or_default() }
}

async fn upload(parts: &[Part<'_>]) -> Answer {
    send(&content_type(), multipart(parts)).await
}

#[tokio::test]
async fn a_valid_png_jpeg_and_webp_are_read_with_their_dimensions() {
    let png = png(3, 2, None);
    let jpeg = jpeg();
    let webp = webp();
    for (data, kind, w, h, name) in [
        (&png, "Png", 3, 2, "tiny.png"),
        (&jpeg, "Jpeg", 8, 6, "tiny.jpg"),
        (&webp, "Webp", 3, 2, "tiny.webp"),
    ] {
        let a = upload(&[
            Part::Text("csrf_token", b"tok"),
            Part::Text("title", "Ünïcode title".as_bytes()),
            file(&format!("C:\\photos\\{name}"), data),
            Part::Text("summary", b"line one\r\nline two"),
        ])
        .await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        let v = a.json();
        assert_eq!(v["image"]["kind"], kind);
        assert_eq!(v["image"]["width"], w);
        assert_eq!(v["image"]["height"], h);
        assert_eq!(v["image"]["len"], data.len());
        assert_eq!(v["image"]["name"], name, "the file name is reduced to its last component");
        assert_eq!(v["fields"], serde_json::json!(["csrf_token=tok", "summary=line one\r\nline two", "title=Ünïcode title"]));
    }
}

#[tokio::test]
async fn an_empty_file_part_means_no_image() {
    let a = upload(&[Part::Text("title", b"t"), file("", b"")]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["image"], serde_json::Value::Null);
    // And no file part at all.
    let a = upload(&[Part::Text("title", b"t")]).await;
    assert_eq!(a.json()["image"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_text_file_named_jpg_is_refused() {
    let a = upload(&[Part::File { name: "cover", file_name: "cat.jpg", content_type: "image/jpeg", data: b"just some text, not an image" }]).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("Only JPEG, PNG and WebP images are accepted."), "{}", a.body);
    for other in [&b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"[..], b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", b"BM\x00\x00", b"RIFF\x04\x00\x00\x00WAVEfmt "] {
        let a = upload(&[file("x.png", other)]).await;
        assert_eq!(a.status, 400, "{other:?}");
        assert!(a.body.contains("Only JPEG, PNG and WebP"), "{}", a.body);
    }
}

#[tokio::test]
async fn a_truncated_or_damaged_header_is_refused() {
    let jpeg = jpeg();
    let png = png(3, 2, None);
    let mut bad_webp = webp();
    bad_webp.truncate(16);
    for (what, data) in [
        ("jpeg magic only", &jpeg[..3]),
        ("jpeg cut before its frame header", &jpeg[..20]),
        ("jpeg cut inside its frame header", &jpeg[..26]),
        ("png signature only", &png[..8]),
        ("png cut inside IHDR", &png[..20]),
        ("webp cut after its tag", &bad_webp[..]),
    ] {
        let a = upload(&[file("x.jpg", data)]).await;
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert!(a.body.contains("The image file is damaged or incomplete."), "{what}: {}", a.body);
    }
    // A PNG claiming 0×0.
    let a = upload(&[file("x.png", &png_with_claim(0, 0))]).await;
    assert_eq!(a.status, 400);
}

fn png_with_claim(w: u32, h: u32) -> Vec<u8> {
    png(2, 2, Some((w, h)))
}

#[tokio::test]
async fn a_png_claiming_20000_by_20000_is_refused_from_its_header() {
    let data = png_with_claim(20_000, 20_000);
    assert!(data.len() < 200, "the pixels are never there, let alone decoded");
    let started = std::time::Instant::now();
    let a = upload(&[file("huge.png", &data)]).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("Images can be at most 40 megapixels."), "{}", a.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // 40 MP exactly is fine, one row more is not.
    assert_eq!(upload(&[file("ok.png", &png_with_claim(8000, 5000))]).await.status, 200);
    assert_eq!(upload(&[file("no.png", &png_with_claim(8000, 5001))]).await.status, 400);
}

#[tokio::test]
async fn an_11_mib_file_is_413_after_a_bounded_drain() {
    let mut data = png(3, 2, None);
    data.resize(11 * 1024 * 1024, 0);
    let body = multipart(&[Part::Text("title", b"t"), file("big.png", &data)]);
    let total = body.len();
    let (body, pulled) = counted_body(body, 64 * 1024);
    let a = send(&content_type(), body).await;
    assert_eq!(a.status, 413, "{}", a.body);
    let pulled = pulled.load(Ordering::SeqCst);
    // The rest of an 11 MiB body is drained, so a browser still uploading sees the page.
    assert!(pulled as u64 <= app::web::uploads::DRAIN_LIMIT_BYTES + 3 * 64 * 1024, "read {pulled} of {total} bytes");
    // A body far beyond the drain limit is cut off there.
    let mut data = png(3, 2, None);
    data.resize(40 * 1024 * 1024, 0);
    let body = multipart(&[Part::Text("title", b"t"), file("huge.png", &data)]);
    let total = body.len();
    let (body, pulled) = counted_body(body, 64 * 1024);
    assert_eq!(send(&content_type(), body).await.status, 413);
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(pulled < total && pulled as u64 <= app::web::uploads::DRAIN_LIMIT_BYTES + 3 * 64 * 1024, "read {pulled} of {total} bytes");
    // Exactly 10 MiB is accepted.
    let mut data = png(3, 2, None);
    data.resize(MAX_IMAGE_BYTES, 0);
    let a = upload(&[file("max.png", &data)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["image"]["len"], MAX_IMAGE_BYTES);
}

#[tokio::test]
async fn oversized_text_fields_and_bodies_are_413() {
    let big = vec![b'a'; 1024 * 1024 + 1];
    assert_eq!(upload(&[Part::Text("summary", &big)]).await.status, 413);
    // Many medium fields adding up past the body cap.
    let chunk = vec![b'b'; 1000 * 1024];
    let names: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let parts: Vec<Part> = names.iter().map(|n| Part::Text(n, &chunk)).collect();
    assert_eq!(upload(&parts).await.status, 413);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let body = multipart(&[Part::Text("title", b"t")]);
    // No boundary, not multipart at all, no content type.
    for ct in ["multipart/form-data", "multipart/mixed; boundary=x", "application/x-www-form-urlencoded", "text/plain"] {
        let a = send(ct, body.clone()).await;
        assert_eq!(a.status, 400, "{ct}: {}", a.body);
    }
    let resp = upload_client().post("/upload").body(body.clone()).send().await.0;
    assert_eq!(resp.status(), 400);
    // The wrong boundary, a body cut short, garbage.
    let a = send("multipart/form-data; boundary=other", body.clone()).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = send(&content_type(), body[..body.len() - 12].to_vec()).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = send(&content_type(), b"\x00\x01garbage".to_vec()).await;
    assert_eq!(a.status, 400, "{}", a.body);
}

#[tokio::test]
async fn invalid_utf8_in_a_text_field_is_400() {
    let a = upload(&[Part::Text("title", b"caf\xe9")]).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("not valid UTF-8"), "{}", a.body);
}

#[tokio::test]
async fn two_images_are_400_and_repeated_fields_keep_the_first() {
    let png = png(3, 2, None);
    let a = upload(&[file("a.png", &png), file("b.png", &png)]).await;
    assert_eq!(a.status, 400);
    let a = upload(&[Part::Text("title", b"first"), Part::Text("title", b"second")]).await;
    assert_eq!(a.json()["fields"], serde_json::json!(["title=first"]));
}

#[tokio::test]
async fn a_rejected_image_keeps_the_other_fields_for_the_form() {
    let body = multipart(&[Part::Text("title", b"My story"), file("x.jpg", b"text"), Part::Text("summary", b"After the file")]);
    let req = Request::builder().content_type(&content_type()).finish();
    let rejection = uploads::read_multipart_keeping_fields(&req, Body::from(body), "cover").await.unwrap_err();
    assert_eq!(rejection.error.http_status(), 400);
    assert_eq!(rejection.error.to_string(), "Only JPEG, PNG and WebP images are accepted.");
    assert_eq!(rejection.fields.get("title").map(String::as_str), Some("My story"));
    assert_eq!(rejection.fields.get("summary").map(String::as_str), Some("After the file"));
    // Too large: the fields before the file are kept too, even when the whole body (over
    // the body cap as well) arrives as one chunk.
    let mut big = png(3, 2, None);
    big.resize(11 * 1024 * 1024, 0);
    let body = multipart(&[Part::Text("title", b"Big one"), file("big.png", &big)]);
    let rejection = uploads::read_multipart_keeping_fields(&req, Body::from(body), "cover").await.unwrap_err();
    assert_eq!(rejection.error, UploadError::TooLarge);
    assert_eq!(rejection.error.http_status(), 413);
    assert_eq!(rejection.fields.get("title").map(String::as_str), Some("Big one"));
    // And the mapping into the app's error type.
    assert!(matches!(app::error::Error::from(UploadError::TooLarge), app::error::Error::PayloadTooLarge));
    assert_eq!(ImageKind::Jpeg.extension(), "jpg");
}

// ---- CSRF on multipart bodies, without a database ---------------------------------

const GOOD: &str = "the-right-token-for-this-session";

/// Stands in for the session middleware: every request has a session with token GOOD.
fn with_session(ep: impl Endpoint + 'static) -> impl Endpoint {
    ep.before(|mut req: Request| async move {
        req.extensions_mut().insert(RequestSession { user: None, session_id: None, token: None, csrf_token: GOOD.to_string() });
        Ok(req)
    })
}

/// Behind the CSRF middleware: `/echo` answers the body it received, byte for byte;
/// `/upload` parses it like a real handler would.
fn csrf_client() -> TestClient<impl Endpoint> {
    let echo = poem::endpoint::make(|mut req: Request| async move {
        let bytes = req.take_body().into_vec().await.map_err(|_| poem::Error::from_status(StatusCode::BAD_REQUEST))?;
        Ok::<_, poem::Error>(bytes)
    });
    let routes = Route::new().at("/echo", post(echo)).at("/upload", post(poem::endpoint::make(describe)));
    TestClient::new(with_session(routes.with(CsrfProtection)))
}

async fn csrf_post(path: &str, ct: &str, body: Body, headers: &[(&str, &str)]) -> (StatusCode, Vec<u8>) {
    let client = csrf_client();
    let mut req = client.post(path).content_type(ct);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.0;
    (resp.status(), resp.into_body().into_vec().await.unwrap_or_default())
}

#[tokio::test]
async fn multipart_with_the_token_first_passes_through_byte_for_byte() {
    let mut big = png(3, 2, None);
    big.resize(3 * 1024 * 1024 + 17, 0x5a);
    let body = multipart(&[Part::Text("csrf_token", GOOD.as_bytes()), Part::Text("title", b"T"), file("big.png", &big), Part::Text("tail", b"end")]);
    // Odd chunk sizes, so the first part's end straddles chunks, and one big chunk.
    for chunk in [1, 7, 1000, 64 * 1024, body.len()] {
        if chunk == 1 {
            // Byte-at-a-time only for the start: the token part, then the rest at once.
            let (status, echoed) = csrf_post("/echo", &content_type(), byte_then_rest(&body, 300), &[]).await;
            assert_eq!(status, 200);
            assert!(echoed == body, "chunk {chunk}: the handler must see the exact body");
            continue;
        }
        let (b, pulled) = counted_body(body.clone(), chunk);
        let (status, echoed) = csrf_post("/echo", &content_type(), b, &[]).await;
        assert_eq!(status, 200, "chunk {chunk}: {}", String::from_utf8_lossy(&echoed[..echoed.len().min(300)]));
        assert_eq!(echoed.len(), body.len(), "chunk {chunk}");
        assert!(echoed == body, "chunk {chunk}: the handler must see the exact body");
        assert_eq!(pulled.load(Ordering::SeqCst), body.len());
    }
    // And a real handler parses the reassembled body.
    let png = png(3, 2, None);
    let body = multipart(&[Part::Text("csrf_token", GOOD.as_bytes()), Part::Text("title", b"T"), file("c.png", &png)]);
    let (b, _) = counted_body(body, 5);
    let (status, answer) = csrf_post("/upload", &content_type(), b, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["image"]["kind"], "Png");
    assert_eq!(v["fields"], serde_json::json!([format!("csrf_token={GOOD}"), "title=T"]));
}

fn byte_then_rest(body: &[u8], n: usize) -> Body {
    let mut chunks: Vec<Bytes> = body[..n].iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
    chunks.push(Bytes::copy_from_slice(&body[n..]));
    Body::from_bytes_stream(futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)))
}

#[tokio::test]
async fn multipart_without_a_valid_first_token_is_403_and_the_upload_is_not_read() {
    let mut big = png(3, 2, None);
    big.resize(5 * 1024 * 1024, 0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no token", multipart(&[Part::Text("title", b"T"), file("a.png", &big)])),
        ("wrong token", multipart(&[Part::Text("csrf_token", b"wrong"), file("a.png", &big)])),
        ("token not first", multipart(&[Part::Text("title", b"T"), Part::Text("csrf_token", GOOD.as_bytes()), file("a.png", &big)])),
        ("token after the file", multipart(&[file("a.png", &big), Part::Text("csrf_token", GOOD.as_bytes())])),
        (
            "token as a file",
            multipart(&[Part::File { name: "csrf_token", file_name: "t.txt", content_type: "text/plain", data: GOOD.as_bytes() }, file("a.png", &big)]),
        ),
        ("token prefixed", multipart(&[Part::Text("csrf_token", format!("{GOOD}x").as_bytes()), file("a.png", &big)])),
        ("empty token", multipart(&[Part::Text("csrf_token", b""), file("a.png", &big)])),
        ("empty body", Vec::new()),
        ("garbage", b"\x00\x01\x02 not multipart".to_vec()),
    ];
    for (what, body) in cases {
        let total = body.len();
        let (b, pulled) = counted_body(body, 16 * 1024);
        let (status, _) = csrf_post("/echo", &content_type(), b, &[]).await;
        assert_eq!(status, 403, "{what}");
        let pulled = pulled.load(Ordering::SeqCst);
        assert!(pulled <= 64 * 1024 + 16 * 1024, "{what}: read {pulled} of {total} bytes");
    }
    // A first part longer than the bound is refused without reading it all.
    let long = vec![b'x'; 200 * 1024];
    let body = multipart(&[Part::Text("csrf_token", &long), file("a.png", &big)]);
    let (b, pulled) = counted_body(body, 8 * 1024);
    assert_eq!(csrf_post("/echo", &content_type(), b, &[]).await.0, 403);
    assert!(pulled.load(Ordering::SeqCst) <= 64 * 1024 + 8 * 1024);
    // No boundary, or another multipart type: no valid token.
    let body = multipart(&[Part::Text("csrf_token", GOOD.as_bytes())]);
    for ct in ["multipart/form-data", "multipart/form-data; boundary=", "multipart/mixed; boundary=x", "multipart/form-data; boundary=wrong"] {
        assert_eq!(csrf_post("/echo", ct, Body::from(body.clone()), &[]).await.0, 403, "{ct}");
    }
}

#[tokio::test]
async fn the_header_still_works_for_multipart_and_other_bodies() {
    let body = multipart(&[Part::Text("title", b"T")]);
    let (status, echoed) = csrf_post("/echo", &content_type(), Body::from(body.clone()), &[("x-csrf-token", GOOD)]).await;
    assert_eq!(status, 200);
    assert_eq!(echoed, body);
    assert_eq!(csrf_post("/echo", &content_type(), Body::from(body.clone()), &[("x-csrf-token", "wrong")]).await.0, 403);
    // Urlencoded as before.
    let (status, echoed) = csrf_post("/echo", "application/x-www-form-urlencoded", Body::from(format!("a=1&csrf_token={GOOD}")), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(echoed, format!("a=1&csrf_token={GOOD}").into_bytes());
    assert_eq!(csrf_post("/echo", "application/x-www-form-urlencoded", Body::from("csrf_token=nope"), &[]).await.0, 403);
    assert_eq!(csrf_post("/echo", "application/json", Body::from(format!("{{\"csrf_token\":\"{GOOD}\"}}")), &[]).await.0, 403);
}

// ---- CSRF on multipart bodies, the real app (PostgreSQL) --------------------------

#[tokio::test]
async fn the_real_app_checks_the_first_multipart_part() {
    let app = TestApp::new().await;
    let token = app.csrf_token().await;
    let png = png(3, 2, None);
    let fields = |tok: Option<&str>| {
        let mut parts = Vec::new();
        if let Some(t) = tok {
            parts.push(Part::Text("csrf_token", t.as_bytes()));
        }
        parts.extend([Part::Text("username", b"mpuser"), Part::Text("email", b"mp@example.com"), Part::Text("password", b"correct horse battery")]);
        parts.push(file("a.png", &png));
        multipart(&parts)
    };
    for path in ["/signup", "/login", "/password/forgot"] {
        let r = app.post_raw(path, &content_type(), fields(None), &[]).await;
        r.assert_status(403).assert_contains("did not come from this site");
        app.post_raw(path, &content_type(), fields(Some("wrong")), &[]).await.assert_status(403);
        // The right token first: past the middleware, the body intact for the handler,
        // which answers whatever it answers to this form, but not 403.
        let r = app.post_raw(path, &content_type(), fields(Some(&token)), &[]).await;
        assert_ne!(r.status.as_u16(), 403, "{path}: {}", r.body);
        assert!(r.status.as_u16() < 500, "{path}: {} {}", r.status, r.body);
    }
}
