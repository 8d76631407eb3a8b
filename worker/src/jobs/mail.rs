//! Mail handlers. Each is idempotent: it records its key in `sent_emails` in the same
//! transaction that creates the link token, sends, then commits. A retry after a
//! successful send finds the key and stops; a concurrent duplicate blocks on the key's
//! row lock until the first commits, then finds it. The one window SMTP leaves open — a
//! crash after the server accepted the message, before the commit — sends an identical
//! second copy (the token derives from the job key; see `tokens::link_token`).

use app::{
    accounts::users::{self, TokenPurpose, User},
    jobs::mail::{SendPasswordReset, SendVerificationEmail},
};
use minijinja::context;
use sqlx::PgConnection;

use super::{JobContext, JobError, Run};
use crate::mailer::{Email, MailError};

/// Claims `key` for this send; false when a previous run already sent it.
pub(super) async fn claim(conn: &mut PgConnection, key: &str, to: &str, subject: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO sent_emails (job_key, recipient, subject) VALUES ($1, $2, $3) ON CONFLICT (job_key) DO NOTHING",
    )
    .bind(key)
    .bind(to)
    .bind(subject)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Renders `emails/<template>.txt` and `.html` for `user`, with `url` as the link.
fn render(ctx: &JobContext, template: &str, user: &User, subject: &str, url: &str) -> Result<Email, JobError> {
    let vars = context! { user => minijinja::Value::from(minijinja::value::Serde(user)), url => url, subject => subject, base_url => &ctx.config.base_url };
    let text = ctx.templates.render(&format!("emails/{template}.txt"), vars.clone()).map_err(|e| JobError::Retry(e.into()))?;
    let html = ctx.templates.render(&format!("emails/{template}.html"), vars).map_err(|e| JobError::Retry(e.into()))?;
    Ok(Email { to: user.email.clone(), subject: subject.to_string(), text, html, unsubscribe_url: None })
}

/// The shared shape of a link mail: claim, make a token, render, send, commit.
async fn send_link_mail(
    ctx: &JobContext,
    key: &str,
    user_id: i64,
    purpose: TokenPurpose,
    template: &str,
    subject: &str,
    path: &str,
) -> Result<(), JobError> {
    // Workers read from the primary: the user row was committed with this job.
    let mut tx = ctx.db.primary().begin().await?;
    let Some(user) = users::find_by_id(&mut *tx, user_id).await? else {
        tracing::info!(user_id, "user no longer exists; nothing to send");
        return Ok(());
    };
    if purpose == TokenPurpose::VerifyEmail && user.is_verified() {
        tracing::info!(user_id, "email already verified; nothing to send");
        return Ok(());
    }
    if !claim(&mut tx, key, &user.email, subject).await? {
        tracing::info!(key, "already sent; skipping");
        return Ok(());
    }
    let token = app::tokens::link_token(&ctx.config.secret_key, key);
    users::store_token(&mut tx, &user, purpose, &token).await?;
    let url = format!("{}{path}/{token}", ctx.config.base_url);
    let email = render(ctx, template, &user, subject, &url)?;
    // Errors are logged and kept in the job row: they name the user, never the address.
    let redact = |msg: String| if user.email.is_empty() { msg } else { msg.replace(&user.email, "<recipient>") };
    match ctx.mailer.send(key, email).await {
        Ok(()) => {}
        Err(MailError::Recipient(msg)) => {
            return Err(JobError::Permanent(format!("cannot mail user {user_id}: {}", redact(msg))));
        }
        Err(MailError::Other(e)) => return Err(JobError::Retry(anyhow::anyhow!(redact(format!("{e:#}"))))),
    }
    tx.commit().await?;
    tracing::info!(user_id, "mail sent");
    Ok(())
}

impl Run for SendVerificationEmail {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let key = format!("verify-{}", self.key);
        send_link_mail(ctx, &key, self.user_id, TokenPurpose::VerifyEmail, "verify_email", "Confirm your email address", "/verify-email").await
    }
}

impl Run for SendPasswordReset {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let key = format!("reset-{}", self.key);
        send_link_mail(ctx, &key, self.user_id, TokenPurpose::ResetPassword, "password_reset", "Reset your Quire password", "/password/reset").await
    }
}
