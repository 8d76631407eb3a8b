//! URL-encoded forms, read strictly: bounded size (413 beyond), and invalid UTF-8 is a
//! 400 rather than being silently replaced (a password with U+FFFD in it would be a
//! nasty surprise).

use poem::{Body, FromRequest, Request, RequestBody};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Large enough for a long chapter in Markdown; anything bigger is not a form we serve.
pub const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

pub fn is_urlencoded(req: &Request) -> bool {
    req.content_type()
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

pub async fn read_body(body: Body) -> Result<Vec<u8>, Error> {
    match body.into_bytes_limit(MAX_FORM_BYTES).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(Error::PayloadTooLarge),
        Err(_) => Err(Error::BadRequest("The request body could not be read.".into())),
    }
}

/// The first value of `name`, if present and valid UTF-8. Other fields may be malformed:
/// the handler's own parsing reports those.
pub fn field(bytes: &[u8], name: &str) -> Option<String> {
    bytes.split(|&b| b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let key = decode(kv.next()?).ok()?;
        if key != name {
            return None;
        }
        decode(kv.next().unwrap_or_default()).ok()
    })
}

fn decode(part: &[u8]) -> Result<String, Error> {
    let plus_as_space: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let text = percent_encoding::percent_decode(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::BadRequest("The form contained text that is not valid UTF-8.".into()))?;
    // PostgreSQL cannot store NUL in text: refused here, once, rather than as a 500 later.
    if text.contains('\0') {
        return Err(Error::BadRequest(crate::web::hostile_input::MSG_NUL.into()));
    }
    Ok(text)
}

pub fn pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, Error> {
    bytes
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut kv = p.splitn(2, |&b| b == b'=');
            let k = decode(kv.next().unwrap_or_default())?;
            let v = decode(kv.next().unwrap_or_default())?;
            Ok((k, v))
        })
        .collect()
}

/// Extractor: `Form<T>` where `T: Deserialize` (use `#[serde(default)]` so a missing
/// field becomes an empty one and gets a friendly validation message).
pub struct Form<T>(pub T);

impl<'a, T: DeserializeOwned> FromRequest<'a> for Form<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        if !is_urlencoded(req) {
            return Err(Error::BadRequest("Expected a submitted form (application/x-www-form-urlencoded).".into()).into());
        }
        let bytes = read_body(body.take()?).await?;
        let pairs = pairs(&bytes)?;
        let encoded = serde_urlencoded::to_string(&pairs)
            .map_err(|_| Error::BadRequest("The form could not be read.".into()))?;
        serde_urlencoded::from_str(&encoded)
            .map(Form)
            .map_err(|e| Error::BadRequest(format!("The form could not be read: {e}.")).into())
    }
}

/// The image field of a form, as read.
pub enum ImageField {
    None,
    Some(crate::media::upload::ImageUpload),
    /// Refused (not an image, damaged, too many pixels: 400; too large: 413), with the
    /// reason to show on the form.
    Rejected { status: poem::http::StatusCode, message: String },
}

/// The fields of a form that may carry one image (`image_field`): from a multipart body,
/// or a plain urlencoded one (no image). A refused image keeps the text fields read
/// before it (our forms put the file last), so the form can be shown again with the
/// reason next to the file input.
pub async fn fields_and_image(
    req: &poem::Request,
    body: Body,
    image_field: &str,
) -> Result<(std::collections::HashMap<String, String>, ImageField), Error> {
    if is_urlencoded(req) {
        let bytes = read_body(body).await?;
        let fields = pairs(&bytes)?.into_iter().rev().collect();
        return Ok((fields, ImageField::None));
    }
    match crate::web::uploads::read_multipart_keeping_fields(req, body, image_field).await {
        Ok(parsed) => Ok((parsed.fields, parsed.image.map_or(ImageField::None, ImageField::Some))),
        Err(rejection) => Ok((
            rejection.fields,
            ImageField::Rejected { status: crate::web::uploads::status_of(&rejection.error), message: rejection.error.to_string() },
        )),
    }
}
