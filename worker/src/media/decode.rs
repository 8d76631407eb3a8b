//! Decoding to 8-bit RGB or RGBA, each decoder checking its own header before it
//! allocates. JPEG is decoded at a reduced DCT scale when that still covers the largest
//! variant.

use std::io::Cursor;

use super::{Kind, MAX_PIXELS, Pixels, ProcessError, check_dimensions};

/// Decodes `data` (whose header said `header` = stored width × height). `need` is the
/// size, in the file's own orientation, that the decoded pixels must cover (the largest
/// variant): a JPEG may be decoded smaller than stored, never smaller than that.
pub(crate) fn decode(kind: Kind, data: &[u8], header: (u32, u32), need: (u32, u32)) -> Result<Pixels, ProcessError> {
    let pixels = match kind {
        Kind::Jpeg => jpeg(data, header, need)?,
        Kind::Png => png(data)?,
        Kind::Webp => webp(data)?,
    };
    Ok(drop_opaque_alpha(pixels))
}

// ---- JPEG ----------------------------------------------------------------------------

/// The output size of a JPEG decoded with an IDCT of `k`×`k` (k = 1, 2, 4 or 8 for the
/// scales 1/8, 1/4, 1/2 and 1), as jpeg-decoder and libjpeg compute it.
fn scaled(len: u32, k: u32) -> u32 {
    (len * k).div_ceil(8)
}

/// The smallest IDCT size whose output covers `need` in both dimensions.
pub(crate) fn jpeg_idct_size(full: (u32, u32), need: (u32, u32)) -> u32 {
    [1, 2, 4]
        .into_iter()
        .find(|&k| scaled(full.0, k) >= need.0 && scaled(full.1, k) >= need.1)
        .unwrap_or(8)
}

fn jpeg_error(e: jpeg_decoder::Error) -> ProcessError {
    match e {
        jpeg_decoder::Error::Unsupported(feature) => ProcessError::Unsupported(format!("JPEG feature: {feature:?}")),
        other => ProcessError::Corrupt(format!("JPEG: {other}")),
    }
}

fn jpeg(data: &[u8], header: (u32, u32), need: (u32, u32)) -> Result<Pixels, ProcessError> {
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder.info().ok_or_else(|| ProcessError::Corrupt("JPEG: no frame header".into()))?;
    let full = (u32::from(info.width), u32::from(info.height));
    check_dimensions(full.0.into(), full.1.into())?;
    if full != header {
        // Two readings of one header disagree: a crafted file.
        return Err(ProcessError::Corrupt(format!("JPEG: frame {full:?} but header {header:?}")));
    }
    let channels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::CMYK32 => 4,
        jpeg_decoder::PixelFormat::L16 => return Err(ProcessError::Unsupported("JPEG with more than 8 bits per sample".into())),
    };

    let need = (need.0.min(full.0), need.1.min(full.1));
    let k = jpeg_idct_size(full, need);
    if k < 8 {
        // jpeg-decoder picks the smallest scale reaching either requested dimension;
        // asking for exactly the k-scaled size gets k (or a smaller scale of equal
        // width), which is checked below. Lossless JPEGs cannot be scaled: decoded full.
        match decoder.scale(scaled(full.0, k) as u16, scaled(full.1, k) as u16) {
            Ok((w, h)) if u32::from(w) >= need.0 && u32::from(h) >= need.1 => {}
            _ => {
                let _ = decoder.scale(full.0 as u16, full.1 as u16);
            }
        }
    }
    // Output buffer plus the decoder's planes: generous, but bounded whatever the file.
    decoder.set_max_decoding_buffer_size(MAX_PIXELS as usize * 4 + (1 << 20));
    let raw = decoder.decode().map_err(jpeg_error)?;
    let info = decoder.info().ok_or_else(|| ProcessError::Corrupt("JPEG: no frame header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let expected = width as usize * height as usize * channels;
    if raw.len() != expected {
        return Err(ProcessError::Corrupt(format!("JPEG: {} bytes decoded for {width}×{height}×{channels}", raw.len())));
    }
    let data = match channels {
        1 => gray_to_rgb(&raw),
        4 => cmyk_to_rgb(raw),
        _ => raw,
    };
    Ok(Pixels { width, height, channels: 3, data })
}

/// jpeg-decoder's CMYK is "true" CMYK (0 = no ink; Adobe's inversion already undone).
fn cmyk_to_rgb(mut cmyk: Vec<u8>) -> Vec<u8> {
    let n = cmyk.len() / 4;
    for i in 0..n {
        let [c, m, y, k] = [cmyk[i * 4], cmyk[i * 4 + 1], cmyk[i * 4 + 2], cmyk[i * 4 + 3]];
        let ink = |v: u8| (((255 - u32::from(v)) * (255 - u32::from(k)) + 127) / 255) as u8;
        // Writing pixel i at 3i never overtakes the reads at 4i.
        cmyk[i * 3] = ink(c);
        cmyk[i * 3 + 1] = ink(m);
        cmyk[i * 3 + 2] = ink(y);
    }
    cmyk.truncate(n * 3);
    cmyk
}

// ---- PNG -----------------------------------------------------------------------------

fn png_error(e: png::DecodingError) -> ProcessError {
    match e {
        png::DecodingError::LimitsExceeded => ProcessError::TooLarge("PNG: decoder limits exceeded".into()),
        other => ProcessError::Corrupt(format!("PNG: {other}")),
    }
}

fn png(data: &[u8]) -> Result<Pixels, ProcessError> {
    let mut decoder = png::Decoder::new(Cursor::new(data));
    // Palette and low bit depths expanded, 16 bits stripped: 8-bit gray, gray+alpha, RGB
    // or RGBA out.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(png_error)?;
    let (width, height) = reader.info().size();
    check_dimensions(width.into(), height.into())?;
    let size = reader.output_buffer_size().ok_or_else(|| ProcessError::TooLarge("PNG: buffer size overflows".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(png_error)?;
    buf.truncate(frame.buffer_size());
    if (frame.width, frame.height) != (width, height) || frame.bit_depth != png::BitDepth::Eight {
        return Err(ProcessError::Corrupt("PNG: unexpected frame layout".into()));
    }
    let expected = |c: usize| width as usize * height as usize * c;
    let (channels, data) = match frame.color_type {
        png::ColorType::Rgb => (3, buf),
        png::ColorType::Rgba => (4, buf),
        png::ColorType::Grayscale => (3, gray_to_rgb(&buf)),
        png::ColorType::GrayscaleAlpha => (4, gray_alpha_to_rgba(&buf)),
        png::ColorType::Indexed => return Err(ProcessError::Corrupt("PNG: palette not expanded".into())),
    };
    if data.len() != expected(channels) {
        return Err(ProcessError::Corrupt("PNG: short frame".into()));
    }
    Ok(Pixels { width, height, channels, data })
}

// ---- WebP ----------------------------------------------------------------------------

fn webp(data: &[u8]) -> Result<Pixels, ProcessError> {
    let webp_error = |e: image_webp::DecodingError| match e {
        image_webp::DecodingError::UnsupportedFeature(f) => ProcessError::Unsupported(format!("WebP feature: {f}")),
        other => ProcessError::Corrupt(format!("WebP: {other}")),
    };
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(data)).map_err(webp_error)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width.into(), height.into())?;
    let channels = if decoder.has_alpha() { 4 } else { 3 };
    let size = decoder.output_buffer_size().ok_or_else(|| ProcessError::TooLarge("WebP: buffer size overflows".into()))?;
    let mut buf = vec![0u8; size];
    decoder.read_image(&mut buf).map_err(webp_error)?;
    if buf.len() != width as usize * height as usize * channels {
        return Err(ProcessError::Corrupt("WebP: unexpected buffer size".into()));
    }
    Ok(Pixels { width, height, channels, data: buf })
}

// ---- pixel layout --------------------------------------------------------------------

fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(gray.len() * 3);
    for &v in gray {
        out.extend_from_slice(&[v, v, v]);
    }
    out
}

