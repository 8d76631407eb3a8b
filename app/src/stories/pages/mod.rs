//! Story pages: writing (create, edit, add chapters, publish) and reading (home, story,
//! chapter, profile and tag pages).

mod member;

use minijinja::{Value, context};
use poem::{Body, Request, Response, Route, get, handler, http::StatusCode, post, web::{Path, Query}};
use serde::Deserialize;

use super::{
    db::{self, Cursor, Listing, StoryRow, StoryStatus},
    validate,
    values::{reading_minutes, story_value, story_values},
};
use crate::{
    accounts::users,
    cache::Tag,
    error::{Error, FieldErrors, Result},
    jobs::notify::{Activity, Notify},
    markdown,
    media::{self, Purpose, upload::ImageUpload},
    ratelimit::limits,
    sessions::CurrentUser,
    social, stats, trending,
    web::{ctx::Ctx, form, page_cache::with_cache_tags},
};

pub fn routes(route: Route) -> Route {
    route
        .at("/stories/new", get(new_page))
        .at("/stories", post(create))
        .at("/s/:id", get(show))
        .at("/s/:id/edit", get(edit_page).post(edit))
        .at("/s/:id/chapters", post(add_chapter))
        .at("/s/:id/c/:n", get(read_chapter))
        .at("/u/:username", get(profile))
        .at("/t/:tag", get(tag_page))
}

// ---- shared helpers ----------------------------------------------------------------

/// Publishing (and covers): a verified address, and a role that writes (`policy`): a
/// reader demoted by staff cannot, whatever their verification.
fn may_publish(user: &CurrentUser) -> bool {
    user.email_verified && crate::policy::may(Some(user), crate::policy::Action::Write) == crate::policy::Decision::Allow
}

fn is_author(user: Option<&CurrentUser>, story: &StoryRow) -> bool {
    user.is_some_and(|u| u.id == story.author_id)
}

/// The story if this visitor may see it, read from a replica (reading pages). Drafts are
/// 404 for everyone but their author, so their existence does not leak.
async fn visible_story(ctx: &Ctx, id: i64) -> Result<StoryRow> {
    let story = crate::replica_read!(ctx.state.db, db => db::find(db, id))?;
    may_see(ctx, story)
}

/// Drafts: their author only. Hidden by a moderator: their author and staff
/// (`policy::Action::SeeHidden`); everyone else gets the same 404 as for a draft.
fn may_see(ctx: &Ctx, story: Option<StoryRow>) -> Result<StoryRow> {
    let story = story.ok_or(Error::NotFound)?;
    if super::may_see(ctx.user(), &story) { Ok(story) } else { Err(Error::NotFound) }
}

/// The story for an author-only action: login required (redirect), drafts of others 404,
/// published stories of others 403.
async fn authored_story(ctx: &Ctx, id: i64) -> Result<(StoryRow, &CurrentUser)> {
    let user = ctx.require_user()?;
    // From the primary: what an author changes, and who may change it, must be current.
    let story = may_see(ctx, db::find(ctx.state.db.primary(), id).await?)?;
    if story.author_id != user.id {
        return Err(Error::Forbidden("Only the author can change this story.".into()));
    }
    Ok((story, user))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    after: String,
}

/// What a card or page of each story shows, for the page cache (`web::page_cache`): the
/// story and its author.
pub fn story_tags(stories: &[StoryRow]) -> impl Iterator<Item = Tag> + '_ {
    stories.iter().flat_map(|s| [Tag::story(s.id), Tag::user(s.author_id)])
}

/// A listing page, or with htmx just its next items (the "Load more" swap). `tags`: what
/// else the page shows, for the page cache.
async fn listing_page(ctx: &Ctx, template: &str, listing: Listing<'_>, q: &PageQuery, extra: Value, mut tags: Vec<Tag>) -> Result<Response> {
    let cursor = Cursor::decode(&q.after);
    let (stories, next) = crate::replica_read!(ctx.state.db, db => db::published(db, listing, cursor))?;
    tags.extend(story_tags(&stories));
    let vars = context! {
        stories => story_values(&stories),
        next => next.map(|c| c.encode()),
        ..extra
    };
    let page = if ctx.htmx && cursor.is_some() { ctx.render_form(StatusCode::OK, template, "items", vars)? } else { ctx.render(template, vars)? };
    Ok(with_cache_tags(page, tags))
}

