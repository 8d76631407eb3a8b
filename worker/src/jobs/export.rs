//! BuildExport: a user's data as one ZIP in storage, then a mail with the download link.
//! SendExportReady: that mail.
//!
//! The archive is never held in memory. A blocking thread owns the `ZipWriter` over a
//! staged file under the storage root (`Storage::stage`) and takes entries in chunks
//! from a small bounded channel; the async side reads the account in batches (chapters
//! and comments by keyset, uploads as streams of chunks) and sends them one by one. What
//! is in memory at once is one batch of rows and a few chunks in the channel, however big
//! the account. The staged file is renamed into place (`Storage::commit`), and only then
//! the row becomes ready, with its token and the mail job, in one transaction.
//!
//! Layout of the ZIP:
//! - `manifest.json` — format version, when, the account, counts, every file with its
//!   size and SHA-256, and uploads whose original was missing from storage (if any);
//! - `profile.json` (email, display name, bio, role, dates, counts; `avatar`: its file);
//! - `avatar.<ext>` — the original avatar as uploaded;
//! - `stories/<id>-<title>/story.json` (title, summary, status, tags, dates, counts, the
//!   chapter list with titles and file names), `cover.<ext>` (the original cover), and
//!   `chapter-001.md` (the Markdown source, exactly) and `chapter-001.html` (a standalone
//!   page with the rendered chapter) per chapter;
//! - `comments.json`, `likes.json`, `follows.json` (`following` and `followers`).
//!
//! Each attempt starts over (a new staged file; the row's progress back to 0). A failure
//! is retried with the job's backoff; after the last attempt the row is failed.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
};

use app::{
    exports::db::{self as exports_db, Chapter, Story},
    jobs::export::{BuildExport, SendExportReady},
    storage::StorageError,
};
use bytes::Bytes;
use chrono::{Datelike, Timelike, Utc};
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{JobContext, JobError, Run};

/// Version of the archive's layout, in `manifest.json`.
pub const FORMAT_VERSION: u32 = 1;
/// Rows read per query.
const BATCH: i64 = 100;
/// The row's progress is written every this many items (and at the end).
const PROGRESS_EVERY: i32 = 25;
/// Chunks waiting for the ZIP thread at most.
const CHANNEL_DEPTH: usize = 8;

/// What the owner sees when every attempt failed (the cause is in the job's error).
pub const GAVE_UP_MESSAGE: &str = "something went wrong on our side while writing the file";

impl Run for BuildExport {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let db = ctx.db.primary();
        let Some(user_id) = exports_db::start(db, self.export_id).await? else {
            tracing::info!(export_id = self.export_id, "export gone or finished; nothing to do");
            return Ok(());
        };
        let key = format!("exports/{}-{}.zip", self.export_id, Uuid::new_v4().simple());
        let staged = ctx.storage.stage(&key).map_err(|e| JobError::Retry(anyhow::anyhow!("staging the export: {e}")))?;
        let built = build(ctx, self.export_id, user_id, staged.path().to_path_buf()).await;
        let counts = match built {
            Ok(Some(counts)) => counts,
            Ok(None) => {
                ctx.storage.discard(&staged).await;
                tracing::info!(export_id = self.export_id, "the account is gone; no export");
                return Ok(());
            }
            Err(e) => {
                ctx.storage.discard(&staged).await;
                return Err(e);
            }
        };
        let size = ctx.storage.commit(staged).await.map_err(|e| JobError::Retry(anyhow::anyhow!("storing the export: {e}")))?;

