//! The little XML our writers need (Atom feeds, sitemaps, SVG charts): escaping text and
//! attribute values, and the one date format.

/// Escapes `s` for XML text or a double- or single-quoted attribute. Characters XML 1.0
/// forbids outright (C0 controls but tab, newline and carriage return; U+FFFE, U+FFFF)
/// are dropped: a single one would make the whole document unreadable to a parser,
/// and stored text (a chapter pasted from elsewhere) may carry them.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// RFC 3339 in UTC with whole seconds (`2026-12-02T13:06:10Z`): what Atom's date
/// constructs and the sitemap's `lastmod` (W3C datetime) both accept.
pub fn datetime(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">Tom & 'Jerry'</a>"#), "&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;");
    }

    #[test]
    fn drops_characters_xml_forbids_and_keeps_whitespace() {
        assert_eq!(escape("a\u{0}b\u{1b}c\td\ne\u{FFFF}"), "abc\td\ne");
        assert_eq!(escape("é — 🙂"), "é — 🙂");
    }

    #[test]
    fn datetimes_are_utc_with_z() {
        let t = chrono::DateTime::from_timestamp(1_764_680_770, 123).unwrap();
        assert_eq!(datetime(t), "2025-12-02T13:06:10Z");
    }
}
