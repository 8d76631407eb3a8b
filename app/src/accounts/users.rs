//! The `users` and `user_tokens` tables: this module owns their SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};

use crate::tokens;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub bio: String,
    pub role: crate::policy::Role,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub avatar_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Kept by `social::db` in the follow's transaction.
    pub follower_count: i32,
    pub following_count: i32,
    /// Set when a moderator hid the profile: its display name, bio and avatar are then
    /// not shown to others.
    pub profile_hidden_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn is_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }
}

/// The columns of `User`, spelled once.
macro_rules! user_columns {
    () => {
        "id, username, email, display_name, bio, role, email_verified_at, avatar_id, created_at, follower_count, following_count, profile_hidden_at"
    };
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
}

/// Inserts a user. Unique-index violations come back as `sqlx::Error` for the caller to
/// map (`users_username_key`, `users_email_key`).
pub async fn insert(conn: &mut PgConnection, new: &NewUser<'_>) -> Result<User, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!(
        "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3) RETURNING ",
        user_columns!()
    ))
    .bind(new.username)
    .bind(new.email)
    .bind(new.password_hash)
    .fetch_one(conn)
    .await
}

pub async fn find_by_id(db: impl PgExecutor<'_>, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn find_by_username(db: impl PgExecutor<'_>, username: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE lower(username) = lower($1)"))
        .bind(username)
        .fetch_optional(db)
        .await
}

/// The account with this address. Accounts that cannot log in (the `deleted_user` system
/// account, whose hash is `NO_LOGIN_HASH`) are never found: no reset link for them.
pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE lower(email) = lower($1) AND password_hash NOT LIKE '!%'"))
        .bind(email)
        .fetch_optional(db)
        .await
}

/// The user and password hash for a login name, which may be a username or an email.
pub async fn find_for_login(db: impl PgExecutor<'_>, login: &str) -> Result<Option<(i64, String)>, sqlx::Error> {
    let column = if login.contains('@') { "email" } else { "username" };
    sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(format!(
        "SELECT id, password_hash FROM users WHERE lower({column}) = lower($1)"
    )))
    .bind(login)
    .fetch_optional(db)
    .await
}

/// The stored password hash of `user_id` (to confirm a password before a sensitive change).
pub async fn password_hash(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1").bind(user_id).fetch_optional(db).await
}

pub async fn set_password(conn: &mut PgConnection, user_id: i64, password_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user_id)
        .bind(password_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Changes the address; it is unconfirmed until the new one is verified (the role stays).
/// The old address's outstanding links stop working (tokens are bound to their email).
/// Returns the old address. Unique-index violations (`users_email_key`) are the caller's.
pub async fn set_email(conn: &mut PgConnection, user_id: i64, email: &str) -> Result<Option<String>, sqlx::Error> {
    let old: Option<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE id = $1 FOR UPDATE").bind(user_id).fetch_optional(&mut *conn).await?;
    if old.is_some() {
        sqlx::query("UPDATE users SET email = $2, email_verified_at = NULL WHERE id = $1").bind(user_id).bind(email).execute(conn).await?;
    }
    Ok(old)
}

/// Saves the profile; `avatar_id` None keeps the current avatar.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    user_id: i64,
    display_name: &str,
    bio: &str,
    avatar_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET display_name = $2, bio = $3, avatar_id = coalesce($4, avatar_id) WHERE id = $1")
        .bind(user_id)
        .bind(display_name)
        .bind(bio)
        .bind(avatar_id)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
        }
    }

    fn lifetime_secs(self) -> i64 {
        match self {
            TokenPurpose::VerifyEmail => 48 * 3600,
            TokenPurpose::ResetPassword => 3600,
        }
    }
}

/// Creates a single-use token for `user` and returns the raw value (only its hash is
/// stored). Used by the mail jobs.
/// A fresh random token for `user`, stored hashed.
pub async fn create_token(conn: &mut PgConnection, user: &User, purpose: TokenPurpose) -> Result<String, sqlx::Error> {
    let token = tokens::random_token();
    store_token(conn, user, purpose, &token).await?;
    Ok(token)
}