// ---- story forms -------------------------------------------------------------------

/// The accepted cover, or its refusal recorded as a form error; the status the form is
/// shown with: the refusal's (400, 413; 403 for an unconfirmed address, which may not
/// upload) or 422 for other validation errors.
fn image_or_error(field: form::ImageField, user: &CurrentUser, errors: &mut FieldErrors) -> (Option<ImageUpload>, StatusCode) {
    match field {
        form::ImageField::None => (None, StatusCode::UNPROCESSABLE_ENTITY),
        form::ImageField::Some(_) if !may_publish(user) => refuse_cover(media::UploadRefusal::unverified(), errors),
        form::ImageField::Some(upload) => (Some(upload), StatusCode::UNPROCESSABLE_ENTITY),
        form::ImageField::Rejected { status, message } => {
            errors.insert("cover", message);
            (None, status)
        }
    }
}

fn refuse_cover(refusal: media::UploadRefusal, errors: &mut FieldErrors) -> (Option<ImageUpload>, StatusCode) {
    errors.insert("cover", refusal.message);
    (None, StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY))
}

/// Once the form is otherwise valid: counts the cover against the account's upload
/// limit, refusing the whole form (429, the reason on the file field) when over it.
async fn count_cover(
    ctx: &Ctx,
    user: &CurrentUser,
    cover: Option<ImageUpload>,
    status: &mut StatusCode,
    errors: &mut FieldErrors,
) -> Result<Option<ImageUpload>> {
    if cover.is_none() || !errors.is_empty() {
        return Ok(cover);
    }
    match media::count_upload(&ctx.state.limiter, user.id).await? {
        None => Ok(cover),
        Some(refusal) => {
            let (none, refused) = refuse_cover(refusal, errors);
            *status = refused;
            Ok(none)
        }
    }
}

#[handler]
async fn new_page(ctx: Ctx) -> Result<Response> {
    ctx.require_user()?;
    ctx.render("stories/new.html", context! { values => context!{}, errors => context!{} })
}

