//! `ts_headline` output made safe. PostgreSQL returns the document's own text with our
//! start/stop markers around matches: that text is whatever the writer typed (`<script>`
//! included), so it is escaped here and only our markers become `<mark>` tags.

/// Start and stop of a match in `ts_headline`'s output: private-use characters, removed
/// from the text before it is handed to `ts_headline` (`db::SEARCH_SQL`) and from queries
/// (`validate`), so the only ones in the output are PostgreSQL's.
pub const START: char = '\u{E000}';
pub const STOP: char = '\u{E001}';

pub fn is_marker(c: char) -> bool {
    c == START || c == STOP
}

/// The headline as HTML: escaped text, matches in `<mark>`. An unmatched marker (which
/// PostgreSQL does not produce) is dropped rather than left open.
pub fn to_html(headline: &str) -> String {
    let mut out = String::with_capacity(headline.len() + 32);
    let mut open = false;
    for c in headline.chars() {
        match c {
            START if !open => {
                out.push_str("<mark>");
                open = true;
            }
            STOP if open => {
                out.push_str("</mark>");
                open = false;
            }
            START | STOP => {}
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    if open {
        out.push_str("</mark>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_only_markers_become_marks() {
        let h = format!("a <script>alert('x')</script> & {START}dragon{STOP} <mark>");
        assert_eq!(to_html(&h), "a &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; <mark>dragon</mark> &lt;mark&gt;");
    }

    #[test]
    fn stray_markers_never_leave_a_tag_open() {
        assert_eq!(to_html(&format!("{STOP}a{START}b")), "a<mark>b</mark>");
        assert_eq!(to_html(&format!("{START}{START}a{STOP}{STOP}")), "<mark>a</mark>");
    }
}
