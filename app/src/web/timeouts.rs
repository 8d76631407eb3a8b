//! The per-request deadline: a request that is not answered in time gets the 503 page
//! (`Error::Busy`, with `Retry-After`) instead of holding a connection, a pool slot and
//! memory forever.
//!
//! The deadline covers everything inside it, body reading included: the CSRF check's
//! read of the form, `web::form` and the multipart reader in `web::uploads` all read the
//! body inside the handler's future, so a client that sends its body one byte at a time
//! is cut off too. Multipart POSTs (the forms with a file: new story, edit story,
//! settings) get the longer upload deadline; everything else the request deadline.
//!
//! It sits inside `ErrorPages` (so the 503 is a normal page) and outside the session
//! layer (a session lookup stuck on the database counts). Streaming a response body
//! happens after the handler returns and is not bounded here (the connection's idle
//! timeout in `web::server` covers a client that stops reading).

use std::time::Duration;

use poem::{Endpoint, Middleware, Request, http::Method};

use crate::error::Error;

pub struct Deadline {
    pub request: Duration,
    pub upload: Duration,
}

impl<E: Endpoint> Middleware<E> for Deadline {
    type Output = DeadlineEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        DeadlineEndpoint { inner: ep, request: self.request, upload: self.upload }
    }
}

pub struct DeadlineEndpoint<E> {
    inner: E,
    request: Duration,
    upload: Duration,
}

/// A POST carrying a multipart body: an upload form.
fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST
        && req.content_type().is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// What clients are told to wait before retrying a request that ran out of time.
pub const RETRY_AFTER_SECS: u64 = 5;

impl<E: Endpoint> Endpoint for DeadlineEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let limit = if is_upload(&req) { self.upload } else { self.request };
        match tokio::time::timeout(limit, self.inner.call(req)).await {
            Ok(result) => result,
            Err(_) => {
                // Dropping the handler's future cancels it: its queries are abandoned
                // (sqlx returns or closes the connection) and nothing more is read.
                tracing::warn!(limit_secs = limit.as_secs_f64(), "request deadline exceeded: answering 503");
                Err(Error::Busy { retry_after_secs: RETRY_AFTER_SECS }.into())
            }
        }
    }
}
