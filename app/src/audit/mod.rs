//! The audit log: one append-only row per sensitive action, written on the action's own
//! connection so it commits (or rolls back) with it. The table refuses UPDATE, DELETE and
//! TRUNCATE by trigger (migration `trust_safety`), whoever connects.
//!
//! A handler builds an [`Entry`] with who asked (`Origin`, from the request: actor, IP,
//! user agent, request id), what (`action`, `area.verb`), the object, and the state
//! before and after as JSON, then calls [`record`] inside its transaction.

pub mod db;

use serde::Serialize;
use sqlx::PgConnection;

/// Where an action came from: the request's facts, or the command line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Origin {
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

impl Origin {
    /// An action taken from the command line (`web role …`): no request, no IP.
    pub fn command_line(what: &str) -> Origin {
        Origin { actor_name: format!("command line ({what})"), ..Origin::default() }
    }
}

/// Actions, as stored (`area.verb`). Listed once so the admin page can filter by them.
pub mod actions {
    pub const ROLE_CHANGED: &str = "user.role_changed";
    pub const BANNED: &str = "user.banned";
    pub const UNBANNED: &str = "user.unbanned";
    pub const STORY_HIDDEN: &str = "story.hidden";
    pub const STORY_UNHIDDEN: &str = "story.unhidden";
    pub const COMMENT_HIDDEN: &str = "comment.hidden";
    pub const COMMENT_UNHIDDEN: &str = "comment.unhidden";
    pub const PROFILE_HIDDEN: &str = "profile.hidden";
    pub const PROFILE_UNHIDDEN: &str = "profile.unhidden";
    pub const REPORT_DISMISSED: &str = "report.dismissed";
    pub const JOB_RETRIED: &str = "job.retried";
    pub const JOB_DISCARDED: &str = "job.discarded";
    pub const PASSWORD_CHANGED: &str = "account.password_changed";
    pub const EMAIL_CHANGED: &str = "account.email_changed";
    pub const SESSION_REVOKED: &str = "account.session_revoked";
    pub const EXPORT_REQUESTED: &str = "account.export_requested";
    pub const ACCOUNT_DELETED: &str = "account.deleted";

    pub const ALL: &[&str] = &[
        ROLE_CHANGED,
        BANNED,
        UNBANNED,
        STORY_HIDDEN,
        STORY_UNHIDDEN,
        COMMENT_HIDDEN,
        COMMENT_UNHIDDEN,
        PROFILE_HIDDEN,
        PROFILE_UNHIDDEN,
        REPORT_DISMISSED,
        JOB_RETRIED,
        JOB_DISCARDED,
        PASSWORD_CHANGED,
        EMAIL_CHANGED,
        SESSION_REVOKED,
        EXPORT_REQUESTED,
        ACCOUNT_DELETED,
    ];

    /// The ones a user sees about their own account on /settings/sessions.
    pub const SECURITY: &[&str] =
        &[PASSWORD_CHANGED, EMAIL_CHANGED, SESSION_REVOKED, EXPORT_REQUESTED, ROLE_CHANGED, BANNED, UNBANNED, ACCOUNT_DELETED];
}

/// One action to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub origin: &'a Origin,
    pub action: &'static str,
    pub object_kind: &'static str,
    pub object_id: String,
    /// Whose account the action concerns (for the user's own security events).
    pub subject_id: Option<i64>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl<'a> Entry<'a> {
    pub fn new(origin: &'a Origin, action: &'static str, object_kind: &'static str, object_id: impl ToString) -> Entry<'a> {
        Entry { origin, action, object_kind, object_id: object_id.to_string(), subject_id: None, before: None, after: None }
    }

    pub fn subject(mut self, user_id: i64) -> Self {
        self.subject_id = Some(user_id);
        self
    }

    pub fn before(mut self, v: serde_json::Value) -> Self {
        self.before = Some(v);
        self
    }

    pub fn after(mut self, v: serde_json::Value) -> Self {
        self.after = Some(v);
        self
    }
}

/// Writes `entry` on `conn`: pass the action's transaction.
pub async fn record(conn: &mut PgConnection, entry: Entry<'_>) -> Result<(), sqlx::Error> {
    db::insert(conn, &entry).await
}