/// Stores `token` (hashed) for `user`. The mail jobs derive it from their job key (see
/// `tokens::link_token`), so a retried send mails the same, still valid link.
pub async fn store_token(conn: &mut PgConnection, user: &User, purpose: TokenPurpose, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, email, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(tokens::hash_token(token))
    .bind(user.id)
    .bind(purpose.as_str())
    .bind(&user.email)
    .bind(purpose.lifetime_secs() as f64)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid { user_id: i64 },
    /// Unknown, malformed, already used, expired, or issued for an email the account no
    /// longer has. One answer for all: the page says the link is no longer valid.
    Invalid,
}

/// Checks a token without spending it (the reset form's GET).
pub async fn peek_token(db: impl PgExecutor<'_>, token: &str, purpose: TokenPurpose) -> Result<TokenCheck, sqlx::Error> {
    if !tokens::is_well_formed(token) {
        return Ok(TokenCheck::Invalid);
    }
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT t.user_id FROM user_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now()
           AND lower(t.email) = lower(u.email)",
    )
    .bind(tokens::hash_token(token))
    .bind(purpose.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.map_or(TokenCheck::Invalid, |(user_id,)| TokenCheck::Valid { user_id }))
}

/// Spends a token: marks it used if it is valid, atomically, so two concurrent uses
/// cannot both succeed. Run it in the transaction that acts on it.
pub async fn consume_token(conn: &mut PgConnection, token: &str, purpose: TokenPurpose) -> Result<TokenCheck, sqlx::Error> {
    if !tokens::is_well_formed(token) {
        return Ok(TokenCheck::Invalid);
    }
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE user_tokens t SET used_at = now()
         FROM users u
         WHERE u.id = t.user_id AND t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL
           AND t.expires_at > now() AND lower(t.email) = lower(u.email)
         RETURNING t.user_id",
    )
    .bind(tokens::hash_token(token))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.map_or(TokenCheck::Invalid, |(user_id,)| TokenCheck::Valid { user_id }))
}

/// Marks the address verified. The role is untouched: accounts start as writers (who
/// may publish once verified), and a reader demoted by staff stays a reader.
pub async fn mark_verified(conn: &mut PgConnection, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Other outstanding tokens of the same purpose are voided once one is used.
pub async fn void_tokens(conn: &mut PgConnection, user_id: i64, purpose: TokenPurpose) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL")
        .bind(user_id)
        .bind(purpose.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn purge_spent_tokens(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM user_tokens WHERE expires_at < now() - interval '1 day' OR used_at < now() - interval '1 day'")
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}

/// How long an address stays known after the last successful login from it.
const LOGIN_IP_DAYS: i32 = 90;

/// Whether `user_id` has logged in with the right password from `ip` (a rate-limit bucket:
/// an IPv4 address or an IPv6 /64) within `LOGIN_IP_DAYS`.
pub async fn is_known_login_ip(db: impl PgExecutor<'_>, user_id: i64, ip: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM login_ips WHERE user_id = $1 AND ip = $2
                        AND last_login_at > now() - make_interval(days => $3::int))",
    )
    .bind(user_id)
    .bind(ip)
    .bind(LOGIN_IP_DAYS)
    .fetch_one(db)
    .await
}

/// Records a successful login from `ip`, and forgets this account's addresses not used
/// for `LOGIN_IP_DAYS` (so the table holds what is in use, without a sweeper job).
pub async fn remember_login_ip(conn: &mut PgConnection, user_id: i64, ip: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO login_ips (user_id, ip) VALUES ($1, $2)
         ON CONFLICT (user_id, ip) DO UPDATE SET last_login_at = now()",
    )
    .bind(user_id)
    .bind(ip)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM login_ips WHERE user_id = $1 AND last_login_at < now() - make_interval(days => $2::int)")
        .bind(user_id)
        .bind(LOGIN_IP_DAYS)
        .execute(conn)
        .await?;
    Ok(())
}

