//! Configuration from the environment: the variables of the product contract (the README's
//! configuration table), plus operational limits with safe defaults.
//!
//! Every value is read and checked once at start-up. A bad value is a `ConfigError`
//! naming the variable; the binaries print it on one line and exit with code 2.
//!
//! Unsafe combinations cannot start: development mode (no Secure cookies, a generated
//! key, a readable outbox at `/dev/mail`) needs `APP_ENV=development`, or `APP_ENV` unset
//! on a machine that does not look deployed; production needs every variable a real
//! deployment has to choose (`DATABASE_URL`, `SECRET_KEY`, `BASE_URL`, `SMTP_URL`,
//! `MAIL_FROM`); and mail never goes unencrypted to another host unless the URL says so.
//!
//! Heroku's conventions are read where they mean something (see `Config::read_env`):
//! follower databases (`HEROKU_POSTGRESQL_<COLOR>_URL`) become the read replicas when
//! `DATABASE_REPLICA_URLS` is unset, `WEB_CONCURRENCY` is the cores a process plans for,
//! `DYNO` names the process, and on a dyno the request deadlines stay below the router's
//! 30 s.

use std::{env, ffi::OsString, fmt, path::{Path, PathBuf}};

use lettre::message::Mailbox;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub port: u16,
    pub database_url: String,
    pub replica_urls: Vec<String>,
    /// A replica further behind than this leaves the read rotation (`DATABASE_REPLICA_MAX_LAG`,
    /// seconds, default 10).
    pub replica_max_lag: std::time::Duration,
    pub redis_url: Option<String>,
    /// `REDIS_TIMEOUT_MS` (5): the deadline of one Redis call; past it the caller falls
    /// back (in-process cache and limits) and Redis counts as down until a probe answers.
    pub redis_timeout: std::time::Duration,
    /// `CACHE` (`on`): `off` makes every cached page and value load afresh (to measure
    /// the uncached pages; invalidations still flow).
    pub cache_enabled: bool,
    /// `CACHE_L1_MB` (256): the bound of each process's in-process cache, in MiB. Size it
    /// to the pages read often enough to be worth keeping per process; the rest is read
    /// from Redis.
    pub cache_l1_bytes: u64,
    /// As lettre's `from_url` reads it: a remote `smtp://` without `?tls=` already has
    /// `tls=required` added, and `?tls=none` is gone (see `smtp_url`).
    pub smtp_url: Option<String>,
    /// `MAIL_FROM`: the From of every mail; its domain also names the Message-IDs.
    pub mail_from: Mailbox,
    /// `MEDIA_ROOT` (`var/media`): the local media store, used unless `media_s3` is set.
    pub media_root: PathBuf,
    /// `MEDIA_URL=s3://bucket/prefix` and the `AWS_*` variables: media in an S3-compatible
    /// bucket instead of under `MEDIA_ROOT`, so web and worker machines share no disk.
    pub media_s3: Option<S3Config>,
    pub secret_key: Vec<u8>,
    pub base_url: String,
    pub log_format: LogFormat,
    /// Where mail goes when `SMTP_URL` is unset (development): `var/mail`.
    pub mail_dir: PathBuf,
    /// Connections per pool; sized for the machine (see `default_pool_size`).
    pub db_pool_size: u32,
    /// HTTP timeouts and the connection cap (`web::server`, `web::timeouts`).
    pub http: HttpLimits,
    /// Which `X-Forwarded-For` entries to believe (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// Server-Sent Events: the bound on open streams and the heartbeat (`live`).
    pub live: LiveLimits,
    /// `STATS_FLUSH_SECS` (5): how often each web process writes the chapter views it
    /// counted in memory (`stats::counter`); a crash loses at most this much of them.
    pub stats_flush: std::time::Duration,
    /// `WEB_CONCURRENCY`, else the cores the OS reports: the CPUs this process plans for
    /// (the default pool size; the web binary's runtime threads, see `web_concurrency`).
    pub cores: usize,
    /// `DYNO` (Heroku: `web.1`, `worker.2`): this process's name where one is shown, e.g.
    /// PostgreSQL's `application_name`, so `pg_stat_activity` says which dyno holds a
    /// connection. None off Heroku.
    pub instance: Option<String>,
    /// `METRICS_TOKEN`: when set, `/metrics` (web and the worker's listener) answers only
    /// a request with `Authorization: Bearer <token>`. Unset, `/metrics` is open in
    /// development and answers 404 in production (`web::ops::metrics`).
    pub metrics_token: Option<String>,
    /// `METRICS_PORT`: the worker serves its own `/metrics` (job runs, mail, pools) on
    /// this port; unset, it listens on nothing.
    pub metrics_port: Option<u16>,
}

