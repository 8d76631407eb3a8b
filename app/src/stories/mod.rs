//! Stories and chapters: writing (create, edit, add chapters, publish) and reading (home,
//! story, chapter, profile and tag pages). Handlers in `pages`, SQL in `db`, form rules
//! in `validate`; Markdown in `crate::markdown`, covers through `crate::media`.

pub mod db;
pub mod pages;
pub mod validate;
pub mod values;
