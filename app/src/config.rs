//! Configuration from the environment, exactly as ../shared/CONTRACT.md's table says.
//!
//! Every value is read and checked once at start-up. A bad value is a `ConfigError`
//! naming the variable; the binaries print it on one line and exit with code 2.

use std::{env, fmt, path::PathBuf};

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
    pub smtp_url: Option<String>,
    pub media_root: PathBuf,
    pub secret_key: Vec<u8>,
    pub base_url: String,
    pub log_format: LogFormat,
    /// Where mail goes when `SMTP_URL` is unset (development): `var/mail`.
    pub mail_dir: PathBuf,
    /// Connections per pool; sized for the machine (see `default_pool_size`).
    pub db_pool_size: u32,
    /// HTTP timeouts and the connection cap (`web::server`, `web::timeouts`).
    pub http: HttpLimits,
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

/// Reads a variable; unset and empty are the same (an empty line in `.env` means unset).
fn var(name: &'static str) -> Result<Option<String>, ConfigError> {
    match env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(bad(name, "is not valid UTF-8")),
    }
}

impl Config {
    /// Loads `.env` (development convenience; real environment variables win) and reads
    /// the configuration.
    pub fn from_env() -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::read()
    }

    fn read() -> Result<Config, ConfigError> {
        let app_env = match var("APP_ENV")?.as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(bad("APP_ENV", format!("must be `development` or `production`, not `{other}`")));
            }
        };
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
            .transpose()?
            .unwrap_or_default();
        let replica_max_lag = match var("DATABASE_REPLICA_MAX_LAG")? {
            None => std::time::Duration::from_secs(10),
            Some(v) => match v.trim().trim_end_matches('s').parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs <= 86_400.0 => std::time::Duration::from_secs_f64(secs),
                _ => return Err(bad("DATABASE_REPLICA_MAX_LAG", format!("must be a number of seconds (e.g. 10), not `{v}`"))),
            },
        };
        // Per process, for the primary and each replica. PostgreSQL does best with few busy
        // connections in all: with several processes on a small server, fewer each.
        let db_pool_size = match var("DATABASE_POOL_SIZE")? {
            None => default_pool_size(),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => return Err(bad("DATABASE_POOL_SIZE", format!("must be a number of connections from 1 to 200, not `{v}`"))),
            },
        };
        let redis_url = var("REDIS_URL")?
            .map(|u| check_scheme("REDIS_URL", u, &["redis://", "rediss://"], "must start with redis:// or rediss://"))
            .transpose()?;
        let smtp_url = var("SMTP_URL")?
            .map(|u| check_scheme("SMTP_URL", u, &["smtp://", "smtps://"], "must look like smtp://user:pass@host:port or smtps://…"))
            .transpose()?;
        let media_root = PathBuf::from(var("MEDIA_ROOT")?.unwrap_or_else(|| "var/media".into()));
        let secret_key = match var("SECRET_KEY")? {
            Some(k) if k.len() >= 32 => k.into_bytes(),
            Some(_) => return Err(bad("SECRET_KEY", "must be at least 32 characters")),
            None if app_env == AppEnv::Production => {
                return Err(bad("SECRET_KEY", "is required in production (at least 32 random characters)"));
            }
            None => dev_secret_key()?,
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
        let http = HttpLimits::read()?;
        Ok(Config {
            app_env,
            port,
            database_url,
            replica_urls,
            replica_max_lag,
            redis_url,
            smtp_url,
            media_root,
            secret_key,
            base_url,
            log_format,
            mail_dir: PathBuf::from("var/mail"),
            db_pool_size,
            http,
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
            smtp_url: None,
            media_root: mail_dir.join("media"),
            secret_key: b"test-secret-key-test-secret-key-test-secret".to_vec(),
            base_url: "http://localhost:8000".into(),
            log_format: LogFormat::Pretty,
            mail_dir,
            db_pool_size: 4,
            http: HttpLimits::default(),
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
    fn read() -> Result<HttpLimits, ConfigError> {
        let d = HttpLimits::default();
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
        // A quiet handler still within its deadline must not lose its connection.
        if limits.idle_timeout <= limits.request_timeout.max(limits.upload_timeout) {
            return Err(bad("IDLE_TIMEOUT_SECS", "must be longer than REQUEST_TIMEOUT_SECS and UPLOAD_TIMEOUT_SECS"));
        }
        Ok(limits)
    }
}

/// On this kind of machine (2 cores) a handful of connections beats dozens: PostgreSQL's
/// throughput peaks near 2× cores busy backends. Each process gets its own pool.
fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as u32;
    (cores * 2).clamp(4, 16)
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

/// Development default: a random key generated once into `var/secret_key`.
fn dev_secret_key() -> Result<Vec<u8>, ConfigError> {
    let path = std::path::Path::new("var/secret_key");
    if let Ok(k) = std::fs::read_to_string(path)
        && k.trim().len() >= 32
    {
        return Ok(k.trim().as_bytes().to_vec());
    }
    let key = crate::tokens::random_token();
    std::fs::create_dir_all("var")
        .and_then(|_| std::fs::write(path, &key))
        .map_err(|e| bad("SECRET_KEY", format!("is unset and var/secret_key could not be written: {e}")))?;
    Ok(key.into_bytes())
}