impl fmt::Debug for Config {
    // Never print secrets or passwords embedded in URLs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_env", &self.app_env)
            .field("port", &self.port)
            .field("replicas", &self.replica_urls.len())
            .field("smtp", &self.smtp_url.is_some())
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn bad(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

/// Reads a variable through `get`; unset and empty are the same (an empty line in `.env`
/// means unset).
fn var_from(get: &dyn Fn(&str) -> Option<OsString>, name: &'static str) -> Result<Option<String>, ConfigError> {
    match get(name).map(OsString::into_string) {
        None => Ok(None),
        Some(Ok(v)) if v.trim().is_empty() => Ok(None),
        Some(Ok(v)) => Ok(Some(v.trim().to_string())),
        Some(Err(_)) => Err(bad(name, "is not valid UTF-8")),
    }
}

/// What production cannot guess: without each of these a deployment would run with a
/// made-up value (a localhost URL in every link, no mail, a key nobody shares).
const PRODUCTION_REQUIRED: &[(&str, &str)] = &[
    ("DATABASE_URL", "is required in production"),
    ("SECRET_KEY", "is required in production (at least 32 random characters)"),
    ("BASE_URL", "is required in production (the public https:// URL that mails link to)"),
    ("SMTP_URL", "is required in production (smtps://user:pass@host or smtp://user:pass@host:587)"),
    ("MAIL_FROM", "is required in production (e.g. `Quire <no-reply@example.com>`, a domain your SMTP relay may send for)"),
];

/// Development's From address when `MAIL_FROM` is unset (../shared/CONTRACT.md).
pub const DEV_MAIL_FROM: &str = "Quire <no-reply@localhost>";

impl Config {
    /// Loads `.env` (development convenience; real environment variables win) and reads
    /// the configuration.
    pub fn from_env() -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::read_env(env::vars_os())
    }

    /// The configuration from a whole environment (name, value pairs): what `read` does,
    /// plus what needs to see every name — Heroku's follower databases, attached as
    /// `HEROKU_POSTGRESQL_<COLOR>_URL`, used as replicas when `DATABASE_REPLICA_URLS`
    /// is unset (see `heroku_followers`).
    pub fn read_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Config, ConfigError> {
        let vars: std::collections::HashMap<String, OsString> =
            vars.into_iter().filter_map(|(k, v)| Some((k.into_string().ok()?, v))).collect();
        let followers: Vec<(String, OsString)> =
            vars.iter().filter(|(k, _)| is_heroku_database_var(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        Self::read_with(|name| vars.get(name).cloned(), followers)
    }

    /// The configuration from `get` (a variable's value, or None when unset): a map in
    /// tests. It sees only the variables it asks for by name, so no Heroku followers
    /// (`read_env` finds those). Development's defaults still read and write `var/` (the
    /// private cluster's port, the generated key).
    pub fn read(get: impl Fn(&str) -> Option<OsString>) -> Result<Config, ConfigError> {
        Self::read_with(get, Vec::new())
    }

    fn read_with(get: impl Fn(&str) -> Option<OsString>, followers: Vec<(String, OsString)>) -> Result<Config, ConfigError> {
        let var = |name: &'static str| var_from(&get, name);
        let app_env = app_env(&get)?;
        if app_env == AppEnv::Production {
            let mut missing = Vec::new();
            for (name, why) in PRODUCTION_REQUIRED {
                if var(name)?.is_none() {
                    missing.push((*name, *why));
                }
            }
            // All of them in one line: an operator fixes the deploy once, not five times.
            if let Some((name, why)) = missing.first() {
                let also = missing[1..].iter().map(|(n, _)| *n).collect::<Vec<_>>();
                let message =
                    if also.is_empty() { why.to_string() } else { format!("{why}; also unset: {}", also.join(", ")) };
                return Err(bad(name, message));
            }
        }
        let port = match var("PORT")? {
            None => 8000,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("PORT", format!("must be a port number 1-65535, not `{p}`")))?,
        };
        let database_url = match var("DATABASE_URL")? {
            Some(url) => check_pg_url("DATABASE_URL", url)?,
            None if app_env == AppEnv::Development => private_cluster_url()?,
            None => return Err(bad("DATABASE_URL", "is required in production")),
        };
        let replica_urls = var("DATABASE_REPLICA_URLS")?
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| check_pg_url("DATABASE_REPLICA_URLS", s.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let replica_urls = match replica_urls {
            Some(urls) => urls,
            None => heroku_followers(&database_url, followers)?,
        };
        let replica_max_lag = match var("DATABASE_REPLICA_MAX_LAG")? {
            None => std::time::Duration::from_secs(10),
            Some(v) => match v.trim().trim_end_matches('s').parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs <= 86_400.0 => std::time::Duration::from_secs_f64(secs),
                _ => return Err(bad("DATABASE_REPLICA_MAX_LAG", format!("must be a number of seconds (e.g. 10), not `{v}`"))),
            },
        };
        // Per process, for the primary and each replica. PostgreSQL does best with few busy
        // connections in all: with several processes on a small server, fewer each.
        let cores = match var("WEB_CONCURRENCY")? {
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            Some(v) => parse_concurrency(&v)
                .ok_or_else(|| bad("WEB_CONCURRENCY", format!("must be a number of cores from 1 to {MAX_CONCURRENCY}, not `{v}`")))?,
        };
        let db_pool_size = match var("DATABASE_POOL_SIZE")? {
            None => default_pool_size(cores),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => return Err(bad("DATABASE_POOL_SIZE", format!("must be a number of connections from 1 to 200, not `{v}`"))),
            },
        };
        let redis_tls_insecure = match var("REDIS_TLS_INSECURE")?.as_deref() {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(other) => return Err(bad("REDIS_TLS_INSECURE", format!("must be `1` or `0`, not `{other}`"))),
        };
        let redis_url = match var("REDIS_URL")? {
            Some(u) => Some(redis_url(u, redis_tls_insecure)?),
            None if redis_tls_insecure => return Err(bad("REDIS_TLS_INSECURE", "is set but REDIS_URL is not")),
            None => None,
        };
        let redis_timeout = match var("REDIS_TIMEOUT_MS")? {
            None => crate::redis_client::DEFAULT_TIMEOUT,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (1..=10_000).contains(&n) => std::time::Duration::from_millis(n),
                _ => return Err(bad("REDIS_TIMEOUT_MS", format!("must be milliseconds from 1 to 10000, not `{v}`"))),
            },
        };
        let cache_enabled = match var("CACHE")?.as_deref().map(str::trim) {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(bad("CACHE", format!("must be `on` or `off`, not `{other}`"))),
        };
        let cache_l1_bytes = match var("CACHE_L1_MB")? {
            None => crate::cache::DEFAULT_L1_BYTES,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (16..=65_536).contains(&n) => n * 1024 * 1024,
                _ => return Err(bad("CACHE_L1_MB", format!("must be MiB from 16 to 65536, not `{v}`"))),
            },
        };
        let smtp_url = var("SMTP_URL")?.map(|u| smtp_url(&u)).transpose()?;
        let mail_from = mail_from(var("MAIL_FROM")?.as_deref().unwrap_or(DEV_MAIL_FROM))?;
        let media_root = PathBuf::from(var("MEDIA_ROOT")?.unwrap_or_else(|| "var/media".into()));
        let media_s3 = S3Config::read(&var)?;
        let secret_key = match var("SECRET_KEY")? {
            Some(k) if k.len() >= 32 => k.into_bytes(),
            Some(_) => return Err(bad("SECRET_KEY", "must be at least 32 characters")),
            None if app_env == AppEnv::Production => {
                return Err(bad("SECRET_KEY", "is required in production (at least 32 random characters)"));
            }
            None => dev_secret_key(Path::new("var/secret_key"))?,
        };
        let base_url = match var("BASE_URL")? {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => u.trim_end_matches('/').to_string(),
            Some(u) => return Err(bad("BASE_URL", format!("must be an absolute http(s) URL, not `{u}`"))),
            None => format!("http://localhost:{port}"),
        };
        let log_format = match var("LOG_FORMAT")?.as_deref() {
            None if app_env == AppEnv::Production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => return Err(bad("LOG_FORMAT", format!("must be `json` or `pretty`, not `{other}`"))),
        };
        let http = HttpLimits::read(&var)?;
        let live = LiveLimits::read(&var, &http)?;
        let instance = var("DYNO")?;
        let stats_flush = stats_flush(var("STATS_FLUSH_SECS")?)?;
        let trusted_proxies = TrustedProxies::parse(var("TRUSTED_PROXIES")?.as_deref()).map_err(|m| bad("TRUSTED_PROXIES", m))?;
        let metrics_token = match var("METRICS_TOKEN")? {
            None => None,
            // A short token is guessable, and one sent in a header must be visible ASCII.
            Some(t) if t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic()) => Some(t),
            Some(_) => return Err(bad("METRICS_TOKEN", "must be at least 16 visible ASCII characters (no spaces)")),
        };
        let metrics_port = match var("METRICS_PORT")? {
            None => None,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(bad("METRICS_PORT", format!("must be a port number, not `{v}`"))),
            },
        };
        Ok(Config {
            app_env,
            port,
            database_url,
            replica_urls,
            replica_max_lag,
            redis_url,
            redis_timeout,
            cache_enabled,
            cache_l1_bytes,
            smtp_url,
            mail_from,
            media_root,
            media_s3,
            secret_key,
            base_url,
            log_format,
            mail_dir: PathBuf::from("var/mail"),
            db_pool_size,
            http,
            trusted_proxies,
            live,
            stats_flush,
            cores,
            instance,
            metrics_token,
            metrics_port,
        })
    }

    /// For the binaries' `main`: the configuration, or one line naming the bad variable
    /// on stderr and exit code 2 (never a panic backtrace).
    pub fn from_env_or_exit() -> Config {
        match Self::from_env() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("configuration error: {e}");
                std::process::exit(2);
            }
        }
    }

    /// A configuration for tests: development mode, mail to `mail_dir`, a fixed key.
    pub fn for_tests(database_url: &str, mail_dir: PathBuf) -> Config {
        Config {
            app_env: AppEnv::Development,
            port: 0,
            database_url: database_url.to_string(),
            replica_urls: Vec::new(),
            replica_max_lag: std::time::Duration::from_secs(10),
            redis_url: None,
            redis_timeout: std::time::Duration::from_millis(200),
            cache_enabled: true,
            cache_l1_bytes: crate::cache::DEFAULT_L1_BYTES,
            smtp_url: None,
            mail_from: DEV_MAIL_FROM.parse().expect("DEV_MAIL_FROM is a mailbox"),
            media_root: mail_dir.join("media"),
            media_s3: None,
            secret_key: b"test-secret-key-test-secret-key-test-secret".to_vec(),
            base_url: "http://localhost:8000".into(),
            log_format: LogFormat::Pretty,
            mail_dir,
            db_pool_size: 4,
            http: HttpLimits::default(),
            trusted_proxies: TrustedProxies::None,
            live: LiveLimits::default(),
            stats_flush: std::time::Duration::from_secs(5),
            cores: 2,
            instance: None,
            metrics_token: None,
            metrics_port: None,
        }
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }
}

