//! Logged-in pages from one stored rendering: the page as any plain reader sees it, cut
//! where readers differ, the runs between compressed once (`stitch`).
//!
//! The page is rendered with `stitching` set: the CSRF token is a marker, and the
//! template's `hole("name")` … `hole("/name")` pairs mark regions whose content depends
//! on the reader (their name in the navigation, "Liked", "Following", where they stopped
//! reading). Each request then walks the stored parts: runs are copied as stored, the
//! token is the reader's own, and a region is either kept (the reader is in the neutral
//! state it was rendered in) or replaced by the handler's rendering for this reader.
//!
//! Markers carry a random per-process nonce and a `<`, which autoescaping turns into
//! `&lt;` in anything a user wrote: no text of theirs can open a hole.

use poem::{
    Body, Response,
    http::{StatusCode, header},
};

use crate::{
    cache::Cacheable,
    stitch::{Assembly, Coding, Run, marker_prefix},
    web::compression::Encoding,
};

#[derive(Debug, Clone)]
enum Part {
    /// Text between regions, with the CSRF token in its token places.
    Run(Run),
    /// A region: its name and how many parts after it are its neutral content.
    Region(String, usize),
}

/// A stored page: its runs and regions.
#[derive(Debug, Clone)]
pub struct StitchedPage {
    parts: Vec<Part>,
    size: usize,
}

impl StitchedPage {
    /// Cuts a stitching render at its markers and compresses the runs. None if the
    /// regions do not pair up (a template bug: the page is then rendered per reader).
    pub fn parse(html: &str) -> std::io::Result<Option<StitchedPage>> {
        let prefix = marker_prefix();
        let mut parts = Vec::new();
        let mut open: Vec<(String, usize)> = Vec::new();
        // The current run: its text between tokens.
        let mut run: Vec<&str> = vec![""];
        let flush = |run: &mut Vec<&str>, parts: &mut Vec<Part>| -> std::io::Result<()> {
            if run.len() > 1 || run.iter().any(|t| !t.is_empty()) {
                let texts: Vec<&[u8]> = run.iter().map(|t| t.as_bytes()).collect();
                parts.push(Part::Run(Run::new(&texts)?));
            }
            *run = vec![""];
            Ok(())
        };
        let mut rest = html;
        loop {
            let (text, after) = match rest.find(&prefix) {
                Some(i) => (&rest[..i], Some(&rest[i + prefix.len()..])),
                None => (rest, None),
            };
            // Adjacent texts of one run are one slice of `html` only when nothing was cut
            // between them, which is the case here: the run's last text grows.
            if let Some(last) = run.last_mut() {
                *last = if last.is_empty() { text } else { &html[offset(html, last)..offset(html, text) + text.len()] };
            }
            let Some(after) = after else { break };
            let Some(end) = after.find('>') else { return Ok(None) };
            let name = &after[..end];
            rest = &after[end + 1..];
            if name == "csrf" {
                run.push("");
            } else if let Some(closing) = name.strip_prefix('/') {
                flush(&mut run, &mut parts)?;
                match open.pop() {
                    Some((n, at)) if n == closing => {
                        let len = parts.len() - at - 1;
                        parts[at] = Part::Region(n, len);
                    }
                    _ => return Ok(None),
                }
            } else {
                flush(&mut run, &mut parts)?;
                open.push((name.to_string(), parts.len()));
                parts.push(Part::Region(name.to_string(), 0));
            }
        }
        flush(&mut run, &mut parts)?;
        if !open.is_empty() {
            return Ok(None);
        }
        Ok(Some(StitchedPage { parts, size: html.len() }))
    }

    /// The body for one reader: `region(name)` is None to keep the neutral content, or
    /// the reader's own HTML. None if `csrf` is not a token's length.
    pub fn assemble(&self, coding: Coding, csrf: &str, mut region: impl FnMut(&str) -> Option<String>) -> Option<Vec<u8>> {
        let hint = match coding {
            Coding::Identity => self.size,
            _ => self.size / 4,
        };
        let mut asm = Assembly::new(coding, hint);
        let mut i = 0;
        while i < self.parts.len() {
            match &self.parts[i] {
                Part::Run(r) => {
                    if !asm.run(r, csrf) {
                        return None;
                    }
                }
                Part::Region(name, len) => {
                    if let Some(html) = region(name) {
                        asm.text(html.as_bytes());
                        i += len;
                    }
                }
            }
            i += 1;
        }
        Some(asm.finish())
    }

