//! The notification job: one per community action, enqueued in the action's transaction.
//! Its handler (worker `jobs::notify`) creates the in-app notifications in set-based SQL
//! and sends the instant emails; it is idempotent, so a retry creates nothing twice.
//!
//! The payload carries what the handler needs to know who to tell, so the handler does
//! not depend on rows that may have changed since (a deleted comment still notifies with
//! the excerpt it had).

use serde::{Deserialize, Serialize};

use super::{Job, QUEUE_DEFAULT};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    /// `follower_id` started following `followee_id`.
    Follow { follower_id: i64, followee_id: i64 },
    /// `user_id` liked `story_id`, written by `story_author_id`.
    Like { user_id: i64, story_id: i64, story_author_id: i64 },
    /// A comment on `story_id`. The story's author is told (`comment`), and, for a reply,
    /// the parent comment's author (`reply`); never the commenter themselves.
    Comment {
        comment_id: i64,
        story_id: i64,
        commenter_id: i64,
        story_author_id: i64,
        parent_author_id: Option<i64>,
        /// The start of the comment's Markdown (at most 280 characters).
        excerpt: String,
    },
    /// Chapter `number` of `story_id` was published by `author_id` (also sent when a
    /// story with chapters is first published): every follower of the author is told.
    Chapter { story_id: i64, author_id: i64, number: i32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notify {
    pub activity: Activity,
}

impl Job for Notify {
    const NAME: &'static str = "notify";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    const PRIORITY: usize = 5;
}

/// Sends the instant emails of up to [`MAIL_BATCH`] notifications (the `notify` job
/// enqueues one per batch of recipients, all in one statement). Idempotent: each
/// notification is claimed (`emailed_at`) in the transaction that sends its mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendNotificationEmails {
    pub notification_ids: Vec<i64>,
}

/// Recipients per mail job: small enough that a retry redoes little, large enough that a
/// chapter to 100,000 followers is 500 jobs, not 100,000.
pub const MAIL_BATCH: usize = 200;

impl Job for SendNotificationEmails {
    const NAME: &'static str = "send_notification_emails";
    const QUEUE: &'static str = super::QUEUE_MAIL;
    const PRIORITY: usize = 5;
    /// 200 SMTP sends, one after another.
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
}

/// The daily digest, enqueued by the worker's scheduler once per UTC day (`day`: days
/// since the Unix epoch, also its idempotency key). Finds who has something due and
/// enqueues a [`SendDigests`] per batch of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DailyDigest {
    pub day: i64,
}

impl Job for DailyDigest {
    const NAME: &'static str = "daily_digest";
    const QUEUE: &'static str = QUEUE_DEFAULT;
    const MAX_ATTEMPTS: usize = 3;
}

/// Sends day `day`'s digest to each of `user_ids` (at most [`MAIL_BATCH`]). Idempotent:
/// per user, the claim `digest-{day}-{user}` and the marking of what it lists commit in
/// the transaction that sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendDigests {
    pub day: i64,
    pub user_ids: Vec<i64>,
}

impl Job for SendDigests {
    const NAME: &'static str = "send_digests";
    const QUEUE: &'static str = super::QUEUE_MAIL;
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
}
