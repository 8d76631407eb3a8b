//! Encoders. They are handed pixels only, so nothing of the original's metadata can
//! reach a variant: the WebP is a bare `VP8 ` chunk (or `VP8X` + `ALPH` + `VP8 ` with
//! alpha, no EXIF/XMP/ICCP chunks); the JPEG has a JFIF APP0 and nothing else.

use std::ffi::c_int;
use std::mem::MaybeUninit;

use libwebp_sys as sys;

use super::{Pixels, ProcessError};

fn failed(what: &str, detail: impl std::fmt::Display) -> ProcessError {
    // Only an allocation failure or a bug can get here; the owner is told the file
    // could not be used.
    ProcessError::Corrupt(format!("{what} encoding failed: {detail}"))
}

/// Lossy WebP at `quality` (0–100), keeping alpha when the pixels have some. Single
/// threaded, method 4 (libwebp's and libvips' default effort).
pub(crate) fn webp(p: &Pixels, quality: f32) -> Result<Vec<u8>, ProcessError> {
    let (width, height) = (c_int::try_from(p.width), c_int::try_from(p.height));
    let (Ok(width), Ok(height)) = (width, height) else { return Err(failed("WebP", "dimensions")) };
    let stride = width.checked_mul(p.channels as c_int).ok_or_else(|| failed("WebP", "stride"))?;
    assert_eq!(p.data.len(), p.width as usize * p.height as usize * p.channels);

    // SAFETY: every libwebp struct is initialised by its own init function before use
    // (their ABI version checked); the picture reads `p.data` (length asserted above,
    // stride = width × channels) only during the import; the memory writer's pointer
    // stays valid (the writer is not moved) until `WebPEncode` returns, and both the
    // picture and the writer are freed exactly once by their guards.
    unsafe {
        let mut config = MaybeUninit::<sys::WebPConfig>::uninit();
        if sys::WebPConfigInitInternal(
            config.as_mut_ptr(),
            sys::WebPPreset::WEBP_PRESET_DEFAULT,
            quality,
            sys::WEBP_ENCODER_ABI_VERSION as c_int,
        ) == 0
        {
            return Err(failed("WebP", "config version"));
        }
        let mut config = config.assume_init();
        config.lossless = 0;
        config.method = 4;
        config.thread_level = 0;
        config.alpha_quality = 100;
        if sys::WebPValidateConfig(&config) == 0 {
            return Err(failed("WebP", "invalid config"));
        }

        let mut picture = MaybeUninit::<sys::WebPPicture>::uninit();
        if sys::WebPPictureInitInternal(picture.as_mut_ptr(), sys::WEBP_ENCODER_ABI_VERSION as c_int) == 0 {
            return Err(failed("WebP", "picture version"));
        }
        let mut picture = PictureGuard(picture.assume_init());
        picture.0.use_argb = 0;
        picture.0.width = width;
        picture.0.height = height;
        let imported = if p.has_alpha() {
            sys::WebPPictureImportRGBA(&mut picture.0, p.data.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(&mut picture.0, p.data.as_ptr(), stride)
        };
        if imported == 0 {
            return Err(failed("WebP", format!("import: {:?}", picture.0.error_code)));
        }

        let mut writer = MaybeUninit::<sys::WebPMemoryWriter>::uninit();
        sys::WebPMemoryWriterInit(writer.as_mut_ptr());
        let mut writer = WriterGuard(writer.assume_init());
        picture.0.writer = Some(sys::WebPMemoryWrite);
        picture.0.custom_ptr = (&raw mut writer.0).cast();
        if sys::WebPEncode(&config, &mut picture.0) == 0 {
            return Err(failed("WebP", format!("{:?}", picture.0.error_code)));
        }
        if writer.0.mem.is_null() {
            return Err(failed("WebP", "no output"));
        }
        Ok(std::slice::from_raw_parts(writer.0.mem, writer.0.size).to_vec())
    }
}

struct PictureGuard(sys::WebPPicture);

impl Drop for PictureGuard {
    fn drop(&mut self) {
        // SAFETY: initialised by WebPPictureInitInternal; freeing is idempotent.
        unsafe { sys::WebPPictureFree(&mut self.0) }
    }
}

struct WriterGuard(sys::WebPMemoryWriter);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // SAFETY: initialised by WebPMemoryWriterInit.
        unsafe { sys::WebPMemoryWriterClear(&mut self.0) }
    }
}

/// Baseline JPEG at `quality`, 4:2:0, alpha flattened on white.
pub(crate) fn jpeg(p: &Pixels, quality: u8) -> Result<Vec<u8>, ProcessError> {
    let (Ok(width), Ok(height)) = (u16::try_from(p.width), u16::try_from(p.height)) else {
        return Err(failed("JPEG", "dimensions"));
    };
    let flattened;
    let rgb = if p.has_alpha() {
        flattened = flatten_on_white(&p.data);
        &flattened[..]
    } else {
        &p.data[..]
    };
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.encode(rgb, width, height, jpeg_encoder::ColorType::Rgb).map_err(|e| failed("JPEG", e))?;
    Ok(out)
}

/// RGBA (straight alpha) composited over white, as RGB.
pub(crate) fn flatten_on_white(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = u32::from(px[3]);
        let blend = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        out.extend_from_slice(&[blend(px[0]), blend(px[1]), blend(px[2])]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening() {
        assert_eq!(flatten_on_white(&[10, 20, 30, 255, 10, 20, 30, 0, 0, 0, 0, 128]), vec![10, 20, 30, 255, 255, 255, 127, 127, 127]);
    }

    #[test]
    fn webp_encodes_rgb_and_rgba() {
        let rgb = Pixels { width: 17, height: 9, channels: 3, data: vec![90; 17 * 9 * 3] };
        let bytes = webp(&rgb, 80.0).unwrap();
        assert_eq!((&bytes[..4], &bytes[8..12]), (&b"RIFF"[..], &b"WEBP"[..]));
        let rgba = Pixels { width: 17, height: 9, channels: 4, data: [90, 90, 90, 100].repeat(17 * 9) };
        let bytes = webp(&rgba, 80.0).unwrap();
        assert_eq!(&bytes[12..16], b"VP8X");
        assert!(bytes.windows(4).any(|w| w == b"ALPH"));
    }

    #[test]
    fn jpeg_encodes() {
        let rgb = Pixels { width: 17, height: 9, channels: 3, data: vec![90; 17 * 9 * 3] };
        let bytes = jpeg(&rgb, 82).unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
        assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9]);
    }
}
