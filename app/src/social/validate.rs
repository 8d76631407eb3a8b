//! Comment form rules. The `comments_body_length` CHECK repeats the length rule.

use crate::error::FieldErrors;

pub const COMMENT_MAX_CHARS: usize = 5000;

/// The comment as submitted: its trimmed text and the comment it answers, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentInput {
    pub body: String,
    pub parent_id: Option<i64>,
}

/// Checks the `body` and optional `parent_id` fields. A `parent_id` that is not a
/// positive number is a field error (422), like one that names no comment.
pub fn comment(body: &str, parent_id: &str) -> (CommentInput, FieldErrors) {
    let mut errors = FieldErrors::new();
    let body = body.trim().to_string();
    let chars = body.chars().count();
    if chars == 0 {
        errors.insert("body", "Write something before posting.".into());
    } else if chars > COMMENT_MAX_CHARS {
        errors.insert("body", format!("A comment can be at most {COMMENT_MAX_CHARS} characters; this one has {chars}."));
    }
    let parent_id = match parent_id.trim() {
        "" => None,
        s => match s.parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                errors.insert("parent_id", "That is not a comment you can reply to.".into());
                None
            }
        },
    };
    (CommentInput { body, parent_id }, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_trimmed_and_bounded_in_characters() {
        let (input, errors) = comment("  hi  ", "");
        assert!(errors.is_empty());
        assert_eq!(input, CommentInput { body: "hi".into(), parent_id: None });
        assert!(comment("   ", "").1.contains_key("body"));
        // 5000 characters of two bytes each pass; one more does not.
        assert!(comment(&"é".repeat(5000), "").1.is_empty());
        assert!(comment(&"é".repeat(5001), "").1.contains_key("body"));
    }

    #[test]
    fn parent_must_be_a_positive_number() {
        assert_eq!(comment("x", "12").0.parent_id, Some(12));
        for bad in ["abc", "-1", "0", "1.5", "99999999999999999999"] {
            let (input, errors) = comment("x", bad);
            assert!(errors.contains_key("parent_id"), "{bad}");
            assert_eq!(input.parent_id, None);
        }
    }
}
