//! `web seed`: demo data for development, idempotent (run it as often as you like).

use crate::{accounts::passwords, db::Db};

/// Demo accounts; all share the password below and have confirmed emails.
pub const DEMO_USERS: &[(&str, &str, &str)] = &[
    ("alice", "Alice Marlowe", "Writes slow-burning mysteries set in harbour towns."),
    ("bruno", "Bruno Okafor", "Science fiction, mostly about ships and the people who fix them."),
    ("chen", "Chen Wei", "Short fantasy. One chapter a week, rain or shine."),
];
pub const DEMO_PASSWORD: &str = "quire-demo-password";

pub async fn run(db: &Db) -> anyhow::Result<()> {
    let hash = passwords::hash(DEMO_PASSWORD.to_string()).await?;
    let mut created = 0;
    for (username, display_name, bio) in DEMO_USERS {
        let r = sqlx::query(
            "INSERT INTO users (username, email, password_hash, display_name, bio, email_verified_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (lower(username)) DO NOTHING",
        )
        .bind(username)
        .bind(format!("{username}@example.com"))
        .bind(&hash)
        .bind(display_name)
        .bind(bio)
        .execute(db.primary())
        .await?;
        created += r.rows_affected();
    }
    tracing::info!(created, "seeded demo users (password: {DEMO_PASSWORD})");
    Ok(())
}