/// After a password reset nobody's old address is vouched for any more.
pub async fn forget_login_ips(conn: &mut PgConnection, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_ips WHERE user_id = $1").bind(user_id).execute(conn).await?;
    Ok(())
}

// ---- deleted accounts --------------------------------------------------------------

/// How long a deleted account's username is held back from signup.
pub const RETIRED_DAYS: i32 = 30;

/// Whether `username` belonged to an account deleted within `RETIRED_DAYS`.
pub async fn username_retired(db: impl PgExecutor<'_>, username: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM retired_usernames WHERE username = lower($1)
                        AND retired_at > now() - make_interval(days => $2::int))",
    )
    .bind(username)
    .bind(RETIRED_DAYS)
    .fetch_one(db)
    .await
}

/// Holds `username` back from signup for `RETIRED_DAYS` from now.
pub async fn retire_username(conn: &mut PgConnection, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO retired_usernames (username, retired_at) VALUES (lower($1), now())
         ON CONFLICT (username) DO UPDATE SET retired_at = now()",
    )
    .bind(username)
    .execute(conn)
    .await?;
    Ok(())
}

/// The username of the system account anonymised stories and comments are attributed to.
pub const DELETED_USERNAME: &str = "deleted_user";
/// A stored "hash" no password matches: argon2 cannot parse it, and `passwords::verify`
/// answers false for it (after the same work as for an unknown account).
pub const NO_LOGIN_HASH: &str = "!no-login: system account";

/// The id of the `deleted_user` system account, created on first use in `conn`'s
/// transaction (concurrent first uses: the unique index makes the second wait and then
/// find the first's row). Created lazily rather than by a migration so an empty database
/// stays empty. A reader, never verified, with every email notification off and a hash
/// no password matches. Signup refuses the name (`validate::username`).
pub async fn deleted_user_id(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, display_name, bio, role)
         VALUES ($1, 'deleted_user@quire.invalid', $2, 'deleted user',
                 'Stories and comments kept by people who have deleted their accounts.', 'reader')
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(DELETED_USERNAME)
    .bind(NO_LOGIN_HASH)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = created {
        sqlx::query(
            "INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
             VALUES ($1, 'off', 'off', 'off', 'off', 'off') ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
        return Ok(id);
    }
    // Only the system account itself: a person who took the name before it was reserved
    // is never made the owner of other people's stories.
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1 AND password_hash = $2")
        .bind(DELETED_USERNAME)
        .bind(NO_LOGIN_HASH)
        .fetch_one(conn)
        .await
}

/// Deletes the user row; everything that belongs to it alone goes with it (sessions,
/// tokens, saves, reading progress, notifications, preferences, bans, their reports).
/// Call it after the account's stories, comments, likes, follows and media were dealt
/// with (`accounts::deletion`). The audit rows stay: `audit_log` has no foreign key.
pub async fn delete(conn: &mut PgConnection, user_id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

/// Sets `username`'s role and writes the audit row, in one transaction; returns the old
/// role (None: no such user). Setting the role a user already has changes nothing and
/// records nothing. The admin page and `web role` both come here.
pub async fn set_role(
    pool: &sqlx::PgPool,
    origin: &crate::audit::Origin,
    username: &str,
    role: crate::policy::Role,
) -> Result<Option<crate::policy::Role>, sqlx::Error> {
    use crate::audit;
    let mut tx = pool.begin().await?;
    let row: Option<(i64, crate::policy::Role)> =
        sqlx::query_as("SELECT id, role FROM users WHERE lower(username) = lower($1) FOR UPDATE")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((id, old)) = row else { return Ok(None) };
    if old != role {
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1").bind(id).bind(role).execute(&mut *tx).await?;
        let entry = audit::Entry::new(origin, audit::actions::ROLE_CHANGED, "user", id)
            .subject(id)
            .before(serde_json::json!({ "role": old }))
            .after(serde_json::json!({ "role": role }));
        audit::record(&mut tx, entry).await?;
        // Sessions carry the role: every process re-reads them.
        crate::sessions::announce_changed(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(Some(old))
}
