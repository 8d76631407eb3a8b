//! Markdown for chapters (and any other user text rendered as rich text): CommonMark
//! with tables, strikethrough and footnotes, rendered by pulldown-cmark and then
//! sanitized by ammonia with a strict allowlist.
//!
//! The output of [`render`] is safe to insert unescaped into a page (minijinja:
//! `{{ chapter_html | safe }}`), and only that output: never mark the Markdown source
//! itself safe. What survives:
//!
//! - text elements: `p br hr h1–h6 blockquote pre code em strong del s b i u small mark q
//!   cite kbd abbr sub sup span ul ol li table thead tbody tr th td div`;
//! - links (`a href title`) to `http:`, `https:`, `mailto:` and relative URLs only, each
//!   with `rel="nofollow ugc noopener noreferrer"`;
//! - `ol start` (digits only), `th/td align` (`left`, `center`, `right`: the Markdown
//!   table alignment, which pulldown-cmark writes as a `style` we do not allow);
//! - footnotes: ids are always prefixed `fn-` (so user ids cannot clobber the page's
//!   own ids), and the classes `footnote-definition`, `footnote-reference`,
//!   `footnote-definition-label`.
//!
//! Everything else goes: `script`, `style`, `iframe`, `object`, `embed`, `form`, `input`,
//! `svg`, `math` and the like (the first of these with their content), every `on*`
//! attribute, every `style` attribute, comments, and images. Chapters are text, and the
//! Content-Security-Policy blocks external images anyway, so a Markdown image
//! `![alt](url)` becomes a link to `url` whose text is `alt` (just the alt text inside
//! another link).

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// The `rel` every link gets: user links earn no ranking, and the target page gets no
/// `window.opener` and no referrer.
pub const LINK_REL: &str = "nofollow ugc noopener noreferrer";

/// Prefix of every `id` in rendered output (footnotes use `fn-<label>`).
pub const ID_PREFIX: &str = "fn-";

const TAGS: &[&str] = &[
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "em", "strong", "del", "s",
    "b", "i", "u", "small", "mark", "q", "cite", "kbd", "abbr", "sub", "sup", "span", "ul", "ol", "li", "a",
    "table", "thead", "tbody", "tr", "th", "td", "div",
];

/// Removed together with everything inside them (the rest are unwrapped: the tag goes,
/// its text stays, escaped).
const CLEAN_CONTENT_TAGS: &[&str] = &[
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "template",
    "noscript", "noembed", "noframes", "textarea", "select", "xmp", "title",
];

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::empty();
    b.tags(TAGS.iter().copied().collect())
        .clean_content_tags(CLEAN_CONTENT_TAGS.iter().copied().collect())
        .generic_attributes(HashSet::new())
        .generic_attribute_prefixes(HashSet::new())
        .tag_attributes(HashMap::from([
            ("a", HashSet::from(["href", "title"])),
            ("abbr", HashSet::from(["title"])),
            ("ol", HashSet::from(["start"])),
            ("div", HashSet::from(["id"])),
        ]))
        .tag_attribute_values(HashMap::from([
            ("th", HashMap::from([("align", HashSet::from(["left", "center", "right"]))])),
            ("td", HashMap::from([("align", HashSet::from(["left", "center", "right"]))])),
        ]))
        .allowed_classes(HashMap::from([
            ("div", HashSet::from(["footnote-definition"])),
            ("sup", HashSet::from(["footnote-reference", "footnote-definition-label"])),
        ]))
        .id_prefix(Some(ID_PREFIX));
    links_and_lists(&mut b);
    b
});

/// What chapters and comments share: list numbers only as plain digits, links only to
/// http(s) and mail (relative ones kept) with `LINK_REL`, and no HTML comments.
fn links_and_lists(b: &mut ammonia::Builder<'static>) {
    b.attribute_filter(|_element, attribute, value| match attribute {
        "start" if value.len() <= 9 && value.bytes().all(|b| b.is_ascii_digit()) => Some(value.into()),
        "start" => None,
        _ => Some(value.into()),
    })
    .url_schemes(HashSet::from(["http", "https", "mailto"]))
    .url_relative(ammonia::UrlRelative::PassThrough)
    .link_rel(Some(LINK_REL))
    .strip_comments(true);
}

