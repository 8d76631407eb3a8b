//! Social actions and pages: follow/unfollow and the follower lists, like/unlike,
//! save/unsave and the reading list, posting and deleting comments.
//!
//! Every action is a plain form (POST, then 303 back) and, for htmx, answers the
//! fragment that replaces its button or extends the comment list in place. The state
//! change, the counter it moves, the live event and the notification job commit in one
//! transaction; a request that changes nothing raises and enqueues nothing.

use minijinja::{Value, context};
use poem::{
    Response, Route, get, handler,
    http::{HeaderValue, StatusCode},
    post,
    web::{Path, Query},
};
use serde::Deserialize;

use super::{
    db::{self, People},
    validate,
};
use crate::{
    cache::Tag,
    accounts::{users, validate::safe_next},
    policy::{self, Action, Decision},
    error::{Error, FieldErrors, Result},
    jobs::{
        self,
        notify::{Activity, Notify},
    },
    live::{self, Channel},
    markdown, media,
    ratelimit::limits,
    sessions::CurrentUser,
    stories::db::{Cursor, StoryStatus},
    web::{ctx::Ctx, form},
};

pub fn routes(route: Route) -> Route {
    route
        .at("/u/:username/follow", post(follow))
        .at("/u/:username/unfollow", post(unfollow))
        .at("/u/:username/followers", get(followers))
        .at("/u/:username/following", get(following))
        .at("/s/:id/like", post(like))
        .at("/s/:id/unlike", post(unlike))
        .at("/s/:id/save", post(save))
        .at("/s/:id/unsave", post(unsave))
        .at("/s/:id/comments", post(create_comment))
        .at("/s/:id/comments/:cid/delete", post(delete_comment))
        .at("/reading-list", get(reading_list))
}

/// The logged-in user, or a login that comes back to `back` (the page the button was
/// on, not the POST-only action URL).
fn user_or_login<'a>(ctx: &'a Ctx, back: &str) -> Result<&'a CurrentUser> {
    ctx.user().ok_or_else(|| Error::LoginRequired(back.to_string()))
}

/// Toggles cost a notification at most, but a script flipping one thousands of times
/// would fill someone's inbox and the job queue.
async fn count_toggle(ctx: &Ctx, user: &CurrentUser) -> Result<()> {
    ctx.state.limiter.hit(&format!("social:{}", user.id), limits::SOCIAL_TOGGLES_PER_ACCOUNT).await
}

