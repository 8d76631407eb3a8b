//! Uploaded images (covers, avatars): the `media` table (`db`), what an upload is before
//! it is stored (`upload`), the pages that serve variants and the figure fragment
//! (`pages`), and how templates draw a figure (`figure_value`).
//!
//! Originals are stored privately under `originals/` and never served; only keys under
//! `variants/` are. Variant keys carry a content hash, so their responses are immutable.
//! URLs name media by `public_id` (a random UUID), never by the sequential `id`, and
//! variant keys are `variants/{public_id}/{hash}-{width}.{ext}`: neither a figure nor a
//! file of an image one may not see can be found by counting. (Rows processed before
//! public ids existed keep their `variants/{id}/…` keys: the 64-bit content hash in them
//! is what makes those unguessable.)
//!
//! Uploading needs a confirmed email address and is limited per account
//! ([`count_upload`]); a replaced cover or avatar is deleted, files and row, by the
//! `DeleteMedia` job that [`db::replace_optional`] queues with the change.

pub mod db;
pub mod pages;
pub mod upload;

use minijinja::{Value, context};

pub use db::{Media, MediaStatus, Purpose, Slot, VariantRef};

use crate::{
    error::{Error, Result},
    ratelimit::{RateLimiter, limits},
};

/// Why an image was not stored although it was a valid one: shown on the form's file
/// field, the form answered with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRefusal {
    pub status: u16,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl UploadRefusal {
    /// 403: only confirmed addresses upload, so throwaway accounts cannot fill storage.
    pub fn unverified() -> UploadRefusal {
        UploadRefusal {
            status: 403,
            message: "Confirm your email address before uploading images: use the link we sent you, or send it again from your settings. Nothing was saved.".into(),
            retry_after_secs: None,
        }
    }
}

/// Counts one upload by `user_id` against [`limits::UPLOADS_PER_ACCOUNT`]: call it once
/// the form is otherwise valid, just before storing. `Some` (429) when over the limit.
pub async fn count_upload(limiter: &RateLimiter, user_id: i64) -> Result<Option<UploadRefusal>> {
    match limiter.hit(&format!("upload:{user_id}"), limits::UPLOADS_PER_ACCOUNT).await {
        Ok(()) => Ok(None),
        Err(Error::TooManyRequests { retry_after_secs }) => Ok(Some(UploadRefusal {
            status: 429,
            message: format!(
                "You have uploaded {} images in the last hour, the most we accept. You can upload again in {}. Nothing was saved.",
                limits::UPLOADS_PER_ACCOUNT.max,
                minutes(retry_after_secs)
            ),
            retry_after_secs: Some(retry_after_secs),
        })),
        Err(e) => Err(e),
    }
}

/// "1 minute", "12 minutes": a wait, rounded up.
pub fn minutes(secs: u64) -> String {
    match secs.div_ceil(60).max(1) {
        1 => "1 minute".into(),
        n => format!("{n} minutes"),
    }
}

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
    // For sharing (OpenGraph, Twitter cards): the 1600 px JPEG (JPEG because not every
    // link-preview scraper reads WebP), or the widest JPEG of an image too small for it.
    let share = media
        .variants
        .iter()
        .filter(|v| v.format == "jpeg" && v.width <= 1600)
        .max_by_key(|v| v.width)
        // Our own key (`variants/{uuid}/{hash}-{width}.jpg`): nothing in it needs escaping.
        .map(|v| context! { src => Value::from_safe_string(format!("/media/{}", v.key)), width => v.width, height => v.height });
    context! {
        share => share,
        public_id => media.public_id.to_string(),
        status => media.status.as_str(),
        error => &media.error,
        width => width,
        height => height,
        webp_srcset => srcset("webp"),
        jpeg_srcset => srcset("jpeg"),
        src => fallback,
    }
}

