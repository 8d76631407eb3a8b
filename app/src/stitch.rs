//! Bodies assembled from stored pieces and per-request text, in identity, gzip or brotli,
//! without compressing anything on the way out but the per-request text's framing.
//!
//! A page that is the same for every logged-in reader but for a few spots (their CSRF
//! token, their name in the navigation, whether they liked the story) is rendered once
//! with those spots cut out; each piece between them is compressed once, when stored.
//! A request then concatenates compressed pieces and the reader's own text:
//!
//! - **gzip**: every piece is raw deflate ending in a sync flush (so it ends on a byte
//!   boundary and never refers to data before itself); per-request text goes in as
//!   *stored* deflate blocks (5 bytes of framing, no compression); the CRC-32 of the whole
//!   is combined from the pieces' stored CRCs and the text's.
//! - **brotli**: every piece is a "catable" brotli stream (byte-aligned, no references
//!   before its start, no static dictionary) and per-request text an uncompressed
//!   meta-block; `brotli::concat::BroCatli` splices the streams into one.
//! - **identity**: plain concatenation.
//!
//! The per-request text is a few hundred bytes among tens of kilobytes, so the bodies stay
//! within a few per cent of compressing the whole page, at a small fraction of the CPU.

use std::sync::OnceLock;

use brotli::concat::{BroCatli, BroCatliResult};

/// Brotli's window for stored pieces (and the assembled stream): 4 MiB, like whole pages.
const LGWIN: u8 = 22;
/// Quality for stored pieces: compressed once, sent many times (as `web::page_cache`).
const BROTLI_QUALITY: i32 = 5;
const GZIP_LEVEL: u32 = 6;

/// Where a stitching render is cut (`web::stitched`): markers with a random per-process
/// nonce and a `<`, which autoescaping writes as `&lt;` in anything a user wrote.
fn nonce() -> &'static str {
    static NONCE: OnceLock<String> = OnceLock::new();
    NONCE.get_or_init(|| crate::tokens::random_token().chars().filter(char::is_ascii_alphanumeric).take(20).collect())
}

pub fn marker_prefix() -> String {
    format!("<q-hole-{}:", nonce())
}

/// What the templates' `hole(name)` writes in a stitching render.
pub fn marker(name: &str) -> String {
    format!("{}{name}>", marker_prefix())
}

/// The CSRF token's stand-in in a stitching render.
pub fn csrf_marker() -> String {
    marker("csrf")
}

/// How a body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Brotli,
}

/// A stored run of a page, kept three ways.
#[derive(Debug, Clone)]
pub struct Piece {
    pub raw: Vec<u8>,
    /// Raw deflate, ending in a sync flush.
    pub deflate: Vec<u8>,
    /// A catable brotli stream.
    pub brotli: Vec<u8>,
    pub crc: u32,
}

impl Piece {
    pub fn new(raw: &[u8]) -> std::io::Result<Piece> {
        Ok(Piece { raw: raw.to_vec(), deflate: deflate_synced(raw)?, brotli: brotli_catable(raw)?, crc: crc32fast::hash(raw) })
    }

    /// For a run's part when the run has its patched brotli stream: `brotli` left empty.
    fn without_brotli(raw: &[u8]) -> std::io::Result<Piece> {
        Ok(Piece { raw: raw.to_vec(), deflate: deflate_synced(raw)?, brotli: Vec::new(), crc: crc32fast::hash(raw) })
    }

    pub fn weight(&self) -> usize {
        self.raw.len() + self.deflate.len() + self.brotli.len()
    }

    /// Length-prefixed fields, for the shared cache.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for part in [&self.raw, &self.deflate, &self.brotli] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.crc.to_le_bytes());
    }

    /// The inverse of `encode_into`, advancing `bytes`.
    pub fn decode_from(bytes: &mut &[u8]) -> Option<Piece> {
        let raw = take_prefixed(bytes)?;
        let deflate = take_prefixed(bytes)?;
        let brotli = take_prefixed(bytes)?;
        let crc = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        *bytes = &bytes[4..];
        // A piece that does not hash to its CRC was not written by us: refuse it.
        (crc32fast::hash(&raw) == crc).then_some(Piece { raw, deflate, brotli, crc })
    }
}

/// Length of the CSRF tokens a `Run` carries (`sessions::csrf_token_for`: an HMAC-SHA256
/// in unpadded base64url).
pub const TOKEN_LEN: usize = 43;

