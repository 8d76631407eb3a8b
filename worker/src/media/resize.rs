//! Downscaling with fast_image_resize (Lanczos3 convolution, SIMD chosen at run time).
//! RGBA is filtered premultiplied (so transparent pixels lend no colour to their
//! neighbours): the source is premultiplied in place, which it can be since it is
//! dropped after the resize, rather than copied as fast_image_resize would do — that
//! copy was a second full-size buffer (160 MB for a 40 MP RGBA PNG).

use fast_image_resize as fr;

use super::{Pixels, ProcessError};

/// One resizer for all the variants of an image: it keeps its scratch buffers.
pub(crate) struct Resizer {
    inner: fr::Resizer,
    mul_div: fr::MulDiv,
    options: fr::ResizeOptions,
}

impl Resizer {
    pub fn new() -> Resizer {
        Resizer {
            inner: fr::Resizer::new(),
            mul_div: fr::MulDiv::default(),
            options: fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3))
                .use_alpha(false),
        }
    }

    /// `src` resized to `width`×`height` (returned as is when it has that size already).
    pub fn resize(&mut self, mut src: Pixels, width: u32, height: u32) -> Result<Pixels, ProcessError> {
        if (src.width, src.height) == (width, height) {
            return Ok(src);
        }
        let failed = |e: &dyn std::fmt::Display| ProcessError::Corrupt(format!("resize: {e}"));
        let pixel_type = if src.has_alpha() { fr::PixelType::U8x4 } else { fr::PixelType::U8x3 };
        let mut from = fr::images::Image::from_slice_u8(src.width, src.height, &mut src.data, pixel_type).map_err(|e| failed(&e))?;
        if src.channels == 4 {
            self.mul_div.multiply_alpha_inplace(&mut from).map_err(|e| failed(&e))?;
        }
        let mut to = fr::images::Image::new(width, height, pixel_type);
        self.inner.resize(&from, &mut to, &self.options).map_err(|e| failed(&e))?;
        if src.channels == 4 {
            self.mul_div.divide_alpha_inplace(&mut to).map_err(|e| failed(&e))?;
        }
        Ok(Pixels { width, height, channels: src.channels, data: to.into_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizes_and_keeps_flat_colour() {
        let src = Pixels { width: 40, height: 20, channels: 3, data: [10u8, 120, 250].repeat(800) };
        let out = Resizer::new().resize(src, 10, 5).unwrap();
        assert_eq!((out.width, out.height, out.data.len()), (10, 5, 150));
        assert!(out.data.chunks_exact(3).all(|px| px == [10, 120, 250]));
    }

    #[test]
    fn transparent_pixels_do_not_bleed_colour() {
        // Left half opaque red, right half fully transparent green: premultiplied
        // filtering must not tint the red with green.
        let mut data = Vec::new();
        for _y in 0..8 {
            for x in 0..16 {
                data.extend_from_slice(if x < 8 { &[255, 0, 0, 255] } else { &[0, 255, 0, 0] });
            }
        }
        let out = Resizer::new().resize(Pixels { width: 16, height: 8, channels: 4, data }, 4, 2).unwrap();
        for px in out.data.chunks_exact(4) {
            if px[3] > 0 {
                assert!(px[1] < 8, "green bled into {px:?}");
            }
        }
    }
}
