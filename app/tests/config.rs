//! Configuration parsing as a pure function of the variables (`Config::read` over a map):
//! which environment is chosen, what production demands, and which SMTP URLs may send in
//! plaintext. No process environment is touched.

use std::{collections::HashMap, ffi::OsString};

use app::config::{AppEnv, Config, ConfigError};

const KEY: &str = "0123456789abcdef0123456789abcdef-test";
const DB: &str = "postgres://quire@127.0.0.1:5432/quire";

fn read(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
    Config::read(|name| map.get(name).cloned())
}

#[track_caller]
fn error(vars: &[(&str, &str)]) -> ConfigError {
    match read(vars) {
        Ok(c) => panic!("{vars:?} was accepted: {c:?}"),
        Err(e) => e,
    }
}

/// A complete production configuration, with `changes` applied (an empty value unsets).
fn production(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![
        ("APP_ENV", "production"),
        ("DATABASE_URL", DB),
        ("SECRET_KEY", KEY),
        ("BASE_URL", "https://quire.example.com"),
        ("SMTP_URL", "smtps://mailer:s3cret@smtp.example.com"),
        ("MAIL_FROM", "Quire <no-reply@quire.example.com>"),
        ("PORT", "8000"),
    ];
    for (k, v) in changes {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    vars
}

fn development<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![("APP_ENV", "development"), ("DATABASE_URL", DB), ("SECRET_KEY", KEY)];
    vars.extend_from_slice(changes);
    vars
}

#[test]
fn an_unset_app_env_where_a_platform_set_port_or_database_url_refuses_to_start() {
    for vars in [&[("PORT", "8000")][..], &[("DATABASE_URL", DB)][..], &[("PORT", "8000"), ("DATABASE_URL", DB), ("SECRET_KEY", KEY)][..]] {
        let e = error(vars);
        assert_eq!(e.var, "APP_ENV", "{vars:?}: {e}");
        assert!(e.message.contains("APP_ENV=production") && e.message.contains("APP_ENV=development"), "says what to set: {e}");
        for (name, _) in vars.iter().filter(|(n, _)| *n != "SECRET_KEY") {
            assert!(e.message.contains(name), "names {name}: {e}");
        }
    }
    // Empty counts as unset (an empty line in .env), for APP_ENV as for PORT.
    assert_eq!(error(&[("APP_ENV", ""), ("PORT", "8000")]).var, "APP_ENV");
}

#[test]
fn an_unset_app_env_on_a_bare_machine_is_development() {
    // Nothing set: development, which then looks for bin/dev's private cluster (none in
    // the test's working directory) — the development error, not a production one.
    let e = error(&[]);
    assert_eq!(e.var, "DATABASE_URL");
    assert!(e.message.contains("private cluster"), "{e}");
}

#[test]
fn explicit_development_works_with_port_and_database_url_and_has_the_contract_defaults() {
    let c = read(&development(&[("PORT", "18000")])).unwrap();
    assert_eq!(c.app_env, AppEnv::Development);
    assert_eq!(c.port, 18000);
    assert_eq!(c.mail_from.to_string(), "Quire <no-reply@localhost>");
    assert_eq!(c.base_url, "http://localhost:18000");
    assert!(c.smtp_url.is_none(), "mail to var/mail");
}

