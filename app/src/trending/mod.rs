//! Trending: what is rising now. A score per public story from its recent reads, likes,
//! comments and new followers of its author, each weighted and decayed by age:
//!
//! `score = Σ weight × 0.5^(age / 24 h)` over the events of the last 7 days, with
//! weights read 1 (one reader reading one chapter on one day), follow 4 (split between
//! the author's public stories), like 3, comment 5 (not the author's own).
//!
//! The `trending` table holds the scores; the `RecomputeTrending` job (every 10 minutes,
//! once across workers: `worker::scheduler`) replaces its contents in one transaction
//! (`db::recompute`), and the home page reads its top rows (`db::top`). See the README's
//! "Trending" section for why these numbers.

pub mod db;

/// Stories the home page's "Trending" section shows.
pub const HOME_COUNT: i64 = 6;
