//! Text PostgreSQL cannot store, refused once at the door: a NUL character (`%00`; a raw
//! one cannot get past hyper's parser) in the path or the query string. Left alone it
//! reaches a query as a parameter, PostgreSQL refuses it ("invalid byte sequence") and
//! the visitor gets a 500. Forms are checked where they are decoded (`web::form`,
//! `web::uploads`).
//!
//! A NUL in the path: 404 (no page has such an address). In the query: 400.

use poem::{Endpoint, Middleware, Request};

use crate::error::Error;

pub struct RefuseNul;

impl<E: Endpoint> Middleware<E> for RefuseNul {
    type Output = RefuseNulEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        RefuseNulEndpoint { inner: ep }
    }
}

pub struct RefuseNulEndpoint<E> {
    inner: E,
}

/// True when `raw` (still percent-encoded) holds a NUL, raw or encoded.
pub fn has_nul(raw: &str) -> bool {
    raw.contains('\0') || percent_encoding::percent_decode_str(raw).any(|b| b == 0)
}

pub const MSG_NUL: &str = "The request contained a character we cannot accept (NUL).";

impl<E: Endpoint> Endpoint for RefuseNulEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if has_nul(req.uri().path()) {
            return Err(Error::NotFound.into());
        }
        if req.uri().query().is_some_and(has_nul) {
            return Err(Error::BadRequest(MSG_NUL.into()).into());
        }
        self.inner.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::has_nul;

    #[test]
    fn finds_encoded_and_raw_nul() {
        assert!(has_nul("/u/a%00b"));
        assert!(has_nul("q=%00"));
        assert!(has_nul("a\0b"));
        assert!(!has_nul("/u/a%2500b"), "%25 is a literal percent sign");
        assert!(!has_nul("/s/1/c/2?q=caf%C3%A9"));
    }
}
