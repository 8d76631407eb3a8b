//! Image processing for uploads: one original (JPEG, PNG or WebP) in, upright resized
//! variants out, each as lossy WebP and as a JPEG fallback, with every metadata block
//! stripped, plus a small EXIF summary (camera, lens, time taken; never a GPS field).
//!
//! Pure and synchronous: no I/O, no threads of its own (run it on a blocking thread).
//! The pipeline, in order:
//!
//! 1. **Sniff** the magic bytes (anything but JPEG, PNG or WebP is
//!    [`ProcessError::Unsupported`]) and read the dimensions from the header alone; above
//!    [`MAX_PIXELS`] the file is refused ([`ProcessError::TooLarge`]) before any pixel
//!    buffer exists. Each decoder checks its own header again before it allocates.
//! 2. **Metadata**: the EXIF orientation and the summary (kamadak-exif; only named tags
//!    are read, so nothing from the GPS IFD can reach the summary).
//! 3. **Plan** the variants: every requested width not above the upright image's width,
//!    or the image's own width when it is narrower than all of them (never upscaled).
//! 4. **Decode once**. A JPEG is decoded at the smallest DCT scale (1/8, 1/4, 1/2 or
//!    full) that still covers the largest variant, so a 12 MP photo bound for 1600 px is
//!    decoded at 2000×1500, never at full size.
//! 5. **Orient** the pixels (all eight EXIF orientations).
//! 6. **Resize** from the largest variant down, each from the previous one
//!    (fast_image_resize, Lanczos3, SIMD), alpha premultiplied while filtering.
//! 7. **Encode** each size as lossy WebP (libwebp, quality 80, alpha kept) and baseline
//!    JPEG (quality 82, 4:2:0, alpha flattened on white). The encoders are given pixels
//!    only, so the variants carry no EXIF, XMP, ICC or GPS data. Colours are taken as
//!    sRGB (an embedded ICC profile is ignored).
//!
//! A panic anywhere in the pipeline (a decoder bug on a hostile file) is caught and
//! reported as [`ProcessError::Corrupt`].

mod decode;
mod encode;
mod metadata;
mod orient;
mod resize;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// The widths of the variants made for every upload, smallest first.
pub const VARIANT_WIDTHS: [u32; 3] = [320, 800, 1600];

/// The largest image accepted, in pixels (width × height as stored in the file).
pub const MAX_PIXELS: u64 = 40_000_000;

/// The longest side a variant may have (WebP cannot encode more).
pub const MAX_VARIANT_SIDE: u32 = 16_383;

/// Lossy WebP quality (libwebp's 0–100 scale).
pub const WEBP_QUALITY: f32 = 80.0;

/// JPEG quality (libjpeg's 1–100 scale).
pub const JPEG_QUALITY: u8 = 82;

/// The encoding of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Webp,
    Jpeg,
}

impl Format {
    pub fn mime(&self) -> &'static str {
        match self {
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
        }
    }

    /// The file extension, without the dot.
    pub fn ext(&self) -> &'static str {
        match self {
            Format::Webp => "webp",
            Format::Jpeg => "jpg",
        }
    }
}

/// One encoded variant.
#[derive(Clone, PartialEq, Eq)]
pub struct Variant {
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .finish()
    }
}

/// The result of [`process`].
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// Width of the original once upright (after the EXIF orientation).
    pub width: u32,
    /// Height of the original once upright.
    pub height: u32,
    /// The metadata summary: `format` ("jpeg", "png" or "webp"), `width` and `height`
    /// (in pixels, as stored in the file, before orientation), `orientation` (1–8), and
    /// when the file says so `make`, `model`, `lens` and `taken` (DateTimeOriginal as
    /// `YYYY-MM-DDTHH:MM:SS`, followed by the offset such as `+02:00` when recorded).
    /// Never any GPS field.
    pub exif: serde_json::Value,
    /// Ascending width; for each width the WebP variant, then the JPEG one.
    pub variants: Vec<Variant>,
}

/// Why an upload cannot be used. `Display` is a sentence fit to show the image's owner;
/// the `String` is the technical detail, for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("The image file is damaged or incomplete.")]
    Corrupt(String),
    #[error("The image is too large: at most 40 megapixels are accepted (for example 8000 × 5000).")]
    TooLarge(String),
    #[error("This file is not an image Quire can use. Please upload a JPEG, PNG or WebP image.")]
    Unsupported(String),
}