/// What comments keep: emphasis, links, code, quotes and lists. No headings (they become
/// paragraphs), no tables, footnotes or images (an image becomes a link to it, as in
/// chapters), and raw HTML is shown as the text it is.
const COMMENT_TAGS: &[&str] = &["p", "br", "blockquote", "pre", "code", "em", "strong", "del", "s", "ul", "ol", "li", "a"];

static COMMENT_SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::empty();
    b.tags(COMMENT_TAGS.iter().copied().collect())
        .clean_content_tags(CLEAN_CONTENT_TAGS.iter().copied().collect())
        .generic_attributes(HashSet::new())
        .generic_attribute_prefixes(HashSet::new())
        .tag_attributes(HashMap::from([("a", HashSet::from(["href", "title"])), ("ol", HashSet::from(["start"]))]));
    links_and_lists(&mut b);
    b
});

/// A comment's Markdown → sanitised HTML, safe to embed as is (see [`COMMENT_TAGS`]).
pub fn render_comment(src: &str) -> String {
    let mut link_depth = 0usize;
    let events = Parser::new_ext(src, Options::ENABLE_STRIKETHROUGH).filter_map(|event| {
        Some(match event {
            Event::Start(Tag::Heading { .. }) => Event::Start(Tag::Paragraph),
            Event::End(TagEnd::Heading(_)) => Event::End(TagEnd::Paragraph),
            // Typed HTML is text in a comment: shown (escaped), never interpreted.
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            Event::Rule => return None,
            other => images_as_links(other, &mut link_depth),
        })
    });
    let mut html = String::with_capacity(src.len() + src.len() / 4);
    pulldown_cmark::html::push_html(&mut html, events);
    COMMENT_SANITIZER.clean(&html).to_string()
}

/// Chapters and comments show no images: an image becomes a link to it (with its alt
/// text), or just its alt text when it is already inside a link (a link in a link is not
/// HTML). `depth` counts the links and images open around the event.
fn images_as_links<'a>(event: Event<'a>, depth: &mut usize) -> Event<'a> {
    match event {
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            *depth += 1;
            Event::Start(Tag::Link { link_type, dest_url, title, id })
        }
        Event::End(TagEnd::Link) => {
            *depth = depth.saturating_sub(1);
            Event::End(TagEnd::Link)
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            *depth += 1;
            if *depth > 1 { Event::Text(CowStr::Borrowed("")) } else { Event::Start(Tag::Link { link_type, dest_url, title, id }) }
        }
        Event::End(TagEnd::Image) => {
            *depth = depth.saturating_sub(1);
            if *depth > 0 { Event::Text(CowStr::Borrowed("")) } else { Event::End(TagEnd::Link) }
        }
        other => other,
    }
}

/// The first `max` characters of `s` (not bytes): a notification's excerpt.
pub fn excerpt(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_FOOTNOTES
}

/// Markdown source → sanitized HTML, safe to embed in a page as is.
pub fn render(src: &str) -> String {
    let mut link_depth = 0usize;
    let events = Parser::new_ext(src, options()).map(|event| match event {
        Event::FootnoteReference(name) => Event::FootnoteReference(format!("{ID_PREFIX}{name}").into()),
        Event::Start(Tag::FootnoteDefinition(name)) => {
            Event::Start(Tag::FootnoteDefinition(format!("{ID_PREFIX}{name}").into()))
        }
        // Task-list checkboxes are `<input>`s: show them as text instead.
        Event::TaskListMarker(done) => Event::Text(if done { "[x] " } else { "[ ] " }.into()),
        other => images_as_links(other, &mut link_depth),
    });
    let mut html = String::with_capacity(src.len() + src.len() / 4);
    pulldown_cmark::html::push_html(&mut html, events);
    // Table alignment: pulldown-cmark writes exactly these; `align` is allowed, `style` not.
    let html = html
        .replace(" style=\"text-align: left\">", " align=\"left\">")
        .replace(" style=\"text-align: center\">", " align=\"center\">")
        .replace(" style=\"text-align: right\">", " align=\"right\">");
    SANITIZER.clean(&html).to_string()
}