fn gray_alpha_to_rgba(ga: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ga.len() * 2);
    for px in ga.chunks_exact(2) {
        out.extend_from_slice(&[px[0], px[0], px[0], px[1]]);
    }
    out
}

/// RGBA whose alpha is 255 everywhere becomes RGB, in place: cheaper to resize and
/// encode, and the WebP gets no alpha plane.
pub(crate) fn drop_opaque_alpha(mut p: Pixels) -> Pixels {
    if p.channels != 4 || p.data.chunks_exact(4).any(|px| px[3] != 255) {
        return p;
    }
    let n = p.data.len() / 4;
    for i in 0..n {
        // The write at 3i stays behind the read at 4i.
        p.data.copy_within(i * 4..i * 4 + 3, i * 3);
    }
    p.data.truncate(n * 3);
    p.channels = 3;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idct_size_covers_the_need() {
        // 12 MP photo: 1/2 covers 1600 wide, 1/4 covers 800, 1/8 covers 320.
        assert_eq!(jpeg_idct_size((4000, 3000), (1600, 1200)), 4);
        assert_eq!(jpeg_idct_size((4000, 3000), (800, 600)), 2);
        assert_eq!(jpeg_idct_size((4000, 3000), (320, 240)), 1);
        assert_eq!(jpeg_idct_size((4000, 3000), (2001, 1501)), 8);
        assert_eq!(jpeg_idct_size((1600, 1200), (1600, 1200)), 8);
        assert_eq!(jpeg_idct_size((3200, 2400), (1600, 1200)), 4);
        // Rounding up: 1001 / 2 = 501 (ceil) covers 501.
        assert_eq!(jpeg_idct_size((1001, 1001), (501, 501)), 4);
    }

    #[test]
    fn opaque_alpha_is_dropped_and_real_alpha_kept() {
        let opaque = Pixels { width: 2, height: 1, channels: 4, data: vec![1, 2, 3, 255, 4, 5, 6, 255] };
        let p = drop_opaque_alpha(opaque);
        assert_eq!((p.channels, p.data), (3, vec![1, 2, 3, 4, 5, 6]));
        let translucent = Pixels { width: 2, height: 1, channels: 4, data: vec![1, 2, 3, 255, 4, 5, 6, 7] };
        assert_eq!(drop_opaque_alpha(translucent.clone()), translucent);
    }

    #[test]
    fn cmyk_converts() {
        assert_eq!(cmyk_to_rgb(vec![0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255]), vec![255, 255, 255, 0, 255, 255, 0, 0, 0]);
    }
}
