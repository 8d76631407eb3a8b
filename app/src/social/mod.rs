//! The community between readers and writers: follows, likes, comments, reading lists
//! and reading progress.

pub mod pages;
