//! Quire's shared library: everything the `web` binary serves and the `worker` binary
//! needs to share with it.
//!
//! - Infrastructure, with no HTTP in it: `config`, `db`, `storage`, `templates`,
//!   `markdown`, `tokens`, `cache` (with `redis_client`), `ratelimit`, `telemetry`, `metrics` (the Prometheus text both binaries write), `shutdown`, `error`, and `jobs` (the
//!   payloads `web` enqueues and `worker` runs).
//! - `web`: every piece of HTTP — the route table, middleware, static files, ops pages.
//! - One module per feature area (`accounts`, `sessions`, `stories`, `media`, `social`,
//!   `notifications`, `live`, `search`, `stats`, `trending`, `feeds`), each
//!   owning its tables (`db.rs` or a module named for them) and its pages (`pages.rs`).

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod exports;
pub mod feeds;
pub mod jobs;
pub mod live;
pub mod markdown;
pub mod media;
pub mod metrics;
pub mod moderation;
pub mod notifications;
pub mod policy;
pub mod ratelimit;
pub mod redis_client;
pub mod search;
pub mod seed;
pub mod sessions;
pub mod shutdown;
pub mod social;
pub mod stats;
pub mod storage;
pub mod stitch;
pub mod stories;
pub mod telemetry;
pub mod templates;
pub mod text;
pub mod tokens;
pub mod trending;
pub mod web;
pub mod xml;