/// Words of the rendered text (what a reader sees, not the markup): runs of letters or
/// digits separated by whitespace, with each CJK ideograph or kana counted as a word.
/// Footnote numbers and other superscripts are not counted.
pub fn word_count(src: &str) -> u32 {
    count_words_in_html(&render(src))
}

/// [`render`] and [`word_count`] in one pass, for saving a chapter.
pub fn render_with_word_count(src: &str) -> (String, u32) {
    let html = render(src);
    let words = count_words_in_html(&html);
    (html, words)
}

const INLINE_TAGS: &[&str] = &[
    "a", "em", "strong", "del", "s", "b", "i", "u", "small", "mark", "q", "cite", "kbd", "abbr", "sub", "sup",
    "span", "code",
];

/// Counts words in sanitized HTML (as produced by [`render`]: well-formed, every `<` in
/// text escaped, attribute values double-quoted).
fn count_words_in_html(html: &str) -> u32 {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    let mut sup_depth = 0usize;
    while let Some(lt) = rest.find('<') {
        if sup_depth == 0 {
            text.push_str(&rest[..lt]);
        }
        let tag_start = &rest[lt + 1..];
        // The tag ends at the first `>` outside a quoted attribute value.
        let mut quoted = false;
        let mut end = tag_start.len();
        for (i, c) in tag_start.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let tag = &tag_start[..end];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name == "sup" {
            if closing { sup_depth = sup_depth.saturating_sub(1) } else { sup_depth += 1 }
        }
        if !INLINE_TAGS.contains(&name.as_str()) {
            text.push(' ');
        }
        rest = tag_start.get(end + 1..).unwrap_or("");
    }
    if sup_depth == 0 {
        text.push_str(rest);
    }
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    count_words(&text)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x2FA1F) // extensions B–F, compatibility supplement
}

fn count_words(text: &str) -> u32 {
    let mut count = 0u32;
    for token in text.split_whitespace() {
        let mut in_word = false;
        for c in token.chars() {
            if is_cjk(c) {
                count = count.saturating_add(1);
                in_word = false;
            } else if c.is_alphanumeric() && !in_word {
                count = count.saturating_add(1);
                in_word = true;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_keep_emphasis_links_code_quotes_and_lists() {
        let html = render_comment("*a* **b** `c` [d](https://example.com)\n\n> q\n\n- one\n- two\n\n```\nx < y\n```");
        for want in ["<em>a</em>", "<strong>b</strong>", "<code>c</code>", "<blockquote>", "<li>one</li>", "x &lt; y"] {
            assert!(html.contains(want), "{want} in {html}");
        }
        assert!(html.contains("<a href=\"https://example.com\" rel=\"nofollow ugc noopener noreferrer\">d</a>"), "{html}");
    }

    #[test]
    fn comments_drop_headings_images_and_html() {
        let html = render_comment("# Big\n\n![alt](https://e.com/i.png)\n\n<script>alert(1)</script><b onclick=x>hi</b>\n\n[j](javascript:alert(1))\n\n---");
        assert!(!html.contains("<h1") && html.contains("<p>Big</p>"), "{html}");
        assert!(!html.contains("<img") && html.contains(">alt</a>"), "{html}");
        assert!(!html.contains("<script") && html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<b") && !html.contains("onclick=x>"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("<hr"), "{html}");
    }

    #[test]
    fn excerpt_counts_characters() {
        assert_eq!(excerpt("héllo", 2), "hé");
        assert_eq!(excerpt("ab", 280), "ab");
    }

    #[test]
    fn counts_words_not_markup() {
        assert_eq!(count_words("don't stop — well-known 1,000"), 4);
        assert_eq!(count_words("中文abc"), 3);
        assert_eq!(count_words_in_html("<p>one <em>two</em></p>\n<p>three<sup class=\"footnote-reference\"><a href=\"#fn-a\">1</a></sup></p>"), 3);
        assert_eq!(count_words_in_html("<p><a href=\"/a>b\" rel=\"x\">link</a> &amp; text</p>"), 2);
        assert_eq!(count_words_in_html("<p>a</p><p>b</p>"), 2);
    }
}
