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
