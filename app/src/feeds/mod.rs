//! Feeds and discovery by machines: Atom feeds of an author's and a tag's new chapters
//! (`atom`), the sitemap (`sitemap`) and robots.txt (`pages`). Everything here lists only
//! what `crate::public_story!` lets anyone see: drafts and hidden stories never.

pub mod atom;
pub mod db;
pub mod pages;
pub mod sitemap;
