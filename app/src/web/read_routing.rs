//! Middleware: every page request runs inside a `db::ReadScope`, which decides where its
//! reads may go (see `db::routing`).

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::HeaderValue};

use crate::db::ReadScope;

/// Development and test only: which pools answered the request's reads.
pub const READ_POOL_HEADER: &str = "x-read-pool";

/// Middleware: runs each page request inside a `ReadScope` and, outside production with
/// replicas, names the pools that answered its reads in `X-Read-Pool`. It sits outside
/// the error pages, so a 404 says where its read went too.
pub struct ReadRouting {
    pub expose: bool,
}

impl<E: Endpoint> Middleware<E> for ReadRouting {
    type Output = ReadRoutingEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        ReadRoutingEndpoint { inner, expose: self.expose }
    }
}

pub struct ReadRoutingEndpoint<E> {
    inner: E,
    expose: bool,
}

impl<E: Endpoint> Endpoint for ReadRoutingEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let scope = ReadScope::new(0);
        let mut response = scope.run(self.inner.call(req)).await.map(IntoResponse::into_response)?;
        let served_by = scope.served_by();
        if self.expose && !served_by.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&served_by) {
                response.headers_mut().insert(READ_POOL_HEADER, v);
            }
        }
        Ok(response)
    }
}