#[test]
fn production_needs_every_variable_it_cannot_guess_and_names_all_missing_in_one_line() {
    let c = read(&production(&[])).unwrap();
    assert!(c.is_production());
    assert_eq!(c.mail_from.email.to_string(), "no-reply@quire.example.com");
    assert_eq!(c.base_url, "https://quire.example.com");

    for name in ["DATABASE_URL", "SECRET_KEY", "BASE_URL", "SMTP_URL", "MAIL_FROM"] {
        let e = error(&production(&[(name, "")]));
        assert_eq!(e.var, name);
        assert!(e.message.contains("required in production"), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
    let e = error(&[("APP_ENV", "production"), ("DATABASE_URL", DB)]);
    assert_eq!(e.var, "SECRET_KEY");
    assert!(e.message.ends_with("also unset: BASE_URL, SMTP_URL, MAIL_FROM"), "{e}");
}

#[test]
fn mail_from_must_be_a_mailbox() {
    for bad in ["quire", "Quire <no-reply>", "no-reply@", "Quire <no-reply@example.com"] {
        let e = error(&development(&[("MAIL_FROM", bad)]));
        assert_eq!(e.var, "MAIL_FROM", "{bad}: {e}");
    }
    let c = read(&development(&[("MAIL_FROM", "hello@quire.example.com")])).unwrap();
    assert_eq!(c.mail_from.email.domain(), "quire.example.com");
    let c = read(&development(&[("MAIL_FROM", "\"Quire, the site\" <a@b.example>")])).unwrap();
    assert_eq!(c.mail_from.name.as_deref(), Some("Quire, the site"));
}

fn smtp(url: &str) -> Result<String, ConfigError> {
    read(&development(&[("SMTP_URL", url)])).map(|c| c.smtp_url.expect("smtp url"))
}

#[test]
fn smtp_urls_to_other_hosts_never_send_in_plaintext_unless_asked_by_name() {
    // Remote smtp:// means STARTTLS required (lettre alone would send it in plaintext).
    assert_eq!(smtp("smtp://u:p@smtp.example.com:587").unwrap(), "smtp://u:p@smtp.example.com:587?tls=required");
    assert_eq!(smtp("smtp://192.0.2.7:25").unwrap(), "smtp://192.0.2.7:25?tls=required");
    assert_eq!(smtp("smtp://smtp.example.com?tls=required").unwrap(), "smtp://smtp.example.com?tls=required");
    // Plaintext on purpose: `tls=none`, which lettre knows as "no tls parameter".
    assert_eq!(smtp("smtp://relay.internal:25?tls=none").unwrap(), "smtp://relay.internal:25");
    // smtps is TLS from the first byte.
    assert_eq!(smtp("smtps://u:p@smtp.example.com").unwrap(), "smtps://u:p@smtp.example.com");
    // To this machine: as written (a local sink or relay).
    for local in ["smtp://127.0.0.1:1025", "smtp://localhost:1025", "smtp://[::1]:1025", "smtp://127.0.0.2:25?tls=opportunistic"] {
        assert_eq!(smtp(local).unwrap(), local);
    }

    // Refused: opportunistic STARTTLS to another host (a man in the middle strips it),
    // unknown tls modes, tls on smtps, other schemes, no host.
    for url in [
        "smtp://smtp.example.com:587?tls=opportunistic",
        "smtp://smtp.example.com?tls=yes",
        "smtps://smtp.example.com?tls=none",
        "http://smtp.example.com",
        "smtp://",
        "smtp.example.com:587",
    ] {
        let e = smtp(url).expect_err(url);
        assert_eq!(e.var, "SMTP_URL", "{url}: {e}");
    }
}

#[test]
fn smtp_url_errors_never_repeat_the_password() {
    for url in ["smtp://mailer:hunter2-secret@smtp.example.com?tls=opportunistic", "smtp://mailer:hunter2-secret@smtp.example.com?tls=maybe"] {
        let e = smtp(url).expect_err(url);
        assert!(!e.to_string().contains("hunter2-secret"), "{e}");
    }
}

#[test]
fn redis_timeout_and_cache_switch_are_checked_and_default_sensibly() {
    let c = read(&production(&[])).unwrap();
    assert_eq!(c.redis_timeout, app::redis_client::DEFAULT_TIMEOUT);
    assert!(c.cache_enabled && c.redis_url.is_none());
    let c = read(&production(&[("REDIS_URL", "redis://127.0.0.1:6379/"), ("REDIS_TIMEOUT_MS", "20"), ("CACHE", "off")])).unwrap();
    assert_eq!(c.redis_timeout, std::time::Duration::from_millis(20));
    assert!(!c.cache_enabled);
    assert_eq!(c.cache_l1_bytes, app::cache::DEFAULT_L1_BYTES);
    assert_eq!(read(&production(&[("CACHE_L1_MB", "512")])).unwrap().cache_l1_bytes, 512 * 1024 * 1024);
    for (var, bad) in [("CACHE_L1_MB", "0"), ("CACHE_L1_MB", "1g"), ("REDIS_TIMEOUT_MS", "0"), ("REDIS_TIMEOUT_MS", "5ms"), ("REDIS_TIMEOUT_MS", "20000"), ("CACHE", "maybe"), ("REDIS_URL", "http://x")] {
        let e = error(&production(&[(var, bad)]));
        assert_eq!(e.var, var, "{var}={bad}: {e}");
    }
}

// ---- Heroku: follower databases, TLS to PostgreSQL and Redis, dynos -------------------

fn read_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::read_env(vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect::<Vec<_>>())
}

const ONYX: &str = "postgres://u:p@ec2-1.compute.amazonaws.com:5432/d1";
const AMBER: &str = "postgres://u:p@ec2-2.compute.amazonaws.com:5432/d1";
const COBALT: &str = "postgres://u:p@ec2-3.compute.amazonaws.com:5432/d1";

#[test]
fn heroku_followers_are_the_replicas_when_database_replica_urls_is_unset() {
    // Heroku attaches the primary twice (DATABASE_URL and its colour) and each follower by
    // its colour; unrelated HEROKU_ variables and a colourless name are not databases.
    let heroku = production(&[
        ("DATABASE_URL", ONYX),
        ("HEROKU_POSTGRESQL_ONYX_URL", ONYX),
        ("HEROKU_POSTGRESQL_COBALT_URL", COBALT),
        ("HEROKU_POSTGRESQL_AMBER_URL", AMBER),
        ("HEROKU_POSTGRESQL_URL", "postgres://not-a-colour/x"),
        ("HEROKU_APP_NAME", "postgres://not-a-database/x"),
    ]);
    let c = read_env(&heroku).unwrap();
    assert_eq!(c.database_url, ONYX);
    assert_eq!(c.replica_urls, [AMBER, COBALT], "followers only, ordered by name");

    // The same follower attached under two names is one replica.
    let c = read_env(&production(&[("DATABASE_URL", ONYX), ("HEROKU_POSTGRESQL_AMBER_URL", AMBER), ("HEROKU_POSTGRESQL_RED_URL", AMBER)])).unwrap();
    assert_eq!(c.replica_urls, [AMBER]);

    // An explicit list wins, followers or not.
    let mut explicit = heroku.clone();
    explicit.push(("DATABASE_REPLICA_URLS", COBALT));
    assert_eq!(read_env(&explicit).unwrap().replica_urls, [COBALT]);

    // Only the primary attached: no replicas.
    let c = read_env(&production(&[("DATABASE_URL", ONYX), ("HEROKU_POSTGRESQL_ONYX_URL", ONYX)])).unwrap();
    assert!(c.replica_urls.is_empty());

    // `read` asks for variables by name and so sees no followers.
    let map: HashMap<String, OsString> = heroku.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
    assert!(Config::read(|name| map.get(name).cloned()).unwrap().replica_urls.is_empty());

    // A follower that is not a PostgreSQL URL stops start-up, naming it and never its value.
    let e = read_env(&production(&[("HEROKU_POSTGRESQL_AMBER_URL", "mysql://u:hunter2@x/y")])).unwrap_err();
    assert_eq!(e.var, "DATABASE_REPLICA_URLS");
    assert!(e.message.contains("HEROKU_POSTGRESQL_AMBER_URL") && !e.message.contains("hunter2"), "{e}");
}

#[test]
fn database_url_with_sslmode_require_is_accepted() {
    let url = "postgres://u:p@ec2-1.compute.amazonaws.com:5432/d1?sslmode=require";
    let c = read_env(&production(&[("DATABASE_URL", url), ("HEROKU_POSTGRESQL_ONYX_URL", url)])).unwrap();
    assert_eq!(c.database_url, url);
    assert!(c.replica_urls.is_empty());
}

/// Accepts one connection on a local port and returns the first byte the client sends
/// after the server agreed to TLS (`agree`: the reply to PostgreSQL's SSLRequest; None for
/// a protocol that starts with TLS, like rediss://). 0x16 is a TLS handshake record.
async fn first_byte_after_tls_offer(agree: Option<&'static [u8]>) -> (u16, tokio::task::JoinHandle<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        if let Some(reply) = agree {
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await.unwrap();
            // Length 8, then the SSLRequest code 80877103.
            assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "an SSLRequest first");
            socket.write_all(reply).await.unwrap();
        }
        let mut first = [0u8; 1];
        socket.read_exact(&mut first).await.unwrap();
        first[0]
    });
    (port, server)
}

