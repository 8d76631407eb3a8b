//! Reading statistics for authors: chapter views and unique readers per day, counted
//! without a database write per page view, and the author's `/s/{id}/stats` page.
//!
//! - `counter`: the `ViewCounter` each web process holds (in `AppState`). The chapter
//!   page records a view in memory; every `STATS_FLUSH_SECS` (default 5) and once on
//!   shutdown the whole batch is written in ONE statement (`db::flush`). A crash loses
//!   at most the views of the last few seconds: accepted, as reading statistics are not
//!   money. The batch is bounded (`counter::DEFAULT_CAP`): see `ViewCounter::record`.
//! - `db`: this area's tables (`chapter_views_daily`, `chapter_readers_daily`), the flush,
//!   the page's reads and the retention purge (90 days plus a margin).
//! - `chart`: a small, generic server-rendered SVG line chart.
//! - `pages`: the statistics page.

pub mod chart;
pub mod counter;
pub mod db;
pub mod pages;

pub use counter::{Reader, ViewCounter, is_crawler};

/// The days the statistics page shows (and the purge keeps, plus `db::RETENTION_MARGIN_DAYS`).
pub const WINDOW_DAYS: i64 = 90;
