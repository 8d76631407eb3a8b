//! Turns every error — ours, poem's (unknown route, bad path parameter), a CSRF rejection
//! or a database failure — into a page from `templates/errors/`, with the right status.
//! Internal errors are logged with the request id; users see a generic message.

use std::sync::{Arc, OnceLock};

use minijinja::context;
use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    error::ResponseError,
    http::{StatusCode, header},
};

use crate::{
    error::Error,
    sessions::SessionSlot,
    web::{
        AppState,
        ctx::{html_response, page_globals, redirect},
        request_id::RequestId,
    },
};

/// The status each error is answered with.
impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Busy { .. } | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::LoginRequired(_) => StatusCode::SEE_OTHER,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}


pub struct ErrorPages;

impl<E: Endpoint> Middleware<E> for ErrorPages {
    type Output = ErrorPagesEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        ErrorPagesEndpoint { inner: ep }
    }
}

pub struct ErrorPagesEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for ErrorPagesEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let slot: SessionSlot = Arc::new(OnceLock::new());
        req.extensions_mut().insert(slot.clone());
        let state = req.data::<AppState>().cloned();
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let htmx = req.headers().get("hx-request").is_some_and(|v| v == "true");
        let err = match self.inner.call(req).await {
            Ok(resp) => return Ok(resp.into_response()),
            Err(err) => err,
        };
        let Some(state) = state else { return Err(err) };
        // The route poem matched, carried over to the page that replaces the error, so
        // `/metrics` counts the 4xx/5xx under the route and not as unmatched.
        let pattern = err.data::<poem::PathPattern>().cloned();
        let with_pattern = |mut resp: Response| {
            if let Some(p) = &pattern {
                resp.set_data(p.clone());
            }
            resp
        };

        let (status, message) = match err.downcast_ref::<Error>() {
            Some(Error::LoginRequired(next)) => {
                let to = format!("/login?next={}", percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC));
                return Ok(with_pattern(redirect(htmx, &to)));
            }
            Some(e @ Error::Internal(inner)) => {
                tracing::error!(error = format!("{inner:#}"), "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            Some(e @ Error::Database(db)) => {
                tracing::error!(error = %db, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            Some(e) => (err.status(), e.to_string()),
            None if err.status() == StatusCode::NOT_FOUND => (StatusCode::NOT_FOUND, Error::NotFound.to_string()),
            None if err.status() == StatusCode::METHOD_NOT_ALLOWED => {
                (StatusCode::METHOD_NOT_ALLOWED, "That action is not available here.".into())
            }
            None if err.status().is_server_error() => {
                tracing::error!(error = %err, "internal error");
                (err.status(), "Something went wrong on our side.".into())
            }
            None => (err.status(), err.to_string()),
        };
        let retry_after = match err.downcast_ref::<Error>() {
            Some(Error::TooManyRequests { retry_after_secs } | Error::Busy { retry_after_secs }) => Some(*retry_after_secs),
            Some(Error::Unavailable(_)) => Some(crate::error::UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        };
        let template = match status.as_u16() {
            400 | 403 | 404 | 413 | 422 | 429 | 500 => format!("errors/{}.html", status.as_u16()),
            _ => "errors/generic.html".to_string(),
        };
        let session = slot.get();
        let vars = context! { status => status.as_u16(), message => &message, request_id => &request_id };
        let globals = page_globals(&state, session, &[], &request_id, vars);
        let rendered = if htmx {
            state.templates.render_block(&template, "content", globals)
        } else {
            state.templates.render(&template, globals)
        };
        let mut resp = match rendered {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!(error = %e, "error page failed to render");
                Response::builder().status(status).content_type("text/plain; charset=utf-8").body(message)
            }
        };
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        Ok(with_pattern(resp))
    }
}
