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
    for (var, bad) in [("REDIS_TIMEOUT_MS", "0"), ("REDIS_TIMEOUT_MS", "5ms"), ("REDIS_TIMEOUT_MS", "20000"), ("CACHE", "maybe"), ("REDIS_URL", "http://x")] {
        let e = error(&production(&[(var, bad)]));
        assert_eq!(e.var, var, "{var}={bad}: {e}");
    }
}