fn fragment(ctx: &Ctx, template: &str, vars: Value) -> Result<Response> {
    ctx.render_form(StatusCode::OK, template, "fragment", vars)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BackForm {
    /// Where the button was (a local path); the redirect goes back there.
    next: String,
}

// ---- follows ------------------------------------------------------------------------

#[handler]
async fn follow(ctx: Ctx, Path(username): Path<String>, form::Form(f): form::Form<BackForm>) -> Result<Response> {
    set_follow(&ctx, &username, &f.next, true).await
}

#[handler]
async fn unfollow(ctx: Ctx, Path(username): Path<String>, form::Form(f): form::Form<BackForm>) -> Result<Response> {
    set_follow(&ctx, &username, &f.next, false).await
}

async fn set_follow(ctx: &Ctx, username: &str, next: &str, on: bool) -> Result<Response> {
    let back = if next.is_empty() { format!("/u/{username}") } else { safe_next(next).to_string() };
    let user = user_or_login(ctx, &back)?;
    let target = users::find_by_username(ctx.state.db.primary(), username).await?.ok_or(Error::NotFound)?;
    if target.id == user.id {
        return Err(Error::Unprocessable("You cannot follow yourself.".into()));
    }
    count_toggle(ctx, user).await?;
    let mut tx = ctx.state.db.primary().begin().await?;
    let changed = if on { db::follow(&mut tx, user.id, target.id).await? } else { db::unfollow(&mut tx, user.id, target.id).await? };
    if on && changed {
        let job = Notify { activity: Activity::Follow { follower_id: user.id, followee_id: target.id } };
        jobs::enqueue(&mut tx, &job, Some(&ctx.request_id)).await?;
    }
    tx.commit().await?;
    if changed {
        // Their follower count, on their profile; the follower's "Following" buttons.
        ctx.invalidate(&[Tag::user(target.id), Tag::viewer(user.id)]).await;
    }
    if !ctx.htmx {
        return Ok(ctx.redirect(&back));
    }
    let delta = match (changed, on) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => -1,
    };
    fragment(
        ctx,
        "social/_follow_button.html",
        context! {
            who => context! { username => &target.username, follower_count => target.follower_count + delta },
            following => on,
            next => &back,
            oob => true,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AfterQuery {
    after: String,
}

#[handler]
async fn followers(ctx: Ctx, Path(username): Path<String>, Query(q): Query<AfterQuery>) -> Result<Response> {
    people_page(&ctx, &username, People::Followers, &q).await
}

#[handler]
async fn following(ctx: Ctx, Path(username): Path<String>, Query(q): Query<AfterQuery>) -> Result<Response> {
    people_page(&ctx, &username, People::Following, &q).await
}

/// Two statements: the user, then one page of the list.
async fn people_page(ctx: &Ctx, username: &str, which: People, q: &AfterQuery) -> Result<Response> {
    let who = crate::replica_read!(ctx.state.db, db => users::find_by_username(db, username))?.ok_or(Error::NotFound)?;
    let cursor = Cursor::decode(&q.after);
    let (people, next) = crate::replica_read!(ctx.state.db, db => db::people(db, who.id, which, cursor))?;
    let (kind, page_url) = match which {
        People::Followers => ("followers", format!("/u/{}/followers", who.username)),
        People::Following => ("following", format!("/u/{}/following", who.username)),
    };
    let vars = context! {
        who => Value::from(minijinja::value::Serde(&who)),
        people => Value::from(minijinja::value::Serde(&people)),
        next => next.map(|c| c.encode()),
        kind => kind,
        page_url => page_url,
        own => ctx.user().is_some_and(|u| u.id == who.id),
    };
    if ctx.htmx && cursor.is_some() {
        return ctx.render_form(StatusCode::OK, "social/people.html", "items", vars);
    }
    ctx.render("social/people.html", vars)
}

// ---- likes and saves ----------------------------------------------------------------

/// A published story for a like, save or comment (read on the primary: the action must
/// see the current state). Drafts are 404 for everyone, their author included: there
/// is nothing to like or discuss before a story is out. Hidden stories the same: a
/// moderator took them out of the conversation.
async fn published_target(ctx: &Ctx, id: i64) -> Result<db::Target> {
    match db::target(ctx.state.db.primary(), id).await? {
        Some(t) if t.status == StoryStatus::Published && !t.hidden => Ok(t),
        _ => Err(Error::NotFound),
    }
}

#[handler]
async fn like(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    set_like(&ctx, id, true).await
}

#[handler]
async fn unlike(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    set_like(&ctx, id, false).await
}

/// The inner HTML of `#like-count`, as the page, the htmx answer and the live event show it.
pub fn like_count_html(ctx: &Ctx, count: i32) -> Result<String> {
    Ok(ctx.state.templates.render("social/_like_count.html", context! { like_count => count })?)
}

async fn set_like(ctx: &Ctx, id: i64, on: bool) -> Result<Response> {
    let back = format!("/s/{id}");
    let user = user_or_login(ctx, &back)?;
    let story = published_target(ctx, id).await?;
    count_toggle(ctx, user).await?;
    let mut tx = ctx.state.db.primary().begin().await?;
    let changed = if on { db::like(&mut tx, id, user.id).await? } else { db::unlike(&mut tx, id, user.id).await? };
    if let Some(count) = changed {
        live::publish(&mut tx, Channel::Story(id), "likes", &like_count_html(ctx, count)?).await?;
        if on && story.author_id != user.id {
            let job = Notify { activity: Activity::Like { user_id: user.id, story_id: id, story_author_id: story.author_id } };
            jobs::enqueue(&mut tx, &job, Some(&ctx.request_id)).await?;
        }
    }
    tx.commit().await?;
    if changed.is_some() {
        ctx.invalidate(&[Tag::story(id)]).await;
    }
    if !ctx.htmx {
        return Ok(ctx.redirect(&back));
    }
    fragment(
        ctx,
        "social/_like_button.html",
        context! { story_id => id, liked => on, like_count => changed.unwrap_or(story.like_count), oob => true },
    )
}

#[handler]
async fn save(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    set_saved(&ctx, id, true).await
}

#[handler]
async fn unsave(ctx: Ctx, Path(id): Path<i64>) -> Result<Response> {
    set_saved(&ctx, id, false).await
}

async fn set_saved(ctx: &Ctx, id: i64, on: bool) -> Result<Response> {
    let back = format!("/s/{id}");
    let user = user_or_login(ctx, &back)?;
    published_target(ctx, id).await?;
    count_toggle(ctx, user).await?;
    // One statement: no transaction needed.
    let pool = ctx.state.db.primary();
    if on {
        db::save(&mut *pool.acquire().await?, user.id, id).await?;
    } else {
        db::unsave(&mut *pool.acquire().await?, user.id, id).await?;
    }
    ctx.invalidate(&[Tag::viewer(user.id)]).await;
    if !ctx.htmx {
        return Ok(ctx.redirect(&back));
    }
    fragment(ctx, "social/_save_button.html", context! { story_id => id, saved => on })
}

#[handler]
async fn reading_list(ctx: Ctx, Query(q): Query<AfterQuery>) -> Result<Response> {
    let user = ctx.require_user()?;
    let cursor = Cursor::decode(&q.after);
    let (stories, next) = crate::replica_read!(ctx.state.db, db => db::reading_list(db, user.id, cursor))?;
    let vars = context! {
        stories => crate::stories::values::story_values(&stories),
        next => next.map(|c| c.encode()),
        page_url => "/reading-list",
    };
    if ctx.htmx && cursor.is_some() {
        return ctx.render_form(StatusCode::OK, "social/reading_list.html", "items", vars);
    }
    ctx.render("social/reading_list.html", vars)
}

// ---- comments -----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CommentForm {
    body: String,
    parent_id: String,
}

/// The DOM id of the form a comment was posted from (htmx swaps its errors there).
fn form_dom_id(parent_id: Option<i64>) -> String {
    match parent_id {
        Some(p) => format!("reply-form-{p}"),
        None => "comment-form".into(),
    }
}

/// One comment as `_comment.html` renders it for a viewer who is not logged in: what
/// the live event carries to every open page.
fn comment_html_for_anyone(ctx: &Ctx, comment: &db::Comment, story_author_id: i64) -> Result<String> {
    Ok(ctx.state.templates.render(
        "social/_comment.html",
        context! { c => Value::from(minijinja::value::Serde(comment)), story_author_id => story_author_id },
    )?)
}

/// What `live_events.data` holds at most (`live_events_data_length`: 65 536 characters;
/// counted here in bytes, which are never fewer).
const LIVE_DATA_MAX: usize = 65_536;

/// The comment for the live event. Its HTML can outgrow an event (5000 nested quotes
/// render to over 100 KB): then the event carries a short note in its place, so the
/// comment is still posted and open pages still learn of it.
fn live_comment_html(ctx: &Ctx, comment: &db::Comment, story_author_id: i64) -> Result<String> {
    let html = comment_html_for_anyone(ctx, comment, story_author_id)?;
    if html.len() <= LIVE_DATA_MAX {
        return Ok(html);
    }
    Ok(ctx.state.templates.render("social/_comment_too_long.html", context! { c => Value::from(minijinja::value::Serde(comment)) })?)
}

#[handler]
async fn create_comment(ctx: Ctx, Path(id): Path<i64>, form::Form(f): form::Form<CommentForm>) -> Result<Response> {
    let back = format!("/s/{id}");
    let user = user_or_login(&ctx, &back)?;
    let story = published_target(&ctx, id).await?;
    let (input, mut errors) = validate::comment(&f.body, &f.parent_id);
    // The comment answered: must be on this story. A reply to a reply joins the thread of
    // its top-level comment (one level deep); its author is the one told of the reply.
    let mut parent = None;
    if let (Some(pid), true) = (input.parent_id, errors.is_empty()) {
        match db::parent_ref(ctx.state.db.primary(), pid).await? {
            Some(p) if p.story_id == id && !p.deleted => parent = Some((p.parent_id.unwrap_or(p.id), p.author_id)),
            Some(p) if p.story_id == id => {
                errors.insert("parent_id", "That comment was deleted; you can no longer reply to it.".into());
            }
            _ => {
                errors.insert("parent_id", "That is not a comment on this story.".into());
            }
        }
    }
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if errors.is_empty() {
        // Counted only for comments that would be posted; over the limit the text stays.
        if let Some(retry_after_secs) = ctx.state.limiter.over_limit(&format!("comment:{}", user.id), limits::COMMENTS_PER_ACCOUNT).await? {
            status = StatusCode::TOO_MANY_REQUESTS;
            errors.insert(
                "form",
                format!(
                    "You have posted {} comments in the last few minutes, the most we accept. Your text is still here: post it again in {}.",
                    limits::COMMENTS_PER_ACCOUNT.max,
                    media::minutes(retry_after_secs)
                ),
            );
        }
    }
    if !errors.is_empty() {
        return comment_form_again(&ctx, id, input.parent_id, &f.parent_id, &input.body, errors, status).await;
    }
    let html = markdown::render_comment(&input.body);
    let mut tx = ctx.state.db.primary().begin().await?;
    let comment = db::insert_comment(
        &mut tx,
        &db::NewComment { story_id: id, author_id: user.id, parent_id: parent.map(|p| p.0), body_markdown: &input.body, body_html: &html },
    )
    .await?;
    // Top-level comments go to the top of every open page's list; replies raise their
    // own event (the list of a thread is not a place one target can name).
    let event = if comment.parent_id.is_some() { "reply" } else { "comment" };
    live::publish(&mut tx, Channel::Story(id), event, &live_comment_html(&ctx, &comment, story.author_id)?).await?;
    let job = Notify {
        activity: Activity::Comment {
            comment_id: comment.id,
            story_id: id,
            commenter_id: user.id,
            story_author_id: story.author_id,
            parent_author_id: parent.map(|p| p.1),
            excerpt: markdown::excerpt(&input.body, 280),
        },
    };
    jobs::enqueue(&mut tx, &job, Some(&ctx.request_id)).await?;
    tx.commit().await?;
    ctx.invalidate(&[Tag::story(id)]).await;
    if !ctx.htmx {
        return Ok(ctx.redirect(&format!("/s/{id}#comment-{}", comment.id)));
    }
    // The new comment (inserted by the form's hx-target) and a fresh, empty form.
    fragment(
        &ctx,
        "social/_comment_posted.html",
        context! {
            c => Value::from(minijinja::value::Serde(&comment)),
            story_author_id => story.author_id,
            story_id => id,
            parent_id => comment.parent_id,
            values => context! {},
            errors => context! {},
        },
    )
}

/// The comment form with its errors and the text kept: for htmx swapped over the form it
/// came from, otherwise a page of its own.
async fn comment_form_again(
    ctx: &Ctx,
    story_id: i64,
    parent_id: Option<i64>,
    parent_raw: &str,
    body: &str,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response> {
    let title = crate::stories::db::find(ctx.state.db.primary(), story_id).await?.map(|s| s.title).unwrap_or_default();
    let vars = context! {
        story_id => story_id,
        story_title => title,
        parent_id => parent_id,
        // What was sent is kept even when it is not a number (it is shown escaped).
        values => context! { body => body, parent_id => parent_raw },
        errors => errors,
        form_id => form_dom_id(parent_id),
    };
    let mut resp = ctx.render_form(status, "social/comment_form_page.html", "form", vars)?;
    if ctx.htmx {
        // The form's hx-target is the list; errors belong over the form itself.
        if let Ok(target) = HeaderValue::from_str(&format!("#{}", form_dom_id(parent_id))) {
            resp.headers_mut().insert("HX-Retarget", target);
            resp.headers_mut().insert("HX-Reswap", HeaderValue::from_static("outerHTML"));
        }
    }
    Ok(resp)
}

#[handler]
async fn delete_comment(ctx: Ctx, Path((id, cid)): Path<(i64, i64)>) -> Result<Response> {
    let user = ctx.require_user()?;
    let c = db::comment_ref(ctx.state.db.primary(), id, cid).await?.ok_or(Error::NotFound)?;
    let may_see = c.story_status == StoryStatus::Published || c.story_author_id == user.id;
    if !may_see {
        return Err(Error::NotFound);
    }
    let action = Action::DeleteComment { comment_author_id: c.author_id, story_author_id: c.story_author_id };
    if policy::may(Some(user), action) != Decision::Allow {
        return Err(Error::Forbidden("Only the comment's author, the story's author or a moderator can delete this comment.".into()));
    }
    let mut tx = ctx.state.db.primary().begin().await?;
    // Deleting twice changes nothing and raises nothing.
    if db::delete_comment(&mut tx, c.id).await? {
        live::publish(&mut tx, Channel::Story(id), "comment_deleted", &format!("comment-{}", c.id)).await?;
    }
    tx.commit().await?;
    ctx.invalidate(&[Tag::story(id)]).await;
    if !ctx.htmx {
        ctx.flash("success", "The comment is deleted.");
        return Ok(ctx.redirect(&format!("/s/{id}#comments")));
    }
    fragment(&ctx, "social/_comment_deleted.html", context! { cid => c.id })
}