#[tokio::test]
async fn sslmode_require_really_speaks_tls_to_postgresql() {
    // Heroku Postgres refuses plaintext: the driver must be built with TLS and use it.
    let (port, server) = first_byte_after_tls_offer(Some(b"S")).await;
    let url = format!("postgres://u:p@127.0.0.1:{port}/d?sslmode=require");
    let client = tokio::spawn(async move {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.map(|_| ())
    });
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), server).await.expect("in time").unwrap();
    assert_eq!(first, 0x16, "a TLS ClientHello after the server said S");
    client.abort();
}

#[tokio::test]
async fn rediss_speaks_tls_and_redis_tls_insecure_is_explicit() {
    let c = read(&production(&[("REDIS_URL", "rediss://:pw@ec2-9.compute.amazonaws.com:12345")])).unwrap();
    assert_eq!(c.redis_url.as_deref(), Some("rediss://:pw@ec2-9.compute.amazonaws.com:12345"), "verified by default");
    for on in ["1", "true"] {
        let c = read(&production(&[("REDIS_URL", "rediss://:pw@ec2-9.compute.amazonaws.com:12345"), ("REDIS_TLS_INSECURE", on)])).unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("rediss://:pw@ec2-9.compute.amazonaws.com:12345#insecure"));
    }
    let c = read(&production(&[("REDIS_URL", "rediss://:pw@host:1/#insecure"), ("REDIS_TLS_INSECURE", "1")])).unwrap();
    assert_eq!(c.redis_url.as_deref(), Some("rediss://:pw@host:1/#insecure"), "not twice");
    let c = read(&production(&[("REDIS_URL", "rediss://:pw@host:1/#insecure")])).unwrap();
    assert!(c.redis_url.unwrap().ends_with("#insecure"), "the redis crate's own fragment is honoured as written");
    for (vars, var) in [
        (&[("REDIS_URL", "redis://host:1"), ("REDIS_TLS_INSECURE", "1")][..], "REDIS_TLS_INSECURE"),
        (&[("REDIS_TLS_INSECURE", "1")][..], "REDIS_TLS_INSECURE"),
        (&[("REDIS_URL", "rediss://host:1"), ("REDIS_TLS_INSECURE", "yes")][..], "REDIS_TLS_INSECURE"),
        (&[("REDIS_URL", "rediss://:hunter2@host:1/#verify-later")][..], "REDIS_URL"),
    ] {
        let e = error(&production(vars));
        assert_eq!(e.var, var, "{vars:?}: {e}");
        assert!(!e.message.contains("hunter2"), "{e}");
    }

    // And the client really opens TLS (the redis crate's TLS feature is built in).
    let (port, server) = first_byte_after_tls_offer(None).await;
    let url = format!("rediss://127.0.0.1:{port}");
    let vars: Vec<(&str, &str)> = production(&[("REDIS_TLS_INSECURE", "1")]).into_iter().chain([("REDIS_URL", url.as_str())]).collect();
    let c = read(&vars).unwrap();
    let redis = app::redis_client::Redis::open(c.redis_url.as_deref().unwrap(), std::time::Duration::from_secs(1)).unwrap();
    let client = redis.client().clone();
    let connecting = tokio::spawn(async move { client.get_multiplexed_async_connection().await.map(|_| ()) });
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), server).await.expect("in time").unwrap();
    assert_eq!(first, 0x16, "a TLS ClientHello");
    connecting.abort();
}

