//! The deployment files read against the Procfile and the configuration table, the way an
//! operator (or a reviewer) would: docker-compose.yml as compose itself resolves it
//! (`docker-compose config`, Debian's package, which bin/test installs), and app.json.
//!
//! - every app service runs a Procfile process (`web serve`, `worker [--queues …]`,
//!   `web migrate`), every process runs somewhere, and the workers cover every queue;
//! - every service has a health check, except the one-shot release the others wait for;
//! - every variable the app services or app.json set is in the README's configuration
//!   table, and what production requires has no working default (compose refuses to
//!   start without each, naming it; app.json requires or generates it).
//!
//! No Docker engine is needed: `config` only resolves and validates the file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Procfile: process name → its command's words.
fn procfile() -> BTreeMap<String, Vec<String>> {
    read("Procfile")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (name, command) = l.split_once(':').unwrap_or_else(|| panic!("Procfile line without a colon: {l}"));
            (name.trim().to_string(), command.split_whitespace().map(String::from).collect())
        })
        .collect()
}

/// The variables of the README's configuration table (`| \`NAME\` | … |` rows of the
/// "## Configuration" section).
fn config_table() -> BTreeSet<String> {
    let readme = read("README.md");
    let section = readme.split("\n## Configuration\n").nth(1).expect("README has a ## Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let names: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .filter(|n| n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        .collect();
    assert!(names.contains("DATABASE_URL") && names.contains("SECRET_KEY"), "the table was not found: {names:?}");
    names
}

/// Production's required variables (app::config's list, and ../shared/CONTRACT.md).
const REQUIRED: &[&str] = &["SECRET_KEY", "BASE_URL", "SMTP_URL", "MAIL_FROM"];

/// What compose needs to resolve the file: the required variables and the passwords.
fn compose_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ("BASE_URL", "http://localhost:8000"),
        ("SMTP_URL", "smtp://mailpit:1025?tls=none"),
        ("MAIL_FROM", "Quire <no-reply@example.com>"),
        ("POSTGRES_PASSWORD", "pw"),
        ("REPLICATION_PASSWORD", "rpw"),
    ]
}

/// `docker-compose config` with exactly `vars` (no .env file, nothing inherited but PATH):
/// Ok(resolved YAML) or Err(stderr).
fn compose_config(vars: &[(&str, &str)]) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("quire-compose-{}-{}", std::process::id(), vars.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty_env = dir.join("empty.env");
    std::fs::write(&empty_env, "").unwrap();
    let output = Command::new("docker-compose")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .envs(vars.iter().copied())
        .arg("--env-file")
        .arg(&empty_env)
        .arg("-f")
        .arg(root().join("docker-compose.yml"))
        .arg("config")
        .output()
        .unwrap_or_else(|e| panic!("docker-compose: {e} (bin/test installs it: Debian package docker-compose)"));
    let _ = std::fs::remove_dir_all(&dir);
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// YAML to JSON with the system's PyYAML (python3-yaml, which bin/test installs): the
/// workspace has no YAML parser, and compose v1 prints only YAML.
fn yaml_to_json(yaml: &str) -> Value {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (with python3-yaml)");
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read the resolved compose file");
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(|i| i.as_str().expect("a string").to_string()).collect(),
        Value::String(s) => s.split_whitespace().map(String::from).collect(),
        other => panic!("not a command: {other}"),
    }
}

/// The Procfile process `command` runs, checking any arguments past the Procfile's: only
/// `worker` takes some (`--queues a,b` of known queues, `--concurrency N`). Returns the
/// process name and the queues it serves (all, for a worker without `--queues`).
fn process_of(command: &[String], procfile: &BTreeMap<String, Vec<String>>) -> Result<(String, Vec<String>), String> {
    let (name, base) = procfile
        .iter()
        .filter(|(_, base)| command.starts_with(base))
        .max_by_key(|(_, base)| base.len())
        .ok_or_else(|| format!("`{}` is no Procfile process ({procfile:?})", command.join(" ")))?;
    let mut rest = command[base.len()..].iter();
    let mut queues: Vec<String> = app::jobs::ALL_QUEUES.iter().map(|q| q.to_string()).collect();
    while let Some(arg) = rest.next() {
        match (name.as_str(), arg.as_str(), rest.next()) {
            ("worker", "--queues", Some(list)) => {
                queues = list.split(',').map(str::trim).map(String::from).collect();
                if let Some(q) = queues.iter().find(|q| !app::jobs::ALL_QUEUES.contains(&q.as_str())) {
                    return Err(format!("`{}`: unknown queue {q} (known: {:?})", command.join(" "), app::jobs::ALL_QUEUES));
                }
            }
            ("worker", "--concurrency", Some(n)) if n.parse::<u32>().is_ok() => {}
            _ => return Err(format!("`{}` adds `{arg}` to the Procfile's `{}`", command.join(" "), base.join(" "))),
        }
    }
    Ok((name.clone(), queues))
}