/// How long the server waits for clients and handlers, and how many connections it
/// serves at once. Each has its variable; see `HttpLimits::read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `HEADER_READ_TIMEOUT_SECS` (8): a request's headers must arrive complete within
    /// this long (slowloris). The same timer closes an idle HTTP/1.1 keep-alive connection:
    /// hyper starts it as soon as it waits for the next request.
    pub header_read_timeout: std::time::Duration,
    /// `IDLE_TIMEOUT_SECS` (120): a connection on which no byte moves either way for this
    /// long is closed (idle HTTP/2, a client that stopped reading its response). Longer
    /// than the deadlines below, so a handler within its deadline is never cut.
    pub idle_timeout: std::time::Duration,
    /// `REQUEST_TIMEOUT_SECS` (15): the whole of a request, body read included, or 503.
    pub request_timeout: std::time::Duration,
    /// `UPLOAD_TIMEOUT_SECS` (60): the same for multipart POSTs (the forms with a file).
    pub upload_timeout: std::time::Duration,
    /// `MAX_CONNECTIONS` (1024): connections served at once by this process; further
    /// ones wait in the kernel's accept backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        use std::time::Duration;
        HttpLimits {
            header_read_timeout: Duration::from_secs(8),
            idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(15),
            upload_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl HttpLimits {
    fn read(var: &dyn Fn(&'static str) -> Result<Option<String>, ConfigError>) -> Result<HttpLimits, ConfigError> {
        let mut d = HttpLimits::default();
        // On a Heroku dyno the router answers 503 (H12) to a request with no response
        // after 30 s, whatever we do: our deadline must come first so the visitor gets our
        // page (and the handler stops working for nobody). Uploads get 25 s instead of 60.
        let on_heroku = var("DYNO")?.is_some();
        if on_heroku {
            d.upload_timeout = HEROKU_DEADLINE;
        }
        let secs = |name: &'static str, default: std::time::Duration| -> Result<std::time::Duration, ConfigError> {
            match var(name)? {
                None => Ok(default),
                Some(v) => match v.trim_end_matches('s').parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 3600.0 => Ok(std::time::Duration::from_secs_f64(s)),
                    _ => Err(bad(name, format!("must be a number of seconds above 0 and at most 3600 (e.g. 15), not `{v}`"))),
                },
            }
        };
        let max_connections = match var("MAX_CONNECTIONS")? {
            None => d.max_connections,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => return Err(bad("MAX_CONNECTIONS", format!("must be a number of connections from 1 to 1000000, not `{v}`"))),
            },
        };
        let limits = HttpLimits {
            header_read_timeout: secs("HEADER_READ_TIMEOUT_SECS", d.header_read_timeout)?,
            idle_timeout: secs("IDLE_TIMEOUT_SECS", d.idle_timeout)?,
            request_timeout: secs("REQUEST_TIMEOUT_SECS", d.request_timeout)?,
            upload_timeout: secs("UPLOAD_TIMEOUT_SECS", d.upload_timeout)?,
            max_connections,
        };
        if on_heroku {
            for (name, t) in [("REQUEST_TIMEOUT_SECS", limits.request_timeout), ("UPLOAD_TIMEOUT_SECS", limits.upload_timeout)] {
                if t >= HEROKU_ROUTER_TIMEOUT {
                    return Err(bad(name, "must be below 30 on Heroku (DYNO is set): its router gives up on a request after 30 s"));
                }
            }
        }
        // A quiet handler still within its deadline must not lose its connection.
        if limits.idle_timeout <= limits.request_timeout.max(limits.upload_timeout) {
            return Err(bad("IDLE_TIMEOUT_SECS", "must be longer than REQUEST_TIMEOUT_SECS and UPLOAD_TIMEOUT_SECS"));
        }
        Ok(limits)
    }
}