/// What stands for the token while a run is compressed: bytes that never occur in UTF-8
/// (0xC0, 0xC1, 0xF5–0xFF), in an order with no repeats, so nothing else in the page can
/// refer to them and each later token can only be a copy of the first.
const PLACEHOLDER: [u8; TOKEN_LEN] = {
    let alphabet = [0xC0u8, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF];
    let mut out = [0u8; TOKEN_LEN];
    let mut i = 0;
    while i < TOKEN_LEN {
        // Pairs (a, b) with b - a stepping through 1..=12: no pair of bytes repeats.
        out[i] = alphabet[(i + (i / 13) * (i % 13 + 1)) % 13];
        i += 1;
    }
    out
};

/// A run of a page between two regions, with the reader's CSRF token at `parts.len() - 1`
/// places (between its parts).
///
/// For brotli the run is one stream, compressed once with the placeholder in the token's
/// places: the first as an uncompressed meta-block (written by us: the encoder had only
/// literals for it, so nothing in its state differs), the later ones as the copies of it
/// the encoder chose. A request writes its token over the uncompressed bytes (`patch`) and
/// every copy repeats it. Quality 4 has no literal context modeling, so no later symbol
/// depends on the bytes patched; the stream is decoded once with another token when it
/// is made, and used only if that gives the run back exactly — otherwise (`patch` None)
/// each part is a stream of its own, as in `Piece`.
#[derive(Debug, Clone)]
pub struct Run {
    pub parts: Vec<Piece>,
    /// One catable brotli stream for the whole run, and where the token goes in it.
    pub patched: Option<(Vec<u8>, usize)>,
}

impl Run {
    pub fn new(parts: &[&[u8]]) -> std::io::Result<Run> {
        let patched = if parts.len() > 1 { brotli_patched(parts)? } else { None };
        // With the patched stream, brotli requests never read the parts' own streams:
        // not made, not stored (a fifth of a stored logged-in story page, in L1 and L2).
        let piece = |p: &&[u8]| if patched.is_some() { Piece::without_brotli(p) } else { Piece::new(p) };
        let pieces = parts.iter().map(piece).collect::<std::io::Result<Vec<_>>>()?;
        Ok(Run { parts: pieces, patched })
    }

    pub fn weight(&self) -> usize {
        self.parts.iter().map(Piece::weight).sum::<usize>() + self.patched.as_ref().map_or(0, |(b, _)| b.len())
    }

    pub fn raw_len(&self) -> usize {
        self.parts.iter().map(|p| p.raw.len()).sum::<usize>() + (self.parts.len() - 1) * TOKEN_LEN
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for p in &self.parts {
            p.encode_into(out);
        }
        match &self.patched {
            Some((b, at)) => {
                out.extend_from_slice(&(*at as u32).to_le_bytes());
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }

    pub fn decode_from(bytes: &mut &[u8]) -> Option<Run> {
        let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        *bytes = &bytes[4..];
        if n == 0 || n > 100_000 {
            return None;
        }
        let mut parts = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            parts.push(Piece::decode_from(bytes)?);
        }
        let at = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        *bytes = &bytes[4..];
        let patched = if at == u32::MAX {
            None
        } else {
            let b = take_prefixed(bytes)?;
            if at as usize + TOKEN_LEN > b.len() {
                return None;
            }
            Some((b, at as usize))
        };
        Some(Run { parts, patched })
    }
}

/// The run as one catable brotli stream with the placeholder for each token (see `Run`),
/// and the offset of the first token's bytes; None if the encoder did not make every
/// later token a copy of the first.
fn brotli_patched(parts: &[&[u8]]) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    use std::io::Write;
    let total: usize = parts.iter().map(|p| p.len()).sum::<usize>() + (parts.len() - 1) * TOKEN_LEN;
    let params = brotli::enc::BrotliEncoderParams {
        quality: 4,
        lgwin: LGWIN as i32,
        size_hint: total,
        catable: true,
        appendable: true,
        byte_align: true,
        use_dictionary: false,
        ..Default::default()
    };
    let mut w = brotli::CompressorWriter::with_params(Vec::with_capacity(total / 3 + 64), 4096, &params);
    let mut at = None;
    for (i, part) in parts.iter().enumerate() {
        if i == 1 {
            // The first token: flush, let the encoder see the placeholder (its window and
            // positions must include it), then put our own uncompressed meta-block in
            // place of what it wrote for it.
            w.flush()?;
            let before = w.get_ref().len();
            w.write_all(&PLACEHOLDER)?;
            w.flush()?;
            let out = w.get_mut();
            out.truncate(before);
            let mlen1 = (TOKEN_LEN - 1) as u32;
            // ISLAST=0, MNIBBLES=4 (00), MLEN-1 (16 bits), ISUNCOMPRESSED=1: 20 bits.
            let header = (mlen1 << 3) | (1 << 19);
            out.extend_from_slice(&[header as u8, (header >> 8) as u8, (header >> 16) as u8]);
            at = Some(out.len());
            out.extend_from_slice(&PLACEHOLDER);
        } else if i > 1 {
            w.write_all(&PLACEHOLDER)?;
        }
        w.write_all(part)?;
    }
    let mut stream = w.into_inner();
    let Some(at) = at else { return Ok(None) };
    // Proof, once: with another token in its place, the stream is the run.
    let probe = [b'Z'; TOKEN_LEN];
    stream[at..at + TOKEN_LEN].copy_from_slice(&probe);
    let mut expected = Vec::with_capacity(total);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            expected.extend_from_slice(&probe);
        }
        expected.extend_from_slice(part);
    }
    let mut got = Vec::with_capacity(total);
    let ok = std::io::Read::read_to_end(&mut brotli::Decompressor::new(&stream[..], 4096), &mut got).is_ok() && got == expected;
    Ok(ok.then_some((stream, at)))
}

