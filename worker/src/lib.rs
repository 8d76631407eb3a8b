//! The `worker` binary's library: job handlers and the runtime that drives them.
//! Payload types live in `app::jobs` (the web side enqueues them); handlers live here.

pub mod acks;
pub mod invalidate;
pub mod jobs;
pub mod limiter;
pub mod mailer;
pub mod metrics;
pub mod media;
pub mod runtime;
pub mod scheduler;
