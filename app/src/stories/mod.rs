//! Stories and chapters: writing (create, edit, add chapters, publish) and reading (home,
//! story, chapter, profile and tag pages). Handlers in `pages`, SQL in `db`, form rules
//! in `validate`; Markdown in `crate::markdown`, covers through `crate::media`.

pub mod db;
pub mod pages;
pub mod validate;
pub mod values;

use crate::{
    policy::{self, Action, Decision},
    sessions::CurrentUser,
};

/// The one rule for who sees a story: drafts only their author; a story hidden by a
/// moderator only its author and staff (`policy::Action::SeeHidden`). Pages, chapter
/// pages and the live stream all ask this; SQL listings say the same with
/// `public_story!`.
pub fn may_see(user: Option<&CurrentUser>, story: &db::StoryRow) -> bool {
    let own = user.is_some_and(|u| u.id == story.author_id);
    (story.status == db::StoryStatus::Published || own)
        && (story.hidden_at.is_none() || policy::may(user, Action::SeeHidden { owner_id: story.author_id }) == Decision::Allow)
}