impl ProcessError {
    /// The technical detail (not for the image's owner).
    pub fn detail(&self) -> &str {
        match self {
            ProcessError::Corrupt(d) | ProcessError::TooLarge(d) | ProcessError::Unsupported(d) => d,
        }
    }
}

/// Where the time of one [`process_timed`] call went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Sniffing, header and metadata reading.
    pub probe: Duration,
    pub decode: Duration,
    /// Applying the EXIF orientation (zero when upright already).
    pub orient: Duration,
    pub resize: Duration,
    pub encode_webp: Duration,
    pub encode_jpeg: Duration,
}

impl Timings {
    pub fn encode(&self) -> Duration {
        self.encode_webp + self.encode_jpeg
    }

    pub fn total(&self) -> Duration {
        self.probe + self.decode + self.orient + self.resize + self.encode()
    }
}

/// Makes the variants of `original` for `widths` (normally [`VARIANT_WIDTHS`]).
pub fn process(original: &[u8], widths: &[u32]) -> Result<Processed, ProcessError> {
    process_timed(original, widths).map(|(processed, _)| processed)
}

/// [`process`], also telling where the time went.
pub fn process_timed(original: &[u8], widths: &[u32]) -> Result<(Processed, Timings), ProcessError> {
    match catch_unwind(AssertUnwindSafe(|| run(original, widths))) {
        Ok(result) => result,
        Err(payload) => Err(ProcessError::Corrupt(format!("panic while processing: {}", panic_message(&payload)))),
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// The container formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpeg",
            Kind::Png => "png",
            Kind::Webp => "webp",
        }
    }
}

/// Recognises the format by its magic bytes.
pub(crate) fn sniff(data: &[u8]) -> Result<Kind, ProcessError> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(Kind::Jpeg)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(Kind::Png)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Ok(Kind::Webp)
    } else {
        Err(ProcessError::Unsupported("not a JPEG, PNG or WebP file (magic bytes)".into()))
    }
}

/// Refuses zero-sized and over-large images, from dimensions read off a header.
pub(crate) fn check_dimensions(width: u64, height: u64) -> Result<(), ProcessError> {
    if width == 0 || height == 0 {
        return Err(ProcessError::Corrupt(format!("header says {width}×{height}")));
    }
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(ProcessError::TooLarge(format!("{width}×{height} is over {MAX_PIXELS} pixels")));
    }
    Ok(())
}

/// The header's dimensions, read without decoding anything.
fn header_dimensions(data: &[u8]) -> Result<(u32, u32), ProcessError> {
    let size = imagesize::blob_size(data).map_err(|e| ProcessError::Corrupt(format!("header: {e}")))?;
    let (w, h) = (size.width as u64, size.height as u64);
    check_dimensions(w, h)?;
    // Both fit in u32: each is at least 1 and their product at most MAX_PIXELS.
    Ok((w as u32, h as u32))
}

/// The variants to make, largest first: `(width, height)` in the upright orientation.
pub(crate) fn plan(width: u32, height: u32, widths: &[u32]) -> Result<Vec<(u32, u32)>, ProcessError> {
    let mut chosen: Vec<u32> = widths.iter().copied().filter(|&w| w > 0 && w <= width).collect();
    if chosen.is_empty() {
        chosen.push(width);
    }
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    chosen.dedup();
    let sized = |w: u32| {
        let h = ((w as u64 * height as u64 + width as u64 / 2) / width as u64).max(1);
        (w, h.min(u32::MAX as u64) as u32)
    };
    let planned: Vec<(u32, u32)> =
        chosen.into_iter().map(sized).filter(|&(w, h)| w <= MAX_VARIANT_SIDE && h <= MAX_VARIANT_SIDE).collect();
    if planned.is_empty() {
        return Err(ProcessError::Unsupported(format!("{width}×{height}: proportions too extreme for any variant")));
    }
    Ok(planned)
}