        // Ready, its token and its mail: one transaction. The token derives from the
        // mail's key (and SECRET_KEY); only its hash is stored.
        let link_key = Uuid::new_v4();
        let token = app::exports::download_token(&ctx.config.secret_key, link_key);
        let finished = async {
            let mut tx = db.begin().await?;
            if !exports_db::mark_ready(&mut *tx, self.export_id, &key, size as i64, link_key, &app::tokens::hash_token(&token)).await? {
                return Ok::<bool, JobError>(false);
            }
            app::jobs::enqueue(&mut *tx, &SendExportReady { key: link_key, export_id: self.export_id }, None)
                .await
                .map_err(|e| JobError::Retry(e.into()))?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        match finished {
            Ok(true) => {
                tracing::info!(export_id = self.export_id, user_id, bytes = size, files = counts.files, "export ready");
                Ok(())
            }
            Ok(false) => {
                // No longer running (failed by a previous attempt's hook, deleted): nothing
                // will point at this file.
                ctx.storage.delete(&key).await.map_err(|e| JobError::Retry(e.into()))?;
                tracing::info!(export_id = self.export_id, "export no longer running; its file is removed");
                Ok(())
            }
            Err(e) => {
                let _ = ctx.storage.delete(&key).await;
                Err(e)
            }
        }
    }

    async fn exhausted(self, ctx: &JobContext) -> Result<(), JobError> {
        exports_db::mark_failed(ctx.db.primary(), self.export_id, GAVE_UP_MESSAGE).await?;
        tracing::warn!(export_id = self.export_id, "export gave up; marked failed");
        Ok(())
    }
}

/// What the ZIP holds, for the log line and the manifest.
#[derive(Debug, Default)]
struct Counts {
    files: usize,
}

/// One message to the ZIP thread.
enum Msg {
    /// Start entry `name`; `compress` false for files that are compressed already (images).
    Start { name: String, compress: bool },
    /// The next bytes of the current entry.
    Chunk(Bytes),
    /// Write `manifest.json` (this object plus `files`) and finish the archive.
    Finish(serde_json::Value),
}

#[derive(Debug, Clone, serde::Serialize)]
struct FileInfo {
    path: String,
    bytes: u64,
    sha256: String,
}

/// The ZIP thread: writes entries as they come, hashing them for the manifest. Ends with
/// the archive finished and fsynced on `Finish`; with an error if the channel closes first
/// (the job gave up or timed out) or a write fails.
fn write_zip(path: PathBuf, mut rx: mpsc::Receiver<Msg>) -> anyhow::Result<Vec<FileInfo>> {
    use zip::{CompressionMethod, ZipWriter, write::SimpleFileOptions};
    let file = std::fs::File::create(&path)?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let now = Utc::now();
    let stamp = zip::DateTime::from_date_and_time(
        now.year().clamp(1980, 2107) as u16,
        now.month() as u8,
        now.day() as u8,
        now.hour() as u8,
        now.minute() as u8,
        now.second().min(59) as u8,
    )
    .unwrap_or_default();
    let options = |compress: bool| {
        SimpleFileOptions::default()
            .compression_method(if compress { CompressionMethod::Deflated } else { CompressionMethod::Stored })
            .last_modified_time(stamp)
            .unix_permissions(0o644)
    };
    let mut files: Vec<FileInfo> = Vec::new();
    let mut hasher: Option<Sha256> = None;
    let close = |files: &mut Vec<FileInfo>, hasher: &mut Option<Sha256>| {
        if let (Some(h), Some(last)) = (hasher.take(), files.last_mut()) {
            last.sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        }
    };
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Start { name, compress } => {
                close(&mut files, &mut hasher);
                zip.start_file(name.as_str(), options(compress))?;
                files.push(FileInfo { path: name, bytes: 0, sha256: String::new() });
                hasher = Some(Sha256::new());
            }
            Msg::Chunk(bytes) => {
                let (Some(h), Some(last)) = (hasher.as_mut(), files.last_mut()) else {
                    anyhow::bail!("a chunk before any entry");
                };
                zip.write_all(&bytes)?;
                h.update(&bytes);
                last.bytes += bytes.len() as u64;
            }
            Msg::Finish(mut manifest) => {
                close(&mut files, &mut hasher);
                manifest["files"] = serde_json::to_value(&files)?;
                let body = serde_json::to_vec_pretty(&manifest)?;
                zip.start_file("manifest.json", options(true))?;
                zip.write_all(&body)?;
                let out = zip.finish()?;
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                return Ok(files);
            }
        }
    }
    anyhow::bail!("the export was abandoned before it was finished")
}

