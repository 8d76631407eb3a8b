//! `worker::media::process` on real images made here: JPEGs with hand-built EXIF (GPS
//! included), XMP and ICC segments, a PNG with alpha, a WebP, a tiny image, and broken or
//! hostile files. Outputs are decoded with the `image` crate (other decoders than the
//! pipeline's own for JPEG) and their bytes inspected for any surviving metadata.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use image::{ExtendedColorType, ImageEncoder, ImageFormat, RgbaImage};
use worker::media::{Format, MAX_PIXELS, ProcessError, Processed, VARIANT_WIDTHS, process};

// ---- allocation tracking --------------------------------------------------------------

/// Records, per thread, the largest single allocation asked for, so a test can show
/// that a refused file never got a pixel buffer.
struct Tracking;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f`, returning its result and the largest allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|l| l.set(0));
    let out = f();
    (out, LARGEST_ALLOCATION.with(Cell::get))
}

// ---- images made here -----------------------------------------------------------------

const RED: [u8; 3] = [230, 20, 20];

/// A photo-like RGB image (gradients and a little noise) with a red block in its
/// top-left corner, `block` pixels wide and tall, to tell where that corner went.
fn picture(width: u32, height: u32, block: (u32, u32)) -> Vec<u8> {
    let mut seed = 0x2545_F491u32;
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 9) as i32 - 4;
            if x < block.0 && y < block.1 {
                out.extend_from_slice(&RED);
            } else {
                let g = 60 + (120 * x / width.max(1)) as i32 + noise;
                let b = 80 + (120 * y / height.max(1)) as i32 + noise;
                out.extend_from_slice(&[40, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]);
            }
        }
    }
    out
}

fn encode_jpeg(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(rgb, width, height, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// `jpeg` with `segments` (complete marker segments) inserted right after SOI.
fn with_segments(jpeg: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for s in segments {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 2).unwrap();
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&len.to_be_bytes());
    s.extend_from_slice(payload);
    s
}

// TIFF field types.
const BYTE: u16 = 1;
const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;
const RATIONAL: u16 = 5;
const UNDEFINED: u16 = 7;

struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    value: Vec<u8>,
}

fn ascii(tag: u16, s: &str) -> Entry {
    let mut value = s.as_bytes().to_vec();
    value.push(0);
    Entry { tag, kind: ASCII, count: value.len() as u32, value }
}

fn short(tag: u16, v: u16) -> Entry {
    Entry { tag, kind: SHORT, count: 1, value: v.to_be_bytes().to_vec() }
}

fn long(tag: u16, v: u32) -> Entry {
    Entry { tag, kind: LONG, count: 1, value: v.to_be_bytes().to_vec() }
}

fn rationals(tag: u16, values: &[(u32, u32)]) -> Entry {
    let value = values.iter().flat_map(|(n, d)| [n.to_be_bytes(), d.to_be_bytes()].concat()).collect();
    Entry { tag, kind: RATIONAL, count: values.len() as u32, value }
}

/// One big-endian IFD starting at `start` (offsets are from the TIFF header), with its
/// out-of-line values after it. Its length does not depend on `start`.
fn ifd(start: u32, entries: &[Entry]) -> Vec<u8> {
    let data_start = start + 2 + 12 * entries.len() as u32 + 4;
    let mut head = (entries.len() as u16).to_be_bytes().to_vec();
    let mut data = Vec::new();
    for e in entries {
        head.extend_from_slice(&e.tag.to_be_bytes());
        head.extend_from_slice(&e.kind.to_be_bytes());
        head.extend_from_slice(&e.count.to_be_bytes());
        if e.value.len() <= 4 {
            let mut inline = e.value.clone();
            inline.resize(4, 0);
            head.extend_from_slice(&inline);
        } else {
            head.extend_from_slice(&(data_start + data.len() as u32).to_be_bytes());
            data.extend_from_slice(&e.value);
            if data.len() % 2 == 1 {
                data.push(0);
            }
        }
    }
    head.extend_from_slice(&0u32.to_be_bytes());
    head.extend_from_slice(&data);
    head
}

const MAKE: &str = "QuireTestCam";
const MODEL: &str = "Model Q1";
const LENS: &str = "Q 24-70mm F2.8";
const GPS_SECRET: &str = "QUIRE-GPS-SECRET-PLACE";
const XMP_SECRET: &str = "QUIRE-XMP-SECRET";
const ICC_SECRET: &str = "QUIRE-ICC-SECRET";

/// An EXIF APP1 segment: IFD0 (Make, Model, Orientation, pointers), the Exif IFD
/// (DateTimeOriginal, OffsetTimeOriginal, LensModel) and a GPS IFD with coordinates.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let exif_entries = || {
        vec![
            ascii(0x9003, "2024:05:17 14:03:22"), // DateTimeOriginal
            ascii(0x9011, "+02:00"),              // OffsetTimeOriginal
            ascii(0xA434, LENS),                  // LensModel
        ]
    };
    let gps_entries = || {
        let mut area = b"ASCII\0\0\0".to_vec();
        area.extend_from_slice(GPS_SECRET.as_bytes());
        vec![
            Entry { tag: 0x0000, kind: BYTE, count: 4, value: vec![2, 3, 0, 0] }, // GPSVersionID
            ascii(0x0001, "N"),                                                   // GPSLatitudeRef
            rationals(0x0002, &[(48, 1), (51, 1), (2959, 100)]),                  // GPSLatitude
            ascii(0x0003, "E"),                                                   // GPSLongitudeRef
            rationals(0x0004, &[(2, 1), (17, 1), (4013, 100)]),                   // GPSLongitude
            Entry { tag: 0x001C, kind: UNDEFINED, count: area.len() as u32, value: area }, // GPSAreaInformation
        ]
    };
    let ifd0_entries = |exif_at: u32, gps_at: u32| {
        vec![
            ascii(0x010F, MAKE),
            ascii(0x0110, MODEL),
            short(0x0112, orientation),
            long(0x8769, exif_at), // ExifIFDPointer
            long(0x8825, gps_at),  // GPSInfoIFDPointer
        ]
    };
    let ifd0_len = ifd(0, &ifd0_entries(0, 0)).len() as u32;
    let exif_at = 8 + ifd0_len;
    let exif_ifd = ifd(exif_at, &exif_entries());
    let gps_at = exif_at + exif_ifd.len() as u32;
    let gps_ifd = ifd(gps_at, &gps_entries());

    let mut tiff = b"MM\0\x2A\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&ifd(8, &ifd0_entries(exif_at, gps_at)));
    tiff.extend_from_slice(&exif_ifd);
    tiff.extend_from_slice(&gps_ifd);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    segment(0xE1, &payload)
}

fn xmp_app1() -> Vec<u8> {
    let mut payload = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    payload.extend_from_slice(
        format!(
            "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>\
             <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description \
             xmlns:exif='http://ns.adobe.com/exif/1.0/' exif:GPSLatitude='48,51.49N' \
             exif:UserComment='{XMP_SECRET}'/></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
        )
        .as_bytes(),
    );
    segment(0xE1, &payload)
}

fn icc_app2() -> Vec<u8> {
    let mut payload = b"ICC_PROFILE\0\x01\x01".to_vec();
    payload.extend_from_slice(ICC_SECRET.as_bytes());
    segment(0xE2, &payload)
}

/// A JPEG carrying EXIF (with GPS), XMP and ICC segments.
fn camera_jpeg(width: u32, height: u32, orientation: u16, block: (u32, u32)) -> Vec<u8> {
    let plain = encode_jpeg(&picture(width, height, block), width, height);
    with_segments(&plain, &[exif_app1(orientation), xmp_app1(), icc_app2()])
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

// ---- inspecting outputs ---------------------------------------------------------------

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Strings no variant may contain anywhere (long enough never to occur by chance in
/// compressed data).
const NEVER_ANYWHERE: &[&[u8]] = &[
    b"Exif\0\0",
    b"http://ns.adobe.com",
    b"ICC_PROFILE",
    b"xpacket",
    MAKE.as_bytes(),
    GPS_SECRET.as_bytes(),
    XMP_SECRET.as_bytes(),
    ICC_SECRET.as_bytes(),
];

/// Short byte strings that must not occur in a variant's headers (the bytes before the
/// entropy-coded data, or the RIFF chunk headers).
const NEVER_IN_HEADERS: &[&[u8]] = &[b"Exif", b"GPS", b"XMP", b"ICC", &[0x88, 0x25], &[0x25, 0x88], &[0x87, 0x69]];

/// Checks a variant's structure: a JPEG has only JFIF APP0, tables, frame and scan
/// headers before its first scan; a WebP only VP8/VP8L/VP8X/ALPH chunks and no
/// metadata flag.
fn assert_clean(format: Format, bytes: &[u8]) {
    for needle in NEVER_ANYWHERE {
        assert!(!contains(bytes, needle), "{format:?} variant contains {:?}", String::from_utf8_lossy(needle));
    }
    let headers = match format {
        Format::Jpeg => jpeg_headers(bytes),
        Format::Webp => webp_headers(bytes),
    };
    for needle in NEVER_IN_HEADERS {
        assert!(!contains(&headers, needle), "{format:?} variant headers contain {needle:?}");
    }
}

fn jpeg_headers(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "JPEG starts with SOI");
    let mut i = 2;
    loop {
        assert_eq!(bytes[i], 0xFF, "marker expected at {i}");
        let marker = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        match marker {
            0xE0 => assert!(bytes[i + 4..].starts_with(b"JFIF\0"), "APP0 is JFIF"),
            0xDB | 0xC4 | 0xC0 | 0xDD => {}
            0xDA => return bytes[..i + 2 + len].to_vec(),
            other => panic!("unexpected JPEG marker segment FF{other:02X} (metadata?)"),
        }
        i += 2 + len;
    }
}

fn webp_headers(bytes: &[u8]) -> Vec<u8> {
    assert_eq!((&bytes[..4], &bytes[8..12]), (&b"RIFF"[..], &b"WEBP"[..]));
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize + 8, bytes.len(), "RIFF size");
    let mut headers = bytes[..12].to_vec();
    let mut i = 12;
    while i < bytes.len() {
        let fourcc = &bytes[i..i + 4];
        let size = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
        headers.extend_from_slice(&bytes[i..i + 8]);
        match fourcc {
            b"VP8X" => {
                let flags = bytes[i + 8];
                assert_eq!(flags & 0b0010_1110, 0, "VP8X declares ICC, EXIF, XMP or animation: {flags:#010b}");
                headers.extend_from_slice(&bytes[i + 8..i + 8 + size]);
            }
            b"VP8 " | b"VP8L" | b"ALPH" => {}
            other => panic!("unexpected WebP chunk {:?}", String::from_utf8_lossy(other)),
        }
        i += 8 + size + size % 2;
    }
    headers
}

fn decode(format: Format, bytes: &[u8]) -> image::DynamicImage {
    let f = match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Webp => ImageFormat::WebP,
    };
    image::load_from_memory_with_format(bytes, f).unwrap_or_else(|e| panic!("{format:?} variant does not decode: {e}"))
}

/// Each variant: the expected (width, height) for both formats, in order (ascending
/// width, WebP then JPEG), decodable to its declared size, and metadata-free.
fn assert_variants(p: &Processed, sizes: &[(u32, u32)]) {
    let got: Vec<(u32, u32, Format)> = p.variants.iter().map(|v| (v.width, v.height, v.format)).collect();
    let want: Vec<(u32, u32, Format)> = sizes.iter().flat_map(|&(w, h)| [(w, h, Format::Webp), (w, h, Format::Jpeg)]).collect();
    assert_eq!(got, want);
    for v in &p.variants {
        assert_clean(v.format, &v.bytes);
        let img = decode(v.format, &v.bytes);
        assert_eq!((img.width(), img.height()), (v.width, v.height), "{v:?} decodes to its declared size");
    }
}

fn rgb_at(img: &image::DynamicImage, x: u32, y: u32) -> [u8; 3] {
    let p = img.to_rgb8();
    p.get_pixel(x, y).0
}

fn is_red(px: [u8; 3]) -> bool {
    px[0] > 180 && px[1] < 90 && px[2] < 90
}

// ---- the tests ------------------------------------------------------------------------

#[test]
fn camera_jpeg_rotated_resized_and_stripped() {
    // Stored 1200×800 landscape, orientation 6: upright it is 800×1200 portrait, so only
    // the 320 and 800 variants exist. The red block (stored top-left) ends up top-right.
    let original = camera_jpeg(1200, 800, 6, (300, 200));
    assert!(contains(&original, MAKE.as_bytes()) && contains(&original, GPS_SECRET.as_bytes()), "fixture has metadata");

    let p = process(&original, &VARIANT_WIDTHS).expect("processed");
    assert_eq!((p.width, p.height), (800, 1200));
    assert_variants(&p, &[(320, 480), (800, 1200)]);

    for v in &p.variants {
        let img = decode(v.format, &v.bytes);
        let (w, h) = (v.width, v.height);
        // Upright, the block covers x ≥ 600/800, y < 300/1200 (scaled to the variant).
        assert!(is_red(rgb_at(&img, w * 7 / 8, h / 16)), "{v:?}: top-right should be red");
        assert!(!is_red(rgb_at(&img, w / 8, h / 16)), "{v:?}: top-left should not be red");
        assert!(!is_red(rgb_at(&img, w * 7 / 8, h * 15 / 16)), "{v:?}: bottom-right should not be red");
    }

    let exif = p.exif.as_object().expect("exif is an object");
    assert_eq!(exif["make"], MAKE);
    assert_eq!(exif["model"], MODEL);
    assert_eq!(exif["lens"], LENS);
    assert_eq!(exif["taken"], "2024-05-17T14:03:22+02:00");
    assert_eq!(exif["width"], 1200);
    assert_eq!(exif["height"], 800);
    assert_eq!(exif["orientation"], 6);
    assert_eq!(exif["format"], "jpeg");
    let allowed = ["format", "width", "height", "orientation", "make", "model", "lens", "taken"];
    for key in exif.keys() {
        assert!(allowed.contains(&key.as_str()), "unexpected key {key}");
        assert!(!key.to_ascii_lowercase().contains("gps"), "GPS key {key}");
    }
    let text = p.exif.to_string();
    assert!(!text.contains(GPS_SECRET) && !text.to_ascii_lowercase().contains("gps") && !text.contains("2959"), "{text}");
}

#[test]
fn every_orientation_ends_upright() {
    // A 64×40 image whose red block marks the stored top-left corner; where that corner
    // lands upright, per EXIF: 1,5 top-left; 2,6 top-right; 3,7 bottom-right; 4,8 bottom-left.
    let expected = [(1, "tl"), (2, "tr"), (3, "br"), (4, "bl"), (5, "tl"), (6, "tr"), (7, "br"), (8, "bl")];
    for (orientation, corner) in expected {
        let original = camera_jpeg(64, 40, orientation, (16, 16));
        let p = process(&original, &VARIANT_WIDTHS).unwrap();
        let (w, h) = if orientation >= 5 { (40, 64) } else { (64, 40) };
        assert_eq!((p.width, p.height), (w, h), "orientation {orientation}");
        assert_variants(&p, &[(w, h)]);
        let img = decode(Format::Jpeg, &p.variants[1].bytes);
        let corners = [("tl", 4, 4), ("tr", w - 5, 4), ("br", w - 5, h - 5), ("bl", 4, h - 5)];
        for (name, x, y) in corners {
            assert_eq!(is_red(rgb_at(&img, x, y)), name == corner, "orientation {orientation}, corner {name}");
        }
    }
}

#[test]
fn png_with_alpha_keeps_it_in_webp_and_flattens_jpeg_on_white() {
    // 640×480: left half opaque blue, right half fully transparent, a translucent band.
    let (w, h) = (640u32, 480u32);
    let img = RgbaImage::from_fn(w, h, |x, y| {
        if x >= w / 2 {
            image::Rgba([0, 200, 0, 0])
        } else if y < 40 {
            image::Rgba([20, 40, 200, 128])
        } else {
            image::Rgba([20, 40, 200, 255])
        }
    });
    let mut original = Vec::new();
    image::codecs::png::PngEncoder::new(&mut original).write_image(&img, w, h, ExtendedColorType::Rgba8).unwrap();

    let p = process(&original, &VARIANT_WIDTHS).unwrap();
    assert_eq!((p.width, p.height), (640, 480));
    assert_variants(&p, &[(320, 240)]);
    assert_eq!(p.exif["format"], "png");
    assert_eq!(p.exif["orientation"], 1);
    assert!(p.exif.get("make").is_none());

    let webp = decode(Format::Webp, &p.variants[0].bytes);
    assert!(webp.color().has_alpha(), "WebP keeps alpha");
    let webp = webp.to_rgba8();
    assert!(webp.get_pixel(300, 200)[3] < 10, "transparent stays transparent");
    assert!(webp.get_pixel(20, 200)[3] > 245, "opaque stays opaque");
    let band = webp.get_pixel(20, 8)[3];
    assert!((100..=156).contains(&band), "translucent stays translucent ({band})");

    let jpeg = decode(Format::Jpeg, &p.variants[1].bytes);
    let transparent = rgb_at(&jpeg, 300, 200);
    assert!(transparent.iter().all(|&c| c > 245), "transparent area is white in the JPEG: {transparent:?}");
    let opaque = rgb_at(&jpeg, 20, 200);
    assert!(opaque[2] > 170 && opaque[0] < 60, "opaque area stays blue: {opaque:?}");
}

#[test]
fn webp_input() {
    let (w, h) = (900u32, 600u32);
    let rgb = picture(w, h, (90, 60));
    let mut original = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut original).write_image(&rgb, w, h, ExtendedColorType::Rgb8).unwrap();

    let p = process(&original, &VARIANT_WIDTHS).unwrap();
    assert_eq!((p.width, p.height), (900, 600));
    assert_variants(&p, &[(320, 213), (800, 533)]);
    assert_eq!(p.exif["format"], "webp");
    let img = decode(Format::Webp, &p.variants[2].bytes);
    assert!(is_red(rgb_at(&img, 20, 20)) && !is_red(rgb_at(&img, 700, 500)));
}

#[test]
fn small_image_is_not_upscaled() {
    let original = encode_jpeg(&picture(200, 150, (0, 0)), 200, 150);
    let p = process(&original, &VARIANT_WIDTHS).unwrap();
    assert_eq!((p.width, p.height), (200, 150));
    assert_variants(&p, &[(200, 150)]);
    assert!(p.exif.get("make").is_none() && p.exif.get("taken").is_none());
}

#[test]
fn large_photo_gets_all_three_widths() {
    let original = camera_jpeg(2000, 1500, 1, (100, 100));
    let p = process(&original, &VARIANT_WIDTHS).unwrap();
    assert_variants(&p, &[(320, 240), (800, 600), (1600, 1200)]);
    // Reduced-size decode (1/2 of 2000 would be 1000 < 1600: decoded full here) and
    // the chain of resizes keep the content in place.
    let img = decode(Format::Jpeg, &p.variants[5].bytes);
    assert!(is_red(rgb_at(&img, 30, 30)) && !is_red(rgb_at(&img, 200, 200)));
}

#[test]
fn text_file_is_unsupported() {
    let err = process(b"Dear diary, today I uploaded a text file.\n", &VARIANT_WIDTHS).unwrap_err();
    assert!(matches!(err, ProcessError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("JPEG, PNG or WebP"), "{err}");
    for other in [&b""[..], b"GIF89a\x01\x00\x01\x00", b"%PDF-1.7", b"RIFF\x04\0\0\0WAVE"] {
        assert!(matches!(process(other, &VARIANT_WIDTHS), Err(ProcessError::Unsupported(_))), "{other:?}");
    }
}

#[test]
fn truncated_jpeg_is_corrupt() {
    let original = camera_jpeg(640, 480, 1, (10, 10));
    let header_end = original.len() - encode_jpeg(&picture(640, 480, (10, 10)), 640, 480).len() + 2;
    for cut in [3, 40, header_end + 10, original.len() / 2, original.len() * 9 / 10] {
        let err = process(&original[..cut], &VARIANT_WIDTHS).unwrap_err();
        assert!(matches!(err, ProcessError::Corrupt(_)), "cut at {cut}: {err:?}");
        assert_eq!(err.to_string(), "The image file is damaged or incomplete.");
    }
}

#[test]
fn truncated_png_and_webp_are_corrupt() {
    let rgb = picture(300, 200, (0, 0));
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&rgb, 300, 200, ExtendedColorType::Rgb8).unwrap();
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp).write_image(&rgb, 300, 200, ExtendedColorType::Rgb8).unwrap();
    for (name, file) in [("png", png), ("webp", webp)] {
        for cut in [20, file.len() / 2, file.len() - 5] {
            let err = process(&file[..cut], &VARIANT_WIDTHS).unwrap_err();
            assert!(matches!(err, ProcessError::Corrupt(_)), "{name} cut at {cut}: {err:?}");
        }
    }
}

#[test]
fn mangled_files_never_panic() {
    // Deterministic byte flips over small valid files: every outcome is a Result.
    let rgb = picture(48, 32, (8, 8));
    let jpeg = camera_jpeg(48, 32, 6, (8, 8));
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&rgb, 48, 32, ExtendedColorType::Rgb8).unwrap();
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp).write_image(&rgb, 48, 32, ExtendedColorType::Rgb8).unwrap();
    let mut seed = 0x9E37_79B9u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for file in [jpeg, png, webp] {
        for _ in 0..60 {
            let mut broken = file.clone();
            for _ in 0..1 + next() % 4 {
                let at = next() as usize % broken.len();
                broken[at] ^= (next() % 255 + 1) as u8;
            }
            let _ = process(&broken, &VARIANT_WIDTHS);
        }
    }
}

#[test]
fn png_claiming_20000_square_is_too_large_without_allocating() {
    // A well-formed PNG whose header claims 20000×20000 RGBA (1.6 GB decoded).
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    file.extend_from_slice(&png_chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    file.extend_from_slice(&png_chunk(b"IEND", &[]));

    let started = Instant::now();
    let (result, largest) = largest_allocation(|| process(&file, &VARIANT_WIDTHS));
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(matches!(err, ProcessError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("40 megapixels"), "{err}");
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn jpeg_claiming_too_many_pixels_is_too_large_without_allocating() {
    // A real small JPEG whose frame header is patched to claim 9000×9000 (81 MP).
    let mut file = encode_jpeg(&picture(64, 64, (0, 0)), 64, 64);
    let sof = file.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
    file[sof + 5..sof + 7].copy_from_slice(&9000u16.to_be_bytes());
    file[sof + 7..sof + 9].copy_from_slice(&9000u16.to_be_bytes());
    let (result, largest) = largest_allocation(|| process(&file, &VARIANT_WIDTHS));
    assert!(matches!(result, Err(ProcessError::TooLarge(_))), "{result:?}");
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

#[test]
fn limit_is_forty_megapixels() {
    assert_eq!(MAX_PIXELS, 40_000_000);
    // 8000×5000 is exactly the limit: its header passes (the file is then cut short).
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&8000u32.to_be_bytes());
    ihdr.extend_from_slice(&5000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    file.extend_from_slice(&png_chunk(b"IEND", &[]));
    assert!(matches!(process(&file, &VARIANT_WIDTHS), Err(ProcessError::Corrupt(_))));
    file[16..20].copy_from_slice(&8001u32.to_be_bytes());
    let fixed_crc = crc32(&file[12..29]).to_be_bytes();
    file[29..33].copy_from_slice(&fixed_crc);
    assert!(matches!(process(&file, &VARIANT_WIDTHS), Err(ProcessError::TooLarge(_))));
}
