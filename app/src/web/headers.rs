//! Security headers on every response, errors and static files included.

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::HeaderValue};

/// No inline script or style anywhere: htmx is configured (static/js/app.js) to need none.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
font-src 'self'; connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

pub struct SecurityHeaders {
    /// HSTS only in production: in development it would pin localhost to https.
    pub hsts: bool,
}

impl<E: Endpoint> Middleware<E> for SecurityHeaders {
    type Output = SecurityHeadersEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        SecurityHeadersEndpoint { inner: ep, hsts: self.hsts }
    }
}

pub struct SecurityHeadersEndpoint<E> {
    inner: E,
    hsts: bool,
}

impl<E: Endpoint> Endpoint for SecurityHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        let h = resp.headers_mut();
        // A handler may set a stricter policy of its own (the raw mail preview does).
        if !h.contains_key("content-security-policy") {
            h.insert("content-security-policy", HeaderValue::from_static(CSP));
        }
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("referrer-policy", HeaderValue::from_static("strict-origin-when-cross-origin"));
        // No `interest-cohort` (FLoC, withdrawn): Chromium logs an "Unrecognized feature"
        // console error for it on every page, which Lighthouse's best practices count.
        h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"));
        h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
        if self.hsts {
            h.insert("strict-transport-security", HeaderValue::from_static("max-age=63072000; includeSubDomains"));
        }
        Ok(resp)
    }
}