/// The async side's handle on the ZIP thread, counting progress.
struct Archive<'a> {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<tokio::task::JoinHandle<anyhow::Result<Vec<FileInfo>>>>,
    db: &'a sqlx::PgPool,
    export_id: i64,
    done: i32,
    total: i32,
}

impl Archive<'_> {
    async fn send(&mut self, msg: Msg) -> Result<(), JobError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { Err(self.thread_error().await) }
    }

    /// Why the ZIP thread stopped taking messages.
    async fn thread_error(&mut self) -> JobError {
        self.tx = None;
        match self.thread.take() {
            Some(thread) => match thread.await {
                Ok(Err(e)) => JobError::Retry(e.context("writing the export")),
                Ok(Ok(_)) => JobError::Retry(anyhow::anyhow!("the ZIP writer finished early")),
                Err(e) => JobError::Retry(anyhow::anyhow!("the ZIP writer died: {e}")),
            },
            None => JobError::Retry(anyhow::anyhow!("the ZIP writer is gone")),
        }
    }

    /// A whole entry at once (JSON files, chapters).
    async fn file(&mut self, name: String, compress: bool, body: impl Into<Bytes>) -> Result<(), JobError> {
        self.send(Msg::Start { name, compress }).await?;
        self.send(Msg::Chunk(body.into())).await
    }

    /// One item (a chapter, an upload, a JSON file) done: progress, written every few.
    async fn item_done(&mut self) -> Result<(), JobError> {
        self.done += 1;
        if self.done % PROGRESS_EVERY == 0 {
            exports_db::set_progress(self.db, self.export_id, self.done.min(self.total), self.total).await?;
        }
        Ok(())
    }

    async fn finish(mut self, manifest: serde_json::Value) -> Result<Vec<FileInfo>, JobError> {
        self.send(Msg::Finish(manifest)).await?;
        self.tx = None;
        let thread = self.thread.take().ok_or_else(|| JobError::Retry(anyhow::anyhow!("the ZIP writer is gone")))?;
        match thread.await {
            Ok(Ok(files)) => Ok(files),
            Ok(Err(e)) => Err(JobError::Retry(e.context("writing the export"))),
            Err(e) => Err(JobError::Retry(anyhow::anyhow!("the ZIP writer died: {e}"))),
        }
    }
}

/// `7-the-long-night`: the story's id (unique) and its title, for a folder name.
pub fn slug(id: i64, title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 50 {
            break;
        }
    }
    let words = out.trim_matches('-');
    if words.is_empty() { id.to_string() } else { format!("{id}-{words}") }
}

fn ext_of(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        _ => "bin",
    }
}

fn json_bytes(v: &impl serde::Serialize) -> Result<Vec<u8>, JobError> {
    serde_json::to_vec_pretty(v).map_err(|e| JobError::Retry(e.into()))
}

/// A chapter as a page of its own.
fn chapter_page(story: &Story, c: &Chapter) -> String {
    let esc = app::xml::escape;
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{} — {}</title>\n</head>\n<body>\n<article>\n<h1>{}</h1>\n{}\n</article>\n</body>\n</html>\n",
        esc(&story.title),
        esc(&c.title),
        esc(&c.title),
        c.body_html
    )
}

/// A story's folder: its `story.json` once all its chapters are written.
struct StoryDir {
    index: usize,
    dir: String,
    cover: Option<String>,
    chapters: Vec<serde_json::Value>,
}

