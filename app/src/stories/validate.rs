//! Story and chapter forms: the same limits as the schema's CHECK constraints, with
//! messages a person can act on.

use std::collections::HashMap;

use super::db::StoryRow;
use crate::error::FieldErrors;

pub const TITLE_MAX: usize = 200;
pub const SUMMARY_MAX: usize = 2000;
pub const MAX_TAGS: usize = 10;
pub const CHAPTER_MAX_BYTES: usize = 500_000;

/// A story form's fields, trimmed and parsed.
#[derive(Debug, Default)]
pub struct StoryInput {
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    /// The tags as typed, to show the form again.
    pub tags_raw: String,
}

/// The story form (`title`, `summary`, `tags`) checked against the schema's limits.
pub fn story(fields: &HashMap<String, String>, current: Option<&StoryRow>) -> (StoryInput, FieldErrors) {
    let mut errors = FieldErrors::new();
    // A field left out keeps its current value (the one-button "Publish" form sends
    // only `status`); a field sent empty is validated as empty.
    let get = |name: &str, current: Option<String>| fields.get(name).map(|v| v.trim().to_string()).or(current).unwrap_or_default();
    let title = get("title", current.map(|s| s.title.clone()));
    let summary = get("summary", current.map(|s| s.summary.clone()));
    let tags_raw = get("tags", current.map(|s| s.tags.join(", ")));
    if title.is_empty() {
        errors.insert("title", "Give your story a title.".into());
    } else if title.chars().count() > TITLE_MAX {
        errors.insert("title", format!("Keep the title to {TITLE_MAX} characters."));
    }
    if summary.chars().count() > SUMMARY_MAX {
        errors.insert("summary", format!("Keep the summary to {SUMMARY_MAX} characters."));
    }
    let tags = match normalize_tags(&tags_raw) {
        Ok(t) => t,
        Err(msg) => {
            errors.insert("tags", msg);
            Vec::new()
        }
    };
    (StoryInput { title, summary, tags, tags_raw }, errors)
}

/// A chapter form (`title`, `body`, both trimmed).
pub fn chapter(title: &str, body: &str) -> FieldErrors {
    let mut errors = FieldErrors::new();
    if title.is_empty() {
        errors.insert("chapter_title", "Give the chapter a title.".into());
    } else if title.chars().count() > TITLE_MAX {
        errors.insert("chapter_title", format!("Keep the title to {TITLE_MAX} characters."));
    }
    if body.is_empty() {
        errors.insert("body", "Write something first.".into());
    } else if body.len() > CHAPTER_MAX_BYTES {
        errors.insert("body", "This chapter is too long: split it in two.".into());
    }
    errors
}

/// "Sci-Fi, space opera ,, sci-fi" → ["sci-fi", "space-opera"].
pub fn normalize_tags(raw: &str) -> std::result::Result<Vec<String>, String> {
    let mut tags: Vec<String> = Vec::new();
    for part in raw.split(',') {
        let tag: String = part.trim().to_lowercase().split_whitespace().collect::<Vec<_>>().join("-");
        if tag.is_empty() {
            continue;
        }
        let valid = tag.len() <= 30
            && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && tag.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!("“{tag}” is not a valid tag: use letters, digits and dashes, up to 30 characters."));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(format!("Use at most {MAX_TAGS} tags."));
    }
    Ok(tags)
}
