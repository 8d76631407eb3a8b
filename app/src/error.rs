//! One error type for handlers. Each variant maps to a status (`web::error_pages`) and a
//! message that is safe to show; internal errors are logged with the request id and shown
//! as a generic 500.

/// A form's errors by field name, as templates show them next to each input.
pub type FieldErrors = std::collections::BTreeMap<&'static str, String>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("The page you asked for does not exist.")]
    NotFound,
    #[error("The upload is too large.")]
    PayloadTooLarge,
    #[error("{0}")]
    Unprocessable(String),
    /// The request lost a race or repeats a finished action (a report resolved twice).
    #[error("{0}")]
    Conflict(String),
    #[error("Too many attempts. Please wait a little and try again.")]
    TooManyRequests { retry_after_secs: u64 },
    /// Too much work queued (password hashing under a login flood): 503 with Retry-After.
    #[error("We are very busy right now. Please try again in a moment.")]
    Busy { retry_after_secs: u64 },
    /// A service the page needs is down or too slow (the media store): 503 with
    /// Retry-After, and this message. The cause was logged where it happened.
    #[error("{0}")]
    Unavailable(&'static str),
    /// Not an error page: the error-page middleware turns it into a redirect to
    /// `/login?next=…`.
    #[error("Please log in to continue.")]
    LoginRequired(String),
    /// A form the schema refused (see `on_constraint`): 422 with these field errors, which
    /// a handler normally catches to show the form again.
    #[error("Please check the form and try again.")]
    Invalid(FieldErrors),
    /// A database failure we did not expect: logged, shown as a generic 500.
    #[error("Something went wrong on our side.")]
    Database(#[source] sqlx::Error),
    #[error("Something went wrong on our side.")]
    Internal(#[from] anyhow::Error),
}

/// `Error::Unavailable` when the media store cannot be reached (`storage`).
pub const STORAGE_UNAVAILABLE: &str = "Images and files are unavailable for a moment. Please try again shortly.";

/// Retry-After of `Error::Unavailable`, seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl Error {
    /// One field's error, for `on_constraint`.
    pub fn field(name: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid(FieldErrors::from([(name, message.into())]))
    }
}

/// `on_constraint("users_email_key", |_| Error::field("email", "…"))`: turns the violation
/// of one named constraint into a chosen error (usually a field error), and any other
/// error into `Error` as usual. The schema is the last validator: a race between two
/// signups for one name ends in the unique index, and the loser sees a form error.
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, map: impl FnOnce(Box<dyn sqlx::error::DatabaseError>) -> Error) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for Result<T, E> {
    fn on_constraint(self, name: &str, map: impl FnOnce(Box<dyn sqlx::error::DatabaseError>) -> Error) -> Result<T> {
        self.map_err(|e| match e.into() {
            Error::Database(sqlx::Error::Database(db)) if db.constraint() == Some(name) => map(db),
            e => e,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Every connection busy for the whole acquire timeout: overload, not a bug.
            // A 503 with Retry-After tells clients (and the proxy) to come back shortly.
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool exhausted: answering 503");
                crate::metrics::POOL_TIMEOUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Error::Busy { retry_after_secs: 2 }
            }
            e => Error::Database(e),
        }
    }
}

impl From<minijinja::Error> for Error {
    fn from(e: minijinja::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<crate::jobs::EnqueueError> for Error {
    fn from(e: crate::jobs::EnqueueError) -> Self {
        Error::Internal(e.into())
    }
}