#[test]
fn web_concurrency_sizes_the_pools_and_dyno_names_the_process() {
    let c = read(&production(&[("WEB_CONCURRENCY", "3")])).unwrap();
    assert_eq!((c.cores, c.db_pool_size), (3, 6));
    assert_eq!(read(&production(&[("WEB_CONCURRENCY", "1")])).unwrap().db_pool_size, 4, "never below 4");
    assert_eq!(read(&production(&[("WEB_CONCURRENCY", "64")])).unwrap().db_pool_size, 16, "never above 16");
    assert_eq!(read(&production(&[("WEB_CONCURRENCY", "3"), ("DATABASE_POOL_SIZE", "9")])).unwrap().db_pool_size, 9);
    for bad in ["0", "many", "-2", "1000"] {
        assert_eq!(error(&production(&[("WEB_CONCURRENCY", bad)])).var, "WEB_CONCURRENCY", "{bad}");
    }
    assert_eq!(read(&production(&[])).unwrap().instance, None);
    assert_eq!(read(&production(&[("DYNO", "web.2")])).unwrap().instance.as_deref(), Some("web.2"));
}

#[test]
fn on_a_dyno_every_request_deadline_is_below_the_routers_30_seconds() {
    let off = read(&production(&[])).unwrap().http;
    assert_eq!(off.upload_timeout, std::time::Duration::from_secs(60));
    let dyno = read(&production(&[("DYNO", "web.1")])).unwrap().http;
    assert!(dyno.request_timeout < app::config::HEROKU_ROUTER_TIMEOUT, "{dyno:?}");
    assert!(dyno.upload_timeout < app::config::HEROKU_ROUTER_TIMEOUT, "{dyno:?}");
    assert_eq!(read(&production(&[("DYNO", "web.1"), ("UPLOAD_TIMEOUT_SECS", "20")])).unwrap().http.upload_timeout.as_secs(), 20);
    for var in ["REQUEST_TIMEOUT_SECS", "UPLOAD_TIMEOUT_SECS"] {
        let e = error(&production(&[("DYNO", "web.1"), (var, "30")]));
        assert_eq!(e.var, var, "{e}");
        assert!(e.message.contains("Heroku"), "{e}");
        read(&production(&[(var, "30")])).expect("30 s is fine off Heroku");
    }
}

