//! Notification handlers: `Notify` creates the in-app notifications of one activity in
//! set-based SQL and, in the same transaction, raises the navigation's live event and
//! enqueues the instant mails in batches; the mail jobs and the daily digest send them,
//! each mail claimed in the transaction that sends it.

use app::{
    accounts::users,
    jobs::notify::{Activity, DailyDigest, MAIL_BATCH, Notify, SendDigests, SendNotificationEmails},
    notifications::{
        Kind,
        db::{self, Created, Notification},
        unsubscribe::{self, Scope},
    },
};
use minijinja::{Value, context};
use sqlx::{PgConnection, PgPool};

use super::{JobContext, JobError, Run};
use crate::mailer::{Email, MailError};

/// Above this many recipients the live `unread` event is not raised: a row per follower
/// in `live_events` (and a wake-up of every web process) for 100,000 followers costs
/// more than it is worth. Their count updates on their next page view instead.
pub const LIVE_FANOUT_MAX: usize = 1000;

/// What one `Notify` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub created: usize,
    pub mail_jobs: usize,
    pub live_events: usize,
}

fn kind_name(a: &Activity) -> &'static str {
    match a {
        Activity::Follow { .. } => "follow",
        Activity::Like { .. } => "like",
        Activity::Comment { .. } => "comment",
        Activity::Chapter { .. } => "chapter",
    }
}

/// The whole of a `Notify` run in one transaction on `db`: BEGIN, the insert (one
/// statement, whatever the number of recipients), at most one live-event statement, at
/// most one enqueue statement, COMMIT. A retry inserts nothing, so raises and enqueues
/// nothing either. Public for bench/notify.
pub async fn handle(db: &PgPool, activity: &Activity) -> Result<Outcome, JobError> {
    let mut tx = db.begin().await?;
    let created = db::create(&mut tx, activity).await?;
    let outcome = after_create(&mut tx, &created).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn after_create(conn: &mut PgConnection, created: &[Created]) -> Result<Outcome, JobError> {
    let live_events = if created.len() <= LIVE_FANOUT_MAX {
        let users: Vec<i64> = created.iter().map(|c| c.user_id).collect();
        app::live::publish_to_users(conn, &users, "unread", "").await?;
        users.len()
    } else {
        0
    };
    let to_mail: Vec<i64> = created.iter().filter(|c| c.mail).map(|c| c.id).collect();
    let jobs: Vec<SendNotificationEmails> =
        to_mail.chunks(MAIL_BATCH).map(|ids| SendNotificationEmails { notification_ids: ids.to_vec() }).collect();
    app::jobs::enqueue_many(conn, &jobs, None).await.map_err(|e| JobError::Retry(e.into()))?;
    Ok(Outcome { created: created.len(), mail_jobs: jobs.len(), live_events })
}

impl Run for Notify {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let outcome = handle(ctx.db.primary(), &self.activity).await?;
        tracing::info!(
            kind = kind_name(&self.activity),
            created = outcome.created,
            mail_jobs = outcome.mail_jobs,
            live_events = outcome.live_events,
            "notified"
        );
        Ok(())
    }
}

// ---- mail ------------------------------------------------------------------------------

fn unsubscribe_url(ctx: &JobContext, user_id: i64, scope: Scope) -> String {
    format!("{}/unsubscribe/{}", ctx.config.base_url, unsubscribe::token(&ctx.config.secret_key, user_id, scope))
}

fn notification_value(ctx: &JobContext, n: &Notification) -> Value {
    context! {
        ..Value::from(minijinja::value::Serde(n)),
        ..context! { url => format!("{}{}", ctx.config.base_url, n.path()), summary => n.summary() }
    }
}

fn render(ctx: &JobContext, template: &str, vars: Value) -> Result<(String, String), JobError> {
    let text = ctx.templates.render(&format!("emails/{template}.txt"), vars.clone()).map_err(|e| JobError::Retry(e.into()))?;
    let html = ctx.templates.render(&format!("emails/{template}.html"), vars).map_err(|e| JobError::Retry(e.into()))?;
    Ok((text, html))
}

/// How a batch's sends ended: retried if any failure may be transient; kept as failed
/// (naming the users, never their addresses) if the only failures were refusals.
#[derive(Default)]
struct Failures {
    refused: Vec<i64>,
    transient: Option<String>,
}

impl Failures {
    /// Records a failed send to `email` (redacted from the message).
    fn record(&mut self, user_id: i64, email: &str, e: MailError) {
        let redact = |msg: String| if email.is_empty() { msg } else { msg.replace(email, "<recipient>") };
        match e {
            MailError::Recipient(msg) => {
                tracing::warn!(user_id, error = redact(msg), "recipient refused; not retried");
                self.refused.push(user_id);
            }
            MailError::Other(e) => self.transient = Some(redact(format!("{e:#}"))),
        }
    }

    fn result(self, what: &str) -> Result<(), JobError> {
        if let Some(msg) = self.transient {
            return Err(JobError::Retry(anyhow::anyhow!(msg)));
        }
        if !self.refused.is_empty() {
            return Err(JobError::Permanent(format!("{what}: address refused for users {:?}", self.refused)));
        }
        Ok(())
    }
}

