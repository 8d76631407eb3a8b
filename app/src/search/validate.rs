//! What `/search` accepts: a bounded query and an optional tag.

/// Longest query accepted, in characters. Longer ones are refused (422) rather than cut:
/// nobody types 200 characters into a search box, and each word costs index lookups.
pub const QUERY_MAX_CHARS: usize = 200;

/// A search query: trimmed, inner whitespace collapsed, at most [`QUERY_MAX_CHARS`].
/// Any text is otherwise fine: `websearch_to_tsquery` never raises a syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    TooLong { chars: usize },
}

impl QueryError {
    pub fn message(&self) -> String {
        match self {
            QueryError::TooLong { chars } => {
                format!("Searches can be at most {QUERY_MAX_CHARS} characters; this one has {chars}. Try a few distinctive words.")
            }
        }
    }
}

impl SearchQuery {
    pub fn parse(raw: &str) -> Result<SearchQuery, QueryError> {
        // Control characters (and our snippet markers, private-use characters) carry no
        // meaning in a search: spaces.
        let cleaned: String = raw.chars().map(|c| if c.is_control() || crate::search::snippet::is_marker(c) { ' ' } else { c }).collect();
        let q = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
        let chars = q.chars().count();
        if chars > QUERY_MAX_CHARS {
            return Err(QueryError::TooLong { chars });
        }
        Ok(SearchQuery(q))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `tag=` filter: empty means none; otherwise a tag name as stories store them.
pub fn tag(raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match crate::stories::validate::normalize_tags(raw) {
        Ok(tags) if tags.len() == 1 => Ok(tags.into_iter().next()),
        _ => Err("That is not a tag: tags are letters, digits and dashes.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_trimmed_collapsed_and_bounded() {
        assert_eq!(SearchQuery::parse("  red \t\n dragon ").unwrap().as_str(), "red dragon");
        assert!(SearchQuery::parse("   ").unwrap().is_empty());
        assert!(SearchQuery::parse(&"a".repeat(QUERY_MAX_CHARS)).is_ok());
        assert_eq!(SearchQuery::parse(&"é".repeat(QUERY_MAX_CHARS + 1)), Err(QueryError::TooLong { chars: QUERY_MAX_CHARS + 1 }));
        assert_eq!(SearchQuery::parse("a\u{E000}b").unwrap().as_str(), "a b");
    }

    #[test]
    fn tags_are_one_valid_name() {
        assert_eq!(tag(""), Ok(None));
        assert_eq!(tag(" Sci-Fi "), Ok(Some("sci-fi".into())));
        assert!(tag("a,b").is_err());
        assert!(tag("<x>").is_err());
    }
}