#[handler]
async fn create(ctx: Ctx, req: &Request, body: Body) -> Result<Response> {
    let user = ctx.require_user()?;
    let (fields, cover) = form::fields_and_image(req, body, "cover").await?;
    let (input, mut errors) = validate::story(&fields, None);
    let (cover, mut status) = image_or_error(cover, user, &mut errors);
    let cover = count_cover(&ctx, user, cover, &mut status, &mut errors).await?;
    if !errors.is_empty() {
        return ctx.render_form(
            status,
            "stories/new.html",
            "form",
            context! { values => context!{ title => input.title, summary => input.summary, tags => input.tags_raw }, errors => errors },
        );
    }
    // Story, tags, cover row and its processing job: one transaction.
    let mut tx = ctx.state.db.primary().begin().await?;
    let cover_id =
        media::db::create_optional(&mut tx, &ctx.state.storage, user.id, Purpose::Cover, cover.as_ref(), Some(&ctx.request_id)).await?;
    let id = db::insert(&mut tx, &db::NewStory { author_id: user.id, title: &input.title, summary: &input.summary, cover_id }).await?;
    db::set_tags(&mut tx, id, &input.tags).await?;
    tx.commit().await?;
    ctx.flash("success", "Your draft is saved. Add a chapter, then publish when you are ready.");
    Ok(ctx.redirect(&format!("/s/{id}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShowQuery {
    /// Keyset position in the comments ("Load more").
    comments: String,
}

/// The story page. Statements: the page itself (`PAGE_SQL`) and one page of comments
/// with their replies; a logged-in viewer adds one (liked, saved, following, progress).
/// With htmx and `?comments=` only the next comments (one more statement). Plain
/// logged-in readers get it from one stored rendering (`member`).
#[handler]
async fn show(ctx: Ctx, req: &Request, Path(id): Path<i64>, Query(q): Query<ShowQuery>) -> Result<Response> {
    if q.comments.is_empty()
        && let Some(page) = member::story(&ctx, req, id).await?
    {
        return Ok(page);
    }
    let (story, chapters) = crate::replica_read!(ctx.state.db, db => db::page(db, id))?.ok_or(Error::NotFound)?;
    let story = may_see(&ctx, Some(story))?;
    let published = story.status == StoryStatus::Published;
    let cursor = Cursor::decode(&q.comments);
    // Drafts have no comments (nor likes): nothing to read.
    let (comments, comments_next) = if published {
        let reader = social::db::Reader { user_id: ctx.user().map(|u| u.id), staff: ctx.user().is_some_and(|u| u.role.is_staff()) };
        crate::replica_read!(ctx.state.db, db => social::db::comments(db, id, cursor, reader))?
    } else {
        (Vec::new(), None)
    };
    if ctx.htmx && cursor.is_some() {
        return ctx.render_form(
            StatusCode::OK,
            "stories/show.html",
            "comment_items",
            context! {
                story => story_value(&story),
                comments => Value::from(minijinja::value::Serde(&comments)),
                comments_next => comments_next.map(|c| c.encode()),
            },
        );
    }
    let viewer = match ctx.user() {
        Some(u) if published => crate::replica_read!(ctx.state.db, db => social::db::viewer_state(db, u.id, id, story.author_id))?,
        _ => social::db::ViewerState::default(),
    };
    let tags = show_tags(&story, &comments);
    let vars = ShowVars {
        story: &story,
        chapters: &chapters,
        comments: &comments,
        comments_next,
        viewer: &viewer,
        is_author: is_author(ctx.user(), &story),
        can_publish: ctx.user().is_some_and(may_publish),
    };
    let page = ctx.render("stories/show.html", vars.value())?;
    Ok(with_cache_tags(page, tags))
}

/// What the story page shows: the story, its author and everyone whose comment shows
/// (their names change).
fn show_tags(story: &StoryRow, comments: &[social::db::Comment]) -> Vec<Tag> {
    let mut tags = vec![Tag::story(story.id), Tag::user(story.author_id)];
    for c in comments.iter().chain(comments.iter().flat_map(|c| c.replies.iter())) {
        tags.push(Tag::user(c.author_id));
    }
    tags
}

/// The story page's variables, for every reader and for the stored rendering alike.
struct ShowVars<'a> {
    pub story: &'a StoryRow,
    pub chapters: &'a [db::ChapterSummary],
    pub comments: &'a [social::db::Comment],
    pub comments_next: Option<Cursor>,
    pub viewer: &'a social::db::ViewerState,
    pub is_author: bool,
    pub can_publish: bool,
}

impl ShowVars<'_> {
    pub fn value(&self) -> Value {
        context! {
            story => story_value(self.story),
            chapters => Value::from(minijinja::value::Serde(self.chapters)),
            is_author => self.is_author,
            can_publish => self.can_publish,
            values => context!{},
            errors => context!{},
            viewer => Value::from(minijinja::value::Serde(self.viewer)),
            comments => Value::from(minijinja::value::Serde(self.comments)),
            comments_next => self.comments_next.map(|c| c.encode()),
        }
    }
}

#[handler]
async fn edit_page(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    let (story, user) = authored_story(&ctx, id).await?;
    let story_v = story_value(&story);
    ctx.render(
        "stories/edit.html",
        context! {
            story => story_v,
            values => context!{ title => &story.title, summary => &story.summary, tags => story.tags.join(", "), status => story.status.as_str() },
            errors => context!{},
            can_publish => may_publish(user),
        },
    )
}

#[handler]
async fn edit(ctx: Ctx, Path(id): Path<i64>, req: &Request, body: Body) -> Result<Response> {
    let (story, user) = authored_story(&ctx, id).await?;
    let (fields, cover) = form::fields_and_image(req, body, "cover").await?;
    let (input, mut errors) = validate::story(&fields, Some(&story));
    let (cover, mut image_status) = image_or_error(cover, user, &mut errors);
    let status = fields.get("status").map(String::as_str).unwrap_or(story.status.as_str()).to_string();
    let publish = match StoryStatus::parse(&status) {
        Some(s) => s == StoryStatus::Published,
        None => {
            errors.insert("status", "Choose draft or published.".into());
            false
        }
    };
    if publish && !may_publish(user) {
        let why = if user.email_verified {
            "Your account is a reader's: it cannot publish stories."
        } else {
            "Confirm your email address before publishing: use the link we sent you, or send it again."
        };
        errors.insert("status", why.into());
    }
    let cover = count_cover(&ctx, user, cover, &mut image_status, &mut errors).await?;
    if !errors.is_empty() {
        let story_v = story_value(&story);
        return ctx.render_form(
            image_status,
            "stories/edit.html",
            "form",
            context! {
                story => story_v,
                values => context!{ title => input.title, summary => input.summary, tags => input.tags_raw, status => status },
                errors => errors,
                can_publish => may_publish(user),
            },
        );
    }
    // The new cover, the deletion of the one it replaces and the story change: one
    // transaction.
    let mut tx = ctx.state.db.primary().begin().await?;
    let slot = media::Slot::Cover { story_id: id };
    let cover_id = media::db::replace_optional(&mut tx, &ctx.state.storage, user.id, slot, cover.as_ref(), Some(&ctx.request_id)).await?;
    db::update(&mut tx, id, &db::StoryUpdate { title: &input.title, summary: &input.summary, publish, cover_id }).await?;
    db::set_tags(&mut tx, id, &input.tags).await?;
    if story.status == StoryStatus::Draft && publish && story.chapter_count > 0 {
        // First publication (or again after a return to draft): the followers hear of
        // the latest chapter. Its dedupe key means a chapter is announced once, however
        // often the story goes back and forth.
        notify_chapter(&mut tx, &ctx, &story, story.chapter_count).await?;
    }
    tx.commit().await?;
    // Its pages, and every listing (title, summary and tags show there; publishing or
    // returning to draft changes which stories are listed at all).
    ctx.invalidate(&[Tag::story(id), Tag::listing()]).await;
    let message = match (story.status, publish) {
        (StoryStatus::Draft, true) => "Your story is published.",
        (StoryStatus::Published, false) => "Your story is back to a draft: only you can see it.",
        _ => "Your changes are saved.",
    };
    ctx.flash("success", message);
    Ok(ctx.redirect(&format!("/s/{id}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChapterForm {
    title: String,
    body: String,
}

#[handler]
async fn add_chapter(ctx: Ctx, Path(id): Path<i64>, form::Form(form): form::Form<ChapterForm>) -> Result<Response> {
    let (story, user) = authored_story(&ctx, id).await?;
    let title = form.title.trim();
    let body = form.body.trim();
    let mut errors = validate::chapter(title, body);
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if errors.is_empty() {
        // Counted only for chapters that would be saved. Over the limit the form comes
        // back with the text, so nothing typed is lost.
        if let Some(retry_after_secs) = ctx.state.limiter.over_limit(&format!("chapter:{}", user.id), limits::CHAPTERS_PER_ACCOUNT).await? {
            status = StatusCode::TOO_MANY_REQUESTS;
            errors.insert(
                "form",
                format!(
                    "You have added {} chapters in the last hour, the most we accept. Your text is still here: save it again in {}.",
                    limits::CHAPTERS_PER_ACCOUNT.max,
                    media::minutes(retry_after_secs)
                ),
            );
        }
    }
    if !errors.is_empty() {
        let chapters = db::chapters_of(ctx.state.db.primary(), id).await?;
        let story_v = story_value(&story);
        return ctx.render_form(
            status,
            "stories/show.html",
            "chapter_form",
            context! {
                story => story_v,
                chapters => Value::from(minijinja::value::Serde(&chapters)),
                is_author => true,
                can_publish => ctx.user().is_some_and(may_publish),
                values => context!{ chapter_title => title, body => body },
                errors => errors,
            },
        );
    }
    // Rendered and sanitised once, at save time; pages serve the stored HTML.
    let html = markdown::render(body);
    let words = markdown::word_count(body) as i32;
    let mut tx = ctx.state.db.primary().begin().await?;
    let number = db::add_chapter(&mut tx, id, &db::NewChapter { title, body_markdown: body, body_html: &html, word_count: words }).await?;
    if story.status == StoryStatus::Published {
        notify_chapter(&mut tx, &ctx, &story, number).await?;
    }
    tx.commit().await?;
    ctx.invalidate(&[Tag::story(id)]).await;
    ctx.flash("success", format!("Chapter {number} is saved."));
    Ok(ctx.redirect(&format!("/s/{id}/c/{number}")))
}

/// Enqueues the `Notify{Chapter}` job of chapter `number` in `tx`, the transaction that
/// publishes it. The handler re-checks that the story is still published when it runs.
async fn notify_chapter(tx: &mut sqlx::PgConnection, ctx: &Ctx, story: &StoryRow, number: i32) -> Result<()> {
    let job = Notify { activity: Activity::Chapter { story_id: story.id, author_id: story.author_id, number } };
    crate::jobs::enqueue(tx, &job, Some(&ctx.request_id)).await?;
    Ok(())
}

/// A chapter. Counts a view in memory (`stats::ViewCounter`, no database write) unless
/// the reader is its author or a crawler. The story page itself (`show`) is not counted:
/// statistics are about chapters read, and the contents page is a way to them.
#[handler]
async fn read_chapter(ctx: Ctx, req: &Request, Path((id, n)): Path<(i64, i32)>) -> Result<Response> {
    let story = visible_story(&ctx, id).await?;
    if n < 1 || n > story.chapter_count {
        return Err(Error::NotFound);
    }
    let chapter = crate::replica_read!(ctx.state.db, db => db::chapter(db, id, n))?.ok_or(Error::NotFound)?;
    // A page being stored for everyone counts nothing: the page cache counts each read.
    let filling = req.extensions().get::<crate::web::page_cache::Filling>().is_some();
    if !filling && !is_author(ctx.user(), &story) && !stats::is_crawler(&ctx.user_agent) {
        let anon = crate::web::cookies::anon_seed_sent(req, &ctx.state.cookie_key);
        let reader = match (ctx.user(), anon.as_deref()) {
            (Some(u), _) => stats::Reader::User(u.id),
            (None, Some(seed)) => stats::Reader::Anonymous(seed),
            (None, None) => stats::Reader::Unknown,
        };
        ctx.state.views.record(id, n, reader);
    }
    if let Some(user) = ctx.user().filter(|_| story.status == StoryStatus::Published) {
        // Remembered for "Continue reading". Reading must not fail because this write
        // did (a primary in trouble while replicas serve): logged, and the page shown.
        match social::db::record_progress(ctx.state.db.primary(), user.id, id, n).await {
            Ok(true) => ctx.invalidate(&[Tag::viewer(user.id)]).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not record reading progress"),
        }
    }
    let page = ctx.render(
        "stories/chapter.html",
        context! {
            // With its cover figure: the sharing meta names the cover's 1600 px variant.
            story => story_value(&story),
            chapter => Value::from(minijinja::value::Serde(&chapter)),
            body => Value::from_safe_string(chapter.body_html.clone()),
            prev => (n > 1).then_some(n - 1),
            next => (n < story.chapter_count).then_some(n + 1),
            reading_minutes => reading_minutes(chapter.word_count),
            is_author => is_author(ctx.user(), &story),
        },
    )?;
    Ok(with_cache_tags(page, [Tag::story(id), Tag::user(story.author_id)]))
}

// ---- reading pages -----------------------------------------------------------------

/// Home: "Trending" (the top of the `trending` table: one statement, first page only)
/// and the latest stories, for everybody; a logged-in reader also gets "Continue
/// reading" and "New chapters from authors you follow" (two statements more, first page
/// only).
#[handler]
pub async fn home(ctx: Ctx, Query(q): Query<PageQuery>) -> Result<Response> {
    let mut extra = context! { page_url => "/" };
    let mut tags = Vec::new();
    if q.after.is_empty() {
        let top = crate::replica_read!(ctx.state.db, db => trending::db::top(db, trending::HOME_COUNT))?;
        tags.extend(story_tags(&top));
        extra = context! { ..extra, ..context! { trending => story_values(&top), show_trending => true } };
    }
    if let Some(user) = ctx.user().filter(|_| q.after.is_empty()) {
        let reading = crate::replica_read!(ctx.state.db, db => social::db::continue_reading(db, user.id))?;
        let followed = crate::replica_read!(ctx.state.db, db => social::db::followed_updates(db, user.id))?;
        let reading: Vec<Value> = reading
            .iter()
            .map(|r| {
                let next = (r.progress_chapter < r.story.chapter_count).then_some(r.progress_chapter + 1);
                context! { story => story_value(&r.story), chapter => r.progress_chapter, next => next }
            })
            .collect();
        extra = context! { ..extra, ..context! { continue_reading => reading, followed => story_values(&followed), personal => true } };
    }
    listing_page(&ctx, "home.html", Listing::All, &q, extra, tags).await
}

#[handler]
async fn profile(ctx: Ctx, Path(username): Path<String>, Query(q): Query<PageQuery>) -> Result<Response> {
    let mut author = crate::replica_read!(ctx.state.db, db => users::find_by_username(db, &username))?.ok_or(Error::NotFound)?;
    let own = ctx.user().is_some_and(|u| u.id == author.id);
    // Hidden by a moderator: others see the username and the stories, not what the
    // user wrote about themselves.
    let sees_hidden = crate::policy::may(ctx.user(), crate::policy::Action::SeeHidden { owner_id: author.id }) == crate::policy::Decision::Allow;
    if author.profile_hidden_at.is_some() && !sees_hidden {
        author.display_name.clear();
        author.bio.clear();
        author.avatar_id = None;
    }
    let following = match ctx.user() {
        Some(u) if !own => crate::replica_read!(ctx.state.db, db => social::db::is_following(db, u.id, author.id))?,
        _ => false,
    };
    let drafts = if own { db::drafts_of(ctx.state.db.primary(), author.id).await? } else { Vec::new() };
    // Staff who may ban this account get the form, with the ban in force if any.
    let may_ban = !own
        && crate::policy::may(ctx.user(), crate::policy::Action::Ban { target_role: author.role }) == crate::policy::Decision::Allow;
    let ban = if may_ban { crate::moderation::db::active_ban(ctx.state.db.primary(), author.id).await? } else { None };
    let avatar = match author.avatar_id {
        Some(id) => crate::replica_read!(ctx.state.db, db => media::db::find(db, id))?.map(|m| media::figure_value(&m)),
        None => None,
    };
    let extra = context! {
        author => Value::from(minijinja::value::Serde(&author)),
        avatar => avatar,
        own => own,
        following => following,
        profile_hidden => author.profile_hidden_at.is_some(),
        may_ban => may_ban,
        ban => Value::from(minijinja::value::Serde(&ban)),
        drafts => story_values(&drafts),
        page_url => format!("/u/{}", author.username),
    };
    listing_page(&ctx, "stories/profile.html", Listing::Author(author.id), &q, extra, vec![Tag::user(author.id)]).await
}

#[handler]
async fn tag_page(ctx: Ctx, Path(tag): Path<String>, Query(q): Query<PageQuery>) -> Result<Response> {
    let tag = tag.to_lowercase();
    if validate::normalize_tags(&tag).map(|t| t.len() != 1).unwrap_or(true) {
        return Err(Error::NotFound);
    }
    let page_url = format!("/t/{tag}");
    listing_page(&ctx, "stories/tag.html", Listing::Tag(&tag), &q, context! { tag => &tag, page_url => page_url }, Vec::new()).await
}