/// Live updates (`live`): how many event streams one process keeps open and how often an
/// idle stream sends a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// `LIVE_MAX_STREAMS` (3/4 of `MAX_CONNECTIONS`, so 768): open streams per process;
    /// one more is answered 503 with Retry-After. An HTTP/1.1 stream holds a connection
    /// for as long as the page is open, so the bound must stay below `MAX_CONNECTIONS`:
    /// otherwise open pages could take every connection and no page would load.
    pub max_streams: usize,
    /// `LIVE_HEARTBEAT_SECS` (15): a stream with nothing to say sends a comment this often,
    /// so proxies, the idle timeout and the browser all see it alive (and a closed tab is
    /// noticed). Must be shorter than `IDLE_TIMEOUT_SECS`.
    pub heartbeat: std::time::Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits::for_connections(HttpLimits::default().max_connections)
    }
}

impl LiveLimits {
    fn for_connections(max_connections: usize) -> LiveLimits {
        LiveLimits { max_streams: (max_connections * 3 / 4).max(1), heartbeat: std::time::Duration::from_secs(15) }
    }

    fn read(
        var: &dyn Fn(&'static str) -> Result<Option<String>, ConfigError>,
        http: &HttpLimits,
    ) -> Result<LiveLimits, ConfigError> {
        let d = LiveLimits::for_connections(http.max_connections);
        let max_streams = match var("LIVE_MAX_STREAMS")? {
            None => d.max_streams,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 && n < http.max_connections => n,
                _ => {
                    return Err(bad(
                        "LIVE_MAX_STREAMS",
                        format!(
                            "must be a number of streams from 1 to below MAX_CONNECTIONS ({}), not `{v}`",
                            http.max_connections
                        ),
                    ));
                }
            },
        };
        let heartbeat = match var("LIVE_HEARTBEAT_SECS")? {
            None => d.heartbeat,
            Some(v) => match v.trim_end_matches('s').parse::<f64>() {
                Ok(s) if s >= 1.0 && std::time::Duration::from_secs_f64(s) < http.idle_timeout => {
                    std::time::Duration::from_secs_f64(s)
                }
                _ => {
                    return Err(bad(
                        "LIVE_HEARTBEAT_SECS",
                        format!("must be a number of seconds from 1 to below IDLE_TIMEOUT_SECS (e.g. 15), not `{v}`"),
                    ));
                }
            },
        };
        Ok(LiveLimits { max_streams, heartbeat })
    }
}

/// An S3-compatible media store (`MEDIA_URL=s3://bucket/prefix`), from the variables
/// object_store's `AmazonS3Builder::from_env` reads, named the way AWS tools name them.
/// Read through `Config::read` like every other variable (so a test's map is enough),
/// and checked here so that a wrong one stops the process with one line naming it rather
/// than failing on the first upload.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, without slashes at either end; empty for none.
    pub prefix: String,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (or object_store's `AWS_ENDPOINT`):
    /// a non-AWS server (MinIO, Ceph, R2, s3s-fs…). None: AWS itself.
    pub endpoint: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, both or neither; neither means
    /// the instance's or task's role (object_store asks the metadata service).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`, with temporary keys.
    pub session_token: Option<String>,
    /// `AWS_ALLOW_HTTP=true`: an `http://` endpoint, said on purpose (media and signed
    /// requests then travel unencrypted).
    pub allow_http: bool,
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`: `bucket.host/key` instead of `host/bucket/key`
    /// (path style, which every S3-compatible server understands, is the default).
    pub virtual_hosted: bool,
    /// `MEDIA_TIMEOUT_SECS` (30): the deadline of one request to the store, and of all
    /// retries of one call together; past it the page answers 503 (a job retries later).
    pub timeout: std::time::Duration,
    /// Role credentials passed through unchanged (`AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`,
    /// …; see `S3_PASSTHROUGH`), as object_store config keys.
    pub passthrough: Vec<(String, String)>,
}

/// Variables handed to object_store as they are (lower-cased, they are its config keys):
/// how a pod or task with an IAM role gets credentials without keys in the environment.
pub const S3_PASSTHROUGH: &[&str] = &[
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

impl fmt::Debug for S3Config {
    // The keys stay out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("keys", &self.access_key_id.is_some())
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// `s3://bucket/prefix` again, for logs.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{}", self.bucket, self.prefix) }
    }

    fn read(var: &dyn Fn(&'static str) -> Result<Option<String>, ConfigError>) -> Result<Option<S3Config>, ConfigError> {
        let Some(url) = var("MEDIA_URL")? else {
            return Ok(None);
        };
        let shape = "must be s3://bucket or s3://bucket/prefix (leave it unset to store media under MEDIA_ROOT)";
        let Some(rest) = url.strip_prefix("s3://") else { return Err(bad("MEDIA_URL", format!("{shape}, not `{url}`"))) };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        // S3's bucket naming rules (lower case, digits, dots, hyphens; 3–63 characters).
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.as_bytes()[0].is_ascii_alphanumeric();
        if !bucket_ok {
            return Err(bad("MEDIA_URL", format!("`{bucket}` is not an S3 bucket name (3-63 of a-z, 0-9, `.`, `-`); {shape}")));
        }
        if !prefix.is_empty() && crate::storage::check_key(prefix).is_err() {
            return Err(bad("MEDIA_URL", format!("the prefix `{prefix}` must be `/`-separated segments of A-Z, a-z, 0-9, `.`, `_`, `-`")));
        }
        let allow_http = flag(var, "AWS_ALLOW_HTTP")?;
        let virtual_hosted = flag(var, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST")?;
        let mut endpoint = None;
        for name in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"] {
            let Some(e) = var(name)? else { continue };
            let parsed = url::Url::parse(&e).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()));
            let Some(parsed) = parsed else { return Err(bad(name, format!("must be an http(s) URL such as https://s3.example.com, not `{e}`"))) };
            if parsed.scheme() == "http" && !allow_http {
                return Err(bad(
                    name,
                    "is http://: media and signed requests would travel unencrypted; use https://, or set AWS_ALLOW_HTTP=true to mean it",
                ));
            }
            endpoint = Some(e.trim_end_matches('/').to_string());
            break;
        }
        let region = match var("AWS_REGION")? {
            Some(r) => r,
            None => var("AWS_DEFAULT_REGION")?.unwrap_or_else(|| "us-east-1".into()),
        };
        let access_key_id = var("AWS_ACCESS_KEY_ID")?;
        let secret_access_key = var("AWS_SECRET_ACCESS_KEY")?;
        match (&access_key_id, &secret_access_key) {
            (Some(_), None) => return Err(bad("AWS_SECRET_ACCESS_KEY", "is required with AWS_ACCESS_KEY_ID")),
            (None, Some(_)) => return Err(bad("AWS_ACCESS_KEY_ID", "is required with AWS_SECRET_ACCESS_KEY")),
            _ => {}
        }
        let session_token = var("AWS_SESSION_TOKEN")?;
        if session_token.is_some() && access_key_id.is_none() {
            return Err(bad("AWS_SESSION_TOKEN", "is set but AWS_ACCESS_KEY_ID is not (a session token goes with temporary keys)"));
        }
        let timeout = match var("MEDIA_TIMEOUT_SECS")? {
            None => std::time::Duration::from_secs(30),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=600).contains(&n) => std::time::Duration::from_secs(n),
                _ => return Err(bad("MEDIA_TIMEOUT_SECS", format!("must be seconds from 1 to 600, not `{v}`"))),
            },
        };
        let mut passthrough = Vec::new();
        for name in S3_PASSTHROUGH {
            if let Some(v) = var(name)? {
                passthrough.push((name.to_ascii_lowercase(), v));
            }
        }
        Ok(Some(S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            allow_http,
            virtual_hosted,
            timeout,
            passthrough,
        }))
    }
}

