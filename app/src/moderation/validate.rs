//! The moderation forms' free text: a report's or ban's reason, a resolution's note.

/// At most this many characters (the schema's CHECKs say the same).
pub const MAX_TEXT: usize = 1000;

/// A required reason: trimmed, 1 to 1000 characters.
pub fn reason(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("Please say what is wrong.".into());
    }
    bounded(s)
}

/// An optional note: trimmed, at most 1000 characters.
pub fn note(s: &str) -> Result<String, String> {
    bounded(s.trim())
}

fn bounded(s: &str) -> Result<String, String> {
    if s.chars().count() > MAX_TEXT {
        return Err(format!("Please keep it under {MAX_TEXT} characters."));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_required_trimmed_and_bounded() {
        assert!(reason("   ").is_err());
        assert_eq!(reason("  spam \n"), Ok("spam".into()));
        assert!(reason(&"x".repeat(MAX_TEXT + 1)).is_err());
        assert_eq!(reason(&"é".repeat(MAX_TEXT)).map(|r| r.chars().count()), Ok(MAX_TEXT));
        assert_eq!(note(""), Ok(String::new()));
    }
}
