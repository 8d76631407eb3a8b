//! Mail jobs. Each carries a `key`, unique per job, that makes sending idempotent.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, QUEUE_MAIL};

/// Sends the "confirm your email" message with a fresh single-use link. The worker
/// creates the token, so the raw token never rests in the database, not even in the
/// queue table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendVerificationEmail {
    pub key: Uuid,
    pub user_id: i64,
}

impl Job for SendVerificationEmail {
    const NAME: &'static str = "send_verification_email";
    const QUEUE: &'static str = QUEUE_MAIL;
    const PRIORITY: usize = 10;
}

/// Sends a password-reset link (valid one hour).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendPasswordReset {
    pub key: Uuid,
    pub user_id: i64,
}

impl Job for SendPasswordReset {
    const NAME: &'static str = "send_password_reset";
    const QUEUE: &'static str = QUEUE_MAIL;
    const PRIORITY: usize = 10;
}

impl SendVerificationEmail {
    pub fn new(user_id: i64) -> Self {
        Self { key: Uuid::new_v4(), user_id }
    }
}

impl SendPasswordReset {
    pub fn new(user_id: i64) -> Self {
        Self { key: Uuid::new_v4(), user_id }
    }
}
