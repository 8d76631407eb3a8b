//! Handler side of the story page for plain logged-in readers: one stored rendering
//! shared by all of them (`web::stitched`), with each reader's own parts put in.
//!
//! Who gets it: a logged-in reader who is not staff, not the story's author, has no
//! comment on the first page of comments (theirs carry a delete button) and none hidden
//! by the moderators there, no flash message waiting and no write a moment ago
//! (read-your-writes) — everyone else, and drafts, hidden stories and errors, get the
//! page rendered for them by `pages::show`.
//!
//! What differs between readers is in the template's `hole(…)` regions: the navigation
//! (name, unread count), the email banner, the like, save and follow buttons, where they
//! stopped reading; and the CSRF token. Their state on the story (`ViewerState`) is
//! cached per reader and story, tagged with the story and the reader, so a like, save,
//! follow or chapter read shows on their next page on every process.

use std::{
    hash::{Hash, Hasher},
    sync::{Arc, OnceLock},
    time::Duration,
};

use minijinja::context;
use poem::{Request, Response, http::HeaderValue};
use serde::{Deserialize, Serialize};

use super::{ShowVars, show_tags};
use crate::{
    stories::db::{self, StoryStatus},
    cache::{Cacheable, Fill, Got, Json, Tag, stats},
    error::{Error, Result},
    sessions::CurrentUser,
    social::db::{self as social_db, ViewerState},
    web::{
        compression::AcceptEncoding,
        ctx::Ctx,
        page_cache::CACHE_HEADER,
        stitched::StitchedPage,
    },
};

/// What the regions need, stored with the page.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    story_id: i64,
    author_id: i64,
    author_username: String,
    author_display_name: String,
    like_count: i32,
    /// Everyone with a comment or reply on the stored first page of comments.
    commenters: Vec<i64>,
}

/// What is stored: the shared rendering and what its regions need.
struct MemberStory {
    meta: Meta,
    page: StitchedPage,
}

impl Cacheable for MemberStory {
    fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        let mut out = (meta.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.page.encode());
        out
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let meta = serde_json::from_slice(bytes.get(4..4 + len)?).ok()?;
        Some(MemberStory { meta, page: StitchedPage::decode(&bytes[4 + len..])? })
    }
    fn weight(&self) -> usize {
        self.page.weight() + 256
    }
}

/// A rendered navigation and everything it shows.
struct Nav {
    token: String,
    username: String,
    display_name: String,
    unread: i64,
    html: String,
}

/// The navigation as a reader sees it, by everything it shows (their token, name and
/// unread count): rendered once, not on every page. An entry is used only when all of it
/// matches (a hash collision renders afresh), so none is ever stale or someone else's; a
/// minute bounds an unused one.
fn nav_cache() -> &'static moka::sync::Cache<u64, Arc<Nav>> {
    static NAV: OnceLock<moka::sync::Cache<u64, Arc<Nav>>> = OnceLock::new();
    NAV.get_or_init(|| moka::sync::Cache::builder().max_capacity(10_000).time_to_idle(Duration::from_secs(60)).build())
}

