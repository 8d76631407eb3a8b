//! Full-text search over public stories: titles, summaries, tags and chapter text, ranked,
//! with highlighted snippets and typo tolerance for titles and author names. Handlers in
//! `pages`, SQL in `db`, the query's rules in `validate`; the indexes are generated
//! columns (migrations/20261203000002_search.sql), so no job maintains them.

pub mod db;
pub mod pages;
pub mod snippet;
pub mod validate;
