//! CSRF protection for every unsafe request (POST, PUT, PATCH, DELETE).
//!
//! The token is per session (an HMAC of the session's secret, see `sessions`). Forms send
//! it as the hidden field `csrf_token`; htmx sends `X-CSRF-Token` (set once with
//! `hx-headers` on `<body>`). A request without a valid token gets the 403 page. Unlike
//! poem's `Csrf` middleware, this one rejects by itself, so no handler can forget.

use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, http::Method};

use crate::{error::Error, sessions::RequestSession, tokens, web::form};

pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf_token";

pub struct CsrfProtection;

impl<E: Endpoint> Middleware<E> for CsrfProtection {
    type Output = CsrfEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        CsrfEndpoint { inner: ep }
    }
}

pub struct CsrfEndpoint<E> {
    inner: E,
}

fn rejected() -> poem::Error {
    Error::Forbidden(
        "This form has expired or did not come from this site. Go back, reload the page and try again.".into(),
    )
    .into()
}

impl<E: Endpoint> Endpoint for CsrfEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let expected = req
            .extensions()
            .get::<RequestSession>()
            .map(|s| s.csrf_token.clone())
            .ok_or_else(rejected)?;

        let provided = match req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
            Some(v) => Some(v.to_string()),
            None if form::is_urlencoded(&req) => {
                // Read the (bounded) body, find the field, and put the body back for the handler.
                let bytes = form::read_body(req.take_body()).await?;
                let token = form::field(&bytes, FIELD);
                req.set_body(Body::from(bytes));
                token
            }
            None => None,
        };
        match provided {
            Some(p) if tokens::constant_time_eq(p.as_bytes(), expected.as_bytes()) => {
                self.inner.call(req).await.map(IntoResponse::into_response)
            }
            _ => {
                tracing::warn!("rejected unsafe request without a valid CSRF token");
                Err(rejected())
            }
        }
    }
}