/// A `true`/`false` variable (also `1`/`0`), false when unset.
fn flag(var: &dyn Fn(&'static str) -> Result<Option<String>, ConfigError>, name: &'static str) -> Result<bool, ConfigError> {
    match var(name)?.as_deref() {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(bad(name, format!("must be `true` or `false`, not `{other}`"))),
    }
}

/// `STATS_FLUSH_SECS`: 0.1 to 300 seconds, default 5. Shorter means more flushes (one
/// statement each); longer means more counts lost on a crash.
fn stats_flush(v: Option<String>) -> Result<std::time::Duration, ConfigError> {
    match v {
        None => Ok(std::time::Duration::from_secs(5)),
        Some(v) => match v.trim_end_matches('s').parse::<f64>() {
            Ok(s) if (0.1..=300.0).contains(&s) => Ok(std::time::Duration::from_secs_f64(s)),
            _ => Err(bad("STATS_FLUSH_SECS", format!("must be a number of seconds from 0.1 to 300 (e.g. 5), not `{v}`"))),
        },
    }
}

/// On this kind of machine (2 cores) a handful of connections beats dozens: PostgreSQL's
/// throughput peaks near 2× cores busy backends. Each process gets its own pool.
fn default_pool_size(cores: usize) -> u32 {
    (cores.min(64) as u32 * 2).clamp(4, 16)
}

/// Heroku's router closes a request that has no response after this long (H12).
pub const HEROKU_ROUTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Our deadline for uploads on a dyno: below the router's, with room for the 503 page.
const HEROKU_DEADLINE: std::time::Duration = std::time::Duration::from_secs(25);

const MAX_CONCURRENCY: usize = 256;

fn parse_concurrency(v: &str) -> Option<usize> {
    v.trim().parse::<usize>().ok().filter(|n| (1..=MAX_CONCURRENCY).contains(n))
}

/// `WEB_CONCURRENCY` from the process environment, for the web binary's runtime, which is
/// built before the configuration is read: None when unset or invalid (then
/// `Config::from_env` stops the process naming the variable).
///
/// Why it is cores and not processes: Heroku sets `WEB_CONCURRENCY` (or you do) to the
/// number of processes a forking server should run per dyno. One Quire process already
/// uses every core it is given, and a dyno reports the host's CPUs rather than its share
/// of them, so the value is what it sizes itself by instead: threads, and pools.
pub fn web_concurrency() -> Option<usize> {
    env::var("WEB_CONCURRENCY").ok().as_deref().and_then(parse_concurrency)
}

/// `HEROKU_POSTGRESQL_<COLOR>_URL`: how Heroku attaches each database of the app.
fn is_heroku_database_var(name: &str) -> bool {
    name.strip_prefix("HEROKU_POSTGRESQL_")
        .and_then(|rest| rest.strip_suffix("_URL"))
        .is_some_and(|color| !color.is_empty() && color.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
}

/// Replicas when `DATABASE_REPLICA_URLS` is unset: every attached Heroku database whose URL
/// is not the primary's. Heroku attaches the primary twice (`DATABASE_URL` and its
/// colour), and each follower (`heroku addons:create heroku-postgresql:… --follow
/// DATABASE_URL`) once, by colour. An attached database that is not a follower (a fork, a
/// database being upgraded) is harmless: the replica health loop sees it is not a standby
/// and never routes a read to it. Ordered by name, so `replica-1` is the same one in every
/// process.
fn heroku_followers(database_url: &str, followers: Vec<(String, OsString)>) -> Result<Vec<String>, ConfigError> {
    let mut found: Vec<(String, String)> = Vec::new();
    for (name, value) in followers {
        let Ok(url) = value.into_string() else {
            return Err(bad("DATABASE_REPLICA_URLS", format!("is unset, and {name} (a Heroku database, used as a replica) is not valid UTF-8")));
        };
        let url = url.trim().to_string();
        if url.is_empty() || url == database_url || found.iter().any(|(_, u)| *u == url) {
            continue;
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad("DATABASE_REPLICA_URLS", format!("is unset, and {name} (a Heroku database, used as a replica) is not a postgres:// URL")));
        }
        found.push((name, url));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, url)| url).collect())
}

/// `REDIS_URL`, checked with the client that will use it (a `rediss://` needs its TLS
/// support). With `REDIS_TLS_INSECURE=1` a `rediss://` URL gets the redis crate's
/// `#insecure` fragment: TLS without verifying the server's certificate, which is what
/// Heroku Redis needs (its certificate is self-signed, and Heroku's documentation says to
/// turn verification off). The link is still encrypted against eavesdropping, but not
/// authenticated, so it is a choice the operator makes by name, never a default.
fn redis_url(url: String, insecure: bool) -> Result<String, ConfigError> {
    let mut url = check_scheme("REDIS_URL", url, &["redis://", "rediss://"], "must start with redis:// or rediss://")?;
    if insecure {
        if !url.starts_with("rediss://") {
            return Err(bad("REDIS_TLS_INSECURE", "applies only to a rediss:// REDIS_URL (TLS)"));
        }
        if !url.ends_with("#insecure") {
            url.push_str("#insecure");
        }
    }
    // The redis crate's URL errors are fixed sentences: they never repeat the URL (which
    // holds the password).
    redis::Client::open(url.as_str()).map_err(|e| bad("REDIS_URL", format!("is not a usable Redis URL: {e}")))?;
    Ok(url)
}