impl Run for SendNotificationEmails {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        // One statement for the batch: who still gets a mail (verified, still instant,
        // not mailed by an earlier run, not read in the app meanwhile).
        let rows = db::instant_mail(ctx.db.primary(), &self.notification_ids).await?;
        let mut failures = Failures::default();
        let mut sent = 0;
        for row in rows {
            let n = &row.notification;
            let Some(kind) = Kind::parse(&n.kind) else { continue };
            // Claim, send, commit: a retry after the commit finds it claimed; a concurrent
            // duplicate waits on the row lock, then finds it claimed.
            let mut tx = ctx.db.primary().begin().await?;
            if !db::claim_instant(&mut tx, n.id).await? {
                continue;
            }
            let subject = n.summary();
            let unsubscribe = unsubscribe_url(ctx, n.user_id, Scope::One(kind));
            let vars = context! {
                user => context! { username => &row.username, display_name => &row.display_name },
                n => notification_value(ctx, n),
                subject => &subject,
                unsubscribe_url => &unsubscribe,
                settings_url => format!("{}/settings/notifications", ctx.config.base_url),
                base_url => &ctx.config.base_url,
            };
            let (text, html) = render(ctx, &format!("notify_{}", kind.as_str()), vars)?;
            let email = Email { to: row.email.clone(), subject, text, html, unsubscribe_url: Some(unsubscribe) };
            match ctx.mailer.send(&format!("notification-{}", n.id), email).await {
                Ok(()) => {
                    tx.commit().await?;
                    sent += 1;
                }
                Err(e @ MailError::Recipient(_)) => {
                    // Keep the claim: this address will never take it.
                    tx.commit().await?;
                    failures.record(n.user_id, &row.email, e);
                }
                Err(e) => {
                    // Rolled back (unclaimed) and retried; the rest wait for the retry too.
                    drop(tx);
                    failures.record(n.user_id, &row.email, e);
                    break;
                }
            }
        }
        tracing::info!(sent, "notification mails sent");
        failures.result("notification mail")
    }
}

// ---- daily digest ----------------------------------------------------------------------

/// Most notifications a digest lists (it says how many more there are).
pub const DIGEST_LIST_MAX: usize = 50;

impl Run for DailyDigest {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let users = db::digest_recipients(ctx.db.primary()).await?;
        let jobs: Vec<SendDigests> =
            users.chunks(MAIL_BATCH).map(|ids| SendDigests { day: self.day, user_ids: ids.to_vec() }).collect();
        let mut conn = ctx.db.primary().acquire().await?;
        app::jobs::enqueue_many(&mut conn, &jobs, None).await.map_err(|e| JobError::Retry(e.into()))?;
        tracing::info!(day = self.day, users = users.len(), jobs = jobs.len(), "daily digest scheduled");
        Ok(())
    }
}

impl Run for SendDigests {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let mut failures = Failures::default();
        let mut sent = 0;
        for &user_id in &self.user_ids {
            let mut tx = ctx.db.primary().begin().await?;
            let Some(user) = users::find_by_id(&mut *tx, user_id).await? else { continue };
            if !user.is_verified() {
                continue;
            }
            let subject = "Your day on Quire".to_string();
            // The claim (one digest per user per day) and the marking of what it lists
            // commit together with the send, or not at all.
            if !super::mail::claim(&mut tx, &format!("digest-{}-{user_id}", self.day), &user.email, &subject).await? {
                continue;
            }
            let items = db::claim_digest(&mut tx, user_id).await?;
            if items.is_empty() {
                continue; // rolled back: nothing due after all (read meanwhile)
            }
            let shown: Vec<Value> = items.iter().take(DIGEST_LIST_MAX).map(|n| notification_value(ctx, n)).collect();
            let unsubscribe = unsubscribe_url(ctx, user_id, Scope::All);
            let vars = context! {
                user => minijinja::value::Serde(&user),
                items => shown,
                more => items.len().saturating_sub(DIGEST_LIST_MAX),
                total => items.len(),
                subject => &subject,
                unsubscribe_url => &unsubscribe,
                settings_url => format!("{}/settings/notifications", ctx.config.base_url),
                notifications_url => format!("{}/notifications", ctx.config.base_url),
                base_url => &ctx.config.base_url,
            };
            let (text, html) = render(ctx, "digest", vars)?;
            let email = Email { to: user.email.clone(), subject, text, html, unsubscribe_url: Some(unsubscribe) };
            match ctx.mailer.send(&format!("digest-{}-{user_id}", self.day), email).await {
                Ok(()) => {
                    tx.commit().await?;
                    sent += 1;
                }
                Err(e @ MailError::Recipient(_)) => {
                    tx.commit().await?;
                    failures.record(user_id, &user.email, e);
                }
                Err(e) => {
                    drop(tx);
                    failures.record(user_id, &user.email, e);
                    break;
                }
            }
        }
        tracing::info!(day = self.day, sent, "digests sent");
        failures.result("digest")
    }
}