/// The story page for this reader from the stored rendering, or None when it is not
/// theirs to share (see the module's doc): the caller renders it then.
pub async fn story(ctx: &Ctx, req: &Request, id: i64) -> Result<Option<Response>> {
    let Some(user) = ctx.user() else { return Ok(None) };
    if !ctx.state.cache.enabled() || ctx.htmx || ctx.has_flash() || ctx.wrote_lately() || user.role.is_staff() {
        return Ok(None);
    }
    let rendered_here = std::sync::atomic::AtomicBool::new(false);
    let loader = async {
        rendered_here.store(true, std::sync::atomic::Ordering::Relaxed);
        match render_shared(ctx, id).await {
            Ok(Some((page, tags))) => Fill::Store { value: page, tags },
            Ok(None) => Fill::Pass(Ok(())),
            Err(e) => Fill::Pass(Err(e)),
        }
    };
    let stored = match ctx.state.cache.get_or_load(&stats::MEMBER_STORY, &id.to_string(), &[Tag::story(id)], loader).await {
        Got::Value(stored) => stored,
        Got::Pass(r) => return r.map(|()| None),
    };
    let (meta, page) = (&stored.meta, &stored.page);
    if meta.author_id == user.id || meta.commenters.contains(&user.id) {
        return Ok(None);
    }
    let viewer = viewer_state(ctx, user.id, id, meta.author_id).await?;
    if viewer.own_hidden {
        return Ok(None);
    }
    let encoding = AcceptEncoding::from_headers(req.headers()).choose(true, true);
    let mut failed = None;
    let resp = page.respond(encoding, &ctx.session.csrf_token, |name| match region(ctx, user, name, meta, &viewer) {
        Ok(html) => html,
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    // A token of another length than the stored runs were made for: render instead.
    let Some(mut resp) = resp else { return Ok(None) };
    let fresh = rendered_here.load(std::sync::atomic::Ordering::Relaxed);
    resp.headers_mut().insert(CACHE_HEADER, HeaderValue::from_static(if fresh { "miss" } else { "hit" }));
    Ok(Some(resp))
}

/// This reader's content for region `name`: None keeps the stored (neutral) content —
/// not liked, not saved, not following, no progress, address confirmed.
fn region(ctx: &Ctx, user: &CurrentUser, name: &str, meta: &Meta, viewer: &ViewerState) -> Result<Option<String>> {
    let html = match name {
        "nav" => {
            let key = {
                let mut h = std::hash::DefaultHasher::new();
                (&ctx.session.csrf_token, &user.username, &user.display_name, user.unread).hash(&mut h);
                h.finish()
            };
            if let Some(nav) = nav_cache().get(&key)
                && nav.token == ctx.session.csrf_token
                && nav.username == user.username
                && nav.display_name == user.display_name
                && nav.unread == user.unread
            {
                return Ok(Some(nav.html.clone()));
            }
            let html = ctx.render_partial("partials/_nav_user.html", context! {})?;
            let nav = Nav {
                token: ctx.session.csrf_token.clone(),
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                unread: user.unread,
                html: html.clone(),
            };
            nav_cache().insert(key, Arc::new(nav));
            html
        }
        "verify" if !user.email_verified => ctx.render_partial("partials/_verify_banner.html", context! {})?,
        "like" if viewer.liked => ctx.render_partial(
            "social/_like_button.html",
            context! { story_id => meta.story_id, liked => true, like_count => meta.like_count, oob => false },
        )?,
        "save" if viewer.saved => ctx.render_partial("social/_save_button.html", context! { story_id => meta.story_id, saved => true })?,
        "follow" if viewer.following => ctx.render_partial(
            "social/_follow_button.html",
            context! {
                who => context! { username => &meta.author_username, display_name => &meta.author_display_name },
                following => true,
                next => format!("/s/{}", meta.story_id),
                oob => false,
            },
        )?,
        "continue" => match viewer.progress {
            Some(n) => ctx.render_partial("stories/_continue.html", context! { story_id => meta.story_id, progress => n })?,
            None => return Ok(None),
        },
        "start" if viewer.progress.is_some() => String::new(),
        _ => return Ok(None),
    };
    Ok(Some(html))
}

/// The page as any plain reader sees it, from the primary (what is stored must not be
/// older than the write that invalidated the last copy); None for a story that only its
/// author or staff may see, or that does not exist.
async fn render_shared(ctx: &Ctx, id: i64) -> Result<Option<(MemberStory, Vec<Tag>)>> {
    let db = ctx.state.db.primary();
    let Some((story, chapters)) = db::page(db, id).await? else { return Ok(None) };
    if story.status != StoryStatus::Published || story.hidden_at.is_some() {
        return Ok(None);
    }
    let (comments, comments_next) = social_db::comments(db, id, None, social_db::Reader::default()).await?;
    let tags = show_tags(&story, &comments);
    let mut commenters: Vec<i64> = comments.iter().chain(comments.iter().flat_map(|c| c.replies.iter())).map(|c| c.author_id).collect();
    commenters.sort_unstable();
    commenters.dedup();
    let vars = ShowVars {
        story: &story,
        chapters: &chapters,
        comments: &comments,
        comments_next,
        viewer: &ViewerState::default(),
        is_author: false,
        can_publish: false,
    };
    let html = ctx.render_stitching("stories/show.html", vars.value())?;
    let meta = Meta {
        story_id: id,
        author_id: story.author_id,
        author_username: story.author_username.clone(),
        author_display_name: story.author_display_name.clone(),
        like_count: story.like_count,
        commenters,
    };
    // Compressing the runs is CPU work: off the async threads.
    let parsed = tokio::task::spawn_blocking(move || StitchedPage::parse(&html))
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .map_err(|e| Error::Internal(e.into()))?;
    match parsed {
        Some(page) => Ok(Some((MemberStory { meta, page }, tags))),
        None => {
            tracing::error!(story_id = id, "the story page's hole() regions do not pair up; rendering per reader");
            Ok(None)
        }
    }
}

/// This reader's state on the story, cached per reader and story (read from the primary
/// on a miss, like every cache fill).
async fn viewer_state(ctx: &Ctx, user_id: i64, story_id: i64, author_id: i64) -> Result<ViewerState> {
    let key = format!("{user_id}:{story_id}");
    let tags = [Tag::story(story_id), Tag::viewer(user_id)];
    let loader = async {
        match social_db::viewer_state(ctx.state.db.primary(), user_id, story_id, author_id).await {
            Ok(v) => Fill::Store { value: Json(v), tags: Vec::new() },
            Err(e) => Fill::Pass(e),
        }
    };
    match ctx.state.cache.get_or_load(&stats::VIEWER, &key, &tags, loader).await {
        Got::Value(v) => Ok(v.0.clone()),
        Got::Pass(e) => Err(e.into()),
    }
}

