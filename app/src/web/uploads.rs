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
//! and then checks the image with `media::upload::validate_image`: the magic bytes must be JPEG, PNG or WebP (whatever the
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

use crate::media::upload::{ImageUpload, UploadError, clean_file_name, validate_image, MSG_MALFORMED, MSG_NOT_MULTIPART, MSG_TOO_MANY_PARTS, MSG_TWO_IMAGES, MSG_UTF8, MAX_IMAGE_BYTES};

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

/// The status a refused upload is answered with.
pub fn status_of(e: &UploadError) -> StatusCode {
    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
}

impl From<UploadError> for poem::Error {
    fn from(e: UploadError) -> Self {
        crate::error::Error::from(e).into()
    }
}

/// A failed read, with the text fields read before it (all of them when the image was
/// rejected after the whole form was read), so the handler can show the form again
/// with what the user typed and `error` as the message, with status `status_of(&error)`.
#[derive(Debug)]
pub struct UploadRejection {
    pub error: UploadError,
    pub fields: HashMap<String, String>,
}
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
        Ok(raw) => match raw.map(|r| validate_image(r.bytes, r.file_name)).transpose() {
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
            // PostgreSQL cannot store NUL in text (nor do we want it in a field name).
            if value.contains('\0') || name.contains('\0') {
                return Err(UploadError::bad(crate::web::hostile_input::MSG_NUL));
            }
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