/// Everything wrong with the resolved compose file, one line each.
fn compose_problems(compose: &Value, procfile: &BTreeMap<String, Vec<String>>, table: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let services = compose["services"].as_object().expect("services");
    // App services are those built from our Dockerfile's default (runtime) stage.
    let is_app = |s: &Value| s.get("build").is_some_and(|b| b.get("target").is_none_or(|t| t == "runtime"));
    let mut processes = BTreeSet::new();
    let mut queues = BTreeSet::new();
    let mut release = None;
    for (name, s) in services.iter().filter(|(_, s)| is_app(s)) {
        let Some(command) = s.get("command") else {
            problems.push(format!("{name}: no command (the image's default is not a Procfile process by name)"));
            continue;
        };
        match process_of(&words(command), procfile) {
            Ok((process, served)) => {
                if process == "worker" {
                    queues.extend(served);
                }
                if process == "release" {
                    release = Some(name.clone());
                }
                processes.insert(process);
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
        let env = s["environment"].as_object().cloned().unwrap_or_default();
        for var in env.keys().filter(|v| !table.contains(*v)) {
            problems.push(format!("{name}: sets {var}, which the README's configuration table does not know"));
        }
        for var in ["APP_ENV", "DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL", "MEDIA_ROOT"].iter().chain(REQUIRED) {
            if env.get(*var).is_none() {
                problems.push(format!("{name}: does not set {var}"));
            }
        }
        if env.get("APP_ENV").and_then(Value::as_str) != Some("production") {
            problems.push(format!("{name}: APP_ENV is not production"));
        }
    }
    for process in procfile.keys().filter(|p| !processes.contains(*p)) {
        problems.push(format!("Procfile process {process} runs in no service"));
    }
    for q in app::jobs::ALL_QUEUES.iter().filter(|q| !queues.contains(**q)) {
        problems.push(format!("no worker serves queue {q}"));
    }
    // The release step: once, before the others, which wait for it to finish.
    let waits_for_release = |s: &Value| {
        release.as_ref().is_some_and(|r| s["depends_on"][r]["condition"] == "service_completed_successfully")
    };
    for (name, s) in services {
        if is_app(s) && Some(name) != release.as_ref() && !waits_for_release(s) {
            problems.push(format!("{name}: does not wait for the release step to complete"));
        }
        let check = &s["healthcheck"];
        let disabled = check["disable"] == true || check["test"] == serde_json::json!(["NONE"]);
        if Some(name) == release.as_ref() {
            if s["restart"] != "no" {
                problems.push(format!("{name}: the release step must run once (restart: \"no\")"));
            }
        } else if disabled || check["test"].as_array().is_none_or(|t| t.len() < 2) {
            problems.push(format!("{name}: no health check"));
        }
    }
    // Caddy in front of a scaled web.
    let web: Vec<_> = services.iter().filter(|(_, s)| is_app(s) && s.get("command").is_some_and(|c| words(c) == procfile["web"])).collect();
    if !web.iter().any(|(_, s)| s["deploy"]["replicas"].as_u64().is_some_and(|n| n >= 2)) {
        problems.push("web: not scaled with deploy.replicas (2 or more)".into());
    }
    if web.iter().any(|(_, s)| s.get("ports").is_some()) {
        problems.push("web: publishes a port; only the load balancer should".into());
    }
    match services.get("caddy") {
        Some(c) if c.get("ports").is_some() && web.iter().all(|(n, _)| c["depends_on"][n.as_str()]["condition"] == "service_healthy") => {}
        _ => problems.push("caddy: missing, publishing no port, or not waiting for web to be healthy".into()),
    }
    problems
}

#[test]
fn compose_runs_the_procfile_with_health_checks_and_known_variables() {
    let procfile = procfile();
    let table = config_table();
    let yaml = compose_config(&compose_env()).unwrap_or_else(|e| panic!("docker-compose config failed: {e}"));
    let compose = yaml_to_json(&yaml);
    let problems = compose_problems(&compose, &procfile, &table);
    assert!(problems.is_empty(), "docker-compose.yml:\n  {}", problems.join("\n  "));

    // And the checker itself catches what it is for (a checker that cannot fail proves
    // nothing): a service off the Procfile, an unknown variable, a missing health check.
    let mut broken = compose.clone();
    broken["services"]["worker-media"]["command"] = serde_json::json!(["worker", "--queues", "pictures"]);
    broken["services"]["web"]["environment"]["WEB_THREADS"] = "4".into();
    broken["services"]["redis"].as_object_mut().unwrap().remove("healthcheck");
    let found = compose_problems(&broken, &procfile, &table).join("\n");
    for expected in ["unknown queue pictures", "no worker serves queue media", "WEB_THREADS", "redis: no health check"] {
        assert!(found.contains(expected), "{expected} not reported:\n{found}");
    }
}

#[test]
fn compose_has_no_working_default_for_what_production_requires() {
    let raw = read("docker-compose.yml");
    for var in REQUIRED {
        assert!(raw.contains(&format!("${{{var}:?")), "{var} is not required with ${{{var}:?…}}");
        for default in [format!("${{{var}:-"), format!("${{{var}-"), format!("${{{var}}}")] {
            assert!(!raw.contains(&default), "{var} has a default or an unchecked use: {default}");
        }
        let vars: Vec<_> = compose_env().into_iter().filter(|(k, _)| k != var).collect();
        let stderr = compose_config(&vars).expect_err(&format!("compose resolved without {var}"));
        assert!(stderr.contains(var), "the message names {var}: {stderr}");
    }
}

#[test]
fn app_json_matches_the_procfile_and_the_configuration_table() {
    let procfile = procfile();
    let table = config_table();
    let app: Value = serde_json::from_str(&read("app.json")).expect("app.json is JSON");
    // The Procfile itself, as ../shared/CONTRACT.md fixes it.
    assert_eq!(procfile["web"], ["web", "serve"]);
    assert_eq!(procfile["worker"], ["worker"]);
    assert_eq!(procfile["release"], ["web", "migrate"]);

    let formation = app["formation"].as_object().expect("formation");
    let formed: BTreeSet<&str> = formation.keys().map(String::as_str).collect();
    assert_eq!(formed, BTreeSet::from(["web", "worker"]), "formation: the Procfile's long-running processes");
    for script in app["scripts"].as_object().into_iter().flat_map(|s| s.values()) {
        let command = words(script);
        process_of(&command, &procfile).expect("app.json scripts run Procfile commands");
    }

    let plans: BTreeSet<&str> =
        app["addons"].as_array().expect("addons").iter().map(|a| a["plan"].as_str().or(a.as_str()).expect("a plan")).map(|p| p.split(':').next().unwrap_or(p)).collect();
    for addon in ["heroku-postgresql", "heroku-redis"] {
        assert!(plans.contains(addon), "add-on {addon}: {plans:?}");
    }
    assert!(
        app["buildpacks"].as_array().expect("buildpacks").iter().any(|b| b["url"].as_str().is_some_and(|u| u.contains("rust"))),
        "a Rust buildpack"
    );
    assert!(root().join("RustConfig").is_file(), "the Rust buildpack's RustConfig");

    let env = app["env"].as_object().expect("env");
    for var in env.keys() {
        assert!(table.contains(var), "app.json sets {var}, which the README's configuration table does not know");
    }
    for var in ["DATABASE_URL", "REDIS_URL"] {
        assert!(!env.contains_key(var), "{var} comes from its add-on, not app.json");
    }
    assert_eq!(env["APP_ENV"]["value"], "production");
    assert_eq!(env["SECRET_KEY"]["generator"], "secret");
    assert!(env["SECRET_KEY"].get("value").is_none(), "no fixed SECRET_KEY");
    for var in REQUIRED.iter().filter(|v| **v != "SECRET_KEY") {
        assert_eq!(env[*var]["required"], true, "{var} is required");
        assert!(env[*var].get("value").is_none(), "{var} has no default");
    }
}
