//! Uploaded images (covers, avatars): the `media` table (`db`), what an upload is before
//! it is stored (`upload`), the pages that serve variants and the figure fragment
//! (`pages`), and how templates draw a figure (`figure_value`).
//!
//! Originals are stored privately under `originals/` and never served; only keys under
//! `variants/` are. Variant keys carry a content hash, so their responses are immutable.

pub mod db;
pub mod pages;
pub mod upload;

use minijinja::{Value, context};

pub use db::{Media, MediaStatus, Purpose, VariantRef};

/// What templates need to draw an image: its size (so nothing jumps while loading), the
/// variant URLs by format, or that it is still being processed.
pub fn figure_value(media: &Media) -> Value {
    let srcset = |format: &str| {
        media
            .variants
            .iter()
            .filter(|v| v.format == format)
            .map(|v| format!("/media/{} {}w", v.key, v.width))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fallback = media
        .variants
        .iter()
        .filter(|v| v.format == "jpeg")
        .min_by_key(|v| (v.width as i64 - 800).abs())
        .map(|v| format!("/media/{}", v.key));
    let (width, height) = media
        .variants
        .iter()
        .max_by_key(|v| v.width)
        .map(|v| (v.width as i32, v.height as i32))
        .unwrap_or((media.width, media.height));
    context! {
        id => media.id,
        status => media.status.as_str(),
        error => &media.error,
        width => width,
        height => height,
        webp_srcset => srcset("webp"),
        jpeg_srcset => srcset("jpeg"),
        src => fallback,
    }
}