    /// The response for one reader; None if `csrf` is not a token's length (the caller
    /// renders the page then).
    pub fn respond(&self, encoding: Encoding, csrf: &str, region: impl FnMut(&str) -> Option<String>) -> Option<Response> {
        let (coding, name) = match encoding {
            Encoding::Brotli => (Coding::Brotli, Some("br")),
            Encoding::Gzip => (Coding::Gzip, Some("gzip")),
            Encoding::Identity => (Coding::Identity, None),
        };
        let body = self.assemble(coding, csrf, region)?;
        let mut b = Response::builder()
            .status(StatusCode::OK)
            .content_type("text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::VARY, "accept-encoding");
        if let Some(n) = name {
            b = b.header(header::CONTENT_ENCODING, n);
        }
        Some(b.body(Body::from_vec(body)))
    }
}

/// Where `part` (a slice of `whole`) starts in it.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

impl Cacheable for StitchedPage {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight() + 64);
        out.extend_from_slice(&(self.size as u32).to_le_bytes());
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for part in &self.parts {
            match part {
                Part::Run(r) => {
                    out.push(0);
                    r.encode_into(&mut out);
                }
                Part::Region(name, len) => {
                    out.push(2);
                    out.push(name.len().min(255) as u8);
                    out.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
                    out.extend_from_slice(&(*len as u32).to_le_bytes());
                }
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut rest = bytes;
        let u32_ = |rest: &mut &[u8]| -> Option<usize> {
            let v = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            *rest = &rest[4..];
            Some(v)
        };
        let size = u32_(&mut rest)?;
        let n = u32_(&mut rest)?;
        let mut parts = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let (&tag, tail) = rest.split_first()?;
            rest = tail;
            parts.push(match tag {
                0 => Part::Run(Run::decode_from(&mut rest)?),
                2 => {
                    let (&len, tail) = rest.split_first()?;
                    let name = std::str::from_utf8(tail.get(..len as usize)?).ok()?.to_string();
                    rest = &tail[len as usize..];
                    Part::Region(name, u32_(&mut rest)?)
                }
                _ => return None,
            });
        }
        // Every region must end inside the page.
        let ok = parts.iter().enumerate().all(|(i, p)| !matches!(p, Part::Region(_, len) if i + len >= parts.len()));
        (ok && rest.is_empty()).then_some(StitchedPage { parts, size })
    }

    fn weight(&self) -> usize {
        self.parts
                .iter()
                .map(|p| match p {
                    Part::Run(r) => r.weight(),
                    _ => 16,
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::{csrf_marker, marker};

    fn page() -> String {
        format!(
            "<body x='{c}'>{n}NAV{ne}<main>{l}<form>like{c}</form>{le}<p>text</p>{e}{ee}</main>",
            c = csrf_marker(),
            n = marker("nav"),
            ne = marker("/nav"),
            l = marker("like"),
            le = marker("/like"),
            e = marker("empty"),
            ee = marker("/empty"),
        )
    }

    #[test]
    fn regions_are_kept_or_replaced_and_the_token_is_the_readers() {
        let p = StitchedPage::parse(&page()).unwrap().unwrap();
        let token = "T".repeat(crate::stitch::TOKEN_LEN);
        let body = p.assemble(Coding::Identity, &token, |name| match name {
            "nav" => Some("<nav>alice</nav>".into()),
            "empty" => Some("<p>filled</p>".into()),
            _ => None,
        });
        assert_eq!(
            String::from_utf8(body.unwrap()).unwrap(),
            format!("<body x='{token}'><nav>alice</nav><main><form>like{token}</form><p>text</p><p>filled</p></main>")
        );
        let kept = p.assemble(Coding::Identity, &token, |_| None).unwrap();
        assert_eq!(String::from_utf8(kept).unwrap(), format!("<body x='{token}'>NAV<main><form>like{token}</form><p>text</p></main>"));
        assert!(p.assemble(Coding::Brotli, "short", |_| None).is_none(), "a token of another length");
    }

    #[test]
    fn unpaired_regions_and_foreign_markers_are_refused_or_ignored() {
        assert!(StitchedPage::parse(&format!("a{}b", marker("nav"))).unwrap().is_none());
        assert!(StitchedPage::parse(&format!("a{}b", marker("/nav"))).unwrap().is_none());
        // A marker with another nonce (someone's text) is just text.
        let other = "<q-hole-0000:csrf>";
        let p = StitchedPage::parse(other).unwrap().unwrap();
        assert_eq!(p.assemble(Coding::Identity, "T", |_| None).unwrap(), other.as_bytes());
    }

    #[test]
    fn a_stored_page_decodes_to_itself() {
        let p = StitchedPage::parse(&page()).unwrap().unwrap();
        let back = StitchedPage::decode(&p.encode()).unwrap();
        let f = |name: &str| (name == "like").then(|| "L".to_string());
        let token = "T".repeat(crate::stitch::TOKEN_LEN);
        assert_eq!(back.assemble(Coding::Identity, &token, f), p.assemble(Coding::Identity, &token, f));
        assert!(StitchedPage::decode(&p.encode()[..20]).is_none());
    }
}
