//! An Atom 1.0 (RFC 4287) writer: just the elements our feeds use, every value escaped.
//! Chapter HTML (already sanitised when the chapter was saved) goes into
//! `<content type="html">` as escaped text, which is how RFC 4287 §3.1.1.2 carries HTML.

use chrono::{DateTime, Utc};

use crate::xml::{datetime, escape};

pub struct Person {
    pub name: String,
    /// Absolute URL (the profile page).
    pub uri: Option<String>,
}

pub struct Entry {
    /// Permanent and unique (RFC 4287 §4.2.6): the chapter's absolute URL.
    pub id: String,
    pub title: String,
    pub url: String,
    pub published: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub author: Person,
    pub summary: Option<String>,
    pub content_html: String,
}

pub struct Feed {
    pub id: String,
    pub title: String,
    pub subtitle: Option<String>,
    /// The newest entry's time; for an empty feed something stable (see `pages`).
    pub updated: DateTime<Utc>,
    /// Also the author of entries that name none (§4.1.1: a feed with an author spares
    /// each entry one; ours name theirs anyway).
    pub author: Person,
    pub self_url: String,
    pub alternate_url: String,
    pub entries: Vec<Entry>,
}

fn person(out: &mut String, tag: &str, p: &Person) {
    out.push_str(&format!("<{tag}><name>{}</name>", escape(&p.name)));
    if let Some(uri) = &p.uri {
        out.push_str(&format!("<uri>{}</uri>", escape(uri)));
    }
    out.push_str(&format!("</{tag}>"));
}

pub fn write(feed: &Feed) -> String {
    let mut out = String::with_capacity(1024 + feed.entries.iter().map(|e| e.content_html.len() * 6 / 5 + 512).sum::<usize>());
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    out.push_str(&format!("  <id>{}</id>\n", escape(&feed.id)));
    out.push_str(&format!("  <title>{}</title>\n", escape(&feed.title)));
    if let Some(s) = &feed.subtitle {
        out.push_str(&format!("  <subtitle>{}</subtitle>\n", escape(s)));
    }
    out.push_str(&format!("  <updated>{}</updated>\n  ", datetime(feed.updated)));
    person(&mut out, "author", &feed.author);
    out.push_str(&format!(
        "\n  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>\n  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n",
        escape(&feed.self_url),
        escape(&feed.alternate_url)
    ));
    out.push_str("  <generator>Quire</generator>\n");
    for e in &feed.entries {
        out.push_str("  <entry>\n");
        out.push_str(&format!("    <id>{}</id>\n", escape(&e.id)));
        out.push_str(&format!("    <title>{}</title>\n", escape(&e.title)));
        out.push_str(&format!("    <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n", escape(&e.url)));
        out.push_str(&format!("    <published>{}</published>\n", datetime(e.published)));
        out.push_str(&format!("    <updated>{}</updated>\n    ", datetime(e.updated)));
        person(&mut out, "author", &e.author);
        out.push('\n');
        if let Some(s) = &e.summary {
            out.push_str(&format!("    <summary>{}</summary>\n", escape(s)));
        }
        out.push_str(&format!("    <content type=\"html\">{}</content>\n", escape(&e.content_html)));
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn feed(entries: Vec<Entry>) -> Feed {
        Feed {
            id: "http://q.test/u/ann".into(),
            title: "Ann & co".into(),
            subtitle: None,
            updated: at(1_000),
            author: Person { name: "Ann".into(), uri: Some("http://q.test/u/ann".into()) },
            self_url: "http://q.test/u/ann/feed.atom".into(),
            alternate_url: "http://q.test/u/ann".into(),
            entries,
        }
    }

    #[test]
    fn an_empty_feed_has_the_required_elements() {
        let xml = write(&feed(vec![]));
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
        for needle in [
            "<id>http://q.test/u/ann</id>",
            "<title>Ann &amp; co</title>",
            "<updated>1970-01-01T00:16:40Z</updated>",
            "<author><name>Ann</name><uri>http://q.test/u/ann</uri></author>",
            "<link rel=\"self\" type=\"application/atom+xml\" href=\"http://q.test/u/ann/feed.atom\"/>",
            "<link rel=\"alternate\" type=\"text/html\" href=\"http://q.test/u/ann\"/>",
        ] {
            assert!(xml.contains(needle), "{needle} missing in\n{xml}");
        }
        assert!(!xml.contains("<entry>"));
        assert!(xml.ends_with("</feed>\n"));
    }

    #[test]
    fn entries_escape_titles_and_carry_html_as_escaped_text() {
        let xml = write(&feed(vec![Entry {
            id: "http://q.test/s/1/c/2".into(),
            title: "\"Odd\" <story> — Chapter 2: Fin".into(),
            url: "http://q.test/s/1/c/2".into(),
            published: at(10),
            updated: at(20),
            author: Person { name: "Ann".into(), uri: None },
            summary: Some("a < b".into()),
            content_html: "<p>Hi &amp; <em>bye</em></p>".into(),
        }]));
        assert!(xml.contains("<title>&quot;Odd&quot; &lt;story&gt; — Chapter 2: Fin</title>"), "{xml}");
        assert!(xml.contains("<content type=\"html\">&lt;p&gt;Hi &amp;amp; &lt;em&gt;bye&lt;/em&gt;&lt;/p&gt;</content>"), "{xml}");
        assert!(xml.contains("<published>1970-01-01T00:00:10Z</published>"));
        assert!(xml.contains("<updated>1970-01-01T00:00:20Z</updated>"));
        assert!(xml.contains("<summary>a &lt; b</summary>"));
        assert!(xml.contains("<author><name>Ann</name></author>"));
        assert_eq!(xml.matches("<entry>").count(), 1);
    }
}
