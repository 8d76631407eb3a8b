//! The `worker` binary as an operator runs it: bad arguments, SIGTERM, and the SIGKILL
//! drill — a worker killed mid-way through a backlog of mail, then restarted, delivers
//! every message exactly once.

#[path = "../../app/tests/common/mod.rs"]
mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn worker(dir: &std::path::Path, db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_worker"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Explicit: with DATABASE_URL set, an unset APP_ENV refuses to start (it looks
        // like a hosting platform that forgot it).
        .env("APP_ENV", "development")
        .env("DATABASE_URL", db_url)
        .env("SECRET_KEY", "0123456789abcdef0123456789abcdef-test")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "worker did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
}

fn mail_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("var/mail"))
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0)
}

#[test]
fn bad_arguments_exit_2() {
    let dir = std::env::temp_dir();
    for args in [&["--queues", "nope"][..], &["--concurrency", "0"][..], &["--frobnicate"][..]] {
        let out = worker(&dir, "postgres://x@127.0.0.1/x").args(args).stderr(Stdio::piped()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("worker: "));
    }
}

#[tokio::test]
async fn killed_mid_backlog_then_restarted_delivers_every_mail_exactly_once() {
    let db = common::TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("quire-drill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    const N: i64 = 200;
    // 200 users and their verification mails, enqueued as signup does.
    for i in 0..N {
        let mut tx = db.pool.begin().await.unwrap();
        let user = app::accounts::users::insert(
            &mut tx,
            &app::accounts::users::NewUser { username: &format!("drill{i}"), email: &format!("drill{i}@example.com"), password_hash: "x" },
        )
        .await
        .unwrap();
        app::jobs::enqueue(&mut tx, &app::jobs::mail::SendVerificationEmail::new(user.id), None).await.unwrap();
        tx.commit().await.unwrap();
    }

    let mut first = worker(&dir, &db.url).args(["--queues", "mail"]).spawn().unwrap();
    let start = Instant::now();
    while mail_count(&dir) < 20 {
        assert!(start.elapsed() < Duration::from_secs(30), "worker made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&first, "-KILL");
    wait_exit(&mut first, Duration::from_secs(5));
    let at_kill = mail_count(&dir);
    assert!(at_kill < N as usize, "killed mid-way ({at_kill} sent)");

    let mut second = worker(&dir, &db.url).args(["--queues", "mail"]).spawn().unwrap();
    let start = Instant::now();
    while mail_count(&dir) < N as usize {
        assert!(start.elapsed() < Duration::from_secs(60), "only {} of {N} delivered after restart", mail_count(&dir));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Exactly once: one file and one idempotency row per job, one token per user.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mail_count(&dir), N as usize);
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sent_emails").fetch_one(&db.pool).await.unwrap();
    assert_eq!(sent, N);
    let per_user: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT user_id FROM user_tokens GROUP BY user_id HAVING count(*) > 1) d")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(per_user, 0, "no user got two tokens");

    // SIGTERM: a clean, prompt exit.
    signal(&second, "-TERM");
    let status = wait_exit(&mut second, Duration::from_secs(35));
    assert!(status.success(), "{status:?}");
    println!("drill: killed after {at_kill} mails, all {N} delivered once after restart");
}
