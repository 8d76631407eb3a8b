//! minijinja templates: pages, htmx partials and emails, all under `templates/`.
//!
//! Debug builds read templates from disk on every render, so editing a template shows on
//! the next reload; release builds embed the directory in the binary and parse it once.
//! Autoescaping is on for `.html` (minijinja's default by extension); `.txt` email parts
//! are plain text.

use std::sync::Arc;

use minijinja::{Environment, Value};

type UrlFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub struct Templates {
    inner: Arc<Inner>,
}

struct Inner {
    /// Release builds: parsed once at start-up.
    embedded: Option<Environment<'static>>,
    static_url: UrlFn,
}

#[cfg(not(debug_assertions))]
static EMBEDDED: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../templates");

fn templates_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates")
}

impl Templates {
    /// `static_url` maps a logical asset path (`css/site.css`) to its fingerprinted URL.
    pub fn new(static_url: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> anyhow::Result<Templates> {
        let static_url: UrlFn = Arc::new(static_url);
        let embedded = if cfg!(debug_assertions) { None } else { Some(Self::embedded_env(&static_url)?) };
        Ok(Templates { inner: Arc::new(Inner { embedded, static_url }) })
    }

    #[cfg(not(debug_assertions))]
    fn embedded_env(static_url: &UrlFn) -> anyhow::Result<Environment<'static>> {
        let mut env = base_env(static_url.clone());
        fn walk(env: &mut Environment<'static>, dir: &'static include_dir::Dir<'static>) -> anyhow::Result<()> {
            for file in dir.files() {
                if let (Some(name), Some(src)) = (file.path().to_str(), file.contents_utf8()) {
                    env.add_template_owned(name.to_string(), src.to_string())?;
                }
            }
            for sub in dir.dirs() {
                walk(env, sub)?;
            }
            Ok(())
        }
        walk(&mut env, &EMBEDDED)?;
        Ok(env)
    }

    #[cfg(debug_assertions)]
    fn embedded_env(_: &UrlFn) -> anyhow::Result<Environment<'static>> {
        unreachable!("debug builds read templates from disk")
    }

    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        match &self.inner.embedded {
            Some(env) => env.get_template(name)?.render(ctx),
            None => {
                let mut env = base_env(self.inner.static_url.clone());
                env.set_loader(minijinja::path_loader(templates_dir()));
                env.get_template(name)?.render(ctx)
            }
        }
    }

    /// Renders one named block of a template: the htmx fragment of a page, so a partial
    /// and its page cannot drift apart.
    pub fn render_block(&self, name: &str, block: &str, ctx: Value) -> Result<String, minijinja::Error> {
        match &self.inner.embedded {
            Some(env) => block_of(&env.get_template(name)?, block, ctx),
            None => {
                let mut env = base_env(self.inner.static_url.clone());
                env.set_loader(minijinja::path_loader(templates_dir()));
                block_of(&env.get_template(name)?, block, ctx)
            }
        }
    }
}

/// Evaluates the template (its output discarded) and renders only `block`.
fn block_of(template: &minijinja::Template<'_, '_>, block: &str, ctx: Value) -> Result<String, minijinja::Error> {
    template.render_captured_to(ctx, std::io::sink())?.with_state_mut(|state| state.render_block(block))
}

fn base_env(static_url: UrlFn) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    // Marked safe: fingerprinted URLs are ours, and escaping `/` would only make them ugly.
    env.add_function("static", move |path: &str| -> Result<Value, minijinja::Error> {
        static_url(path).map(Value::from_safe_string).ok_or_else(|| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("no static file {path}"))
        })
    });
    // Regions of a page that differ between logged-in readers: marked only when the page
    // is rendered to be stored (`web::stitched`), nothing otherwise.
    env.add_function("hole", |state: &minijinja::State, name: &str| -> Value {
        let stitching = state.lookup("stitching").is_some_and(|v| v.is_true());
        Value::from_safe_string(if stitching { crate::stitch::marker(name) } else { String::new() })
    });
    env.add_filter("timeago", timeago);
    env.add_filter("truncate", truncate);
    env
}

/// At most `max` characters, cut at a word boundary, with an ellipsis when cut.
fn truncate(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_string();
    }
    let cut: String = value.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map(|(head, _)| head).unwrap_or(&cut);
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

/// "3 minutes ago", "2 days ago", from an RFC 3339 timestamp.
fn timeago(value: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) else { return value.to_string() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        _ => return t.format("%-d %b %Y").to_string(),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}
