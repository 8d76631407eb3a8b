//! Email preferences per kind (table `notification_prefs`): this module owns its SQL
//! and is the one place the defaults are written down. A user without a row has the
//! defaults; every write stores all five columns, so a row never mixes in stale defaults.

use serde::Serialize;
use sqlx::PgExecutor;

use super::{Delivery, Kind};
use crate::error::FieldErrors;

/// How each kind is delivered by email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Prefs {
    #[sqlx(try_from = "String")]
    pub email_follow: DeliveryCol,
    #[sqlx(try_from = "String")]
    pub email_like: DeliveryCol,
    #[sqlx(try_from = "String")]
    pub email_comment: DeliveryCol,
    #[sqlx(try_from = "String")]
    pub email_reply: DeliveryCol,
    #[sqlx(try_from = "String")]
    pub email_chapter: DeliveryCol,
}

/// A stored delivery value (the CHECKs allow only the three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DeliveryCol(pub Delivery);

impl TryFrom<String> for DeliveryCol {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Delivery::parse(&s).map(DeliveryCol).ok_or_else(|| format!("unknown delivery {s:?}"))
    }
}

/// The defaults. Chapters and replies are what readers wait for: at once. A new comment
/// on your story also at once (someone is talking to you, and comments are rarer than
/// likes). Follows: in the daily digest (nice to know, never urgent). Likes: off (they
/// come in bursts; the in-app list and the count on the story are enough).
pub fn default_for(kind: Kind) -> Delivery {
    match kind {
        Kind::Chapter | Kind::Reply | Kind::Comment => Delivery::Instant,
        Kind::Follow => Delivery::Daily,
        Kind::Like => Delivery::Off,
    }
}

impl Default for Prefs {
    fn default() -> Self {
        let mut p = Prefs {
            email_follow: DeliveryCol(Delivery::Off),
            email_like: DeliveryCol(Delivery::Off),
            email_comment: DeliveryCol(Delivery::Off),
            email_reply: DeliveryCol(Delivery::Off),
            email_chapter: DeliveryCol(Delivery::Off),
        };
        for k in Kind::ALL {
            p.set(k, default_for(k));
        }
        p
    }
}

/// The column holding a kind's delivery (a fixed name, never user input).
pub fn column(kind: Kind) -> &'static str {
    match kind {
        Kind::Follow => "email_follow",
        Kind::Like => "email_like",
        Kind::Comment => "email_comment",
        Kind::Reply => "email_reply",
        Kind::Chapter => "email_chapter",
    }
}

/// A SQL expression: the delivery (`'instant'`, `'daily'`, `'off'`) of the notification
/// kind in column `kind_col` for the preferences row `p` (LEFT JOINed: NULL means the
/// defaults). Lets set-based queries pick the recipients to mail without a round trip.
pub fn delivery_sql(kind_col: &str, p: &str) -> String {
    let mut sql = format!("(CASE {kind_col}");
    for k in Kind::ALL {
        sql.push_str(&format!(" WHEN '{}' THEN coalesce({p}.{}, '{}')", k.as_str(), column(k), default_for(k).as_str()));
    }
    sql.push_str(" END)");
    sql
}

impl Prefs {
    pub fn get(&self, kind: Kind) -> Delivery {
        match kind {
            Kind::Follow => self.email_follow.0,
            Kind::Like => self.email_like.0,
            Kind::Comment => self.email_comment.0,
            Kind::Reply => self.email_reply.0,
            Kind::Chapter => self.email_chapter.0,
        }
    }

    pub fn set(&mut self, kind: Kind, d: Delivery) {
        let slot = match kind {
            Kind::Follow => &mut self.email_follow,
            Kind::Like => &mut self.email_like,
            Kind::Comment => &mut self.email_comment,
            Kind::Reply => &mut self.email_reply,
            Kind::Chapter => &mut self.email_chapter,
        };
        *slot = DeliveryCol(d);
    }

    /// From the settings form: one field per kind (`follow`, `like`, …), each `instant`,
    /// `daily` or `off`. A missing or unknown value is an error on that field (the form
    /// always sends all five); the returned prefs keep `current` for those.
    pub fn from_form(current: Prefs, field: impl Fn(&str) -> Option<String>) -> (Prefs, FieldErrors) {
        let mut prefs = current;
        let mut errors = FieldErrors::new();
        for k in Kind::ALL {
            match field(k.as_str()).as_deref().map(str::trim).and_then(Delivery::parse) {
                Some(d) => prefs.set(k, d),
                None => {
                    errors.insert(k.as_str(), "Choose instant, daily or off.".into());
                }
            }
        }
        (prefs, errors)
    }
}