fn check_scheme(var: &'static str, url: String, schemes: &[&str], message: &str) -> Result<String, ConfigError> {
    if schemes.iter().any(|s| url.starts_with(s)) { Ok(url) } else { Err(bad(var, message)) }
}

fn check_pg_url(var: &'static str, url: String) -> Result<String, ConfigError> {
    check_scheme(var, url, &["postgres://", "postgresql://"], "must be a postgres:// URL")
}

/// Development default: the private cluster `bin/dev` runs under `var/`, whose port the
/// script records in `var/pg/dev.port`.
fn private_cluster_url() -> Result<String, ConfigError> {
    let port = std::fs::read_to_string("var/pg/dev.port")
        .map_err(|_| bad("DATABASE_URL", "is not set and no private cluster was found (start one with bin/dev)"))?;
    Ok(format!("postgres://quire@127.0.0.1:{}/quire", port.trim()))
}

/// `APP_ENV`. Unset means development only where nothing says "deployed": hosting
/// platforms (Heroku and its kin) set `PORT` and `DATABASE_URL` themselves, and a Procfile
/// deploy that forgot `APP_ENV` must not come up in development mode (no Secure cookies,
/// a key per process, mail readable at /dev/mail). Refusing to start, rather than guessing
/// production, makes the operator say which one they mean, with one variable, before the
/// first request; bin/dev, bin/test and e2e/run set `APP_ENV=development` themselves.
fn app_env(get: &dyn Fn(&str) -> Option<OsString>) -> Result<AppEnv, ConfigError> {
    match var_from(get, "APP_ENV")?.as_deref() {
        Some("development") => Ok(AppEnv::Development),
        Some("production") => Ok(AppEnv::Production),
        Some(other) => Err(bad("APP_ENV", format!("must be `development` or `production`, not `{other}`"))),
        None => {
            let mut platform = Vec::new();
            for name in ["PORT", "DATABASE_URL"] {
                if var_from(get, name)?.is_some() {
                    platform.push(name);
                }
            }
            if platform.is_empty() {
                return Ok(AppEnv::Development);
            }
            Err(bad(
                "APP_ENV",
                format!(
                    "is unset, but {} {} set as a hosting platform sets {}: set APP_ENV=production for a deployment, or APP_ENV=development on your own machine",
                    platform.join(" and "),
                    if platform.len() == 1 { "is" } else { "are" },
                    if platform.len() == 1 { "it" } else { "them" },
                ),
            ))
        }
    }
}

/// Hosts where an unencrypted SMTP connection never leaves the machine.
fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        // smtp:// is not a "special" scheme to the URL standard, so an IPv4 address
        // arrives as an opaque host name.
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost") || d.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `SMTP_URL`, checked and turned into the URL lettre's `from_url` reads. Mail carries
/// password-reset links and the URL may carry the relay's password, so plaintext to
/// another host happens only when asked for by name:
///
/// | URL | to a loopback host | to any other host |
/// |---|---|---|
/// | `smtps://…` | TLS from the first byte | same |
/// | `smtp://…?tls=required` | STARTTLS, or no mail | same |
/// | `smtp://…` | plaintext (a local sink or relay) | STARTTLS required (`?tls=required` added) |
/// | `smtp://…?tls=opportunistic` | STARTTLS if offered | refused: a man in the middle strips the offer |
/// | `smtp://…?tls=none` | plaintext | plaintext, as asked |
///
/// Error messages never repeat the URL: it may hold a password.
fn smtp_url(raw: &str) -> Result<String, ConfigError> {
    const VAR: &str = "SMTP_URL";
    let shape = "must look like smtps://user:pass@host:port or smtp://user:pass@host:port";
    let mut url = url::Url::parse(raw).map_err(|_| bad(VAR, shape))?;
    let (host, loopback) = match url.host() {
        Some(h) if !url.host_str().unwrap_or_default().is_empty() => (h.to_string(), is_loopback_host(&h)),
        _ => return Err(bad(VAR, format!("{shape} (no host)"))),
    };
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let set_tls = |url: &mut url::Url, value: Option<&str>| {
        let rest: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != "tls").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        url.set_query(None);
        if !rest.is_empty() || value.is_some() {
            let mut q = url.query_pairs_mut();
            q.extend_pairs(rest);
            if let Some(v) = value {
                q.append_pair("tls", v);
            }
        }
    };
    match (url.scheme(), tls.as_deref()) {
        ("smtps", None) => {}
        ("smtps", Some(_)) => return Err(bad(VAR, "smtps:// is always TLS: drop its ?tls= parameter")),
        ("smtp", Some("required")) => {}
        // lettre's plaintext is smtp:// with no tls parameter; `none` is ours.
        ("smtp", Some("none")) => set_tls(&mut url, None),
        ("smtp", None | Some("opportunistic")) if loopback => {}
        ("smtp", None) => set_tls(&mut url, Some("required")),
        ("smtp", Some("opportunistic")) => {
            return Err(bad(
                VAR,
                format!(
                    "?tls=opportunistic would send in plaintext whenever STARTTLS is missing (or stripped on the way) to {host}: \
                     leave ?tls= out (STARTTLS required), use smtps://, or say ?tls=none to send unencrypted on purpose"
                ),
            ));
        }
        ("smtp", Some(other)) => {
            return Err(bad(VAR, format!("?tls= must be `required`, `opportunistic` or `none`, not `{other}`")));
        }
        _ => return Err(bad(VAR, shape)),
    }
    Ok(url.to_string())
}

/// `MAIL_FROM`, parsed as the worker's mail builder will parse it, so a typo stops the
/// deploy instead of failing every mail job.
fn mail_from(raw: &str) -> Result<Mailbox, ConfigError> {
    raw.parse::<Mailbox>().map_err(|_| {
        bad("MAIL_FROM", format!("must be a mailbox like `Quire <no-reply@example.com>` or `no-reply@example.com`, not `{raw}`"))
    })
}

