//! Reports and moderation: reporting stories, comments and profiles, the moderators'
//! queue (`/mod/reports`), hiding and unhiding, bans. Hiding sets `hidden_at`, which
//! `stories::db::public_story!` and the comment queries read, so a hidden thing leaves
//! every listing, search, feed and trending table in the same commit.

pub mod db;
pub mod pages;
pub mod validate;
