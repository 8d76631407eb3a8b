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
        let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
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
