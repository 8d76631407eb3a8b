//! The community between readers and writers: follows, likes, comments, reading lists
//! and reading progress. Handlers in `pages`, SQL (and the counters it keeps) in `db`,
//! the comment form's rules in `validate`. The story page, profile and home page
//! (`stories::pages`) show what this area stores through `db`'s plain functions.

pub mod db;
pub mod pages;
pub mod validate;