/// Writes the whole archive; `None` when the account no longer exists.
async fn build(ctx: &JobContext, export_id: i64, user_id: i64, path: PathBuf) -> Result<Option<Counts>, JobError> {
    let db = ctx.db.primary();
    let Some(profile) = exports_db::profile(db, user_id).await? else { return Ok(None) };
    let stories = exports_db::stories(db, user_id).await?;
    let listed = exports_db::uploads(db, user_id).await?;
    // Originals missing from storage are left out, and said so in the manifest, rather
    // than failing the export: profile.json and story.json then name no file for them.
    let (mut uploads, mut missing) = (Vec::new(), Vec::new());
    for m in listed {
        match ctx.storage.exists(&m.original_key).await {
            Ok(true) => uploads.push(m),
            Ok(false) => {
                tracing::warn!(media_id = m.id, "an upload's original is missing from storage; left out of the export");
                missing.push(json!({ "purpose": m.purpose, "uploaded_at": m.created_at }));
            }
            Err(e) => return Err(JobError::Retry(anyhow::anyhow!("checking upload {}: {e}", m.id))),
        }
    }
    let chapter_total = exports_db::chapter_count(db, user_id).await?;
    // profile, comments, likes, follows, manifest; a story.json per story; a chapter
    // (two files) or an upload per item.
    let total = (5 + stories.len() as i64 + chapter_total + uploads.len() as i64).min(i64::from(i32::MAX)) as i32;
    exports_db::set_progress(db, export_id, 0, total).await?;

    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let thread = tokio::task::spawn_blocking(move || write_zip(path, rx));
    let mut zip = Archive { tx: Some(tx), thread: Some(thread), db, export_id, done: 0, total };

    // Uploads: where each goes in the archive.
    let upload_path = |id: i64| -> Option<String> {
        let m = uploads.iter().find(|m| m.id == id)?;
        let ext = ext_of(&m.content_type);
        if profile.avatar_id == Some(id) {
            return Some(format!("avatar.{ext}"));
        }
        let story = stories.iter().find(|s| s.cover_id == Some(id))?;
        Some(format!("stories/{}/cover.{ext}", slug(story.id, &story.title)))
    };
    let avatar = profile.avatar_id.and_then(&upload_path);

    let mut profile_json = serde_json::to_value(&profile).map_err(|e| JobError::Retry(e.into()))?;
    profile_json["avatar"] = json!(avatar);
    zip.file("profile.json".into(), true, json_bytes(&profile_json)?).await?;
    zip.item_done().await?;

    // Stories and chapters, in (story, number) order, BATCH chapters a query.
    let dirs: Vec<StoryDir> = stories
        .iter()
        .enumerate()
        .map(|(index, s)| StoryDir { index, dir: format!("stories/{}", slug(s.id, &s.title)), cover: s.cover_id.and_then(&upload_path), chapters: Vec::new() })
        .collect();
    let mut dirs = dirs.into_iter().peekable();
    let mut current: Option<StoryDir> = None;
    let mut after = (0i64, 0i32);
    let mut chapters_written = 0i64;
    loop {
        let batch = exports_db::chapters_after(db, user_id, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = (last.story_id, last.number);
        for c in &batch {
            // Close the stories before this chapter's (those with no more chapters).
            while current.as_ref().is_none_or(|d| stories[d.index].id != c.story_id) {
                if let Some(done) = current.take() {
                    write_story_json(&mut zip, &stories[done.index], done).await?;
                }
                match dirs.next() {
                    Some(d) => current = Some(d),
                    // A chapter of a story created after we listed them: next time.
                    None => break,
                }
            }
            let Some(dir) = current.as_mut().filter(|d| stories[d.index].id == c.story_id) else { continue };
            let story = &stories[dir.index];
            let md = format!("{}/chapter-{:03}.md", dir.dir, c.number);
            let html = format!("{}/chapter-{:03}.html", dir.dir, c.number);
            dir.chapters.push(json!({
                "number": c.number, "title": c.title, "word_count": c.word_count, "created_at": c.created_at,
                "markdown": md, "html": html,
            }));
            let page = chapter_page(story, c);
            zip.file(md, true, c.body_markdown.clone()).await?;
            zip.file(html, true, page).await?;
            chapters_written += 1;
            zip.item_done().await?;
        }
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    if let Some(done) = current.take() {
        write_story_json(&mut zip, &stories[done.index], done).await?;
    }
    for d in dirs {
        let story = &stories[d.index];
        write_story_json(&mut zip, story, d).await?;
    }

    // The original uploads, streamed from storage.
    let mut uploads_written = 0usize;
    for m in &uploads {
        let Some(name) = upload_path(m.id) else { continue };
        match ctx.storage.get_stream(&m.original_key).await {
            Ok((_, mut chunks)) => {
                zip.send(Msg::Start { name, compress: false }).await?;
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(|e| JobError::Retry(anyhow::anyhow!("reading upload {}: {e}", m.id)))?;
                    zip.send(Msg::Chunk(chunk)).await?;
                }
                uploads_written += 1;
            }
            Err(StorageError::NotFound(_)) => {
                // Deleted since we looked (the image was replaced meanwhile).
                tracing::warn!(media_id = m.id, "an upload's original vanished during the export; left out");
                missing.push(json!({ "purpose": m.purpose, "uploaded_at": m.created_at }));
            }
            Err(e) => return Err(JobError::Retry(anyhow::anyhow!("reading upload {}: {e}", m.id))),
        }
        zip.item_done().await?;
    }

    // Comments, BATCH a query, as one JSON array written piece by piece.
    zip.send(Msg::Start { name: "comments.json".into(), compress: true }).await?;
    zip.send(Msg::Chunk(Bytes::from_static(b"["))).await?;
    let mut comments = 0usize;
    let mut after_comment = 0i64;
    loop {
        let batch = exports_db::comments_after(db, user_id, after_comment, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after_comment = last.id;
        let mut piece = Vec::new();
        for c in &batch {
            piece.extend_from_slice(if comments == 0 { b"\n  " } else { b",\n  " });
            serde_json::to_writer(&mut piece, c).map_err(|e| JobError::Retry(e.into()))?;
            comments += 1;
        }
        zip.send(Msg::Chunk(piece.into())).await?;
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    zip.send(Msg::Chunk(Bytes::from_static(if comments == 0 { b"]\n" } else { b"\n]\n" }))).await?;
    zip.item_done().await?;

    let likes = exports_db::likes(db, user_id).await?;
    zip.file("likes.json".into(), true, json_bytes(&likes)?).await?;
    zip.item_done().await?;
    let (following, followers) = exports_db::follows(db, user_id).await?;
    zip.file("follows.json".into(), true, json_bytes(&json!({ "following": following, "followers": followers }))?).await?;
    zip.item_done().await?;

    let manifest = json!({
        "format": "quire-export",
        "version": FORMAT_VERSION,
        "generated_at": Utc::now(),
        "account": { "id": profile.id, "username": profile.username, "email": profile.email },
        "counts": {
            "stories": stories.len(),
            "chapters": chapters_written,
            "comments": comments,
            "likes": likes.len(),
            "following": following.len(),
            "followers": followers.len(),
            "uploads": uploads_written,
        },
        "missing_uploads": missing,
    });
    let files = zip.finish(manifest).await?;
    exports_db::set_progress(db, export_id, total, total).await?;
    Ok(Some(Counts { files: files.len() + 1 }))
}

async fn write_story_json(zip: &mut Archive<'_>, story: &Story, dir: StoryDir) -> Result<(), JobError> {
    let mut v = serde_json::to_value(story).map_err(|e| JobError::Retry(e.into()))?;
    v["cover"] = json!(dir.cover);
    v["chapters"] = serde_json::Value::Array(dir.chapters);
    zip.file(format!("{}/story.json", dir.dir), true, json_bytes(&v)?).await?;
    zip.item_done().await
}

impl Run for SendExportReady {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let key = format!("export-{}", self.key);
        let mut tx = ctx.db.primary().begin().await?;
        let Some((user_id, token_hash, expires_at)) = exports_db::for_mail(&mut *tx, self.export_id).await? else {
            tracing::info!(export_id = self.export_id, "export no longer ready; nothing to send");
            return Ok(());
        };
        let token = app::exports::download_token(&ctx.config.secret_key, self.key);
        if !app::tokens::constant_time_eq(&app::tokens::hash_token(&token), &token_hash) {
            // A mail queued by an earlier attempt whose row was since rebuilt: its link would not work.
            tracing::info!(export_id = self.export_id, "stale export mail; nothing to send");
            return Ok(());
        }
        let Some(user) = app::accounts::users::find_by_id(&mut *tx, user_id).await? else { return Ok(()) };
        let subject = "Your Quire export is ready";
        if !super::mail::claim(&mut tx, &key, &user.email, subject).await? {
            tracing::info!(key, "already sent; skipping");
            return Ok(());
        }
        let url = format!("{}{}", ctx.config.base_url, app::exports::download_path(&token));
        let expires = expires_at.format("%-d %B %Y, %H:%M UTC").to_string();
        let vars = minijinja::context! {
            user => minijinja::Value::from(minijinja::value::Serde(&user)), url => url, subject => subject,
            base_url => &ctx.config.base_url, expires => expires,
        };
        let text = ctx.templates.render("emails/export_ready.txt", vars.clone()).map_err(|e| JobError::Retry(e.into()))?;
        let html = ctx.templates.render("emails/export_ready.html", vars).map_err(|e| JobError::Retry(e.into()))?;
        let email = crate::mailer::Email { to: user.email.clone(), subject: subject.into(), text, html, unsubscribe_url: None };
        let redact = |msg: String| if user.email.is_empty() { msg } else { msg.replace(&user.email, "<recipient>") };
        match ctx.mailer.send(&key, email).await {
            Ok(()) => {}
            Err(crate::mailer::MailError::Recipient(msg)) => {
                return Err(JobError::Permanent(format!("cannot mail user {user_id}: {}", redact(msg))));
            }
            Err(crate::mailer::MailError::Other(e)) => return Err(JobError::Retry(anyhow::anyhow!(redact(format!("{e:#}"))))),
        }
        tx.commit().await?;
        tracing::info!(export_id = self.export_id, user_id, "export mail sent");
        Ok(())
    }
}

/// Housekeeping (the periodic `purge_expired` job): deletes the files of exports past
/// their 24 hours and marks the rows expired, a hundred at a time (each batch's rows stay
/// locked while their files go, so a failed delete leaves them for the next run); then
/// removes files nothing refers to: export files without a row, and staged files older
/// than a day, which only a worker killed mid-write leaves.
/// Returns (exports expired, stray files removed).
pub async fn purge_expired(ctx: &JobContext) -> Result<(u64, usize), JobError> {
    const AT_ONCE: i64 = 100;
    let mut expired = 0;
    loop {
        let mut tx = ctx.db.primary().begin().await?;
        let due = exports_db::lock_due(&mut tx, AT_ONCE).await?;
        for key in due.iter().filter_map(|(_, key)| key.as_deref()) {
            ctx.storage.delete(key).await.map_err(|e| JobError::Retry(anyhow::anyhow!("deleting expired export {key}: {e}")))?;
        }
        let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            expired += exports_db::mark_expired(&mut tx, &ids).await?;
        }
        tx.commit().await?;
        if (due.len() as i64) < AT_ONCE {
            break;
        }
    }
    // Files under exports/ that no row refers to: an account deleted with its exports
    // (the rows cascade, the files do not), or a run that stored its file and then lost
    // its transaction. An hour old at least, so a file between its commit and its row's
    // update is never taken.
    let cutoff = Utc::now() - chrono::Duration::hours(1);
    let old = ctx.storage.list_older("exports", cutoff, 1000).await.map_err(|e| JobError::Retry(e.into()))?;
    let mut orphans = 0;
    if !old.is_empty() {
        for key in exports_db::unreferenced(ctx.db.primary(), &old).await? {
            ctx.storage.delete(&key).await.map_err(|e| JobError::Retry(e.into()))?;
            orphans += 1;
        }
    }
    let storage = ctx.storage.clone();
    let staged = tokio::task::spawn_blocking(move || storage.sweep_staging(std::time::Duration::from_secs(24 * 3600)))
        .await
        .map_err(|e| JobError::Retry(e.into()))?
        .map_err(|e| JobError::Retry(e.into()))?;
    Ok((expired, staged + orphans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_folder_names() {
        assert_eq!(slug(7, "The Long Night"), "7-the-long-night");
        assert_eq!(slug(8, "  ¡Olé! — part 2/3 "), "8-ol-part-2-3");
        assert_eq!(slug(9, "…"), "9");
        assert_eq!(slug(10, "../../etc/passwd"), "10-etc-passwd");
        assert!(slug(11, &"word ".repeat(100)).len() <= 54);
        for s in [slug(1, "a/b\\c:d*e?f\"g<h>i|j"), slug(2, "é")] {
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{s}");
        }
    }
}
