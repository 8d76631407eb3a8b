//! Data export jobs: building a user's ZIP (a media-style job: long, I/O heavy, on the
//! media queue) and mailing the download link once it is ready.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, QUEUE_MAIL, QUEUE_MEDIA};

/// Writes the ZIP of export `export_id` (profile, stories and chapters as Markdown and
/// HTML, comments, likes, follows, original uploads, a manifest) to storage, entry by
/// entry, updating the row's progress; then, in one transaction, marks it ready with a
/// download token valid 24 hours and enqueues [`SendExportReady`]. Enqueued in the
/// transaction that created the `exports` row. Each attempt starts over; after the last
/// the row is failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildExport {
    pub export_id: i64,
}

impl Job for BuildExport {
    const NAME: &'static str = "build_export";
    const QUEUE: &'static str = QUEUE_MEDIA;
    // Below ProcessImage (people wait on a new picture in the page they are on), above
    // DeleteMedia.
    const PRIORITY: usize = 3;
    const MAX_ATTEMPTS: usize = 3;
    /// A large account is thousands of chapters and dozens of images.
    const TIMEOUT: Duration = Duration::from_secs(30 * 60);
    const BACKOFF_MIN: Duration = Duration::from_secs(10);
    const BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
}

/// Mails the owner of a ready export its download link. The link's token derives from
/// `key` and the secret key (`tokens::link_token`), so the raw token never rests in the
/// database, and a retried send mails the same link; the export row holds its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendExportReady {
    pub key: Uuid,
    pub export_id: i64,
}

impl SendExportReady {
    /// What `tokens::link_token` is given for this mail's token.
    pub fn token_seed(key: Uuid) -> String {
        format!("export-{key}")
    }
}

impl Job for SendExportReady {
    const NAME: &'static str = "send_export_ready";
    const QUEUE: &'static str = QUEUE_MAIL;
    const PRIORITY: usize = 10;
}