fn take_prefixed(bytes: &mut &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let v = bytes.get(4..4 + len)?.to_vec();
    *bytes = &bytes[4 + len..];
    Some(v)
}

fn deflate_synced(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    // A sync flush ends on a byte boundary (with an empty stored block) and leaves the
    // stream open: the final block must come only once, at the very end of the body.
    let mut z = flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    let mut out = Vec::with_capacity(raw.len() / 2 + 64);
    loop {
        let consumed = z.total_in() as usize;
        let status = z
            .compress_vec(&raw[consumed..], &mut out, flate2::FlushCompress::Sync)
            .map_err(std::io::Error::other)?;
        let done = z.total_in() as usize == raw.len() && out.len() < out.capacity();
        if done || status == flate2::Status::StreamEnd {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

fn brotli_catable(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: LGWIN as i32,
        size_hint: raw.len(),
        catable: true,
        appendable: true,
        byte_align: true,
        use_dictionary: false,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(raw.len() / 3 + 16);
    let mut input = raw;
    brotli::BrotliCompress(&mut input, &mut out, &params)?;
    Ok(out)
}

/// One response body being put together.
pub struct Assembly {
    coding: Coding,
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    /// Uncompressed bytes so far (gzip's ISIZE).
    len: u64,
    cat: Option<BroCatli>,
    /// Scratch for one uncompressed brotli stream.
    scratch: Vec<u8>,
}

impl Assembly {
    pub fn new(coding: Coding, size_hint: usize) -> Assembly {
        let mut out = Vec::with_capacity(size_hint + 64);
        if coding == Coding::Gzip {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        }
        let cat = (coding == Coding::Brotli).then(|| BroCatli::new_with_window_size(LGWIN));
        Assembly { coding, out, crc: crc32fast::Hasher::new(), len: 0, cat, scratch: Vec::new() }
    }

    pub fn piece(&mut self, p: &Piece) {
        match self.coding {
            Coding::Identity => self.out.extend_from_slice(&p.raw),
            Coding::Gzip => {
                self.out.extend_from_slice(&p.deflate);
                self.crc.combine(&crc32fast::Hasher::new_with_initial_len(p.crc, p.raw.len() as u64));
                self.len += p.raw.len() as u64;
            }
            Coding::Brotli => self.cat_stream(&p.brotli),
        }
    }

    /// A run with `token` in its token places. False if the token is not `TOKEN_LEN`
    /// long (nothing written then).
    pub fn run(&mut self, r: &Run, token: &str) -> bool {
        if r.parts.len() > 1 && token.len() != TOKEN_LEN {
            return false;
        }
        match (&r.patched, self.coding) {
            (Some((stream, at)), Coding::Brotli) => {
                let mut s = std::mem::take(&mut self.scratch);
                s.clear();
                s.extend_from_slice(stream);
                s[*at..*at + TOKEN_LEN].copy_from_slice(token.as_bytes());
                self.cat_stream(&s);
                self.scratch = s;
            }
            _ => {
                for (i, p) in r.parts.iter().enumerate() {
                    if i > 0 {
                        self.text(token.as_bytes());
                    }
                    self.piece(p);
                }
            }
        }
        true
    }

    /// Per-request text, sent as is inside the encoding's framing.
    pub fn text(&mut self, s: &[u8]) {
        if s.is_empty() {
            return;
        }
        match self.coding {
            Coding::Identity => self.out.extend_from_slice(s),
            Coding::Gzip => {
                for chunk in s.chunks(0xffff) {
                    let n = chunk.len() as u16;
                    // BFINAL=0 BTYPE=00 (stored), padded to the byte; LEN; NLEN.
                    self.out.push(0);
                    self.out.extend_from_slice(&n.to_le_bytes());
                    self.out.extend_from_slice(&(!n).to_le_bytes());
                    self.out.extend_from_slice(chunk);
                }
                self.crc.update(s);
                self.len += s.len() as u64;
            }
            Coding::Brotli => {
                let mut stream = std::mem::take(&mut self.scratch);
                stream.clear();
                uncompressed_brotli(s, &mut stream);
                self.cat_stream(&stream);
                self.scratch = stream;
            }
        }
    }

    fn cat_stream(&mut self, stream: &[u8]) {
        let Some(cat) = self.cat.as_mut() else { return };
        cat.new_brotli_file();
        let mut in_off = 0;
        loop {
            let start = self.out.len();
            self.out.resize(start + stream.len() - in_off + 16, 0);
            let mut out_off = start;
            let r = cat.stream(stream, &mut in_off, &mut self.out, &mut out_off);
            self.out.truncate(out_off);
            match r {
                BroCatliResult::NeedsMoreOutput => continue,
                _ => break,
            }
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        match self.coding {
            Coding::Identity => {}
            Coding::Gzip => {
                // The final block: empty, stored.
                self.out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
                let len = self.len as u32; // ISIZE: the length mod 2^32
                self.out.extend_from_slice(&self.crc.finalize().to_le_bytes());
                self.out.extend_from_slice(&len.to_le_bytes());
            }
            Coding::Brotli => {
                if let Some(mut cat) = self.cat.take() {
                    loop {
                        let start = self.out.len();
                        self.out.resize(start + 16, 0);
                        let mut off = start;
                        let r = cat.finish(&mut self.out, &mut off);
                        self.out.truncate(off);
                        if r != BroCatliResult::NeedsMoreOutput {
                            break;
                        }
                    }
                }
            }
        }
        self.out
    }
}

/// `s` as a whole brotli stream of uncompressed meta-blocks (window 2^16, the smallest
/// header; `BroCatli` accepts a later stream with a smaller window than the first).
fn uncompressed_brotli(s: &[u8], out: &mut Vec<u8>) {
    // WBITS for 2^16 is the single bit 0. Each meta-block header: ISLAST=0, MNIBBLES=4
    // (the 2 bits 00), MLEN-1 in 16 bits, ISUNCOMPRESSED=1; 21 bits, padded to 3 bytes.
    let mut first = true;
    for chunk in s.chunks(0x10000) {
        let mlen1 = (chunk.len() - 1) as u32;
        // The first stream's WBITS bit (0) shifts the header by one.
        let shift = u32::from(first);
        let header: u32 = (mlen1 << (shift + 3)) | (1 << (shift + 19));
        let nbytes = (shift + 20).div_ceil(8);
        for i in 0..nbytes {
            out.push((header >> (8 * i)) as u8);
        }
        out.extend_from_slice(chunk);
        first = false;
    }
    // The last, empty meta-block: ISLAST=1, ISLASTEMPTY=1.
    out.push(0b11);
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn unbrotli(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(b, 4096).read_to_end(&mut out).expect("valid brotli");
        out
    }

    fn ungzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b).read_to_end(&mut out).expect("valid gzip (CRC and length checked)");
        out
    }

    fn page(n: usize) -> Vec<u8> {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!("<li class=\"comment\" id=\"c{i}\"><p>Comment number {i}, a few words ♥ long.</p></li>\n"));
        }
        s.into_bytes()
    }

    #[test]
    fn pieces_and_text_decode_to_their_concatenation_in_every_coding() {
        let a = page(200);
        let b = page(3);
        let c: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect(); // > one stored block
        let pieces = [Piece::new(&a).unwrap(), Piece::new(&b).unwrap(), Piece::new(&c).unwrap(), Piece::new(b"").unwrap()];
        let texts: [&[u8]; 4] = [b"token-1234", b"", &c, "é".as_bytes()];
        // Text first, pieces first, text twice in a row: every seam.
        let plan: Vec<(bool, usize)> = vec![(false, 0), (true, 0), (false, 0), (false, 3), (true, 1), (true, 3), (false, 2), (true, 2), (false, 1), (true, 0)];
        let mut expected = Vec::new();
        for &(is_piece, i) in &plan {
            expected.extend_from_slice(if is_piece { &pieces[i].raw } else { texts[i] });
        }
        for coding in [Coding::Identity, Coding::Gzip, Coding::Brotli] {
            let mut asm = Assembly::new(coding, 1024);
            for &(is_piece, i) in &plan {
                if is_piece { asm.piece(&pieces[i]) } else { asm.text(texts[i]) }
            }
            let body = asm.finish();
            let got = match coding {
                Coding::Identity => body.clone(),
                Coding::Gzip => ungzip(&body),
                Coding::Brotli => unbrotli(&body),
            };
            assert_eq!(got, expected, "{coding:?}");
            if coding != Coding::Identity {
                assert!(body.len() < expected.len() / 2, "{coding:?}: {} of {}", body.len(), expected.len());
            }
        }
    }

    #[test]
    fn a_run_is_patched_in_place_with_any_token_in_every_coding() {
        let head = b"<!doctype html><body hx-headers='{\"X-CSRF-Token\": \"".to_vec();
        let form = b"\"}'><form method=post><input type=hidden name=csrf_token value=\"".to_vec();
        let tail = page(40);
        let parts: Vec<&[u8]> = vec![&head, &form, &form, b"\"></form>", &tail];
        let run = Run::new(&parts).unwrap();
        let (stream, _) = run.patched.as_ref().expect("every later token a copy of the first");
        assert!(run.parts.iter().all(|p| p.brotli.is_empty()), "the patched stream stands for the parts' own");
        let whole = brotli_catable(&parts.concat()).unwrap();
        assert!(stream.len() < whole.len() + whole.len() / 4, "patched {} vs whole {}", stream.len(), whole.len());
        for token in ["a".repeat(TOKEN_LEN), crate::sessions::csrf_token_for(b"k", "seed"), "-_".repeat(22)[..TOKEN_LEN].to_string()] {
            let mut expected = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    expected.extend_from_slice(token.as_bytes());
                }
                expected.extend_from_slice(p);
            }
            for coding in [Coding::Identity, Coding::Gzip, Coding::Brotli] {
                let mut asm = Assembly::new(coding, 0);
                asm.text(b"<!-- before -->");
                assert!(asm.run(&run, &token));
                let body = asm.finish();
                let got = match coding {
                    Coding::Identity => body,
                    Coding::Gzip => ungzip(&body),
                    Coding::Brotli => unbrotli(&body),
                };
                assert_eq!(&got[15..], &expected[..], "{coding:?}");
            }
        }
        assert!(!Assembly::new(Coding::Brotli, 0).run(&run, "short"), "a token of another length is refused");
        let mut buf = Vec::new();
        run.encode_into(&mut buf);
        let back = Run::decode_from(&mut &buf[..]).unwrap();
        assert_eq!(back.patched, run.patched);
    }

    #[test]
    fn an_empty_assembly_is_a_valid_empty_body() {
        assert_eq!(ungzip(&Assembly::new(Coding::Gzip, 0).finish()), b"");
        assert_eq!(unbrotli(&Assembly::new(Coding::Brotli, 0).finish()), b"");
        let mut asm = Assembly::new(Coding::Brotli, 0);
        asm.text(b"x");
        assert_eq!(unbrotli(&asm.finish()), b"x");
    }

    #[test]
    fn a_piece_survives_the_shared_cache_and_a_corrupt_one_is_refused() {
        let p = Piece::new(&page(5)).unwrap();
        let mut buf = Vec::new();
        p.encode_into(&mut buf);
        let mut rest = &buf[..];
        let q = Piece::decode_from(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!((q.raw, q.deflate, q.brotli, q.crc), (p.raw.clone(), p.deflate.clone(), p.brotli.clone(), p.crc));
        buf[6] ^= 1;
        assert!(Piece::decode_from(&mut &buf[..]).is_none());
    }
}