/// Development default: a random key generated once into `path` (`var/secret_key`).
///
/// It signs sessions and reset links, so only its owner may read it (0600). It is written
/// to a private temporary file and then linked into place, which fails if the file
/// appeared meanwhile: web and worker starting together both end up with the one key on
/// disk, never a key each, and nobody ever reads a half-written file.
fn dev_secret_key(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let fail = |e: std::io::Error| bad("SECRET_KEY", format!("is unset and {} could not be written: {e}", path.display()));
    if let Some(key) = read_dev_key(path) {
        return Ok(key);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let key = crate::tokens::random_token();
    let tmp = dir.join(format!(".secret_key.{}.{}", std::process::id(), crate::tokens::random_token()));
    let written = write_private(&tmp, key.as_bytes()).and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(key.into_bytes()),
        // Another process won the race: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_dev_key(path).ok_or_else(|| fail(e)),
        Err(e) => Err(fail(e)),
    }
}

/// An existing key (at least 32 characters), its mode tightened to 0600 if it was wider
/// (keys written before this rule were 0644).
fn read_dev_key(path: &Path) -> Option<Vec<u8>> {
    let key = std::fs::read_to_string(path).ok()?;
    let key = key.trim();
    if key.len() < 32 {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            // Before logging starts, so on stderr; not an error: the fix is applied.
            let mode = meta.permissions().mode() & 0o777;
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => eprintln!("warning: {} was readable by others (mode {mode:o}); now 600", path.display()),
                Err(e) => eprintln!("warning: {} is readable by others (mode {mode:o}) and could not be tightened: {e}", path.display()),
            }
        }
    }
    Some(key.as_bytes().to_vec())
}

/// Creates `path` (which must not exist) readable and writable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

// ---- TRUSTED_PROXIES ---------------------------------------------------------------

use std::net::IpAddr;

/// Which `X-Forwarded-For` entries to believe (`TRUSTED_PROXIES`). Any client can send the
/// header with whatever it likes in it; only the entries our own proxies appended (the
/// rightmost ones) say where a request really came from. Believing more than that lets a
/// client pick its own address for rate limits and the sessions page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedProxies {
    /// No proxy in front: the client is the socket's peer and the header is ignored.
    #[default]
    None,
    /// This many proxies in front, each appending the address it saw (Heroku's router: 1).
    /// The client is the n-th entry from the right.
    Hops(usize),
    /// Proxies known by address (Caddy on the same host or network): from the peer, step
    /// left through the header while the address is one of these; the first address that
    /// is not is the client.
    Cidrs(Vec<Cidr>),
}

/// More hops than this is a typo, not a deployment.
const MAX_TRUSTED_HOPS: usize = 16;

