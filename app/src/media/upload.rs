//! An uploaded image as the rest of the application sees it: sniffed, its header
//! checked, still only in memory. Reading it from a request is `web::uploads`'s job;
//! storing it and its row is `media::db`'s.
//!
//! The magic bytes must be JPEG, PNG or WebP (whatever the browser claimed the type or
//! file name to be), its header must give non-zero dimensions (read with `imagesize`,
//! from the header only: nothing is decoded, so a "20000×20000" header costs nothing)
//! and it must be at most [`MAX_PIXELS`]. A header that parses does not prove the rest of
//! the file is sound: the media job that decodes it must treat a decoding failure as a
//! normal, permanent outcome.

use bytes::Bytes;

/// The largest image accepted (the contract: 10 MiB).
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
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
    pub(crate) fn bad(msg: &str) -> UploadError {
        UploadError::BadRequest(msg.to_string())
    }

    /// 413 or 400.
    pub fn http_status(&self) -> u16 {
        match self {
            UploadError::TooLarge => 413,
            UploadError::BadRequest(_) => 400,
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

pub const MSG_NOT_MULTIPART: &str = "The form was not sent as multipart/form-data.";
pub const MSG_MALFORMED: &str = "The form could not be read.";
pub const MSG_UTF8: &str = "The form contained text that is not valid UTF-8.";
pub const MSG_TOO_MANY_PARTS: &str = "The form has too many fields.";
pub const MSG_TWO_IMAGES: &str = "Please choose only one image.";
pub const MSG_TYPE: &str = "Only JPEG, PNG and WebP images are accepted.";
pub const MSG_DAMAGED: &str = "The image file is damaged or incomplete.";
pub const MSG_PIXELS: &str = "Images can be at most 40 megapixels.";

/// Checks an uploaded file: JPEG, PNG or WebP by its magic bytes, a header that gives
/// non-zero dimensions, at most `MAX_PIXELS`.
pub fn validate_image(bytes: Bytes, file_name: String) -> Result<ImageUpload, UploadError> {
    let kind = ImageKind::sniff(&bytes).ok_or_else(|| UploadError::bad(MSG_TYPE))?;
    let expected = match kind {
        ImageKind::Jpeg => imagesize::ImageType::Jpeg,
        ImageKind::Png => imagesize::ImageType::Png,
        ImageKind::Webp => imagesize::ImageType::Webp,
    };
    if imagesize::image_type(&bytes).ok() != Some(expected) {
        return Err(UploadError::bad(MSG_DAMAGED));
    }
    let size = imagesize::blob_size(&bytes).map_err(|_| UploadError::bad(MSG_DAMAGED))?;
    let (width, height) = match (u32::try_from(size.width), u32::try_from(size.height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        (Ok(0), _) | (_, Ok(0)) => return Err(UploadError::bad(MSG_DAMAGED)),
        _ => return Err(UploadError::bad(MSG_PIXELS)),
    };
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(UploadError::bad(MSG_PIXELS));
    }
    Ok(ImageUpload { bytes: bytes, kind, width, height, original_name: file_name })
}

/// The last path component (browsers on Windows used to send `C:\…\photo.jpg`), without
/// control characters, at most 255 characters.
pub fn clean_file_name(name: &str) -> String {
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
