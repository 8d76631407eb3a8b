//! Quire's shared library: everything the `web` binary serves and the `worker` binary
//! needs to share with it (configuration, database, job payloads, templates).

pub mod accounts;
pub mod compression;
pub mod config;
pub mod db;
pub mod dev_mail;
pub mod error;
pub mod health;
pub mod jobs;
pub mod markdown;
pub mod media;
pub mod metrics;
pub mod ratelimit;
pub mod seed;
pub mod sessions;
pub mod static_files;
pub mod storage;
pub mod stories;
pub mod telemetry;
pub mod templates;
pub mod tokens;
pub mod uploads;
pub mod web;
