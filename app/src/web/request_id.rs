//! Request ids and request logging. Every log line of a request carries its id, taken
//! from `x-request-id` when a proxy set a sane one, generated otherwise, and echoed on the
//! response. Jobs enqueued by the request carry it too (see `jobs::Envelope`).

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::HeaderValue};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub struct RequestIds;

impl<E: Endpoint> Middleware<E> for RequestIds {
    type Output = RequestIdEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        RequestIdEndpoint { inner: ep }
    }
}

pub struct RequestIdEndpoint<E> {
    inner: E,
}

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub fn generate() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Routes whose next path segment is a secret token (the links in our emails and the
/// export download), with the segments that are not one.
const TOKEN_PREFIXES: &[(&str, &[&str])] = &[
    ("password/reset", &[]),
    ("verify-email", &["resend"]),
    ("exports", &[]),
    ("unsubscribe", &[]),
];

/// Query keys whose values are secrets.
const SECRET_KEYS: &[&str] = &["token", "key", "secret", "password", "code", "signature", "sig"];

/// The path as logged: the token segment of a tokened route becomes `…`
/// (`/password/reset/…`); anything after it too.
pub fn redact_path(path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    for (prefix, not_tokens) in TOKEN_PREFIXES {
        let Some(rest) = trimmed.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else { continue };
        let segment = rest.split('/').next().unwrap_or_default();
        if segment.is_empty() || not_tokens.contains(&segment) {
            continue;
        }
        return format!("/{prefix}/…");
    }
    path.to_string()
}

/// The query as logged: values of secret keys become `…`, and a `next` path is redacted
/// like a path (a login redirect can carry a tokened address).
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded_key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().to_ascii_lowercase();
            if SECRET_KEYS.iter().any(|s| decoded_key == *s || decoded_key.ends_with(&format!("_{s}"))) {
                format!("{key}=…")
            } else if decoded_key == "next" {
                let path = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
                let redacted = redact_path(&path);
                if redacted == path { pair.to_string() } else { format!("{key}={redacted}") }
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl<E: Endpoint> Endpoint for RequestIdEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable(v))
            .map(str::to_string)
            .unwrap_or_else(generate);
        req.extensions_mut().insert(RequestId(id.clone()));
        // Never the raw path or query: some carry secrets (reset links, exports) that stay
        // valid after the request, and logs outlive them.
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %req.method(),
            path = %redact_path(req.uri().path()),
            query = req.uri().query().map(redact_query),
        );
        let started = Instant::now();
        async move {
            let mut resp = match self.inner.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            };
            let status = resp.status().as_u16();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if status >= 500 {
                tracing::error!(status, ms, "request failed");
            } else {
                tracing::info!(status, ms, "request");
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            Ok(resp)
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{redact_path, redact_query};

    #[test]
    fn token_segments_are_redacted() {
        assert_eq!(redact_path("/password/reset/abc123"), "/password/reset/…");
        assert_eq!(redact_path("/password/reset/abc123/x"), "/password/reset/…");
        assert_eq!(redact_path("/verify-email/abc"), "/verify-email/…");
        assert_eq!(redact_path("/verify-email/resend"), "/verify-email/resend");
        assert_eq!(redact_path("/exports/tok"), "/exports/…");
        assert_eq!(redact_path("/unsubscribe/tok"), "/unsubscribe/…");
        assert_eq!(redact_path("/password/forgot"), "/password/forgot");
        assert_eq!(redact_path("/s/1/c/2"), "/s/1/c/2");
        assert_eq!(redact_path("/exportsx/tok"), "/exportsx/tok");
    }

    #[test]
    fn secret_query_values_are_redacted() {
        assert_eq!(redact_query("token=abc&q=cats"), "token=…&q=cats");
        assert_eq!(redact_query("csrf_token=abc"), "csrf_token=…");
        assert_eq!(redact_query("next=%2Fpassword%2Freset%2Fabc"), "next=/password/reset/…");
        assert_eq!(redact_query("next=%2Fsettings"), "next=%2Fsettings");
    }
}
