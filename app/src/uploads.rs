//! Multipart forms with (at most) one image file, read safely and entirely in memory.
//!
//! [`read_multipart`] enforces, while reading:
//! - the whole body ≤ [`MAX_BODY_BYTES`] and the file ≤ [`MAX_IMAGE_BYTES`] → 413
//!   ([`UploadError::TooLarge`]), stopping within a chunk of the first byte too many (the
//!   rest of the body is never read);
//! - each text field ≤ [`MAX_TEXT_FIELD_BYTES`] (413) and valid UTF-8 (400), at most
//!   [`MAX_PARTS`] parts (400);
//! - a `multipart/form-data` content type with a boundary and a well-formed body (400).
//!
//! and then checks the image: the magic bytes must be JPEG, PNG or WebP (whatever the
//! browser claimed the type or file name to be), its header must give non-zero
//! dimensions (read with `imagesize`, from the header only: nothing is decoded, so a
//! "20000×20000" header costs nothing) and it must be at most [`MAX_PIXELS`]. A header
//! that parses does not prove the rest of the file is sound: the media job that decodes
//! it must treat a decoding failure as a normal, permanent outcome.
//!
//! Nothing is written anywhere: the caller stores `image.bytes` itself once the rest of
//! the form is valid. CSRF is checked before the handler runs (see `web::csrf`), which
//! requires the `csrf_token` hidden input to be the form's first field.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use poem::{Body, Request, http::StatusCode};

/// The largest image accepted (the contract: 10 MiB).
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// The largest multipart body: the image plus room for the text fields.
pub const MAX_BODY_BYTES: u64 = 11 * 1024 * 1024;
/// After a 413, the rest of the body is read and thrown away up to this many bytes in
/// all: a browser still sending its upload shows a "connection reset" instead of our
/// page if we answer and close early. Beyond it, the connection is cut.
pub const DRAIN_LIMIT_BYTES: u64 = 32 * 1024 * 1024;
/// The largest text field.
pub const MAX_TEXT_FIELD_BYTES: usize = 1024 * 1024;
/// At most this many parts (fields) in one form.
pub const MAX_PARTS: usize = 100;
/// The contract's 40 megapixels.
pub const MAX_PIXELS: u64 = 40_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    /// From the magic bytes alone.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageKind::Jpeg)
        } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
            Some(ImageKind::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageKind::Webp)
        } else {
            None
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
        }
    }
}

/// A validated image, still only in memory.
#[derive(Clone)]
pub struct ImageUpload {
    pub bytes: Bytes,
    pub kind: ImageKind,
    /// As stored in the header (before any EXIF rotation).
    pub width: u32,
    pub height: u32,
    /// The browser-supplied file name, reduced to its last path component, without
    /// control characters, at most 255 characters. Untrusted: for display only, never
    /// part of a storage key or a path.
    pub original_name: String,
}

impl std::fmt::Debug for ImageUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageUpload")
            .field("bytes", &self.bytes.len())
            .field("kind", &self.kind)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("original_name", &self.original_name)
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct MultipartForm {
    /// Every field other than the image, by name. A repeated name keeps its first value.
    pub fields: HashMap<String, String>,
    /// `None` when the file input was left empty (or absent).
    pub image: Option<ImageUpload>,
}

impl MultipartForm {
    /// The field's value, or "" when absent (like `#[serde(default)]` on a form struct).
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// 413: the file, a text field or the whole body is over its limit.
    #[error("The upload is too large: images can be at most 10 MiB.")]
    TooLarge,
    /// 400, with a message that is safe (and meant) to show on the form.
    #[error("{0}")]
    BadRequest(String),
}

