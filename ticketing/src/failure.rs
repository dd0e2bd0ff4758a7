//! The failures every service answers alike, mapped once to their status and contract code:
//! malformed input, unknown ids, a dependency that is down, rate limits, bugs. Each service's
//! `ApiError` holds these as one variant and adds only its own codes
//! ([`service_failures!`](crate::service_failures) writes the conversions it needs for `?`).

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::envelope::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A query string that does not parse: 400.
    #[error("{0}")]
    BadQuery(String),
    /// A body that does not parse or a value out of range: 422.
    #[error("{0}")]
    Invalid(String),
    #[error("the request body is too large")]
    TooLarge,
    #[error("no such event")]
    EventNotFound,
    #[error("no such resource")]
    NotFound,
    /// Postgres or Redis is down, busy or being restored, or this instance is full: 503 with
    /// `Retry-After`; the message says which, for humans.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("too many requests; slow down")]
    RateLimited { retry_after: Duration },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Failure {
    pub fn body(self) -> ErrorBody {
        let message = self.to_string();
        match self {
            Self::BadQuery(_) => {
                ErrorBody::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            Self::Invalid(_) => {
                ErrorBody::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            Self::TooLarge => {
                ErrorBody::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            Self::EventNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "event_not_found", message)
            }
            Self::NotFound => ErrorBody::new(StatusCode::NOT_FOUND, "not_found", message),
            Self::Unavailable(_) => {
                ErrorBody::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .retry_after(1)
            }
            Self::RateLimited { retry_after } => {
                ErrorBody::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
                    // Whole seconds, rounded up: a client waiting the truncated value would
                    // come back a moment too early and be refused again.
                    .retry_after(retry_after.as_secs_f64().ceil() as u64)
            }
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                ErrorBody::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong",
                )
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        self.body().into_response()
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        // Outages and timeouts are 503 with Retry-After; anything else is a bug.
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "postgres unavailable");
            Self::Unavailable("the database is busy or unreachable; try again")
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "redis unavailable");
        Self::Unavailable("redis is unreachable; try again")
    }
}

impl From<JsonRejection> for Failure {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::Invalid(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for Failure {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadQuery(rejection.body_text())
    }
}

impl From<PathRejection> for Failure {
    fn from(_: PathRejection) -> Self {
        Self::NotFound
    }
}

/// Writes the conversions a service's `ApiError` needs so that `?` works on what [`Failure`]
/// converts from: `ApiError` must have a variant `Failure(Failure)`.
#[macro_export]
macro_rules! service_failures {
    ($error:ty) => {
        impl From<$crate::failure::Failure> for $error {
            fn from(failure: $crate::failure::Failure) -> Self {
                Self::Failure(failure)
            }
        }
        impl From<sqlx::Error> for $error {
            fn from(e: sqlx::Error) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<redis::RedisError> for $error {
            fn from(e: redis::RedisError) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<anyhow::Error> for $error {
            fn from(e: anyhow::Error) -> Self {
                Self::Failure($crate::failure::Failure::Internal(e))
            }
        }
    };
}

/// `axum::Json`, answering malformed bodies with the envelope.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(Failure))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, answering bad ids with the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Failure))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, answering bad query strings with the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Failure))]
pub struct Query<T>(pub T);