impl TrustedProxies {
    /// `None` (unset), a hop count, or a comma-separated list of CIDRs (a bare address is
    /// a /32 or /128). The error is the message to show after the variable's name.
    pub fn parse(value: Option<&str>) -> Result<TrustedProxies, String> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(TrustedProxies::None) };
        let expected = "must be a number of proxy hops (e.g. 1) or a comma-separated list of CIDRs (e.g. 10.0.0.0/8,::1/128)";
        if value.bytes().all(|b| b.is_ascii_digit()) {
            return match value.parse::<usize>() {
                Ok(0) => Ok(TrustedProxies::None),
                Ok(n) if n <= MAX_TRUSTED_HOPS => Ok(TrustedProxies::Hops(n)),
                _ => Err(format!("{expected}; `{value}` hops is more than {MAX_TRUSTED_HOPS}")),
            };
        }
        let cidrs = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Cidr::parse(s).ok_or_else(|| format!("{expected}; `{s}` is neither")))
            .collect::<Result<Vec<_>, _>>()?;
        if cidrs.is_empty() { Ok(TrustedProxies::None) } else { Ok(TrustedProxies::Cidrs(cidrs)) }
    }

    /// The client's address, given the socket's peer (None when the server has no IP for
    /// it) and the `X-Forwarded-For` header values in the order they arrived. None: no
    /// address is known.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let peer = peer.map(|p| p.to_canonical());
        // Rightmost first: the last entry is the one the nearest proxy appended. An entry
        // that is not an address is None (a proxy may write `unknown`).
        let mut hops = forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')).map(parse_hop);
        match self {
            TrustedProxies::None => peer,
            TrustedProxies::Hops(n) => match hops.nth(n.saturating_sub(1)) {
                Some(Some(ip)) => Some(ip),
                // Shorter than the chain of proxies (the request skipped the outer ones), or
                // the outermost wrote no address: all we know for sure is who connected.
                Some(None) | None => peer,
            },
            TrustedProxies::Cidrs(cidrs) => {
                let mut current = peer?;
                while cidrs.iter().any(|c| c.contains(current)) {
                    match hops.next() {
                        Some(Some(ip)) => current = ip,
                        // The header ends (the proxy itself asked) or says nothing usable:
                        // the last trusted address is as far as we can see.
                        Some(None) | None => break,
                    }
                }
                Some(current)
            }
        }
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:4711`), as some proxies write it.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr.trim().parse::<IpAddr>().ok()?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
        };
        Some(Cidr { network: masked(addr, prefix), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

#[cfg(test)]
mod trusted_proxies_tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn parse(s: &str) -> TrustedProxies {
        TrustedProxies::parse(Some(s)).unwrap()
    }

    #[test]
    fn parses_counts_cidrs_and_refuses_anything_else() {
        assert_eq!(TrustedProxies::parse(None), Ok(TrustedProxies::None));
        assert_eq!(parse(""), TrustedProxies::None);
        assert_eq!(parse("0"), TrustedProxies::None);
        assert_eq!(parse("1"), TrustedProxies::Hops(1));
        assert_eq!(parse(" 2 "), TrustedProxies::Hops(2));
        let TrustedProxies::Cidrs(c) = parse("10.0.0.0/8, 127.0.0.1 ,::1/128,fd00::/8") else { panic!("cidrs") };
        assert_eq!(c.len(), 4);
        assert!(c[0].contains(ip("10.200.3.4")) && !c[0].contains(ip("11.0.0.1")));
        assert!(c[1].contains(ip("127.0.0.1")) && !c[1].contains(ip("127.0.0.2")));
        assert!(c[2].contains(ip("::1")) && !c[2].contains(ip("127.0.0.1")));
        assert!(c[3].contains(ip("fd12:3456::1")) && !c[3].contains(ip("fe80::1")));
        // Host bits are masked; a v4-mapped peer matches a v4 range.
        assert!(Cidr::parse("192.168.1.77/24").unwrap().contains(ip("192.168.1.1")));
        assert!(Cidr::parse("192.168.1.0/24").unwrap().contains(ip("::ffff:192.168.1.9")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["abc", "1.2.3.4/33", "::1/129", "10.0.0.0/8,nope", "-1", "1.5", "99", "10.0.0/8", "/8"] {
            let err = TrustedProxies::parse(Some(bad)).expect_err(bad);
            assert!(err.contains("number of proxy hops"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_value_stops_start_up_naming_the_variable() {
        let e = TrustedProxies::parse(Some("lots")).map_err(|m| bad("TRUSTED_PROXIES", m)).unwrap_err();
        assert!(e.to_string().starts_with("TRUSTED_PROXIES: "), "{e}");
    }

    #[test]
    fn without_proxies_the_header_is_ignored() {
        let none = TrustedProxies::None;
        let peer = Some(ip("198.51.100.20"));
        assert_eq!(none.client_ip(peer, &["6.6.6.6"]), peer);
        assert_eq!(none.client_ip(peer, &["1.1.1.1, 6.6.6.6", "7.7.7.7"]), peer);
        assert_eq!(none.client_ip(peer, &[]), peer);
        // No socket address (an in-memory test client): nothing is known, whatever the header says.
        assert_eq!(none.client_ip(None, &["6.6.6.6"]), None);
    }

    #[test]
    fn one_hop_like_heroku_takes_what_the_router_appended() {
        let heroku = TrustedProxies::Hops(1);
        let router = Some(ip("10.1.2.3"));
        // The client sent its own `X-Forwarded-For: 6.6.6.6`; the router appended the real one.
        assert_eq!(heroku.client_ip(router, &["6.6.6.6, 203.0.113.9"]), Some(ip("203.0.113.9")));
        assert_eq!(heroku.client_ip(router, &["6.6.6.6", "203.0.113.9"]), Some(ip("203.0.113.9")));
        assert_eq!(heroku.client_ip(router, &["203.0.113.9:51234"]), Some(ip("203.0.113.9")));
        assert_eq!(heroku.client_ip(router, &["[2001:db8::7]:443"]), Some(ip("2001:db8::7")));
        // No header (a request straight to the dyno), or garbage where the address should be.
        assert_eq!(heroku.client_ip(router, &[]), router);
        assert_eq!(heroku.client_ip(router, &["unknown"]), router);
        // Two hops (a CDN in front of the router): the address the CDN saw.
        let two = TrustedProxies::Hops(2);
        assert_eq!(two.client_ip(router, &["6.6.6.6, 203.0.113.9, 172.16.0.5"]), Some(ip("203.0.113.9")));
        assert_eq!(two.client_ip(router, &["203.0.113.9"]), router, "shorter than the chain: the peer");
    }

    #[test]
    fn a_caddy_cidr_list_walks_past_trusted_addresses_only() {
        let caddy = parse("127.0.0.1/32,::1/128,10.0.0.0/8");
        let local = Some(ip("127.0.0.1"));
        assert_eq!(caddy.client_ip(local, &["203.0.113.9"]), Some(ip("203.0.113.9")));
        // A spoofed entry left of the real client stays unread.
        assert_eq!(caddy.client_ip(local, &["6.6.6.6, 203.0.113.9"]), Some(ip("203.0.113.9")));
        // Through two of our proxies (an internal load balancer, then Caddy).
        assert_eq!(caddy.client_ip(local, &["6.6.6.6, 203.0.113.9, 10.0.0.4"]), Some(ip("203.0.113.9")));
        // A peer we do not trust is the client, whatever it claims.
        assert_eq!(caddy.client_ip(Some(ip("198.51.100.20")), &["10.0.0.4"]), Some(ip("198.51.100.20")));
        assert_eq!(caddy.client_ip(Some(ip("::ffff:198.51.100.20")), &[]), Some(ip("198.51.100.20")));
        // The proxy itself asking (no header): the proxy is the client.
        assert_eq!(caddy.client_ip(local, &[]), local);
        // An unreadable entry stops the walk at the last trusted address.
        assert_eq!(caddy.client_ip(local, &["6.6.6.6, garbage"]), local);
        // No socket address: no trusted starting point.
        assert_eq!(caddy.client_ip(None, &["203.0.113.9"]), None);
    }
}

#[cfg(test)]
mod live_limits_tests {
    use super::*;

    fn read(vars: &[(&'static str, &str)]) -> Result<LiveLimits, ConfigError> {
        let vars: Vec<(&'static str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let var = |name: &'static str| Ok(vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()));
        let http = HttpLimits::read(&var)?;
        LiveLimits::read(&var, &http)
    }

    #[test]
    fn defaults_follow_the_connection_cap() {
        let d = read(&[]).unwrap();
        assert_eq!(d, LiveLimits::default());
        assert_eq!(d.max_streams, 768);
        assert_eq!(d.heartbeat, std::time::Duration::from_secs(15));
        assert_eq!(read(&[("MAX_CONNECTIONS", "100")]).unwrap().max_streams, 75);
        let set = read(&[("LIVE_MAX_STREAMS", "10"), ("LIVE_HEARTBEAT_SECS", "2.5")]).unwrap();
        assert_eq!((set.max_streams, set.heartbeat), (10, std::time::Duration::from_millis(2500)));
    }

    #[test]
    fn refuses_bounds_that_would_starve_pages_or_the_idle_timeout() {
        for (name, value) in [
            ("LIVE_MAX_STREAMS", "0"),
            ("LIVE_MAX_STREAMS", "1024"),
            ("LIVE_MAX_STREAMS", "many"),
            ("LIVE_HEARTBEAT_SECS", "0.5"),
            ("LIVE_HEARTBEAT_SECS", "120"),
            ("LIVE_HEARTBEAT_SECS", "soon"),
        ] {
            let e = read(&[(name, value)]).expect_err(value);
            assert_eq!(e.var, name, "{value}: {e}");
        }
    }
}

#[cfg(test)]
mod stats_flush_tests {
    use std::time::Duration;

    #[test]
    fn defaults_to_five_seconds_and_refuses_nonsense() {
        assert_eq!(super::stats_flush(None).unwrap(), Duration::from_secs(5));
        assert_eq!(super::stats_flush(Some("1".into())).unwrap(), Duration::from_secs(1));
        assert_eq!(super::stats_flush(Some("0.5s".into())).unwrap(), Duration::from_millis(500));
        for bad in ["0", "-1", "301", "soon", "NaN"] {
            assert_eq!(super::stats_flush(Some(bad.into())).unwrap_err().var, "STATS_FLUSH_SECS", "{bad}");
        }
    }
}
