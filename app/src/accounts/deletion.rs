//! Account deletion (`POST /settings/delete`): everything in the caller's one
//! transaction, so an account is either entirely gone or untouched.
//!
//! In order: the `deleted_user` system account is found (or created); the user's
//! comments are erased (`Delete`) or handed over as they are (`Anonymise`); their likes
//! and follows are removed with every counter they moved; their stories are deleted, or
//! their drafts deleted and the published ones handed over without cover; their media
//! change hands and get a `DeleteMedia` job each (the files go when the worker runs it);
//! the username is retired for `users::RETIRED_DAYS`; the audit row is written; and the
//! user row is deleted, taking sessions, tokens, saves, reading progress, notifications
//! and bans with it. The caller then ends the sessions with
//! `SessionStore::end_all_for_user`, which commits.

use serde::Serialize;
use sqlx::PgConnection;

use super::{users, validate::DeletionMode};
use crate::{audit, error::{Error, Result}, social, stories};

/// What a deletion did, for the audit row (counts only: no content, no email).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub mode: DeletionMode,
    pub stories_deleted: i64,
    pub stories_anonymised: i64,
    pub comments_deleted: i64,
    pub comments_anonymised: i64,
    pub likes_removed: i64,
    pub follows_removed: i64,
    pub media_queued_for_deletion: usize,
}

/// Deletes account `user_id` on `conn` (the caller's transaction), recording the audit
/// row from `origin`. `Error::NotFound` when the account is already gone (a concurrent
/// deletion); `Error::Forbidden` for the system account itself.
pub async fn delete_account(
    conn: &mut PgConnection,
    origin: &audit::Origin,
    user_id: i64,
    mode: DeletionMode,
    request_id: Option<&str>,
) -> Result<Outcome> {
    // Locked for the rest of the transaction: a second deletion of the same account waits
    // here and then finds nothing.
    let who: Option<(String, crate::policy::Role, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT username, role, created_at FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((username, role, created_at)) = who else { return Err(Error::NotFound) };
    let ghost = users::deleted_user_id(conn).await?;
    if ghost == user_id {
        return Err(Error::Forbidden("The system account cannot be deleted.".into()));
    }

    let (comments_deleted, comments_anonymised) = match mode {
        DeletionMode::Delete => (social::db::erase_comments_of(conn, user_id, ghost).await?, 0),
        DeletionMode::Anonymise => (0, social::db::reassign_comments(conn, user_id, ghost).await?),
    };
    let removed = social::db::remove_likes_and_follows(conn, user_id).await?;
    let (stories_deleted, stories_anonymised) = match mode {
        DeletionMode::Delete => (stories::db::delete_all_of(conn, user_id).await?, 0),
        DeletionMode::Anonymise => stories::db::anonymise_all_of(conn, user_id, ghost).await?,
    };
    let media = crate::media::db::retire_all_of(conn, user_id, ghost, request_id).await?;
    users::retire_username(conn, &username).await?;

    let outcome = Outcome {
        mode,
        stories_deleted,
        stories_anonymised,
        comments_deleted,
        comments_anonymised,
        likes_removed: removed.likes,
        follows_removed: removed.follows,
        media_queued_for_deletion: media.len(),
    };
    let entry = audit::Entry::new(origin, audit::actions::ACCOUNT_DELETED, "user", user_id)
        .subject(user_id)
        .before(serde_json::json!({ "username": username, "role": role, "created_at": created_at }))
        .after(serde_json::to_value(&outcome).map_err(anyhow::Error::from)?);
    audit::record(conn, entry).await?;

    if !users::delete(conn, user_id).await? {
        return Err(Error::NotFound);
    }
    Ok(outcome)
}
