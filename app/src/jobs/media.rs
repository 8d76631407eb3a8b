//! Media jobs: turning an uploaded original into the variants pages show.

use serde::{Deserialize, Serialize};

use super::{Job, QUEUE_MEDIA};

/// Decode, orient, resize, strip and store the variants of one uploaded image; record
/// its EXIF summary (never GPS). Enqueued in the transaction that created the media row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessImage {
    pub media_id: i64,
}

impl Job for ProcessImage {
    const NAME: &'static str = "process_image";
    const QUEUE: &'static str = QUEUE_MEDIA;
    const PRIORITY: usize = 5;
}