#[test]
fn media_url_selects_an_s3_bucket_and_each_bad_part_is_named() {
    // Unset: files under MEDIA_ROOT, as before.
    let c = read(&production(&[])).unwrap();
    assert!(c.media_s3.is_none());
    assert_eq!(c.media_root, std::path::PathBuf::from("var/media"));

    let s3 = [
        ("MEDIA_URL", "s3://quire-media/prod/"),
        ("AWS_ENDPOINT_URL", "https://s3.eu-central-003.example.com/"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret"),
        ("AWS_DEFAULT_REGION", "eu-central-003"),
    ];
    let c = read(&production(&s3)).unwrap();
    let m = c.media_s3.expect("MEDIA_URL set");
    assert_eq!((m.bucket.as_str(), m.prefix.as_str()), ("quire-media", "prod"));
    assert_eq!(m.url(), "s3://quire-media/prod");
    assert_eq!(m.endpoint.as_deref(), Some("https://s3.eu-central-003.example.com"));
    assert_eq!(m.region, "eu-central-003", "AWS_DEFAULT_REGION when AWS_REGION is unset");
    assert_eq!(m.timeout, std::time::Duration::from_secs(30));
    assert!(!m.allow_http && !m.virtual_hosted);
    assert!(!format!("{m:?}").contains("wJalr"), "the secret stays out of Debug: {m:?}");
    // AWS itself: no endpoint, no keys (the instance's role), us-east-1.
    let m = read(&production(&[("MEDIA_URL", "s3://quire-media")])).unwrap().media_s3.unwrap();
    assert_eq!((m.prefix.as_str(), m.endpoint.as_deref(), m.region.as_str(), m.access_key_id.as_deref()), ("", None, "us-east-1", None));
    // AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL, as in AWS's own tools.
    let m = read(&production(&[("MEDIA_URL", "s3://quire-media"), ("AWS_ENDPOINT_URL", "https://a.example"), ("AWS_ENDPOINT_URL_S3", "https://b.example")]))
        .unwrap()
        .media_s3
        .unwrap();
    assert_eq!(m.endpoint.as_deref(), Some("https://b.example"));

    let with = |changes: &[(&'static str, &'static str)]| {
        let mut vars = production(&s3);
        for (k, v) in changes {
            vars.retain(|(name, _)| name != k);
            vars.push((k, v));
        }
        error(&vars)
    };
    for (changes, var, says) in [
        (&[("MEDIA_URL", "/srv/media")][..], "MEDIA_URL", "s3://bucket"),
        (&[("MEDIA_URL", "https://quire-media.s3.amazonaws.com")][..], "MEDIA_URL", "s3://bucket"),
        (&[("MEDIA_URL", "s3://Quire_Media")][..], "MEDIA_URL", "bucket name"),
        (&[("MEDIA_URL", "s3://quire-media/../up")][..], "MEDIA_URL", "prefix"),
        (&[("AWS_ENDPOINT_URL", "s3.example.com")][..], "AWS_ENDPOINT_URL", "http(s) URL"),
        (&[("AWS_ENDPOINT_URL", "http://10.0.0.5:9000")][..], "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP=true"),
        (&[("AWS_ALLOW_HTTP", "yes")][..], "AWS_ALLOW_HTTP", "true"),
        (&[("AWS_SECRET_ACCESS_KEY", "")][..], "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
        (&[("AWS_ACCESS_KEY_ID", "")][..], "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        (&[("MEDIA_TIMEOUT_SECS", "0")][..], "MEDIA_TIMEOUT_SECS", "1 to 600"),
    ] {
        let e = with(changes);
        assert_eq!(e.var, var, "{changes:?}: {e}");
        assert!(e.message.contains(says), "{changes:?}: {e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        assert!(!e.to_string().contains("wJalr"), "never the secret: {e}");
    }
    // Plain HTTP to the store only when said by name (a local server, a test).
    let m = read(&production(&[("MEDIA_URL", "s3://quire-media"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"), ("AWS_ALLOW_HTTP", "true")]))
        .unwrap()
        .media_s3
        .unwrap();
    assert!(m.allow_http);
}