fn run(original: &[u8], widths: &[u32]) -> Result<(Processed, Timings), ProcessError> {
    let mut timings = Timings::default();
    let started = Instant::now();

    let kind = sniff(original)?;
    let (stored_w, stored_h) = header_dimensions(original)?;
    let meta = metadata::read(original);
    let orientation = orient::Orientation::from_exif(meta.orientation);
    let (width, height) = if orientation.swaps_axes() { (stored_h, stored_w) } else { (stored_w, stored_h) };
    let planned = plan(width, height, widths)?;
    let exif = meta.to_json(kind.name(), stored_w, stored_h);
    timings.probe = started.elapsed();

    // The largest variant, in the file's own orientation: what the decoder must cover.
    let (largest_w, largest_h) = planned[0];
    let need = if orientation.swaps_axes() { (largest_h, largest_w) } else { (largest_w, largest_h) };
    let t = Instant::now();
    let decoded = decode::decode(kind, original, (stored_w, stored_h), need)?;
    timings.decode = t.elapsed();

    let t = Instant::now();
    let upright = orient::apply(decoded, orientation);
    timings.orient = t.elapsed();

    let mut resizer = resize::Resizer::new();
    // Each size is resized from the previous (larger) one, the first from the decoded
    // image; the larger pixels are dropped as soon as the next size exists.
    let mut pixels = upright;
    let mut variants = Vec::with_capacity(planned.len() * 2);
    for &(w, h) in &planned {
        let t = Instant::now();
        pixels = resizer.resize(pixels, w, h)?;
        timings.resize += t.elapsed();

        let t = Instant::now();
        let webp = encode::webp(&pixels, WEBP_QUALITY)?;
        timings.encode_webp += t.elapsed();
        let t = Instant::now();
        let jpeg = encode::jpeg(&pixels, JPEG_QUALITY)?;
        timings.encode_jpeg += t.elapsed();

        // Pushed largest first; reversed in pairs below.
        variants.push(Variant { width: w, height: h, format: Format::Jpeg, bytes: jpeg });
        variants.push(Variant { width: w, height: h, format: Format::Webp, bytes: webp });
    }
    variants.reverse();

    Ok((Processed { width, height, exif, variants }, timings))
}

/// Decoded pixels: 8 bits per channel, RGB or RGBA, rows packed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Pixels {
    pub width: u32,
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA, straight alpha).
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Pixels {
    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pixels({}×{}×{})", self.width, self.height, self.channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_never_upscales_and_keeps_aspect() {
        assert_eq!(plan(4000, 3000, &VARIANT_WIDTHS).unwrap(), vec![(1600, 1200), (800, 600), (320, 240)]);
        assert_eq!(plan(800, 1200, &VARIANT_WIDTHS).unwrap(), vec![(800, 1200), (320, 480)]);
        assert_eq!(plan(1000, 10, &VARIANT_WIDTHS).unwrap(), vec![(800, 8), (320, 3)]);
        assert_eq!(plan(200, 100, &VARIANT_WIDTHS).unwrap(), vec![(200, 100)]);
        assert_eq!(plan(5, 1, &[0, 320, 320]).unwrap(), vec![(5, 1)]);
        assert_eq!(plan(3000, 2, &VARIANT_WIDTHS).unwrap(), vec![(1600, 1), (800, 1), (320, 1)]);
    }

    #[test]
    fn plan_drops_variants_too_tall_to_encode() {
        // 1 : 40 — the 1600 px variant would be 64000 px tall.
        assert_eq!(plan(1000, 40_000, &VARIANT_WIDTHS).unwrap(), vec![(320, 12_800)]);
        assert!(matches!(plan(1, 40_000_000, &VARIANT_WIDTHS), Err(ProcessError::Unsupported(_))));
        // Nor wider than WebP allows, whatever the caller asks for.
        assert_eq!(plan(30_000, 1000, &[20_000, 1600]).unwrap(), vec![(1600, 53)]);
    }

    #[test]
    fn dimensions_are_checked() {
        assert!(check_dimensions(8000, 5000).is_ok());
        assert!(matches!(check_dimensions(8000, 5001), Err(ProcessError::TooLarge(_))));
        assert!(matches!(check_dimensions(u32::MAX as u64, u32::MAX as u64), Err(ProcessError::TooLarge(_))));
        assert!(matches!(check_dimensions(0, 10), Err(ProcessError::Corrupt(_))));
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(), Kind::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(), Kind::Png);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), Kind::Webp);
        assert!(matches!(sniff(b"GIF89a"), Err(ProcessError::Unsupported(_))));
        assert!(matches!(sniff(b""), Err(ProcessError::Unsupported(_))));
        assert!(matches!(sniff(b"RIFF\0\0\0\0WAVE"), Err(ProcessError::Unsupported(_))));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(ProcessError::Corrupt("x".into()).to_string(), "The image file is damaged or incomplete.");
        assert_eq!(ProcessError::TooLarge("x".into()).detail(), "x");
        assert_eq!(Format::Webp.mime(), "image/webp");
        assert_eq!(Format::Jpeg.ext(), "jpg");
    }
}