/// The user's preferences (the defaults without a row).
pub async fn load(db: impl PgExecutor<'_>, user_id: i64) -> Result<Prefs, sqlx::Error> {
    let row: Option<Prefs> = sqlx::query_as(
        "SELECT email_follow, email_like, email_comment, email_reply, email_chapter FROM notification_prefs WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.unwrap_or_default())
}

/// Stores all five. False when the user does not exist (deleted meanwhile).
pub async fn save(db: impl PgExecutor<'_>, user_id: i64, p: &Prefs) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
         SELECT id, $2, $3, $4, $5, $6 FROM users WHERE id = $1
         ON CONFLICT (user_id) DO UPDATE SET email_follow = $2, email_like = $3, email_comment = $4,
             email_reply = $5, email_chapter = $6, updated_at = now()",
    )
    .bind(user_id)
    .bind(p.email_follow.0.as_str())
    .bind(p.email_like.0.as_str())
    .bind(p.email_comment.0.as_str())
    .bind(p.email_reply.0.as_str())
    .bind(p.email_chapter.0.as_str())
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Turns off the mail of one kind (or all kinds) and nothing else, in one statement
/// (the unsubscribe link: the other kinds keep what the user chose, or the defaults).
/// False when the user does not exist.
pub async fn turn_off(db: impl PgExecutor<'_>, user_id: i64, kind: Option<Kind>) -> Result<bool, sqlx::Error> {
    let mut insert = Prefs::default();
    let kinds: Vec<Kind> = match kind {
        Some(k) => vec![k],
        None => Kind::ALL.to_vec(),
    };
    for &k in &kinds {
        insert.set(k, Delivery::Off);
    }
    let set: Vec<String> = kinds.iter().map(|&k| format!("{} = 'off'", column(k))).collect();
    let sql = format!(
        "INSERT INTO notification_prefs (user_id, email_follow, email_like, email_comment, email_reply, email_chapter)
         SELECT id, $2, $3, $4, $5, $6 FROM users WHERE id = $1
         ON CONFLICT (user_id) DO UPDATE SET {}, updated_at = now()",
        set.join(", ")
    );
    let r = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(insert.email_follow.0.as_str())
        .bind(insert.email_like.0.as_str())
        .bind(insert.email_comment.0.as_str())
        .bind(insert.email_reply.0.as_str())
        .bind(insert.email_chapter.0.as_str())
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_chapter_reply_comment_instant_follow_daily_like_off() {
        let p = Prefs::default();
        assert_eq!(p.get(Kind::Chapter), Delivery::Instant);
        assert_eq!(p.get(Kind::Reply), Delivery::Instant);
        assert_eq!(p.get(Kind::Comment), Delivery::Instant);
        assert_eq!(p.get(Kind::Follow), Delivery::Daily);
        assert_eq!(p.get(Kind::Like), Delivery::Off);
    }

    #[test]
    fn the_sql_expression_names_every_kind_with_its_default() {
        let sql = delivery_sql("n.kind", "p");
        for k in Kind::ALL {
            assert!(sql.contains(&format!("WHEN '{}' THEN coalesce(p.{}, '{}')", k.as_str(), column(k), default_for(k).as_str())), "{sql}");
        }
    }

    #[test]
    fn the_form_sets_every_valid_field_and_reports_the_others() {
        let form = |k: &str| match k {
            "follow" => Some("off".to_string()),
            "like" => Some("instant".to_string()),
            "comment" => Some("weekly".to_string()),
            "reply" => Some(" daily ".to_string()),
            _ => None,
        };
        let (p, errors) = Prefs::from_form(Prefs::default(), form);
        assert_eq!(p.get(Kind::Follow), Delivery::Off);
        assert_eq!(p.get(Kind::Like), Delivery::Instant);
        assert_eq!(p.get(Kind::Reply), Delivery::Daily);
        assert_eq!(p.get(Kind::Comment), Delivery::Instant, "an invalid value keeps the current one");
        assert_eq!(errors.keys().copied().collect::<Vec<_>>(), vec!["chapter", "comment"]);
    }
}
