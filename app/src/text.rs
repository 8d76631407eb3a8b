//! Small text helpers shared by the areas (no HTTP, no SQL).

/// The first `max` characters of `s` (characters, not bytes: never splits one).
pub fn prefix_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(super::prefix_chars("héllo", 2), "hé");
        assert_eq!(super::prefix_chars("hi", 10), "hi");
        assert_eq!(super::prefix_chars("", 0), "");
    }
}
