//! The EXIF summary kept with an upload. Only the tags named here are read (camera,
//! lens, time taken, orientation): nothing from the GPS IFD, nor any other tag, can reach
//! the summary. Metadata is best effort: a damaged or missing EXIF block only means an
//! empty summary, never a refused image.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use exif::{In, Tag, Value};

/// The longest string kept from a tag, in characters.
const MAX_TEXT: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub orientation: Option<u32>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub lens: Option<String>,
    pub taken: Option<String>,
}

pub(crate) fn read(data: &[u8]) -> Meta {
    catch_unwind(AssertUnwindSafe(|| read_exif(data))).unwrap_or_default()
}

/// For a JPEG, the bytes before its first scan: where EXIF lives. (kamadak-exif would
/// otherwise search a file without EXIF to its end, through all the scan data.)
fn jpeg_headers(data: &[u8]) -> &[u8] {
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            return &data[..i];
        }
        i += 2 + usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
    }
    &data[..i.min(data.len())]
}

fn read_exif(data: &[u8]) -> Meta {
    let data = if data.starts_with(&[0xFF, 0xD8]) { jpeg_headers(data) } else { data };
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(data)) else {
        return Meta::default();
    };
    let field = |tag: Tag| exif.get_field(tag, In::PRIMARY);
    let text = |tag: Tag| field(tag).and_then(|f| ascii(&f.value)).and_then(clean_text);
    Meta {
        orientation: field(Tag::Orientation).and_then(|f| f.value.get_uint(0)).filter(|v| (1..=8).contains(v)),
        make: text(Tag::Make),
        model: text(Tag::Model),
        lens: text(Tag::LensModel),
        taken: field(Tag::DateTimeOriginal).and_then(|f| ascii(&f.value)).and_then(|raw| {
            let offset = field(Tag::OffsetTimeOriginal).and_then(|f| ascii(&f.value));
            taken(raw, offset)
        }),
    }
}

fn ascii(value: &Value) -> Option<&[u8]> {
    match value {
        Value::Ascii(parts) => parts.first().map(Vec::as_slice),
        _ => None,
    }
}

/// Printable text, trimmed (EXIF strings are often padded with NULs or spaces), at most
/// [`MAX_TEXT`] characters; `None` when nothing is left.
fn clean_text(raw: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(raw);
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let s = s.trim();
    (!s.is_empty()).then(|| s.chars().take(MAX_TEXT).collect())
}

/// `YYYY-MM-DDTHH:MM:SS`, plus `±HH:MM` when the offset is recorded; `None` when the
/// date is blank or malformed.
fn taken(raw: &[u8], offset: Option<&[u8]>) -> Option<String> {
    let mut dt = exif::DateTime::from_ascii(raw).ok()?;
    if dt.year == 0 || !(1..=12).contains(&dt.month) || !(1..=31).contains(&dt.day) || dt.hour > 23 || dt.minute > 59 || dt.second > 60 {
        return None;
    }
    let mut s = format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second);
    if let Some(offset) = offset
        && dt.parse_offset(offset).is_ok()
        && let Some(minutes) = dt.offset
    {
        let sign = if minutes < 0 { '-' } else { '+' };
        let m = minutes.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
    }
    Some(s)
}

impl Meta {
    /// The summary stored with the upload; see [`super::Processed::exif`].
    pub fn to_json(&self, format: &str, width: u32, height: u32) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("format".into(), format.into());
        map.insert("width".into(), width.into());
        map.insert("height".into(), height.into());
        map.insert("orientation".into(), self.orientation.unwrap_or(1).into());
        for (key, value) in [("make", &self.make), ("model", &self.model), ("lens", &self.lens), ("taken", &self.taken)] {
            if let Some(v) = value {
                map.insert(key.into(), v.clone().into());
            }
        }
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_is_normalised() {
        assert_eq!(taken(b"2024:05:17 14:03:22", None).as_deref(), Some("2024-05-17T14:03:22"));
        assert_eq!(taken(b"2024:05:17 14:03:22", Some(b"+02:00")).as_deref(), Some("2024-05-17T14:03:22+02:00"));
        assert_eq!(taken(b"2024:05:17 14:03:22", Some(b"-05:30")).as_deref(), Some("2024-05-17T14:03:22-05:30"));
        assert_eq!(taken(b"2024:05:17 14:03:22", Some(b"junk")).as_deref(), Some("2024-05-17T14:03:22"));
        assert_eq!(taken(b"    :  :     :  :  ", None), None);
        assert_eq!(taken(b"0000:00:00 00:00:00", None), None);
    }

    #[test]
    fn text_is_cleaned() {
        assert_eq!(clean_text(b"Canon\0\0\0 ").as_deref(), Some("Canon"));
        assert_eq!(clean_text(b"  \0"), None);
        assert_eq!(clean_text(&[b'a'; 500]).map(|s| s.len()), Some(MAX_TEXT));
    }

    #[test]
    fn jpeg_headers_stop_at_the_first_scan() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE1, 0, 4, 1, 2, 0xFF, 0xFF, 0xDB, 0, 2, 0xFF, 0xDA, 0, 2, 9, 9];
        assert_eq!(jpeg_headers(&jpeg).len(), 13);
        assert_eq!(jpeg_headers(&jpeg[..7]), &jpeg[..7]);
        assert_eq!(jpeg_headers(&[0xFF, 0xD8, 0x00, 0x00]), &[0xFF, 0xD8]);
    }

    #[test]
    fn no_exif_is_an_empty_summary() {
        assert_eq!(read(b"not an image"), Meta::default());
        assert_eq!(read(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF]), Meta::default());
    }
}