impl UploadError {
    fn bad(msg: &str) -> UploadError {
        UploadError::BadRequest(msg.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            UploadError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<UploadError> for crate::error::Error {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge => crate::error::Error::PayloadTooLarge,
            UploadError::BadRequest(msg) => crate::error::Error::BadRequest(msg),
        }
    }
}

impl From<UploadError> for poem::Error {
    fn from(e: UploadError) -> Self {
        crate::error::Error::from(e).into()
    }
}

/// A failed read, with the text fields read before it (all of them when the image was
/// rejected after the whole form was read), so the handler can show the form again
/// with what the user typed and `error` as the message, with status `error.status()`.
#[derive(Debug)]
pub struct UploadRejection {
    pub error: UploadError,
    pub fields: HashMap<String, String>,
}

pub const MSG_NOT_MULTIPART: &str = "The form was not sent as multipart/form-data.";
pub const MSG_MALFORMED: &str = "The form could not be read.";
pub const MSG_UTF8: &str = "The form contained text that is not valid UTF-8.";
pub const MSG_TOO_MANY_PARTS: &str = "The form has too many fields.";
pub const MSG_TWO_IMAGES: &str = "Please choose only one image.";
pub const MSG_TYPE: &str = "Only JPEG, PNG and WebP images are accepted.";
pub const MSG_DAMAGED: &str = "The image file is damaged or incomplete.";
pub const MSG_PIXELS: &str = "Images can be at most 40 megapixels.";

/// Reads the multipart body; the part named `image_field` is the image (an empty part
/// means no file was chosen), every other part a UTF-8 text field.
pub async fn read_multipart(req: &Request, body: Body, image_field: &str) -> Result<MultipartForm, UploadError> {
    read_multipart_keeping_fields(req, body, image_field).await.map_err(|r| r.error)
}

/// [`read_multipart`], but a failure keeps the text fields read so far.
pub async fn read_multipart_keeping_fields(
    req: &Request,
    body: Body,
    image_field: &str,
) -> Result<MultipartForm, UploadRejection> {
    let mut fields = HashMap::new();
    match read_parts(req, body, image_field, &mut fields).await {
        Ok(raw) => match raw.map(validate_image).transpose() {
            Ok(image) => Ok(MultipartForm { fields, image }),
            Err(error) => Err(UploadRejection { error, fields }),
        },
        Err(error) => Err(UploadRejection { error, fields }),
    }
}

struct RawImage {
    bytes: Bytes,
    file_name: String,
}

async fn read_parts(
    req: &Request,
    body: Body,
    image_field: &str,
    fields: &mut HashMap<String, String>,
) -> Result<Option<RawImage>, UploadError> {
    let boundary = req
        .content_type()
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| UploadError::bad(MSG_NOT_MULTIPART))?;
    // No early refusal on a large `Content-Length`: reading up to the limit keeps the
    // text fields sent before the file, so the form can be shown again with them.
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(DRAIN_LIMIT_BYTES));
    let mut multipart = multer::Multipart::with_constraints(OneChunkPerPoll::new(body), boundary, constraints);
    let mut total = 0u64;

    let mut image: Option<RawImage> = None;
    let mut parts = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(from_multer)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(UploadError::bad(MSG_TOO_MANY_PARTS));
        }
        let name = field.name().unwrap_or_default().to_string();
        let is_image = name == image_field;
        let limit = if is_image { MAX_IMAGE_BYTES } else { MAX_TEXT_FIELD_BYTES };
        let file_name = field.file_name().map(clean_file_name).unwrap_or_default();
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(from_multer)? {
            total += chunk.len() as u64;
            if buf.len() + chunk.len() > limit || total > MAX_BODY_BYTES {
                // Drain (bounded) so the client reads our 413 page, then refuse.
                while let Ok(Some(_)) = field.chunk().await {}
                drop(field);
                while let Ok(Some(mut rest)) = multipart.next_field().await {
                    while let Ok(Some(_)) = rest.chunk().await {}
                }
                return Err(UploadError::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        if is_image {
            if buf.is_empty() {
                continue; // no file chosen
            }
            if image.is_some() {
                return Err(UploadError::bad(MSG_TWO_IMAGES));
            }
            image = Some(RawImage { bytes: buf.freeze(), file_name });
        } else {
            let value = String::from_utf8(buf.to_vec()).map_err(|_| UploadError::bad(MSG_UTF8))?;
            fields.entry(name).or_insert(value);
        }
    }
    Ok(image)
}

/// multer pulls from its stream until the stream is pending, so a body that is already
/// there (a fast client, a test) would be buffered whole, up to the stream limit, before
/// our per-field limit is looked at. Handing it at most [`PIECE`] bytes per poll, then
/// `Pending` (with an immediate wake-up), makes it parse as it goes: reading stops within
/// a piece of a field's limit, and the text fields before an oversized file are kept.
struct OneChunkPerPoll {
    inner: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    /// The rest of the last chunk (split without copying).
    pending: Bytes,
    just_yielded: bool,
}

const PIECE: usize = 64 * 1024;

impl OneChunkPerPoll {
    fn new(body: Body) -> Self {
        OneChunkPerPoll { inner: body.into_bytes_stream().boxed(), pending: Bytes::new(), just_yielded: false }
    }
}

impl futures::Stream for OneChunkPerPoll {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.just_yielded {
            self.just_yielded = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.pending.is_empty() {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => self.pending = chunk,
                other => return other,
            }
        }
        let n = self.pending.len().min(PIECE);
        let piece = self.pending.split_to(n);
        self.just_yielded = true;
        Poll::Ready(Some(Ok(piece)))
    }
}

fn from_multer(e: multer::Error) -> UploadError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => UploadError::TooLarge,
        _ => UploadError::bad(MSG_MALFORMED),
    }
}

fn validate_image(raw: RawImage) -> Result<ImageUpload, UploadError> {
    let kind = ImageKind::sniff(&raw.bytes).ok_or_else(|| UploadError::bad(MSG_TYPE))?;
    let expected = match kind {
        ImageKind::Jpeg => imagesize::ImageType::Jpeg,
        ImageKind::Png => imagesize::ImageType::Png,
        ImageKind::Webp => imagesize::ImageType::Webp,
    };
    if imagesize::image_type(&raw.bytes).ok() != Some(expected) {
        return Err(UploadError::bad(MSG_DAMAGED));
    }
    let size = imagesize::blob_size(&raw.bytes).map_err(|_| UploadError::bad(MSG_DAMAGED))?;
    let (width, height) = match (u32::try_from(size.width), u32::try_from(size.height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        (Ok(0), _) | (_, Ok(0)) => return Err(UploadError::bad(MSG_DAMAGED)),
        _ => return Err(UploadError::bad(MSG_PIXELS)),
    };
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(UploadError::bad(MSG_PIXELS));
    }
    Ok(ImageUpload { bytes: raw.bytes, kind, width, height, original_name: raw.file_name })
}

/// The last path component (browsers on Windows used to send `C:\…\photo.jpg`), without
/// control characters, at most 255 characters.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    base.chars().filter(|c| !c.is_control()).take(255).collect::<String>().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageKind::Jpeg));
        assert_eq!(ImageKind::sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageKind::Png));
        assert_eq!(ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
        assert_eq!(ImageKind::sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(ImageKind::sniff(b"GIF89a"), None);
        assert_eq!(ImageKind::sniff(b""), None);
    }

    #[test]
    fn file_names_are_cleaned() {
        assert_eq!(clean_file_name("C:\\Users\\me\\cat.jpg"), "cat.jpg");
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("a\u{0}b\r\n.png"), "ab.png");
    }
}
