//! Logging: tracing to stdout, JSON in production, human-readable in development.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,apalis=info,apalis_postgres=warn,poem=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false)).try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact().with_target(false)).try_init(),
    };
}
