//! Sitemaps (sitemaps.org 0.9): `/sitemap.xml` is always an index of numbered parts, so
//! a site past 50,000 URLs needs no other shape; each part holds at most [`MAX_URLS`].

use chrono::{DateTime, Utc};

use crate::xml::{datetime, escape};

/// The protocol's limit per file (it also caps a file at 50 MB uncompressed; our URLs
/// are under 200 bytes each with their `lastmod`, so 50,000 stay far below it).
pub const MAX_URLS: i64 = 50_000;

const NS: &str = "http://www.sitemaps.org/schemas/sitemap/0.9";

pub struct Url {
    pub loc: String,
    pub lastmod: Option<DateTime<Utc>>,
}

pub fn urlset(urls: &[Url]) -> String {
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"{NS}\">\n");
    for u in urls {
        out.push_str(&format!("  <url><loc>{}</loc>", escape(&u.loc)));
        if let Some(t) = u.lastmod {
            out.push_str(&format!("<lastmod>{}</lastmod>", datetime(t)));
        }
        out.push_str("</url>\n");
    }
    out.push_str("</urlset>\n");
    out
}

pub fn index(sitemaps: &[String]) -> String {
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sitemapindex xmlns=\"{NS}\">\n");
    for loc in sitemaps {
        out.push_str(&format!("  <sitemap><loc>{}</loc></sitemap>\n", escape(loc)));
    }
    out.push_str("</sitemapindex>\n");
    out
}

/// How many parts of [`MAX_URLS`] `rows` URLs need (at least one, so the index always
/// names the part with the home page).
pub fn parts(rows: i64) -> i64 {
    ((rows + MAX_URLS - 1) / MAX_URLS).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlset_escapes_and_dates() {
        let xml = urlset(&[
            Url { loc: "http://q.test/t/a&b".into(), lastmod: DateTime::from_timestamp(0, 0) },
            Url { loc: "http://q.test/".into(), lastmod: None },
        ]);
        assert!(xml.contains("<url><loc>http://q.test/t/a&amp;b</loc><lastmod>1970-01-01T00:00:00Z</lastmod></url>"), "{xml}");
        assert!(xml.contains("<url><loc>http://q.test/</loc></url>"));
        assert!(xml.contains("<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"));
    }

    #[test]
    fn index_lists_parts() {
        let xml = index(&["http://q.test/sitemaps/site-1.xml".into()]);
        assert!(xml.contains("<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"));
        assert!(xml.contains("<sitemap><loc>http://q.test/sitemaps/site-1.xml</loc></sitemap>"));
    }

    #[test]
    fn parts_round_up_and_never_drop_to_zero() {
        assert_eq!(parts(0), 1);
        assert_eq!(parts(1), 1);
        assert_eq!(parts(MAX_URLS), 1);
        assert_eq!(parts(MAX_URLS + 1), 2);
        assert_eq!(parts(3 * MAX_URLS), 3);
    }
}
