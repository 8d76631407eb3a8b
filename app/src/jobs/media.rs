//! Media jobs: turning an uploaded original into the variants pages show, and removing
//! images nothing shows any more.

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

/// Delete a media row that nothing refers to any more (a replaced cover or avatar): its
/// original and every variant file, then the row. Enqueued in the transaction that
/// pointed the story or user at the new image. Safe to run twice, and never deletes a
/// row a story or user still refers to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteMedia {
    pub media_id: i64,
}

impl Job for DeleteMedia {
    const NAME: &'static str = "delete_media";
    const QUEUE: &'static str = QUEUE_MEDIA;
    // Below ProcessImage: people wait for new pictures, nobody waits for a deletion.
    const PRIORITY: usize = 1;
}
